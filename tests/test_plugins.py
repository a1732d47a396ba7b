"""Compute plugs into the client through expboard.plugins; without it the client says what to import."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from expboard import ExpboardError, Experiment, Workspace, plugins


def test_without_compute_loaded_the_error_says_what_to_import(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plugins, "_submit", None)
    monkeypatch.setattr(plugins, "_targets", None)
    monkeypatch.setattr(plugins, "_loaders", [])
    with pytest.raises(ExpboardError, match="import expboard.compute.submission"):
        Experiment(ws, "p").submit(object())
    with pytest.raises(ExpboardError, match="import expboard.compute.submission"):
        _ = Workspace(tracking_uri=ws.tracking_uri, artifact_root=ws.artifact_root).compute_targets


def test_a_registered_submitter_gets_the_call(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.setattr(plugins, "_submit", lambda exp, config, tags=None: calls.append((exp.name, config, tags)))
    Experiment(ws, "p").submit("cfg", tags={"a": "1"})
    assert calls == [("p", "cfg", {"a": "1"})]


def test_submit_and_targets_load_compute_without_the_user_importing_it(tmp_path: Path) -> None:
    """In a fresh interpreter: ``import expboard`` loads no compute module, and Experiment.submit and
    ws.compute_targets find the local target and an attached Ray target (the package's top loads them)."""
    code = textwrap.dedent(
        """
        import json, sys
        from expboard import Experiment, Workspace
        assert not [m for m in sys.modules if m.startswith("expboard.compute")], sorted(sys.modules)
        ws = Workspace.init(sys.argv[1])
        saved = {"cluster": {"type": "Ray", "address": "http://127.0.0.1:9"}}
        (ws.path / ".expboard" / "compute.json").write_text(json.dumps(saved))
        assert ws.compute_targets["cluster"].type == "Ray"
        assert "expboard.compute.submission" in sys.modules
        (ws.path / "src").mkdir()
        (ws.path / "src" / "train.py").write_text("print('hi')")
        from expboard import ScriptRunConfig
        run = Experiment(ws, "plugins").submit(ScriptRunConfig(str(ws.path / "src"), "train.py"))
        print(run.wait_for_completion(timeout=120)["status"])
        ws.close()
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "p")], capture_output=True, text=True, timeout=180, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "Completed"


def test_the_reaper_asks_compute_targets_about_silent_script_runs_only(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A script run NotResponding (or several beats late) goes to the registered end checks, which may end it;
    a script run with a fresh heartbeat and an interactive run do not."""
    from expboard import Run, RunStatus
    from expboard.liveness import reap_unresponsive

    asked: list[list[str]] = []

    def end_check(store: object, records: list[Any]) -> None:
        asked.append(sorted(r.run_id for r in records))
        for r in records:
            ws.store.update_run(r.run_id, status=RunStatus.FAILED, only_if_status=[r.status])

    monkeypatch.setattr(plugins, "_end_checks", [(end_check, None)])
    monkeypatch.setattr(plugins, "_loaders", [])
    monkeypatch.setenv("EXPBOARD_HEARTBEAT_TIMEOUT_S", "60")
    exp = Experiment(ws, "silent")
    fresh, late, gone = (Run.create(exp, run_type="script") for _ in range(3))
    interactive = Run.create(exp)
    now = time.time()
    ws.store.update_run(fresh.id, heartbeat=now)
    ws.store.update_run(late.id, heartbeat=now - 20)  # 4 beats of 5 s late, not yet 60 s
    ws.store.update_run(gone.id, heartbeat=now - 100)
    ws.store.update_run(interactive.id, heartbeat=now - 100)
    assert reap_unresponsive(ws.store) == [gone.id]
    assert asked == [sorted([late.id, gone.id])]
    assert late.get_status() == gone.get_status() == RunStatus.FAILED
    assert fresh.get_status() == RunStatus.RUNNING
    assert interactive.get_status() == RunStatus.RUNNING  # 300 s for interactive runs; never asked
    assert reap_unresponsive(ws.store) == [] and len(asked) == 1  # nothing silent left: no call
    interactive.complete()


def test_the_reaper_asks_the_store_only_for_the_not_responding_runs_an_end_check_can_act_on(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An end check with a marker property gets the NotResponding runs that have it (plus the late active
    ones), never the rest of a history of runs that died long ago; without one it gets them all."""
    from expboard import Run, RunStatus
    from expboard.liveness import reap_unresponsive

    asked: list[list[str]] = []

    def end_check(store: object, records: list[Any]) -> None:
        asked.append(sorted(r.run_id for r in records))

    monkeypatch.setattr(plugins, "_end_checks", [(end_check, "cluster.job")])
    monkeypatch.setattr(plugins, "_loaders", [])
    exp = Experiment(ws, "history")
    dead = [Run.create(exp, run_type="script") for _ in range(30)]
    for r in dead:
        ws.store.update_run(r.id, status=RunStatus.NOT_RESPONDING)
    on_cluster = dead[7]
    ws.store.add_properties(on_cluster.id, {"cluster.job": "job-7"})
    late = Run.create(exp, run_type="script")
    ws.store.update_run(late.id, heartbeat=time.time() - 20)
    assert reap_unresponsive(ws.store) == []
    assert asked == [sorted([on_cluster.id, late.id])]
    monkeypatch.setattr(plugins, "_end_checks", [(end_check, "cluster.job"), (end_check, None)])
    assert plugins.end_check_markers() is None
    reap_unresponsive(ws.store)
    assert asked[-1] == sorted([*(r.id for r in dead), late.id])
