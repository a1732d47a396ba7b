"""Files of a run moving between a local disk and its store, always in pieces of :data:`PIECE_BYTES`.

- :func:`upload`, :func:`upload_folder` and :func:`download` copy files once (a download appears whole or
  not at all);
- :func:`iter_log` reads a log file as text, following it while it grows;
- the two mirrors keep a folder and run files alike, polled: :class:`FolderUpload` sends what changed in
  a local folder (a submitted run's ``./logs``), :class:`FolderDownload` copies what is new in the store
  into a local folder (a TensorBoard logdir).
"""

from __future__ import annotations

import codecs
import hashlib
import logging
import os
import stat
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from .errors import ConflictError, NotFoundError, ValidationError
from .names import check_file_name
from .stores import Store

__all__ = [
    "DRIVER_LOG",
    "LOGS_PREFIX",
    "PIECE_BYTES",
    "FolderDownload",
    "FolderMirror",
    "FolderUpload",
    "download",
    "iter_files",
    "iter_log",
    "upload",
    "upload_folder",
]

PIECE_BYTES = 8 * 1024 * 1024  # files travel in pieces of this size, both ways
DRIVER_LOG = "system_logs/driver.log"  # a submitted script's stdout and stderr
LOGS_PREFIX = "logs/"  # what a submitted script writes under ./logs (TensorBoard files)
_HEAD = 512  # bytes of each file's start kept as a hash, to notice a replaced file

log = logging.getLogger(__name__)


def iter_files(root: Path, warned: set[str] | None = None) -> Iterator[tuple[Path, str]]:
    """The regular files under folder ``root`` as ``(path, relative posix name)``, sorted by name.

    Symbolic links are followed only when their target stays inside ``root`` (as ``rsync --safe-links``
    does); a link that leaves the folder is skipped with a warning, so nothing outside it is ever
    uploaded. Links to folders are not followed (no loops, no file stored twice), and pipes, sockets and
    devices are skipped (reading a pipe would block). ``warned`` collects the links already warned about,
    so a folder polled again and again warns once per link."""
    real_root = os.path.realpath(root)
    warned = set() if warned is None else warned
    found: list[tuple[Path, str]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        kept = []
        for d in dirnames:
            full = os.path.join(dirpath, d)
            if os.path.islink(full):
                if not _inside(os.path.realpath(full), real_root):
                    _warn_outside(full, root, warned)
                continue
            kept.append(d)
        dirnames[:] = kept
        for fn in filenames:
            full = os.path.join(dirpath, fn)
            try:
                if os.path.islink(full) and not _inside(os.path.realpath(full), real_root):
                    _warn_outside(full, root, warned)
                    continue
                if not stat.S_ISREG(os.stat(full).st_mode):
                    continue
            except OSError:  # removed while we looked, or a dangling link
                continue
            path = Path(full)
            found.append((path, path.relative_to(root).as_posix()))
    found.sort(key=lambda item: item[1])
    return iter(found)


def _inside(path: str, real_root: str) -> bool:
    return path == real_root or path.startswith(real_root.rstrip(os.sep) + os.sep)


def _warn_outside(link: str, root: Path, warned: set[str]) -> None:
    if link in warned:
        return
    warned.add(link)
    log.warning(
        "expboard: skipped %s: it is a symbolic link to %s, outside %s; copy the file into the folder "
        "to store it with the run",
        link,
        os.path.realpath(link),
        root,
    )


def upload(store: Store, run_id: str, name: str, source: str | os.PathLike[str] | IO[Any]) -> None:
    """Store a file (a path, or a binary or text file object) as run file ``name``, piece by piece."""
    name = check_file_name(name)
    if not isinstance(source, (str, os.PathLike)):
        _upload_stream(store, run_id, name, source)
        return
    p = Path(source)
    if not p.is_file():
        raise ValidationError(f"cannot upload {p}: no such file")
    with open(p, "rb") as f:  # one streamed request: the file appears whole or not at all
        store.write_file_stream(run_id, name, f)


def _upload_stream(store: Store, run_id: str, name: str, f: IO[Any]) -> None:
    data = f.read(PIECE_BYTES)
    if isinstance(data, str):  # a text stream: the rest is text too
        store.write_file(run_id, name, (data + f.read()).encode())
        return
    offset = store.write_file(run_id, name, data).size
    while piece := f.read(PIECE_BYTES):
        offset = store.append_file(run_id, name, piece, offset).size


def upload_folder(store: Store, run_id: str, name: str, path: str | os.PathLike[str]) -> list[str]:
    """Store every file under folder ``path`` as ``name/<relative path>``; returns the stored names."""
    root = Path(path)
    if not root.is_dir():
        raise ValidationError(f"cannot upload {root}: no such folder")
    prefix = check_file_name(name)
    stored = []
    for p, rel in iter_files(root):
        target = f"{prefix}/{rel}"
        upload(store, run_id, target, p)
        stored.append(target)
    return stored


def download(store: Store, run_id: str, name: str, out: Path) -> Path:
    """Copy run file ``name`` to ``out`` piece by piece; ``out`` appears whole or not at all."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.part")
    try:
        with open(tmp, "wb") as f:
            offset = 0
            while True:
                piece = store.read_file(run_id, name, offset, PIECE_BYTES)
                f.write(piece)
                offset += len(piece)
                if len(piece) < PIECE_BYTES:
                    break
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def iter_log(
    store: Store,
    run_id: str,
    name: str = DRIVER_LOG,
    *,
    has_ended: Callable[[], bool] | None = None,
    poll_interval: float = 0.25,
    deadline: float | None = None,
) -> Iterator[str]:
    """Yield a log file's text as it is stored. With ``has_ended``, keep yielding new text until it returns
    True (or ``deadline``, a ``time.monotonic()`` value, passes) and then everything that is left."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    offset = 0
    while True:
        ended = has_ended() if has_ended is not None else True  # checked before reading: no text left behind
        try:
            data = store.read_file(run_id, name, offset)
        except NotFoundError:
            data = b""
        if data:
            offset += len(data)
            text = decoder.decode(data)
            if text:
                yield text
        if ended or (deadline is not None and time.monotonic() > deadline):
            tail = decoder.decode(b"", final=True)
            if tail:
                yield tail
            return
        if not data:
            time.sleep(poll_interval)


class FolderMirror(ABC):
    """A local folder and the run files under ``prefix`` kept alike by polling, in one direction:
    :meth:`poll` moves what changed since the last call and returns the number of bytes it moved."""

    def __init__(self, store: Store, run_id: str, folder: Path, prefix: str) -> None:
        self.store = store
        self.run_id = run_id
        self.folder = folder
        self.prefix = prefix

    @abstractmethod
    def poll(self) -> int: ...


class FolderUpload(FolderMirror):
    """Mirror a local folder into run files ``<prefix>/<relative path>``, uploading only what changed:
    appended bytes with ``append_file``; a file replaced, truncated or rewritten in place as a whole."""

    def __init__(self, store: Store, run_id: str, root: Path, prefix: str) -> None:
        super().__init__(store, run_id, root, prefix.rstrip("/"))
        self.root = root
        self._state: dict[str, tuple[int, int, int]] = {}  # rel -> (uploaded size, inode, mtime_ns)
        self._warned: set[str] = set()  # links outside the folder, warned about once

    def poll(self) -> int:
        return self.sync()

    def sync(self) -> int:
        """Upload what changed since the last call; returns the number of bytes sent."""
        if not self.root.is_dir():
            return 0
        sent = 0
        for path, rel in iter_files(self.root, self._warned):
            try:
                sent += self._sync_file(path, rel)
            except FileNotFoundError:  # removed while we looked
                continue
        return sent

    def _sync_file(self, path: Path, rel: str) -> int:
        st = path.stat()
        size, ino, mtime = st.st_size, st.st_ino, st.st_mtime_ns
        name = f"{self.prefix}/{rel}"
        known = self._state.get(rel)
        if known is not None and known == (size, ino, mtime):
            return 0
        if known is None or known[1] != ino or size < known[0] or (size == known[0] and mtime != known[2]):
            if known is None:
                return self._append(path, rel, name, 0, size, ino, mtime)
            return self._rewrite(path, rel, name, ino, mtime)
        return self._append(path, rel, name, known[0], size, ino, mtime)

    def _append(self, path: Path, rel: str, name: str, offset: int, size: int, ino: int, mtime: int) -> int:
        sent = 0
        with open(path, "rb") as f:
            f.seek(offset)
            while offset < size:
                data = f.read(min(PIECE_BYTES, size - offset))
                if not data:
                    break
                try:
                    self.store.append_file(self.run_id, name, data, offset)
                except ConflictError:  # the stored file is not what we sent before: start over
                    return self._rewrite(path, rel, name, ino, mtime)
                offset += len(data)
                sent += len(data)
                self._state[rel] = (offset, ino, mtime if offset == size else -1)
        if offset == 0 and size == 0 and rel not in self._state:
            self.store.write_file(self.run_id, name, b"")
            self._state[rel] = (0, ino, mtime)
        return sent

    def _rewrite(self, path: Path, rel: str, name: str, ino: int, mtime: int) -> int:
        data = path.read_bytes()
        self.store.write_file(self.run_id, name, data)
        self._state[rel] = (len(data), ino, mtime)
        return len(data)

    def upload_all(self) -> list[str]:
        """Write every file once (for ``./outputs`` at the end); returns the stored names."""
        names: list[str] = []
        if not self.root.is_dir():
            return names
        for path, rel in iter_files(self.root, self._warned):
            name = f"{self.prefix}/{rel}"
            upload(self.store, self.run_id, name, path)  # in pieces: an output may be larger than memory
            names.append(name)
        return names


def _digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


@dataclass
class _FileState:
    local: Path
    base: str = ""  # the local name before any re-copy
    generation: int = 0
    offset: int = 0  # bytes copied
    head: bytes = b""  # first min(offset, _HEAD) bytes as copied
    size: int = -1  # size and modified time at the last complete copy
    modified: float = -1.0


class FolderDownload(FolderMirror):
    """Mirror run files ``<prefix>...`` (a run's ``logs/`` by default) into folder ``dest``, relative paths
    kept, copying only the bytes appended since the last poll. A file replaced or truncated in the store is
    copied again from the start; an event file under a new local name (``<name>.r<N>``), so that TensorBoard,
    which keeps files open and reads on from its offset, sees a new file."""

    def __init__(self, store: Store, run_id: str, dest: Path, prefix: str = LOGS_PREFIX) -> None:
        super().__init__(store, run_id, dest, prefix)
        self.dest = dest
        self.files: dict[str, _FileState] = {}
        self.bytes_copied = 0
        self.recopies = 0

    def _local_path(self, name: str) -> Path | None:
        rel = name[len(self.prefix) :]
        parts = [p for p in rel.split("/") if p]
        if not parts or any(p in (".", "..") for p in parts):
            return None
        return self.dest.joinpath(*parts)

    def poll(self) -> int:
        """Copy what is new; returns the number of bytes copied."""
        infos = self.store.list_files(self.run_id, self.prefix)
        copied = 0
        seen = set()
        for info in infos:
            seen.add(info.name)
            state = self.files.get(info.name)
            if state is None:
                local = self._local_path(info.name)
                if local is None:
                    continue
                state = self.files[info.name] = _FileState(local, local.name)
                if local.exists():  # left over from an earlier mirror into the same folder
                    local.unlink()
            elif info.size == state.size and info.modified == state.modified:
                continue
            elif self._replaced(info.name, info.size, state):
                self._restart(state)
            copied += self._copy(info.name, info.size, info.modified, state)
        for name in [n for n in self.files if n not in seen]:  # deleted in the store
            self.files.pop(name).local.unlink(missing_ok=True)
        self.bytes_copied += copied
        return copied

    def _replaced(self, name: str, size: int, state: _FileState) -> bool:
        if size < state.offset:
            return True
        if not state.head:
            return False
        head = self.store.read_file(self.run_id, name, 0, len(state.head))
        return _digest(head) != _digest(state.head)

    def _restart(self, state: _FileState) -> None:
        state.local.unlink(missing_ok=True)
        if "tfevents" in state.local.name:
            state.generation += 1
            state.local = state.local.with_name(f"{state.base}.r{state.generation}")
        state.offset, state.head, state.size, state.modified = 0, b"", -1, -1.0
        self.recopies += 1

    def _copy(self, name: str, size: int, modified: float, state: _FileState) -> int:
        copied = 0
        state.local.parent.mkdir(parents=True, exist_ok=True)
        with open(state.local, "ab") as out:
            while state.offset < size:
                chunk = self.store.read_file(self.run_id, name, state.offset, min(PIECE_BYTES, size - state.offset))
                if not chunk:
                    break
                out.write(chunk)
                if len(state.head) < _HEAD:
                    state.head += chunk[: _HEAD - len(state.head)]
                state.offset += len(chunk)
                copied += len(chunk)
        if state.offset >= size:
            state.size, state.modified = size, modified
        return copied
