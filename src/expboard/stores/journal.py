"""A bounded folder of records on disk that outlives the process: what a store has not taken yet.

Two users share it: the metric buffer keeps the points a busy or unreachable store has not taken
(past its memory bound), and the HTTP store keeps the requests a tracking server has not answered (its
spool). One journal is one folder per process under a base folder (one base per store)::

    <base>/<pid>-<start ms>-<random>/000000000001.batch
                                     000000000002.batch ...

- a record is written to ``.tmp``, fsynced, then renamed into place: a process killed mid-write (SIGKILL,
  power loss) leaves at most a ``.tmp`` file, which is never read; a record is either whole or absent;
- records are read oldest first (the file names sort in writing order; a record replaced by its pieces
  gets names that sort in its place);
- the bound (``max_bytes``) applies to new records: :meth:`Journal.append` raises :class:`JournalFullError`
  and writes nothing when a record does not fit;
- the folders of processes that have ended are taken over (:meth:`Journal.adopt`, by an atomic rename, so
  only one process gets each) and their records come first, oldest folder first. A taken-over folder is
  read in place, not copied; if the adopting process ends too, the next one takes it over again.

A folder may also hold side files (:meth:`Journal.put_side`: whole-or-absent too, never records) that its
records need to be read, such as the metric buffer's stored counts; they go with the folder.

Records are opaque bytes to the journal; both users write metric batches in the wire format
(:func:`~expboard.stores.wire.encode_batch`), whose batch id makes a record written twice (stored, then
the process killed before the record was removed) stored once.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from ..errors import StoreUnavailableError

__all__ = ["Journal", "JournalFullError", "pid_alive"]

_TAKEN = "~"  # <folder>~<pid>-<random>: the folder as taken over by process <pid>


class JournalFullError(StoreUnavailableError):
    """A record does not fit in the journal's bound; nothing was written."""


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _owner(name: str) -> int | None:
    """The process a journal folder belongs to (the last one that took it over), or None if not a journal."""
    if _TAKEN in name:
        pid = name.rsplit(_TAKEN, 1)[1].split("-", 1)[0]
    else:
        fields = name.split("-")
        if len(fields) in (2, 3):  # <pid>-<start ms>-<random>, or <pid>-<random> (a spool of earlier versions)
            pid = fields[0]
        else:
            return None
    return int(pid) if pid.isdigit() else None


def _start(name: str) -> int:
    first = name.split(_TAKEN, 1)[0].split("-")
    return int(first[1]) if len(first) == 3 and first[1].isdigit() else 0


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class Journal:
    """Records oldest first in ``base``/<this process's folder>, at most ``max_bytes`` of them.

    ``suffixes``: the file endings that are records (others, such as ``.tmp``, are ignored). Thread-safe."""

    def __init__(self, base: str | os.PathLike[str], max_bytes: int, suffixes: Sequence[str] = (".batch",)) -> None:
        self.base = Path(base)
        self.max_bytes = int(max_bytes)
        self.suffixes = tuple(suffixes)
        self.folder = self.base / f"{os.getpid()}-{int(time.time() * 1000):013d}-{uuid.uuid4().hex[:8]}"
        self._lock = threading.RLock()
        self._entries: list[Path] = []  # oldest first
        self._sizes: dict[Path, int] = {}
        self._seq = 0
        self._made = False
        self._adopted: list[Path] = []  # folders of ended processes taken over

    # --- state -------------------------------------------------------------------------------------
    @property
    def nbytes(self) -> int:
        """Bytes of the records held."""
        with self._lock:
            return sum(self._sizes.values())

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def __bool__(self) -> bool:
        with self._lock:
            return bool(self._entries)

    def paths(self) -> list[Path]:
        """The records held, oldest first."""
        with self._lock:
            return list(self._entries)

    def oldest(self) -> Path | None:
        with self._lock:
            return self._entries[0] if self._entries else None

    def fits(self, size: int) -> bool:
        with self._lock:
            return sum(self._sizes.values()) + size <= self.max_bytes

    # --- writing -----------------------------------------------------------------------------------
    def _write(self, path: Path, body: bytes) -> None:
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def append(self, bodies: Sequence[bytes], suffix: str = ".batch", stems: Sequence[str] | None = None) -> list[Path]:
        """Write records after the others; all of them or, when they do not fit, none (JournalFullError).
        ``stems``: the records' file names (without suffix), when the caller's order is not the order of
        writing: the next process reads the records in the order of their names."""
        with self._lock:
            size = sum(len(b) for b in bodies)
            held = sum(self._sizes.values())
            if held + size > self.max_bytes:
                raise JournalFullError(
                    f"the journal {self.folder} is full ({len(self._entries)} records, {held} bytes of "
                    f"{self.max_bytes}); {size} more bytes do not fit"
                )
            if not self._made:
                self.folder.mkdir(parents=True, exist_ok=True)
                self._made = True
            out = []
            for i, body in enumerate(bodies):
                self._seq += 1
                path = (
                    self.folder / f"{self._seq:012d}{suffix}" if stems is None else self.folder / f"{stems[i]}{suffix}"
                )
                if path in self._sizes or path.exists():  # a name given twice: never replace a record
                    path = path.with_name(f"{path.name[: -len(suffix)]}.{self._seq:012d}{suffix}")
                self._write(path, body)
                self._entries.append(path)
                self._sizes[path] = len(body)
                out.append(path)
            _fsync_dir(self.folder)
            return out

    def put_side(self, folder: Path | None, name: str, body: bytes) -> None:
        """Write side file ``name`` of ``folder`` (default: this journal's own), whole or not at all."""
        with self._lock:
            if folder is None:
                folder = self.folder
                if not self._made:
                    folder.mkdir(parents=True, exist_ok=True)
                    self._made = True
            self._write(folder / name, body)
            _fsync_dir(folder)

    def get_side(self, folder: Path | None, name: str) -> bytes | None:
        """Side file ``name`` of ``folder`` (default: this journal's own), None if there is none."""
        try:
            return ((self.folder if folder is None else folder) / name).read_bytes()
        except OSError:
            return None

    def _drop_if_done(self, folder: Path) -> None:
        """Remove ``folder`` if it holds no record any more (side files go with it)."""
        try:
            items = list(folder.iterdir())
        except OSError:
            return
        if any(p.suffix in self.suffixes and not p.name.endswith(".tmp") for p in items):
            return
        for p in items:
            if p.is_file():
                p.unlink(missing_ok=True)
        try:
            folder.rmdir()
        except OSError:
            pass

    def remove(self, path: Path) -> None:
        """Forget a record (delivered, or kept elsewhere) and delete its file."""
        with self._lock:
            if path in self._sizes:
                self._entries.remove(path)
                del self._sizes[path]
        path.unlink(missing_ok=True)

    def replace(self, path: Path, pieces: Sequence[bytes]) -> list[Path]:
        """Put ``pieces`` in the place of record ``path`` (written before it is removed; the bound is not
        checked: the pieces hold what the record held)."""
        with self._lock:
            new = []
            for k, piece in enumerate(pieces):
                # 12.batch -> 12.000.batch, 12.001.batch: sorted where 12 was (a piece of a piece too)
                target = path.with_name(f"{path.name[: -len(path.suffix)]}.{k:03d}{path.suffix}")
                self._write(target, piece)
                new.append(target)
            _fsync_dir(path.parent)
            if path in self._sizes:
                i = self._entries.index(path)
                self._entries[i : i + 1] = new
                del self._sizes[path]
                for target, piece in zip(new, pieces, strict=True):
                    self._sizes[target] = len(piece)
            path.unlink(missing_ok=True)
            return new

    # --- folders of ended processes ------------------------------------------------------------------
    def orphans(self) -> list[Path]:
        """Journal folders under ``base`` whose process has ended, oldest first."""
        if not self.base.is_dir():
            return []
        out = []
        for folder in self.base.iterdir():
            pid = _owner(folder.name)
            if pid is None or folder == self.folder or not folder.is_dir():
                continue
            if pid == os.getpid() or pid_alive(pid):
                continue
            out.append(folder)
        return sorted(out, key=lambda f: (_start(f.name), f.name))

    def adopt(self) -> list[Path]:
        """Take over the records of ended processes; they come before this journal's own, oldest first.
        Returns the records taken over."""
        taken: list[Path] = []
        for folder in self.orphans():
            claimed = folder.with_name(f"{folder.name.split(_TAKEN, 1)[0]}{_TAKEN}{os.getpid()}-{uuid.uuid4().hex[:8]}")
            try:
                folder.rename(claimed)  # atomic: one process wins
            except OSError:
                continue
            records = []
            for p in sorted(claimed.iterdir()):
                if p.suffix in self.suffixes and not p.name.endswith(".tmp"):
                    records.append(p)
                elif p.name.endswith(".tmp"):
                    p.unlink(missing_ok=True)  # a write its process did not finish: never a record
            if not records:
                self._drop_if_done(claimed)
                continue
            taken += records
            self._adopted.append(claimed)
        if taken:
            with self._lock:
                self._entries[0:0] = taken
                for p in taken:
                    try:
                        self._sizes[p] = p.stat().st_size
                    except OSError:
                        self._sizes[p] = 0
        return taken

    def close(self) -> None:
        """Remove this journal's folders that hold no record (records left stay for the next process)."""
        with self._lock:
            for folder in [self.folder, *self._adopted]:
                self._drop_if_done(folder)
