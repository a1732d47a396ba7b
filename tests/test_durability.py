"""Nothing logged is lost: SIGTERM, plain exit, and several processes logging into one workspace."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from expboard import Run, RunStatus, Workspace


def _start(code: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_sigterm_after_logging_keeps_every_point(ws: Workspace) -> None:
    code = """
import sys, time
from expboard import Workspace, Experiment
run = Experiment(Workspace.from_config(), "sigterm").start_logging()
for i in range(200_000):
    run.log("loss", float(i))
print(run.id, flush=True)
time.sleep(60)
"""
    proc = _start(code, ws.path)
    run_id = proc.stdout.readline().strip()
    assert run_id
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    run = Run.get(ws, run_id)
    series = run.get_metric_series("loss")[0]
    assert len(series) == 200_000
    assert series.values[-1] == 199_999.0 and series.steps[-1] == 199_999
    assert run.get_status() == RunStatus.CANCELED


def test_sigterm_while_logging_keeps_every_completed_call(ws: Workspace) -> None:
    code = """
import sys
from expboard import Workspace, Experiment
run = Experiment(Workspace.from_config(), "sigterm2").start_logging()
print(run.id, flush=True)
i = 0
while True:
    run.log("loss", float(i))
    i += 1
"""
    proc = _start(code, ws.path)
    run_id = proc.stdout.readline().strip()
    time.sleep(1.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    values = Run.get(ws, run_id).get_metric_series("loss")[0].values
    assert len(values) > 10_000
    # every point up to the interruption, in order, without gaps
    assert values.tolist() == [float(i) for i in range(len(values))]


def test_exit_without_flush_or_complete_keeps_points_and_completes(ws: Workspace, run_python) -> None:  # type: ignore[no-untyped-def]
    result = run_python(
        """
        from expboard import Workspace, Experiment
        run = Experiment(Workspace.from_config(), "plain-exit").start_logging()
        for i in range(1000):
            run.log("x", i)
        print(run.id)
        """,
        cwd=ws.path,
    )
    assert result.returncode == 0, result.stderr
    run = Run.get(ws, result.stdout.strip())
    assert run.get_metrics()["x"] == list(range(1000))
    assert run.get_status() == RunStatus.COMPLETED


def test_two_processes_log_into_one_workspace_concurrently(ws: Workspace) -> None:
    code = """
import sys
from expboard import Workspace, Experiment
run = Experiment(Workspace.from_config(), "concurrent").start_logging()
for i in range(300_000):
    run.log("x", i)
    if i % 50_000 == 0:
        run.tag("progress", i)
run.complete()
print(run.id)
"""
    procs = [_start(code, ws.path) for _ in range(2)]
    outs = [p.communicate(timeout=180) for p in procs]
    for p, (_out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
    for out, _ in outs:
        run = Run.get(ws, out.strip())
        assert run.get_status() == RunStatus.COMPLETED
        assert run.get_metric_series("x")[0].values.tolist() == list(range(300_000))
