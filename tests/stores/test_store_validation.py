"""Bad input, refused the same way by every store (SQLite, PostgreSQL, and the HTTP store in front of each):
a ValidationError that says what to do, nothing stored, and the run's other points kept."""

from __future__ import annotations

import math
import time
import uuid

import numpy as np
import pytest

from expboard.errors import ValidationError
from expboard.records import MetricKind, RunRecord, RunStatus
from expboard.stores.base import MetricChunk, Store


def _run(store: Store, run_id: str | None = None) -> str:
    experiment = store.get_or_create_experiment(f"v-{uuid.uuid4().hex[:10]}").name
    record = RunRecord(
        run_id=uuid.uuid4().hex if run_id is None else run_id,
        experiment=experiment,
        status=RunStatus.RUNNING,
        created=1e9,
    )
    return store.create_run(record).run_id


def _points(store: Store, run_id: str) -> None:
    steps = np.arange(1000)
    store.log_metrics([MetricChunk(run_id, "loss", MetricKind.SCALAR, steps, np.ones(1000), steps * 1.0)])


def _kept(store: Store, run_id: str) -> None:
    (series,) = store.get_metrics(run_id, "loss")
    assert series.steps.tolist() == list(range(1000))


@pytest.mark.parametrize("bad", [".", "..", "x" * 256, "a/b", "../x", ".hidden", "", "a b", "ä"])
def test_run_ids(store: Store, bad: str) -> None:
    other = _run(store)
    _points(store, other)
    with pytest.raises(ValidationError, match="run id"):
        _run(store, run_id=bad)
    for call in (
        lambda: store.get_run(bad),
        lambda: store.list_files(bad),
        lambda: store.read_file(bad, "x.txt"),
        lambda: store.write_file(bad, "x.txt", b"x"),
        lambda: store.get_metrics(bad),
        lambda: store.update_run(bad, heartbeat=1e9),
        lambda: store.log_metrics([MetricChunk(bad, "m", MetricKind.SCALAR, [0], [1.0], [1.0])]),
    ):
        with pytest.raises(ValidationError, match="run id"):
            call()
    _kept(store, other)
    longest = uuid.uuid4().hex.ljust(255, "r")
    assert _run(store, run_id=longest) == longest


@pytest.mark.parametrize("bad", [1e300, math.inf, -math.inf, math.nan, -1.0, 4e10])
def test_times(store: Store, bad: float) -> None:
    run_id = _run(store)
    for field in ("start_time", "end_time", "heartbeat"):
        with pytest.raises(ValidationError, match="seconds since 1970"):
            store.update_run(run_id, **{field: bad})  # type: ignore[arg-type]
    experiment = store.get_run(run_id).experiment
    with pytest.raises(ValidationError, match="seconds since 1970"):
        store.create_run(
            RunRecord(run_id=uuid.uuid4().hex, experiment=experiment, status=RunStatus.RUNNING, created=bad)
        )
    record = store.get_run(run_id)
    assert (record.start_time, record.end_time, record.heartbeat) == (None, None, None)
    assert all(math.isfinite(r.created) for r in store.list_runs(experiment))
    assert store.update_run(run_id, heartbeat=time.time()).heartbeat is not None


def test_text_that_cannot_be_stored(store: Store) -> None:
    run_id = _run(store)
    _points(store, run_id)
    with pytest.raises(ValidationError, match="metric name"):
        store.log_metrics([MetricChunk(run_id, "bad\ud800", MetricKind.SCALAR, [0], [1.0], [1.0])])
    with pytest.raises(ValidationError):
        store.set_tags(run_id, {"k": "v\udc00"})
    with pytest.raises(ValidationError):
        store.set_tags(run_id, {"k\ud800": "v"})
    with pytest.raises(ValidationError):
        store.add_properties(run_id, {"k": "\ud800"})
    with pytest.raises(ValidationError):
        store.update_run(run_id, display_name="\ud800")
    with pytest.raises(ValidationError):
        store.update_run(run_id, error={"message": "x", "value": math.nan})
    assert store.get_run(run_id).tags == {} and store.get_run(run_id).error is None
    _kept(store, run_id)


def test_values_that_cannot_be_stored(store: Store) -> None:
    run_id = _run(store)
    _points(store, run_id)
    for values, steps in [
        ([np.datetime64("2020-01-01")], [0]),
        ([np.complex64(1 + 1j)], [0]),
        ([1.0], [2**70]),
        ("a", [0]),  # a string is not a column of points
        ({"a": 1}, [0]),
    ]:
        with pytest.raises(ValidationError):
            store.log_metrics([MetricChunk(run_id, "bad", MetricKind.SCALAR, steps, [1.0], values)])
    assert [s.name for s in store.get_metrics(run_id)] == ["loss"]
    _kept(store, run_id)
    store.log_metrics([MetricChunk(run_id, "cm", MetricKind.CONFUSION_MATRIX, [0, 1], [1.0, 1.0], [{"a": 1}, "a"])])
    assert store.get_metrics(run_id, "cm")[0].values == [{"a": 1}, "a"]


def test_step_ranges_beyond_int64_select_nothing_or_everything(store: Store) -> None:
    run_id = _run(store)
    _points(store, run_id)
    assert store.get_metrics(run_id, min_step=10**20) == []
    assert store.get_metrics(run_id, max_step=-(10**20)) == []
    assert len(store.get_metrics(run_id, min_step=-(10**20), max_step=10**20)[0]) == 1000


def test_file_names_are_normalized_and_folders_refused(store: Store) -> None:
    run_id = _run(store)
    assert store.write_file(run_id, "a//b.txt", b"x").name == "a/b.txt"
    assert store.append_file(run_id, "./c//d.txt", b"y", 0).name == "c/d.txt"
    assert [f.name for f in store.list_files(run_id)] == ["a/b.txt", "c/d.txt"]
    for bad in ["outputs/", "a/" + "n" * 256, "\ud800.txt"]:
        with pytest.raises(ValidationError, match="file name"):
            store.write_file(run_id, bad, b"x")
    assert store.read_file(run_id, "a/b.txt", length=2**63 - 1) == b"x"
