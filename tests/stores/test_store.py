"""The store contract, run against every backend (see conftest: SQLite, PostgreSQL, HTTP in front of each).

Servers are shared by the tests of a session, so every test works in experiments of its own.
"""

from __future__ import annotations

import io
import math
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from expboard.errors import ConflictError, NotFoundError, ValidationError
from expboard.records import FileInfo, MetricKind, RunRecord, RunStatus
from expboard.stores.base import UNSET, MetricChunk, Store


def _name(prefix: str = "exp") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _run(store: Store, experiment: str | None = None, **kw: object) -> RunRecord:
    experiment = experiment or store.get_or_create_experiment(_name()).name
    record = RunRecord(
        run_id=kw.pop("run_id", None) or uuid.uuid4().hex,  # type: ignore[arg-type]
        experiment=experiment,
        status=kw.pop("status", RunStatus.RUNNING),  # type: ignore[arg-type]
        created=kw.pop("created", time.time()),  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )
    return store.create_run(record)


def _chunk(
    run_id: str,
    name: str,
    values: object,
    steps: object = None,
    kind: MetricKind = MetricKind.SCALAR,
    t0: float = 1000.0,
) -> MetricChunk:
    n = len(values)  # type: ignore[arg-type]
    steps = np.arange(n) if steps is None else steps
    return MetricChunk(run_id, name, kind, steps, t0 + np.arange(n, dtype=np.float64), values)


# --- experiments ------------------------------------------------------------------------------------
def test_experiments(store: Store) -> None:
    a, b = _name(), _name()
    ea = store.get_or_create_experiment(a)
    assert ea.name == a and ea.created > 0
    assert store.get_or_create_experiment(a) == ea
    store.get_or_create_experiment(b)
    names = [e.name for e in store.list_experiments()]
    assert a in names and b in names
    assert store.get_experiment(a) == ea
    with pytest.raises(NotFoundError):
        store.get_experiment(_name())
    with pytest.raises(ValidationError):
        store.get_or_create_experiment("no spaces allowed")


# --- runs -------------------------------------------------------------------------------------------
def test_create_and_get_run(store: Store) -> None:
    run = _run(
        store, display_name="first", tags={"a": "1"}, properties={"p": "x"}, start_time=5.0, error=None, target="ray"
    )
    got = store.get_run(run.run_id)
    assert got == run
    assert got.tags == {"a": "1"} and got.properties == {"p": "x"} and got.target == "ray"
    assert got.status is RunStatus.RUNNING
    with pytest.raises(ConflictError):
        store.create_run(run)
    with pytest.raises(NotFoundError):
        store.get_run(uuid.uuid4().hex)
    with pytest.raises(NotFoundError):
        _run(store, experiment=_name())  # experiment does not exist


def test_list_runs_children_and_statuses(store: Store) -> None:
    exp = store.get_or_create_experiment(_name()).name
    parent = _run(store, exp, created=100.0)
    kids = [_run(store, exp, parent_id=parent.run_id, run_type="child", created=101.0 + i) for i in range(3)]
    other = _run(store, exp, created=200.0, status=RunStatus.COMPLETED)
    assert [r.run_id for r in store.list_runs(exp)] == [other.run_id] + [k.run_id for k in reversed(kids)] + [
        parent.run_id
    ]
    assert [r.run_id for r in store.list_runs(exp, parent_id=None)] == [other.run_id, parent.run_id]
    assert [r.run_id for r in store.list_runs(parent_id=parent.run_id)] == [k.run_id for k in reversed(kids)]
    assert [r.run_id for r in store.list_runs(exp, statuses=[RunStatus.COMPLETED])] == [other.run_id]
    assert store.list_runs(exp, parent_id=UNSET, statuses=[RunStatus.FAILED]) == []
    with pytest.raises(NotFoundError):
        _run(store, exp, parent_id=uuid.uuid4().hex)


def test_list_children_of_many_runs_at_once(store: Store) -> None:
    exp = store.get_or_create_experiment(_name()).name
    parents = [_run(store, exp, created=100.0 + i) for i in range(150)]  # more than one request's worth
    kids = {
        p.run_id: [_run(store, exp, parent_id=p.run_id, created=300.0 + i) for i in range(i % 3)]
        for i, p in enumerate(parents)
    }
    grandchild = _run(store, exp, parent_id=kids[parents[1].run_id][0].run_id, created=500.0)
    got = store.list_children([p.run_id for p in parents] + [parents[0].run_id])  # a repeated id counts once
    assert sorted(r.run_id for r in got) == sorted(k.run_id for ks in kids.values() for k in ks)
    assert all(r.parent_id in kids for r in got) and grandchild.run_id not in {r.run_id for r in got}
    assert store.list_children([]) == [] and store.list_children([grandchild.run_id]) == []


def test_update_run_and_compare_and_set(store: Store) -> None:
    run = _run(store)
    got = store.update_run(
        run.run_id,
        status=RunStatus.FAILED,
        end_time=9.5,
        error={"message": "boom", "n": 1},
        display_name="renamed",
        heartbeat=3.0,
    )
    assert got.status is RunStatus.FAILED and got.end_time == 9.5 and got.error == {"message": "boom", "n": 1}
    assert got.display_name == "renamed" and got.heartbeat == 3.0
    got = store.update_run(run.run_id, error=None, end_time=None)
    assert got.error is None and got.end_time is None and got.status is RunStatus.FAILED
    # compare-and-set: only one of two claims wins
    run2 = _run(store, status=RunStatus.QUEUED)
    first = store.update_run(run2.run_id, status=RunStatus.RUNNING, only_if_status=[RunStatus.QUEUED])
    second = store.update_run(run2.run_id, status=RunStatus.CANCELED, only_if_status=[RunStatus.QUEUED])
    assert first.status is RunStatus.RUNNING and second.status is RunStatus.RUNNING
    assert store.update_run(run2.run_id).status is RunStatus.RUNNING  # no fields: just reads


def test_compare_and_set_is_atomic_under_concurrency(store: Store) -> None:
    run = _run(store, status=RunStatus.QUEUED)
    wins: list[str] = []
    lock = threading.Lock()

    def claim(who: str) -> None:
        got = store.update_run(
            run.run_id, status=RunStatus.STARTING, display_name=who, only_if_status=[RunStatus.QUEUED]
        )
        if got.display_name == who:
            with lock:
                wins.append(who)

    threads = [threading.Thread(target=claim, args=(f"w{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1


def test_tags_and_properties(store: Store) -> None:
    run = _run(store, tags={"keep": "1", "drop": "2"})
    store.set_tags(run.run_id, {"drop": None, "new": "3", "keep": "changed"})
    assert store.get_run(run.run_id).tags == {"keep": "changed", "new": "3"}
    store.add_properties(run.run_id, {"a": "1"})
    store.add_properties(run.run_id, {"a": "1", "b": "2"})  # same value again is fine
    with pytest.raises(ConflictError):
        store.add_properties(run.run_id, {"a": "other"})
    assert store.get_run(run.run_id).properties == {"a": "1", "b": "2"}
    with pytest.raises(NotFoundError):
        store.set_tags(uuid.uuid4().hex, {"x": "1"})
    with pytest.raises(ValidationError):
        store.set_tags(run.run_id, {"": "1"})


# --- metrics ----------------------------------------------------------------------------------------
def test_metrics_roundtrip_types(store: Store) -> None:
    run = _run(store)
    rid = run.run_id
    floats = np.array([0.5, math.nan, math.inf, -math.inf, -0.0, 1e308])
    store.log_metrics(
        [
            _chunk(rid, "f", floats),
            _chunk(rid, "i", np.array([1, -(2**63), 2**63 - 1], dtype=np.int64)),
            _chunk(rid, "b", [True, False]),
            _chunk(rid, "s", ["a", None, "ü€"]),
            _chunk(rid, "row", [{"x": 1, "y": "z"}], kind=MetricKind.ROW),
            _chunk(rid, "pyfloat", [1.5, float("nan")]),
            _chunk(rid, "name/with spaces & ünïcode", [1.0]),
        ],
        batch_id="b1",
    )
    got = {s.name: s for s in store.get_metrics(rid)}
    f = got["f"]
    assert f.kind is MetricKind.SCALAR and f.values.dtype == np.float64
    assert np.array_equal(f.values, floats, equal_nan=True)
    assert math.copysign(1, f.values[4]) == -1  # -0.0 survives
    assert np.array_equal(f.steps, np.arange(6)) and f.steps.dtype == np.int64
    assert np.array_equal(f.wall_times, 1000.0 + np.arange(6))
    assert got["i"].values.tolist() == [1, -(2**63), 2**63 - 1]
    assert got["b"].values.dtype == bool and got["b"].values.tolist() == [True, False]
    assert got["s"].values == ["a", None, "ü€"]
    assert got["row"].kind is MetricKind.ROW and got["row"].values == [{"x": 1, "y": "z"}]
    assert math.isnan(got["pyfloat"].values[1])
    assert got["name/with spaces & ünïcode"].values.tolist() == [1.0]


def test_metrics_append_order_and_step_ranges(store: Store) -> None:
    rid = _run(store).run_id
    for k in range(5):
        store.log_metrics([_chunk(rid, "loss", np.arange(10.0) + 10 * k, steps=np.arange(10) + 10 * k)])
    store.log_metrics([_chunk(rid, "acc", [0.1, 0.2])])
    (loss,) = store.get_metrics(rid, "loss")
    assert loss.values.tolist() == list(np.arange(50.0))
    (part,) = store.get_metrics(rid, "loss", min_step=15, max_step=24)
    assert part.steps.tolist() == list(range(15, 25))
    assert {s.name for s in store.get_metrics(rid)} == {"loss", "acc"}
    assert store.get_metrics(rid, "missing") == []
    assert store.get_metrics(uuid.uuid4().hex) == []


def test_downsampled_read(store: Store) -> None:
    rid = _run(store).run_id
    store.log_metrics([_chunk(rid, "long", np.arange(100_000, dtype=np.float64))])
    (s,) = store.get_metrics(rid, "long", max_points=1000)
    assert len(s) == 1000 and s.steps[0] == 0 and s.steps[-1] == 99_999
    assert np.all(np.diff(s.steps) > 0) and np.array_equal(s.values, s.steps.astype(np.float64))
    (s,) = store.get_metrics(rid, "long", min_step=10, max_step=19, max_points=1000)
    assert s.steps.tolist() == list(range(10, 20))
    with pytest.raises(ValidationError):
        store.get_metrics(rid, "long", max_points=0)


def test_batch_ids_make_retries_safe(store: Store) -> None:
    rid = _run(store).run_id
    batch = [_chunk(rid, "m", [1.0, 2.0])]
    store.log_metrics(batch, batch_id="same")
    store.log_metrics(batch, batch_id="same")
    store.log_metrics(batch, batch_id="other")
    (m,) = store.get_metrics(rid, "m")
    assert m.values.tolist() == [1.0, 2.0, 1.0, 2.0]


def test_log_metrics_errors(store: Store) -> None:
    rid = _run(store).run_id
    with pytest.raises(NotFoundError):
        store.log_metrics([_chunk(uuid.uuid4().hex, "m", [1.0])], batch_id=uuid.uuid4().hex)
    with pytest.raises(ValidationError):
        store.log_metrics([_chunk(rid, "", [1.0])])
    with pytest.raises(ValidationError):
        store.log_metrics([MetricChunk(rid, "m", MetricKind.SCALAR, [1, 2], [1.0], [1.0, 2.0])])
    assert store.get_metrics(rid) == []
    store.log_metrics([])
    store.flush(timeout=5)


def test_concurrent_logging_threads(store: Store) -> None:
    rid = _run(store).run_id

    def work(i: int) -> None:
        for k in range(10):
            store.log_metrics([_chunk(rid, f"t{i}", np.full(100, float(k)))], batch_id=f"{rid}-{i}-{k}")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = {s.name: s for s in store.get_metrics(rid)}
    assert sorted(got) == ["t0", "t1", "t2", "t3"]
    assert all(len(s) == 1000 for s in got.values())


# --- files ------------------------------------------------------------------------------------------
def test_files(store: Store) -> None:
    rid = _run(store).run_id
    info = store.write_file(rid, "outputs/model.bin", b"\x00\x01binary")
    assert isinstance(info, FileInfo) and info.name == "outputs/model.bin" and info.size == 8
    assert store.read_file(rid, "outputs/model.bin") == b"\x00\x01binary"
    assert store.read_file(rid, "outputs/model.bin", offset=2, length=3) == b"bin"
    assert store.read_file(rid, "outputs/model.bin", offset=100) == b""
    store.write_file(rid, "outputs/model.bin", b"new")
    assert store.read_file(rid, "outputs/model.bin") == b"new"
    store.write_file(rid, "logs/a b/ü.txt", b"")
    assert [f.name for f in store.list_files(rid)] == ["logs/a b/ü.txt", "outputs/model.bin"]
    assert [f.name for f in store.list_files(rid, prefix="logs/")] == ["logs/a b/ü.txt"]
    assert store.read_file(rid, "logs/a b/ü.txt") == b""
    with pytest.raises(NotFoundError):
        store.read_file(rid, "nope.txt")
    with pytest.raises(NotFoundError):
        store.write_file(uuid.uuid4().hex, "x.txt", b"x")
    assert store.list_files(uuid.uuid4().hex) == []


def test_append_file(store: Store) -> None:
    rid = _run(store).run_id
    assert store.append_file(rid, "logs/events", b"abc", 0).size == 3
    assert store.append_file(rid, "logs/events", b"def", 3).size == 6
    assert store.append_file(rid, "logs/events", b"def", 3).size == 6  # retry: no-op
    with pytest.raises(ConflictError):
        store.append_file(rid, "logs/events", b"xyz", 3)
    with pytest.raises(ConflictError):
        store.append_file(rid, "logs/events", b"x", 10)
    assert store.read_file(rid, "logs/events") == b"abcdef"


def test_large_file(store: Store) -> None:
    rid = _run(store).run_id
    data = np.random.default_rng(0).bytes(20 * 1024 * 1024 + 3)
    assert store.write_file(rid, "big.bin", data).size == len(data)
    assert store.read_file(rid, "big.bin") == data
    assert store.read_file(rid, "big.bin", offset=len(data) - 5, length=10) == data[-5:]


@pytest.mark.parametrize("bad", ["../escape", "a/../../b", "/etc/passwd", "..", "a\\b", "C:/x", "", "a\x00b"])
def test_file_names_cannot_leave_the_run(store: Store, bad: str) -> None:
    rid = _run(store).run_id
    with pytest.raises(ValidationError):
        store.write_file(rid, bad, b"x")
    with pytest.raises(ValidationError):
        store.read_file(rid, bad)


def test_values_postgresql_cannot_hold_are_validation_errors(store: Store, backend: str) -> None:
    run = _run(store)
    if backend.endswith("postgresql"):
        with pytest.raises(ValidationError):
            store.set_tags(run.run_id, {"nul": "a\x00b"})
        assert store.get_run(run.run_id).tags == {}
    else:
        store.set_tags(run.run_id, {"nul": "a\x00b"})
        assert store.get_run(run.run_id).tags == {"nul": "a\x00b"}


def test_streamed_files(store: Store, tmp_path: Path) -> None:
    rid = _run(store).run_id
    data = np.random.default_rng(1).bytes(9 * 1024 * 1024 + 11)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    with open(src, "rb") as f:
        assert store.write_file_stream(rid, "outputs/streamed.bin", f).size == len(data)
    assert store.file_info(rid, "outputs/streamed.bin").size == len(data)
    assert b"".join(store.iter_file(rid, "outputs/streamed.bin")) == data
    assert b"".join(store.iter_file(rid, "outputs/streamed.bin", 7, 5)) == data[7:12]
    assert store.write_file_stream(rid, "outputs/small.txt", io.BytesIO(b"small")).size == 5
    assert store.read_file(rid, "outputs/small.txt") == b"small"
    with pytest.raises(NotFoundError):
        store.file_info(rid, "outputs/none")
    with pytest.raises(NotFoundError):
        list(store.iter_file(rid, "outputs/none"))
