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
