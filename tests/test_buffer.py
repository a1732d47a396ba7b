"""The metric buffer: bounded memory, heartbeats of live runs, retry after a failed write."""

from __future__ import annotations

import time

import pytest

from expboard import Experiment, Workspace, buffer
from expboard.errors import StoreUnavailableError


def test_memory_is_bounded(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(buffer, "MAX_PENDING", 5_000)
    monkeypatch.setattr("expboard.run.FLUSH_THRESHOLD", 1_000)
    run = Experiment(ws, "bounded").start_logging()
    buf = run._buf
    buf.interval = 3600  # the background thread stays asleep: only the bound can write
    peak = 0
    for i in range(50_000):
        run.log("x", i)
        peak = max(peak, buf.pending)
    assert peak <= 5_000
    run.flush()
    assert run.get_metrics()["x"] == list(range(50_000))


def test_live_runs_send_heartbeats(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(buffer, "HEARTBEAT_INTERVAL_S", 0.1)
    run = Experiment(ws, "hb").start_logging()
    run._buf.interval = 0.05
    run._buf._wake.set()
    first = ws.store.get_run(run.id).heartbeat
    deadline = time.time() + 10
    while ws.store.get_run(run.id).heartbeat == first and time.time() < deadline:
        time.sleep(0.05)
    assert ws.store.get_run(run.id).heartbeat > first
    run.complete()
    assert run.id not in run._buf.live_runs


def test_a_failed_write_is_retried_and_loses_nothing(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    run = Experiment(ws, "retry").start_logging()
    run.log("x", 1)
    real = ws.store.log_metrics
    calls = {"n": 0}

    def flaky(chunks, batch_id=None):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 1:
            raise StoreUnavailableError("database is locked")
        return real(chunks, batch_id=batch_id)

    monkeypatch.setattr(ws.store, "log_metrics", flaky)
    with pytest.raises(StoreUnavailableError):
        run.flush()
    run.log("x", 2)
    run.flush()
    assert run.get_metrics()["x"] == [1, 2]
