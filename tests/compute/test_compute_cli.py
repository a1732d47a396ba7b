"""The CLI for script runs, called in-process: submit, runs logs, runs cancel, compute list."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from compute_helpers import wait_until

from expboard import Run, RunStatus, Workspace
from expboard.cli import main


def _last_run(ws: Workspace) -> str:
    return next(Run.list(ws, include_children=True)).id


def test_submit_wait_and_logs(
    ws: Workspace,
    project: Callable[..., Path],
    pids: list[int],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    src = project("project/train", **{"train.py": "import sys\nprint('args', sys.argv[1:])\n"})
    monkeypatch.chdir(src)
    assert main(["submit", "train.py", "--lr", "0.1", "--experiment", "cli", "--wait", "--", "--wait"]) == 0
    out = capsys.readouterr().out
    assert "Submitted run" in out and "args ['--lr', '0.1', '--wait']" in out and "Status: Completed" in out
    run_id = _last_run(ws)
    assert main(["runs", "logs", run_id]) == 0
    assert capsys.readouterr().out == "args ['--lr', '0.1', '--wait']\n"
    assert main(["runs", "logs", run_id, "--file", "system_logs/agent.log"]) == 0
    assert "run ended Completed" in capsys.readouterr().out


def test_submit_failing_script_exits_1(
    ws: Workspace,
    project: Callable[..., Path],
    pids: list[int],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    src = project(**{"train.py": "raise SystemExit('no data found')\n"})
    monkeypatch.chdir(ws.path)
    assert main(["submit", "--experiment", "cli", "--source", str(src), "train.py", "--wait"]) == 1
    err = capsys.readouterr().err
    assert "ended Failed" in err and "no data found" in err
    assert main(["submit", "train.py"]) == 1
    assert "needs --experiment" in capsys.readouterr().err


def test_submit_cancel_and_follow(
    ws: Workspace,
    project: Callable[..., Path],
    pids: list[int],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    src = project(**{"train.py": "import time\nprint('working', flush=True)\ntime.sleep(600)\n"})
    monkeypatch.chdir(ws.path)
    assert main(["submit", "-e", "cli", "--source", str(src), "train.py", "--tag", "who=cli"]) == 0
    assert "runs logs" in capsys.readouterr().out
    run = Run.get(ws, _last_run(ws))
    assert run.get_tags() == {"who": "cli"}
    wait_until(lambda: run.get_status() == RunStatus.RUNNING, what="Running")
    assert main(["runs", "cancel", run.id, "--wait"]) == 0
    assert "Canceled" in capsys.readouterr().out
    assert main(["runs", "logs", run.id, "--follow"]) == 0  # ended: prints everything and returns
    assert capsys.readouterr().out == "working\n"
    assert main(["runs", "cancel", run.id]) == 0
    assert "already ended (Canceled)" in capsys.readouterr().out


def test_compute_list(ws: Workspace, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(ws.path)
    assert main(["compute", "list"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:3] == ["NAME", "TYPE", "STATE"]
    assert out.splitlines()[1].startswith("local")
    assert main(["compute", "list", "--json"]) == 0
    (local,) = json.loads(capsys.readouterr().out)
    assert local["name"] == "local" and local["cpus"] >= 1 and local["activeRuns"] == 0
