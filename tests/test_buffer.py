"""The metric buffer: bounded memory, heartbeats of live runs, retry after a failed write."""

from __future__ import annotations

import time

import pytest

from expboard import Experiment, Run, Workspace
from expboard.errors import StoreUnavailableError


def test_memory_is_bounded(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    run = Experiment(ws, "bounded").start_logging()
    buf = run._buf
    monkeypatch.setattr(buf, "max_pending", 5_000)
    monkeypatch.setattr(buf, "flush_threshold", 1_000)
    buf.interval = 3600  # the background thread stays asleep: only the bound can write
    peak = 0
    for i in range(50_000):
        run.log("x", i)
        peak = max(peak, buf.pending)
    assert peak <= 5_000
    run.flush()
    assert run.get_metrics()["x"] == list(range(50_000))


def test_live_runs_send_heartbeats(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    run = Experiment(ws, "hb").start_logging()
    monkeypatch.setattr(run._buf, "heartbeat_s", 0.1)
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


def test_interactive_run_of_a_killed_process_becomes_not_responding(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    import signal
    import subprocess
    import sys

    from expboard import RunStatus

    code = (
        "import time\nfrom expboard import Workspace, Experiment\n"
        "run = Experiment(Workspace.from_config(), 'killed').start_logging()\n"
        "run.log('x', 1); run.flush(); print(run.id, flush=True); time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ws.path, stdout=subprocess.PIPE, text=True)
    run_id = proc.stdout.readline().strip()  # type: ignore[union-attr]
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    run = Run.get(ws, run_id)
    assert run.get_status() == RunStatus.RUNNING  # within the timeout nobody can tell yet
    monkeypatch.setenv("EXPBOARD_INTERACTIVE_TIMEOUT_S", "0.5")
    time.sleep(1.0)
    assert run.get_status() == RunStatus.NOT_RESPONDING
    assert "stopped responding" in run.get_details()["error"]["message"]
    assert run.get_metrics() == {"x": 1}


def test_a_heartbeat_revives_a_run_marked_not_responding(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    from expboard import RunStatus
    from expboard.liveness import reap_unresponsive

    run = Experiment(ws, "sleepy").start_logging()
    monkeypatch.setattr(run._buf, "heartbeat_s", 0.05)
    run._buf.interval = 3600  # the writer sleeps, like a laptop lid closed
    ws.store.update_run(run.id, heartbeat=time.time() - 1000)
    assert reap_unresponsive(ws.store, run_ids=[run.id]) == [run.id]
    assert ws.store.get_run(run.id).status == RunStatus.NOT_RESPONDING
    run._buf._last_heartbeat = 0
    run._buf._heartbeat()
    record = ws.store.get_run(run.id)
    assert record.status == RunStatus.RUNNING and record.error is None
