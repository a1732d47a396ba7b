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
