"""QueryStore on SQLite and PostgreSQL: searches evaluated in SQL, latest metric values, paged metric
history, soft deletion, and the migration that fills the latest-point columns of older chunks."""

from __future__ import annotations

import math
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from expboard.errors import NotFoundError, ValidationError
from expboard.records import MetricKind, RunRecord, RunStatus
from expboard.stores import sql as sql_module
from expboard.stores.base import MetricChunk, RunCondition, RunOrder
from expboard.stores.sql import SqlStore


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlStore]:
    if request.param == "sqlite":
        uri = f"sqlite:///{tmp_path / 'expboard.db'}"
    else:
        uri = request.getfixturevalue("local_postgres").create_database()
    s = SqlStore(uri, tmp_path / "artifacts")
    yield s
    s.close()


def _run(store: SqlStore, name: str, created: float, exp: str = "q", **kw: Any) -> str:
    store.get_or_create_experiment(exp)
    rid = uuid.uuid4().hex
    store.create_run(RunRecord(rid, exp, kw.pop("status", RunStatus.RUNNING), created, name, **kw))
    return rid


def _chunk(rid: str, name: str, steps: list[int], times: list[float], values: Any) -> MetricChunk:
    return MetricChunk(rid, name, MetricKind.SCALAR, np.array(steps), np.array(times, dtype=float), values)


def test_latest_metric_is_highest_step_then_time_then_value(store: SqlStore) -> None:
    rid = _run(store, "r", 1.0)
    store.log_metrics([_chunk(rid, "a", [5, 1], [10.0, 20.0], np.array([1.0, 2.0]))])  # step 5 wins over later
    store.log_metrics([_chunk(rid, "a", [5, 5], [11.0, 11.0], np.array([3.0, 7.0]))])  # same step: later time
    store.log_metrics([_chunk(rid, "b", [0, 0], [1.0, 1.0], np.array([4, 9]))])  # same step and time: larger
    store.log_metrics([_chunk(rid, "c", [0], [1.0], np.array([math.nan]))])
    store.log_metrics([_chunk(rid, "s", [0], [1.0], ["text"])])  # not a number: no latest value
    latest = {m.name: m for m in store.latest_metrics([rid])[rid]}
    assert set(latest) == {"a", "b", "c"}
    assert (latest["a"].step, latest["a"].wall_time, latest["a"].value) == (5, 11.0, 7.0)
    assert latest["b"].value == 9.0 and math.isnan(latest["c"].value)
    unknown = uuid.uuid4().hex
    assert store.latest_metrics([unknown]) == {unknown: []}


def test_search_runs_filters_orders_and_pages_in_sql(store: SqlStore) -> None:
    ids = {}
    for i, name in enumerate(["Alpha", "alpha", "beta", "gamma", "a_b"]):
        rid = _run(store, name, 100.0 + i, tags={"group": "g1" if i < 2 else "g2"}, properties={"i": str(i)})
        store.log_metrics([_chunk(rid, "loss", [0, 1], [1.0, 2.0], np.array([10.0, float(i)]))])
        ids[name] = rid
    _run(store, "elsewhere", 200.0, exp="other")

    def names(filters: list[RunCondition] = (), order: list[RunOrder] = (), **kw: Any) -> list[str]:  # type: ignore[assignment]
        return [r.display_name for r in store.search_runs(["q"], filters, order, **kw)]

    assert names() == ["a_b", "gamma", "beta", "alpha", "Alpha"]  # newest first by default
    assert names([RunCondition("metric", "loss", ">=", 2.0)]) == ["a_b", "gamma", "beta"]
    assert names([RunCondition("attribute", "display_name", "LIKE", "a%")]) == ["a_b", "alpha"]  # case-sensitive
    assert names([RunCondition("attribute", "display_name", "ILIKE", "A%")]) == ["a_b", "alpha", "Alpha"]
    assert names([RunCondition("attribute", "display_name", "LIKE", "a_b")]) == ["a_b"]  # '_' is one character
    assert names([RunCondition("attribute", "display_name", "LIKE", "a*")]) == []  # '*' is no wildcard
    assert names([RunCondition("tag", "group", "=", "g1"), RunCondition("property", "i", "!=", "0")]) == ["alpha"]
    assert names([RunCondition("tag", "missing", "IS NULL")]) == names()
    assert names([RunCondition("tag", "group", "IS NOT NULL"), RunCondition("metric", "loss", "<", 1)]) == ["Alpha"]
    assert names([RunCondition("attribute", "run_id", "IN", [ids["beta"], ids["gamma"]])]) == ["gamma", "beta"]
    assert names([RunCondition("attribute", "run_id", "NOT IN", [])]) == names()
    assert names([RunCondition("attribute", "created", ">", 102.5)]) == ["a_b", "gamma"]
    assert names(order=[RunOrder("metric", "loss", descending=True)]) == ["a_b", "gamma", "beta", "alpha", "Alpha"]
    assert names(order=[RunOrder("tag", "group"), RunOrder("attribute", "display_name")]) == [
        "Alpha",
        "alpha",
        "a_b",
        "beta",
        "gamma",
    ]
    assert names(order=[RunOrder("metric", "nothing")]) == names()  # runs without the key sort last
    assert names(offset=1, limit=2) == ["gamma", "beta"]
    assert store.search_runs([]) == []
    assert len(store.search_runs(None)) == 6
    with pytest.raises(ValidationError):
        store.search_runs(["q"], [RunCondition("attribute", "no_such_column", "=", "x")])
    with pytest.raises(ValidationError):
        store.search_runs(["q"], [RunCondition("tag", "group", "~", "x")])


def test_soft_deletion_hides_runs_and_restores_them(store: SqlStore) -> None:
    keep, gone = _run(store, "keep", 1.0), _run(store, "gone", 2.0)
    store.set_run_deleted(gone, True)
    assert [r.run_id for r in store.list_runs("q")] == [keep]
    assert [r.run_id for r in store.search_runs(["q"], deleted=True)] == [gone]
    assert {r.run_id for r in store.search_runs(["q"], deleted=None)} == {keep, gone}
    assert store.deleted_runs([keep, gone]) == {gone}
    assert store.get_run(gone).display_name == "gone"  # still readable by id
    store.set_run_deleted(gone, False)
    assert {r.run_id for r in store.list_runs("q")} == {keep, gone}
    store.set_experiment_deleted("q", True)
    assert store.deleted_experiments() == {"q"}
    store.set_experiment_deleted("q", False)
    assert store.deleted_experiments() == set()
    with pytest.raises(NotFoundError):
        store.set_run_deleted(uuid.uuid4().hex, True)


def test_metric_pages_read_across_chunks(store: SqlStore) -> None:
    rid = _run(store, "r", 1.0)
    for start in range(0, 100, 7):
        steps = list(range(start, min(start + 7, 100)))
        store.log_metrics([_chunk(rid, "m", steps, [float(s) for s in steps], np.array(steps, dtype=float) * 2)])
    (whole,) = store.get_metrics(rid, "m")
    for offset, limit in [(0, 10), (5, 9), (13, 1), (95, 10), (0, None), (100, 5), (3, 0)]:
        page = store.get_metric_page(rid, "m", offset, limit)
        end = None if limit is None else offset + limit
        assert page.steps.tolist() == whole.steps[offset:end].tolist()
        assert page.values.tolist() == whole.values[offset:end].tolist()
        assert page.wall_times.tolist() == whole.wall_times[offset:end].tolist()
    assert len(store.get_metric_page(rid, "nothing")) == 0
    with pytest.raises(ValidationError):
        store.get_metric_page(rid, "m", -1)


def test_upgrading_fills_the_latest_points_of_older_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    uri = f"sqlite:///{tmp_path / 'old.db'}"
    monkeypatch.setattr(sql_module, "MIGRATIONS", sql_module.MIGRATIONS[:1])  # a database of the first schema
    SqlStore(uri, tmp_path / "artifacts").close()
    rid = uuid.uuid4().hex
    with sqlite3.connect(tmp_path / "old.db") as conn:  # an experiment, a run, a chunk as the first schema had them
        conn.execute("INSERT INTO experiments (name, created) VALUES ('q', ?)", (time.time(),))
        conn.execute(
            "INSERT INTO runs (run_id, experiment, run_type, status, created) VALUES (?, 'q', 'interactive', ?, ?)",
            (rid, RunStatus.RUNNING.value, time.time()),
        )
        conn.execute(
            "INSERT INTO metric_chunks (run_id, name, kind, n, step_min, step_max, dtype, steps, wall_times, vals) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                rid,
                "loss",
                "scalar",
                2,
                0,
                1,
                "f8",
                np.array([0, 1], "<i8").tobytes(),
                np.array([5.0, 6.0], "<f8").tobytes(),
                np.array([0.5, 0.25], "<f8").tobytes(),
            ),
        )
    monkeypatch.undo()
    new = SqlStore(uri, tmp_path / "artifacts")
    try:
        (latest,) = new.latest_metrics([rid])[rid]
        assert (latest.name, latest.step, latest.wall_time, latest.value) == ("loss", 1, 6.0, 0.25)
        assert [r.run_id for r in new.search_runs(["q"], [RunCondition("metric", "loss", "<", 0.3)])] == [rid]
    finally:
        new.close()
