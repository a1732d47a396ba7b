"""Snapshots a run takes of a file or folder (Azure ML's ``run.take_snapshot`` / ``restore_snapshot``).

A snapshot is a zip archive stored with the run as ``snapshots/<snapshot id>.zip``, built like the snapshot of
a submitted run (the same ignore files and always-ignored folders, the same size limit). A submitted run's
own ``snapshot.zip`` is its snapshot too: :func:`restore` falls back to it when the run took none.
"""

from __future__ import annotations

import io
import os
import secrets
import threading
import time
import uuid
import zipfile
from pathlib import Path

from . import plugins
from .errors import NotFoundError, ValidationError
from .stores import Store

__all__ = ["SNAPSHOTS_PREFIX", "SUBMIT_SNAPSHOT", "list_snapshots", "new_snapshot_id", "restore", "take"]

SNAPSHOTS_PREFIX = "snapshots/"
SUBMIT_SNAPSHOT = "snapshot.zip"  # what a submitted run stores (expboard.compute.snapshot.SNAPSHOT_FILE)


_last_ms = 0
_id_lock = threading.Lock()


def new_snapshot_id() -> str:
    """A UUID (version 7 layout) that sorts by creation time: ids of one process strictly increase, so
    "the latest snapshot" does not depend on the file storage's clock resolution."""
    global _last_ms
    with _id_lock:
        ms = max(time.time_ns() // 1_000_000, _last_ms + 1)
        _last_ms = ms
    rand = secrets.randbits(74)
    value = (ms << 80) | (0x7 << 76) | ((rand >> 62) << 64) | (0b10 << 62) | (rand & ((1 << 62) - 1))
    return str(uuid.UUID(int=value))


def _zip_file(path: Path) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(path, path.name)
    return out.getvalue()


def take(store: Store, run_id: str, path: str | os.PathLike[str]) -> str:
    """Zip ``path`` (a folder, its ignore files honoured; or one file) into a new snapshot of the run and
    return the snapshot's id."""
    source = Path(path).expanduser()
    if source.is_dir():
        data = plugins.snapshot(source)
    elif source.is_file():
        data = _zip_file(source)
    else:
        raise ValidationError(f"take_snapshot: no file or folder at {str(path)!r}")
    snapshot_id = new_snapshot_id()
    store.write_file(run_id, f"{SNAPSHOTS_PREFIX}{snapshot_id}.zip", data)
    return snapshot_id


def list_snapshots(store: Store, run_id: str) -> list[str]:
    """The ids of the run's snapshots, oldest first (a submitted run's own snapshot first, as ``"snapshot"``)."""
    names = [i.name for i in store.list_files(run_id, SNAPSHOTS_PREFIX) if i.name.endswith(".zip")]
    ids = sorted(n[len(SNAPSHOTS_PREFIX) : -len(".zip")] for n in names)  # ids sort by creation time
    if any(i.name == SUBMIT_SNAPSHOT for i in store.list_files(run_id, SUBMIT_SNAPSHOT)):
        ids.insert(0, "snapshot")
    return ids


def restore(
    store: Store, run_id: str, snapshot_id: str | None = None, path: str | os.PathLike[str] | None = None
) -> Path:
    """Write snapshot ``snapshot_id`` of the run (default: the latest it took, else its submitted snapshot)
    as a zip file into folder ``path`` (made if missing; default: the current folder) as ``<snapshot id>.zip``,
    or to ``path`` itself when it names a ``.zip`` file, and return the zip's path."""
    ids = list_snapshots(store, run_id)
    if snapshot_id is None:
        if not ids:
            raise NotFoundError(f"run {run_id!r} has no snapshot; take one with run.take_snapshot(folder)")
        snapshot_id = ids[-1]
    elif snapshot_id not in ids:
        known = ", ".join(ids) or "none"
        raise NotFoundError(f"run {run_id!r} has no snapshot {snapshot_id!r} (its snapshots: {known})")
    name = SUBMIT_SNAPSHOT if snapshot_id == "snapshot" else f"{SNAPSHOTS_PREFIX}{snapshot_id}.zip"
    out = Path(path) if path is not None else Path.cwd()
    if out.suffix.lower() != ".zip" or out.is_dir():  # a folder (made if missing), as Azure ML's path is
        out = out / f"{snapshot_id}.zip"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    with open(tmp, "wb") as f:
        for piece in store.iter_file(run_id, name):
            f.write(piece)
    tmp.replace(out)
    return out
