"""The model registry of the store contract, on every backend (SQLite, PostgreSQL, HTTP in front of each;
with EXPBOARD_TEST_ARTIFACTS=s3 the model files live in S3)."""

from __future__ import annotations

import io
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from expboard.errors import ConflictError, NotFoundError, ValidationError
from expboard.records import ModelStatus, RunRecord, RunStatus
from expboard.stores.base import Store
from expboard.stores.http import HttpStore
from expboard.stores.sql import SqlStore


def _name(prefix: str = "model") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _run_with_files(store: Store) -> RunRecord:
    exp = store.get_or_create_experiment(_name("exp")).name
    run = store.create_run(RunRecord(uuid.uuid4().hex, exp, RunStatus.RUNNING, time.time()))
    store.write_file(run.run_id, "outputs/model.pkl", b"pickled")
    store.write_file(run.run_id, "outputs/net/weights.bin", b"\x00\x01" * 1000)
    store.write_file(run.run_id, "outputs/net/config/a.json", b"{}")
    store.write_file(run.run_id, "outputs/network.txt", b"not part of outputs/net")
    return run


def _read(store: Store, name: str, version: int, file_name: str) -> bytes:
    return b"".join(store.iter_model_file(name, version, file_name))


def test_versions_from_run_files(store: Store) -> None:
    run = _run_with_files(store)
    name = _name()
    v1 = store.create_model_version(
        name, run_id=run.run_id, run_path="outputs/model.pkl", tags={"k": "v"}, properties={"p": "1"}, description="d"
    )
    assert (v1.name, v1.version, v1.status, v1.run_id, v1.experiment) == (
        name,
        1,
        ModelStatus.READY,
        run.run_id,
        run.experiment,
    )
    assert v1.tags == {"k": "v"} and v1.properties == {"p": "1"} and v1.description == "d"
    assert [f.name for f in store.list_model_files(name, 1)] == ["model.pkl"]
    assert _read(store, name, 1, "model.pkl") == b"pickled"

    v2 = store.create_model_version(name, run_id=run.run_id, run_path="outputs/net")  # a folder: its layout kept
    assert v2.version == 2
    assert [f.name for f in store.list_model_files(name, 2)] == ["net/config/a.json", "net/weights.bin"]
    assert _read(store, name, 2, "net/weights.bin") == b"\x00\x01" * 1000
    # a byte range of a version's file
    assert b"".join(store.iter_model_file(name, 2, "net/weights.bin", 1, 3)) == b"\x01\x00\x01"

    assert store.get_model_version(name).version == 2  # the latest when no version is given
    assert store.get_model_version(name, 1) == v1
    assert [m.version for m in store.list_model_versions(name)] == [2, 1]
    assert {(m.name, m.version) for m in store.list_model_versions(run_id=run.run_id)} == {(name, 1), (name, 2)}
    assert any(m.name == name and m.version == 2 for m in store.list_model_versions())
    registered = store.get_registered_model(name)
    assert registered.latest_version == 2 and registered.name in {m.name for m in store.list_registered_models()}


def test_refusals(store: Store) -> None:
    run = _run_with_files(store)
    name = _name()
    with pytest.raises(NotFoundError, match="no file or folder 'outputs/missing'"):
        store.create_model_version(name, run_id=run.run_id, run_path="outputs/missing")
    with pytest.raises(NotFoundError):
        store.get_model_version(name)
    with pytest.raises(NotFoundError):
        store.get_registered_model(_name())
    with pytest.raises(ValidationError, match="invalid model name"):
        store.create_model_version("a/b", run_id=run.run_id, run_path="outputs/model.pkl")
    with pytest.raises(NotFoundError):
        store.create_model_version(name, run_id="no-such-run", run_path="outputs/model.pkl")
    store.create_model_version(name, run_id=run.run_id, run_path="outputs/model.pkl")
    with pytest.raises(NotFoundError, match="no version 7"):
        store.get_model_version(name, 7)
    with pytest.raises(NotFoundError, match="no file"):
        store.iter_model_file(name, 1, "other.pkl")
    with pytest.raises(ConflictError, match="can no longer change"):
        store.write_model_file(name, 1, "extra.txt", io.BytesIO(b"x"))


def test_uploaded_version_pending_then_ready(store: Store, tmp_path: Path) -> None:
    name = _name()
    pending = store.create_model_version(name, description="from a laptop")
    assert pending.status is ModelStatus.PENDING and pending.run_id is None
    with pytest.raises(NotFoundError):
        store.get_model_version(name)  # nothing ready yet
    big = tmp_path / "weights.bin"
    big.write_bytes(bytes(range(256)) * 12000)  # ~3 MB: more than one piece each way
    with big.open("rb") as f:
        info = store.write_model_file(name, 1, "model/weights.bin", f)
    assert info.size == big.stat().st_size
    ready = store.update_model_version(name, 1, status=ModelStatus.READY)
    assert ready.status is ModelStatus.READY and store.get_model_version(name).version == 1
    assert _read(store, name, 1, "model/weights.bin") == big.read_bytes()
    with pytest.raises(ConflictError):
        store.update_model_version(name, 1, status=ModelStatus.PENDING)


def test_tags_properties_aliases(store: Store) -> None:
    run = _run_with_files(store)
    name = _name()
    store.create_model_version(name, run_id=run.run_id, run_path="outputs/model.pkl", tags={"a": "1", "b": "2"})
    m = store.update_model_version(name, 1, tags={"a": None, "c": "3"}, properties={"p": "x"}, description="new")
    assert m.tags == {"b": "2", "c": "3"} and m.properties == {"p": "x"} and m.description == "new"
    store.update_model_version(name, 1, properties={"p": "x"})  # the same value again is fine
    with pytest.raises(ConflictError, match="cannot change"):
        store.update_model_version(name, 1, properties={"p": "y"})
    r = store.update_registered_model(name, description="all versions", tags={"team": "vision"}, aliases={"prod": 1})
    assert (r.description, r.tags, r.aliases) == ("all versions", {"team": "vision"}, {"prod": 1})
    assert store.get_model_version(name, 1).tags == {"b": "2", "c": "3"}  # the model's tags are not a version's
    with pytest.raises(NotFoundError):
        store.update_registered_model(name, aliases={"next": 5})
    assert store.update_registered_model(name, aliases={"prod": None}, tags={"team": None}).aliases == {}
    created = store.create_registered_model(_name(), description="empty", tags={"x": "y"})
    assert created.latest_version == 0 and created.tags == {"x": "y"}
    with pytest.raises(ConflictError, match="already registered"):
        store.create_registered_model(created.name)


def _same_store(store: Store, files: Path) -> Store:
    """Another store object on the same backend: its own connections (and, for SQL, its own write lock)."""
    if isinstance(store, HttpStore):
        return HttpStore(store.url, spool_dir=files / "spool")
    assert isinstance(store, SqlStore)
    uri = store.dialect.uri if store.dialect.name == "postgresql" else str(store.dialect)  # type: ignore[attr-defined]
    return SqlStore(uri, files)  # registering without files touches no file storage


def test_versions_are_atomic_under_concurrency(store: Store, tmp_path: Path) -> None:
    name = _name()
    others = [_same_store(store, tmp_path / str(i)) for i in range(4)]
    got: list[int] = []
    errors: list[BaseException] = []

    def register(s: Store) -> None:
        try:
            for _ in range(3):
                got.append(s.create_model_version(name).version)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=register, args=(s,)) for s in others]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for s in others:
        s.close()
    assert not errors
    assert sorted(got) == list(range(1, 13))
    assert store.get_registered_model(name).latest_version == 12


def test_two_processes_register_at_once(tmp_path: Path) -> None:
    """Two processes on one SQLite workspace, registering at the same moment, get distinct numbers."""
    db, files = tmp_path / "expboard.db", tmp_path / "artifacts"
    SqlStore(f"sqlite:///{db}", files).close()
    code = (
        "import sys, time; from expboard.stores.sql import SqlStore\n"
        f"s = SqlStore('sqlite:///{db}', {str(files)!r})\n"
        "start = float(sys.argv[1])\n"
        "time.sleep(max(0.0, start - time.time()))\n"
        "print(' '.join(str(s.create_model_version('shared').version) for _ in range(5)))\n"
    )
    start = str(time.time() + 2.0)
    procs = [subprocess.Popen([sys.executable, "-c", code, start], stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    versions = sorted(int(v) for out in outs for v in out.split())
    assert versions == list(range(1, 11))
