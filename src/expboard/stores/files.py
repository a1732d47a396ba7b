"""Run files in a local folder: ``<root>/<run_id>/<name>``. Names are validated before they touch the disk."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from ..errors import ConflictError, NotFoundError, ValidationError
from ..names import check_file_name
from ..records import FileInfo

__all__ = ["LocalFiles"]


class LocalFiles:
    """Files of runs under one root folder."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()
        self._lock = threading.Lock()

    def path(self, run_id: str, name: str) -> Path:
        if not run_id or "/" in run_id or "\\" in run_id or run_id in (".", ".."):
            raise ValidationError(f"invalid run id {run_id!r}")
        name = check_file_name(name)
        run_dir = self.root / run_id
        path = run_dir / name
        # Defence in depth: a symlink inside the run's folder must not lead out of it either.
        if not path.resolve().is_relative_to(run_dir.resolve()):
            raise ValidationError(f"file name {name!r} leaves the run's folder")
        return path

    def write(self, run_id: str, name: str, data: bytes) -> FileInfo:
        path = self.path(run_id, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)  # readers see the old or the new file, never half of it
        return self._info(path, name)

    def append(self, run_id: str, name: str, data: bytes, offset: int) -> FileInfo:
        path = self.path(run_id, name)
        with self._lock:
            size = path.stat().st_size if path.exists() else 0
            if offset == size:
                path.parent.mkdir(parents=True, exist_ok=True)
                with open(path, "ab") as f:
                    f.write(data)
            elif offset < size and offset + len(data) <= size:
                with open(path, "rb") as f:
                    f.seek(offset)
                    if f.read(len(data)) != data:
                        raise ConflictError(
                            f"append to {name!r} at offset {offset} conflicts with the bytes already stored "
                            f"(the file has {size} bytes); re-upload the whole file"
                        )
            else:
                raise ConflictError(
                    f"append to {name!r} at offset {offset}, but the file has {size} bytes; "
                    f"append at offset {size} or re-upload the whole file"
                )
        return self._info(path, check_file_name(name))

    def read(self, run_id: str, name: str, offset: int = 0, length: int | None = None) -> bytes:
        path = self.path(run_id, name)
        if offset < 0 or (length is not None and length < 0):
            raise ValidationError("offset and length must not be negative")
        try:
            with open(path, "rb") as f:
                f.seek(offset)
                return f.read() if length is None else f.read(length)
        except (FileNotFoundError, IsADirectoryError):
            raise NotFoundError(f"run {run_id!r} has no file {name!r}") from None

    def list(self, run_id: str, prefix: str = "") -> list[FileInfo]:
        run_dir = self.root / run_id
        if not run_dir.is_dir():
            return []
        out = []
        for dirpath, _dirs, files in os.walk(run_dir):
            for fn in files:
                if fn.startswith(".") and fn.endswith(".tmp"):
                    continue
                p = Path(dirpath) / fn
                rel = p.relative_to(run_dir).as_posix()
                if rel.startswith(prefix):
                    out.append(self._info(p, rel))
        out.sort(key=lambda i: i.name)
        return out

    @staticmethod
    def _info(path: Path, name: str) -> FileInfo:
        st = path.stat()
        return FileInfo(name=name, size=st.st_size, modified=st.st_mtime)
