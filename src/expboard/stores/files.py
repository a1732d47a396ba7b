"""Run files: one interface, :class:`FileStorage`, with a local-folder and an S3 implementation.

A storage is chosen by URI through a registry (:func:`expboard.stores.storages.open_file_storage`): a plain
path or ``file://...``
is a folder (:class:`LocalFiles`), ``s3://bucket/prefix`` is S3-compatible object storage
(:class:`expboard.stores.s3.S3Files`, needing the ``s3`` extra, imported only when used). Other schemes
plug in with :func:`expboard.stores.storages.register_file_storage`.

Every storage keeps the same contract:

- names are relative ``/``-separated paths inside a run (see :func:`expboard.names.check_file_name`); run
  ids are single path components; every path is resolved and refused unless it stays inside its run's
  folder (or key prefix);
- a written file appears whole or not at all (:meth:`FileStorage.open_writer` streams a file of any size
  with bounded memory and makes it visible only on :meth:`FileWriter.commit`);
- :meth:`FileStorage.append` takes an offset that must equal the file's size; bytes sent again at an
  offset already covered by the same bytes are a no-op (only the part past the end, if any, is appended),
  so a retried append is safe; anything else is a ``ConflictError``;
- reads are ranged and streamed (:meth:`FileStorage.iter_read`).
"""

from __future__ import annotations

import fcntl
import os
import threading
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

from ..errors import ConflictError, NotFoundError, ValidationError
from ..names import check_file_name
from ..records import FileInfo

__all__ = [
    "READ_PIECE_BYTES",
    "FileStorage",
    "FileWriter",
    "LocalFiles",
    "check_storage_run_id",
]

READ_PIECE_BYTES = 1024 * 1024  # what iter_read yields at most at a time

_STAGING = ".staging"  # under a folder root: files being written (never a run id: those cannot start with '.')


def check_storage_run_id(run_id: object) -> str:
    """A run id as a storage path component: 1 to 255 characters, no separators, no NUL, not starting with
    a dot (so ``.`` and ``..`` and the storage's own ``.staging`` folder are never a run's folder)."""
    if (
        not isinstance(run_id, str)
        or not run_id
        or len(run_id) > 255
        or run_id.startswith(".")
        or any(c in run_id for c in "/\\\x00")
    ):
        raise ValidationError(f"invalid run id {run_id!r}: use 1 to 255 characters without '/', '\\' or a leading '.'")
    return run_id


class FileWriter(ABC):
    """A file being written: :meth:`write` pieces, then :meth:`commit` makes it visible whole (replacing
    any file of that name), or :meth:`abort` drops it. Used as a context manager, it commits on success
    and aborts on an exception."""

    @abstractmethod
    def write(self, data: bytes) -> None: ...

    @abstractmethod
    def commit(self) -> FileInfo: ...

    @abstractmethod
    def abort(self) -> None:
        """Drop what was written; safe to call twice or after commit (then it does nothing)."""

    def __enter__(self) -> FileWriter:
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        if et is not None:
            self.abort()


class FileStorage(ABC):
    """Files of runs, in a folder or a bucket. Thread-safe."""

    uri: str

    @abstractmethod
    def open_writer(self, run_id: str, name: str) -> FileWriter:
        """A writer for a new version of the file; nothing is visible until its commit."""

    def write(self, run_id: str, name: str, data: bytes) -> FileInfo:
        """Create or replace a file (readers see the old or the new file, never half of it)."""
        writer = self.open_writer(run_id, name)
        with writer:
            writer.write(data)
            return writer.commit()

    @abstractmethod
    def append(self, run_id: str, name: str, data: bytes, offset: int) -> FileInfo:
        """Append at ``offset`` (the file's size; 0 creates it). See the module docstring for retries."""

    @abstractmethod
    def stat(self, run_id: str, name: str) -> FileInfo:
        """Name, size and modification time; NotFoundError if there is no such file."""

    @abstractmethod
    def iter_read(self, run_id: str, name: str, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        """The bytes from ``offset`` (``length`` of them, or to the end) in pieces of at most
        ``READ_PIECE_BYTES``. NotFoundError (raised at once, not on iteration) if there is no such file."""

    def read(self, run_id: str, name: str, offset: int = 0, length: int | None = None) -> bytes:
        return b"".join(self.iter_read(run_id, name, offset, length))

    def open_read(
        self, run_id: str, name: str, offset: int = 0, length: int | None = None
    ) -> tuple[FileInfo, Iterator[bytes]]:
        """The file's info and its bytes from ``offset`` (``length`` of them, or to the end; clamped to the
        size in the info), looked up once where the storage can (what a download answers with)."""
        info = self.stat(run_id, name)
        start = min(offset, info.size)
        stop = info.size if length is None else min(info.size, offset + length)
        return info, self.iter_read(run_id, name, start, stop - start)

    @abstractmethod
    def list(self, run_id: str, prefix: str = "") -> list[FileInfo]:
        """The run's files whose names start with ``prefix``, sorted by name."""

    def presigned_url(self, run_id: str, name: str, min_size: int = 0, expires_s: int = 900) -> str | None:
        """A URL any HTTP client can GET the file from for ``expires_s`` seconds, without credentials, when
        the storage can give one and the file has at least ``min_size`` bytes; else None (the folder: never)."""
        return None

    def finalize(self, run_id: str) -> None:  # noqa: B027 (optional hook)
        """The run has ended: a storage may now compact its appended files (the folder has nothing to do)."""

    def close(self) -> None:  # noqa: B027 (optional hook)
        """Release clients and threads."""

    @staticmethod
    def _check_range(offset: int, length: int | None) -> None:
        if offset < 0 or (length is not None and length < 0):
            raise ValidationError("offset and length must not be negative")

    def _resolve_append(self, run_id: str, name: str, data: bytes, offset: int, size: int) -> tuple[bytes, int]:
        """What is left to append at the end after checking ``offset`` against the file's ``size``:
        ``(data past the end, size)``, ConflictError if ``offset`` is past the end or the bytes already
        stored at ``offset`` differ."""
        if offset > size:
            raise ConflictError(
                f"append to {name!r} at offset {offset}, but the file has {size} bytes; "
                f"append at offset {size} or re-upload the whole file"
            )
        if offset < size:
            covered = min(len(data), size - offset)
            if self.read(run_id, name, offset, covered) != data[:covered]:
                raise ConflictError(
                    f"append to {name!r} at offset {offset} conflicts with the bytes already stored "
                    f"(the file has {size} bytes); re-upload the whole file"
                )
            return data[covered:], size
        return data, size


# --- folder -----------------------------------------------------------------------------------------------
class _FolderWriter(FileWriter):
    def __init__(self, files: LocalFiles, run_id: str, name: str, path: Path) -> None:
        self._files, self._name, self._path = files, name, path
        files.staging.mkdir(parents=True, exist_ok=True)
        self._tmp = files.staging / uuid.uuid4().hex
        self._f: Any = open(self._tmp, "wb")  # noqa: SIM115 (closed in commit/abort)
        self._done = False

    def write(self, data: bytes) -> None:
        self._f.write(data)

    def commit(self) -> FileInfo:
        self._f.close()
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self._tmp, self._path)  # readers see the old or the new file, never half of it
        except IsADirectoryError:
            self.abort()
            raise ConflictError(f"cannot write file {self._name!r}: a folder of that name exists") from None
        except NotADirectoryError:
            self.abort()
            raise ConflictError(f"cannot write file {self._name!r}: a part of its path is a file") from None
        self._done = True
        return self._files._info(self._path, self._name)

    def abort(self) -> None:
        if self._done:
            return
        self._done = True
        self._f.close()
        self._tmp.unlink(missing_ok=True)


class LocalFiles(FileStorage):
    """Files of runs under one root folder: ``<root>/<run_id>/<name>``; files being written wait in
    ``<root>/.staging`` (outside every run's folder, so a half-written file is never listed)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()
        self.uri = str(self.root)
        self.staging = self.root / _STAGING
        self._lock = threading.Lock()
        try:
            self.staging.mkdir(parents=True, exist_ok=True)
        except OSError:  # a read-only root can still be read; writing will say what is wrong
            pass

    def _run_dir(self, run_id: str) -> Path:
        run_dir = self.root / check_storage_run_id(run_id)
        if run_dir.resolve().parent != self.root:  # a run folder that is a link out of the root
            raise ValidationError(f"the folder of run {run_id!r} leaves the artifact root")
        return run_dir

    def path(self, run_id: str, name: str) -> Path:
        """The file's path, refused unless it resolves (links followed) inside the run's folder."""
        run_dir = self._run_dir(run_id)
        name = check_file_name(name)
        path = run_dir / name
        if not path.resolve().is_relative_to(run_dir.resolve()):
            raise ValidationError(f"file name {name!r} leaves the run's folder")
        return path

    def open_writer(self, run_id: str, name: str) -> FileWriter:
        path = self.path(run_id, name)
        return _FolderWriter(self, run_id, check_file_name(name), path)

    def append(self, run_id: str, name: str, data: bytes, offset: int) -> FileInfo:
        path = self.path(run_id, name)
        name = check_file_name(name)
        data = bytes(data)
        with self._lock:
            if offset > 0 and not path.exists():
                self._resolve_append(run_id, name, data, offset, 0)  # raises: the offset is past the end
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "ab") as f:
                # Several processes (servers on one folder) may append at once: the size is checked and the
                # bytes written under one lock on the file, so two appends at one offset store only one.
                fcntl.flock(f, fcntl.LOCK_EX)
                size = os.fstat(f.fileno()).st_size
                rest, size = self._resolve_append(run_id, name, data, offset, size)
                if rest:
                    f.write(rest)
        return self._info(path, name)

    def stat(self, run_id: str, name: str) -> FileInfo:
        path = self.path(run_id, name)
        if not path.is_file():
            raise NotFoundError(f"run {run_id!r} has no file {check_file_name(name)!r}")
        return self._info(path, check_file_name(name))

    def iter_read(self, run_id: str, name: str, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        path = self.path(run_id, name)
        self._check_range(offset, length)
        try:
            f = open(path, "rb")  # noqa: SIM115 (closed by the generator)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise NotFoundError(f"run {run_id!r} has no file {check_file_name(name)!r}") from None
        return self._pieces(f, offset, length)

    @staticmethod
    def _pieces(f: Any, offset: int, length: int | None) -> Iterator[bytes]:
        with f:
            f.seek(offset)
            left = length
            while left is None or left > 0:
                piece = f.read(READ_PIECE_BYTES if left is None else min(left, READ_PIECE_BYTES))
                if not piece:
                    return
                if left is not None:
                    left -= len(piece)
                yield piece

    def list(self, run_id: str, prefix: str = "") -> list[FileInfo]:
        run_dir = self._run_dir(run_id)
        if not run_dir.is_dir():
            return []
        inside = run_dir.resolve()
        out = []
        for dirpath, _dirs, files in os.walk(run_dir):  # links to folders are not followed
            for fn in files:
                p = Path(dirpath) / fn
                rel = p.relative_to(run_dir).as_posix()
                if not rel.startswith(prefix):
                    continue
                if p.is_symlink() and not p.resolve().is_relative_to(inside):
                    continue  # a link leading out of the run's folder is neither listed nor read
                try:
                    out.append(self._info(p, rel))
                except FileNotFoundError:  # removed while we looked, or a dangling link
                    continue
        out.sort(key=lambda i: i.name)
        return out

    @staticmethod
    def _info(path: Path, name: str) -> FileInfo:
        st = path.stat()
        return FileInfo(name=name, size=st.st_size, modified=st.st_mtime)

    def __repr__(self) -> str:
        return f"LocalFiles({str(self.root)!r})"
