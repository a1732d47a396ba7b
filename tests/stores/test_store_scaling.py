"""Store methods that keep the cost of a call independent of the history's length (every backend)."""

from __future__ import annotations

import time
import uuid

import numpy as np

from expboard.records import MetricKind, RunRecord, RunStatus
from expboard.stores.base import MetricChunk, Store


def _run(store: Store) -> str:
    exp = store.get_or_create_experiment(f"scale-{uuid.uuid4().hex[:10]}").name
    record = RunRecord(run_id=uuid.uuid4().hex, experiment=exp, status=RunStatus.RUNNING, created=time.time())
    return store.create_run(record).run_id


def _chunk(run_id: str, name: str, n: int, kind: MetricKind = MetricKind.SCALAR) -> MetricChunk:
    return MetricChunk(run_id, name, kind, np.arange(n), np.full(n, 1000.0), np.arange(n, dtype=np.float64))


def test_count_metric_points_sums_chunks_without_reading_them(store: Store) -> None:
    run_id = _run(store)
    assert store.count_metric_points(run_id, "loss") == 0
    store.log_metrics([_chunk(run_id, "loss", 5), _chunk(run_id, "acc", 2)])
    store.log_metrics([_chunk(run_id, "loss", 7)])
    store.log_metrics([MetricChunk(run_id, "loss", MetricKind.LIST, [0], [1.0], ["a"])])
    store.flush()
    assert store.count_metric_points(run_id, "loss") == 13
    assert store.count_metric_points(run_id, "loss", MetricKind.SCALAR) == 12
    assert store.count_metric_points(run_id, "loss", MetricKind.LIST) == 1
    assert store.count_metric_points(run_id, "acc") == 2
    assert store.count_metric_points(run_id, "missing") == 0


def test_query_runs_pages_and_filters(store: Store) -> None:
    from expboard.stores.query import RunFilter

    exp = store.get_or_create_experiment(f"scale-{uuid.uuid4().hex[:10]}").name
    ids = []
    for i in range(5):
        record = RunRecord(
            run_id=f"r{i}-{uuid.uuid4().hex[:6]}",
            experiment=exp,
            status=RunStatus.COMPLETED,
            created=1000.0 + (i // 2),  # equal creation times are ordered by id
            display_name=f"Trial {i}",
            tags={"group": "a" if i < 3 else "b"},
        )
        ids.append(store.create_run(record).run_id)
        store.log_metrics([MetricChunk(record.run_id, "mse", MetricKind.SCALAR, [0, 1], [1.0, 2.0], [9.0, i / 10])])
    store.flush()
    newest_first = sorted(ids, key=lambda r: (1000 + int(r[1]) // 2, r), reverse=True)
    seen, token = [], None
    while True:
        page = store.query_runs(experiment=exp, limit=2, page_token=token)
        assert len(page.runs) <= 2
        seen += [r.run_id for r in page.runs]
        token = page.next_page_token
        if token is None:
            break
    assert seen == newest_first
    hits = store.query_runs(
        experiment=exp, filter=RunFilter.parse(tags=["group=a"], metrics=["mse>=0.1"], text="TRIAL")
    ).runs
    assert {r.run_id for r in hits} == {ids[1], ids[2]}


def test_read_metric_chunks_after_a_cursor(store: Store) -> None:
    from expboard.errors import ValidationError

    a, b, other = _run(store), _run(store), _run(store)
    store.log_metrics([_chunk(a, "loss", 3), _chunk(b, "loss", 2), _chunk(other, "loss", 4)])
    store.log_metrics([MetricChunk(a, "note", MetricKind.SCALAR, [5, 1], [1.0, 2.0], ["x", None])])
    store.flush()
    page = store.read_metric_chunks([a, b])
    assert [(c.run_id, c.name, len(c)) for c in page.chunks] == [(a, "loss", 3), (b, "loss", 2), (a, "note", 2)]
    assert not page.more and page.chunks[2].values == ["x", None] and page.chunks[2].steps.tolist() == [5, 1]
    assert page.chunks[0].values.dtype == np.float64 and page.chunks[0].steps.tolist() == [0, 1, 2]
    assert store.read_metric_chunks([a, b], page.cursor) == type(page)([], page.cursor, False)  # nothing new
    store.log_metrics([MetricChunk(a, "loss", MetricKind.SCALAR, [1], [3.0], [7.0])])  # a lower step comes too
    store.flush()
    new = store.read_metric_chunks([a, b], page.cursor)
    assert [(c.steps.tolist(), c.values.tolist()) for c in new.chunks] == [([1], [7.0])] and new.cursor > page.cursor
    # pages of about max_points points, at least one chunk each; every chunk exactly once
    seen, cursor, pages = [], 0, 0
    while True:
        part = store.read_metric_chunks([a, b], cursor, max_points=3)
        seen += [len(c) for c in part.chunks]
        assert sum(len(c) for c in part.chunks) <= 3 or len(part.chunks) == 1
        cursor, pages = part.cursor, pages + 1
        if not part.more:
            break
    assert sorted(seen) == [1, 2, 2, 3] and pages >= 3
    assert store.read_metric_chunks([]).chunks == []
    try:
        store.read_metric_chunks([f"r{i}" for i in range(101)])
    except ValidationError as exc:
        assert "at most 100" in str(exc)
    else:
        raise AssertionError("101 runs were accepted")


def test_long_series_reads_into_one_array(store: Store) -> None:
    """A series of many stored rows reads back whole, also within a step range and over rows of other dtypes."""
    run_id = _run(store)
    n = 40_000  # three rows of at most 16,384 points
    store.log_metrics([_chunk(run_id, "loss", n)])
    store.log_metrics([MetricChunk(run_id, "mixed", MetricKind.SCALAR, [0, 1], [1.0, 1.0], [1.5, 2.5])])
    store.log_metrics([MetricChunk(run_id, "mixed", MetricKind.SCALAR, [2], [1.0], [3])])
    store.flush()
    (loss,) = store.get_metrics(run_id, "loss")
    assert loss.steps.tolist() == list(range(n)) and loss.values.tolist() == list(map(float, range(n)))
    assert loss.steps.flags.writeable and loss.values.flags.writeable
    (part,) = store.get_metrics(run_id, "loss", min_step=16_000, max_step=20_000)
    assert part.steps.tolist() == list(range(16_000, 20_001)) and part.values[0] == 16_000.0
    (mixed,) = store.get_metrics(run_id, "mixed")
    assert mixed.values == [1.5, 2.5, 3]
    assert store.get_metrics(run_id, "loss", min_step=n) == []


def test_run_list_metric_filter_and_latest_metrics_read_one_fact(store: Store) -> None:
    """The run list's metric filter sees the same latest point as MLflow's searches: the highest step (a point
    logged later with a lower step does not replace it), of scalar series only."""
    from expboard.stores.base import QueryStore
    from expboard.stores.query import RunFilter

    run_id = _run(store)
    exp = store.get_run(run_id).experiment
    store.log_metrics([MetricChunk(run_id, "mse", MetricKind.SCALAR, [0, 5], [1.0, 2.0], [0.9, 0.2])])
    store.log_metrics([MetricChunk(run_id, "mse", MetricKind.SCALAR, [3], [3.0], [0.8])])
    store.log_metrics([MetricChunk(run_id, "acc", MetricKind.LIST, [0], [1.0], [0.1])])
    store.flush()

    def matching(expr: str) -> list[str]:
        return [r.run_id for r in store.query_runs(experiment=exp, filter=RunFilter.parse(metrics=[expr])).runs]

    assert matching("mse<0.3") == [run_id] and matching("mse>0.5") == [] and matching("acc<1") == []
    if isinstance(store, QueryStore):
        (mse,) = [m for m in store.latest_metrics([run_id])[run_id] if m.name == "mse"]
        assert (mse.step, mse.value) == (5, 0.2)
