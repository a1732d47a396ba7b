from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from expboard import Experiment, Workspace
from expboard.cli import main


def test_init_then_runs_list_and_show(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    assert main(["init"]) == 0
    assert "Initialized" in capsys.readouterr().out
    ws = Workspace.from_config()
    run = Experiment(ws, "cli").start_logging(display_name="shown")
    run.log("loss", 2.0)
    run.log("loss", 1.0)
    run.tag("team", "x")
    run.complete()
    assert main(["runs", "list"]) == 0
    out = capsys.readouterr().out
    assert run.id in out and "Completed" in out and "shown" in out
    assert main(["runs", "list", "--experiment", "other"]) == 0
    assert "no runs" in capsys.readouterr().out
    assert main(["runs", "show", run.id]) == 0
    out = capsys.readouterr().out
    assert "Status     Completed" in out and "team = x" in out
    assert "loss" in out and "last=1" in out and "min=1 max=2" in out
    assert main(["runs", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["run_id"] == run.id
    ws.close()


def test_errors_are_one_line_with_a_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    assert main(["runs", "list"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("expboard: error:") and "expboard init" in err
    main(["init"])
    capsys.readouterr()
    assert main(["runs", "show", "nope"]) == 1
    assert "no run with id 'nope'" in capsys.readouterr().err


def test_console_script_runs(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "expboard", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("expboard ")
