"""Downsampled reads and metric summaries, on every backend (SQLite, PostgreSQL, HTTP in front of each)."""

from __future__ import annotations

import math
import time
import uuid

import numpy as np
import pytest

from expboard.records import MetricKind, RunRecord, RunStatus
from expboard.stores.base import MetricChunk, Store


def _run(store: Store) -> str:
    exp = store.get_or_create_experiment(f"thin-{uuid.uuid4().hex[:10]}").name
    run_id = uuid.uuid4().hex
    store.create_run(RunRecord(run_id=run_id, experiment=exp, status=RunStatus.RUNNING, created=time.time()))
    return run_id


def _log(
    store: Store, run_id: str, name: str, steps: np.ndarray, values: object, kind: MetricKind = MetricKind.SCALAR
) -> None:
    store.log_metrics([MetricChunk(run_id, name, kind, steps, 1000.0 + steps * 0.5, values)])
    store.flush()


def test_thinned_read_matches_the_points_and_keeps_first_and_last(store: Store) -> None:
    run_id = _run(store)
    steps = np.arange(20_000, dtype=np.int64)
    for start in range(0, 20_000, 500):  # many small chunks: points are picked out of them in SQL
        _log(store, run_id, "many", steps[start : start + 500], steps[start : start + 500] * 2.0)
    _log(store, run_id, "one", steps, steps * 3)  # one big chunk of int64
    for name, factor, dtype in (("many", 2.0, np.float64), ("one", 3, np.int64)):
        (s,) = store.get_metrics(run_id, name, max_points=1000)
        assert 990 <= len(s) <= 1000
        assert s.steps[0] == 0 and s.steps[-1] == 19_999  # the last point always kept
        assert np.all(np.diff(s.steps) > 0)
        assert np.array_equal(s.values, s.steps * factor) and s.values.dtype == dtype
        assert np.allclose(s.wall_times, 1000.0 + s.steps * 0.5)
        gaps = np.diff(s.steps)
        assert gaps.max() - gaps.min() <= 1  # evenly spaced
    long = np.arange(200_000, dtype=np.int64)  # one chunk long enough to be read point by point
    _log(store, run_id, "long", long, long * 0.5)
    (s,) = store.get_metrics(run_id, "long", max_points=1000)
    assert len(s) == 1000 and s.steps[0] == 0 and s.steps[-1] == 199_999
    assert np.array_equal(s.values, s.steps * 0.5) and np.allclose(s.wall_times, 1000.0 + s.steps * 0.5)
    (last,) = store.get_metrics(run_id, "many", max_points=1)
    assert last.steps.tolist() == [19_999] and last.values.tolist() == [39_998.0]
    (short,) = store.get_metrics(run_id, "many", max_points=50_000)
    assert len(short) == 20_000


def test_thinned_json_and_bool_series(store: Store) -> None:
    run_id = _run(store)
    _log(store, run_id, "text", np.arange(10), [f"t{i}" for i in range(10)])
    _log(store, run_id, "flag", np.arange(300), np.arange(300) % 2 == 0)
    (t,) = store.get_metrics(run_id, "text", max_points=3)
    assert t.values == ["t0", "t4", "t9"] or t.values == ["t0", "t5", "t9"]
    (f,) = store.get_metrics(run_id, "flag", max_points=5)
    assert f.values.dtype == bool and f.steps[-1] == 299
    assert f.values.tolist() == (f.steps % 2 == 0).tolist()


def test_metric_info_summarises_without_points(store: Store) -> None:
    run_id, other = _run(store), _run(store)
    _log(store, run_id, "loss", np.arange(5), np.array([5.0, 4.0, 3.0, 2.0, float("nan")]))
    _log(store, run_id, "loss", np.arange(5, 8), np.array([1.0, 0.5, 0.25]))
    _log(store, run_id, "alpha", np.array([0]), [0.1])
    _log(store, run_id, "note", np.array([3]), ["done"])
    _log(store, run_id, "bad", np.array([0]), np.array([float("inf")]))
    _log(store, run_id, "row", np.array([0, 1]), [{"a": 1}, {"a": 2}], MetricKind.ROW)
    _log(store, other, "x", np.array([7, 2]), np.array([1, 2]))
    infos = {(i.run_id, i.name): i for i in store.get_metric_info([run_id, other, "no-such-run"])}
    assert set(infos) == {(run_id, n) for n in ("loss", "alpha", "note", "bad", "row")} | {(other, "x")}
    loss = infos[(run_id, "loss")]
    assert (loss.count, loss.max_step, loss.last_step, loss.last_value, loss.numeric) == (8, 7, 7, 0.25, True)
    assert loss.kind is MetricKind.SCALAR and loss.last_wall_time == pytest.approx(1003.5)
    assert infos[(run_id, "alpha")].last_value == 0.1 and infos[(run_id, "alpha")].count == 1
    assert infos[(run_id, "note")].last_value == "done" and not infos[(run_id, "note")].numeric
    assert math.isinf(infos[(run_id, "bad")].last_value)
    assert infos[(run_id, "row")].kind is MetricKind.ROW and infos[(run_id, "row")].last_value == {"a": 2}
    x = infos[(other, "x")]
    assert (x.max_step, x.last_step, x.last_value, x.numeric) == (7, 2, 2, True)
    assert store.get_metric_info([]) == []
