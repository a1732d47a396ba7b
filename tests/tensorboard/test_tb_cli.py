"""``expboard export`` and ``expboard tensorboard``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tbhelpers import ALPHAS, get_json, make_sweep, wait_for

from expboard import Workspace
from expboard.cli import main


def test_export_run_and_experiment(ws: Workspace, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    root_run = make_sweep(ws)
    monkeypatch.chdir(ws.path)
    assert main(["export", root_run.id, "--logdir", str(tmp_path / "one"), "--hparams", "alpha"]) == 0
    out = capsys.readouterr().out
    assert f"Exported {1 + len(ALPHAS)} runs" in out and f"{len(ALPHAS)} HParams sessions" in out
    assert list((tmp_path / "one").glob("*.expboard-hparams"))
    assert main(["export", "--experiment", "export-to-tensorboard", "--logdir", str(tmp_path / "all")]) == 0
    assert len([p for p in (tmp_path / "all").rglob("*") if "tfevents" in p.name]) == 1 + len(ALPHAS)
    assert main(["export", "--logdir", str(tmp_path / "x")]) == 1
    assert "RUN_ID or --experiment" in capsys.readouterr().err
    assert main(["export", "--experiment", "nope", "--logdir", str(tmp_path / "x")]) == 1


def test_tensorboard_command_serves_until_interrupted(ws: Workspace, tmp_path: Path) -> None:
    root_run = make_sweep(ws)
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXPBOARD_")}
    env["PYTHONFAULTHANDLER"] = "1"  # SIGABRT makes it print every thread's stack: what a stop that hangs waits on
    cmd = [
        sys.executable,
        "-m",
        "expboard",
        "tensorboard",
        root_run.id,
        "--port",
        "0",
        "--logdir",
        str(tmp_path / "tb"),
    ]
    proc = subprocess.Popen(
        cmd,
        cwd=ws.path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Ctrl-C as in a terminal: a suite started in the background by a shell without job control inherits
        # SIGINT ignored, and Python then never raises KeyboardInterrupt
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("TensorBoard at http://127.0.0.1:"), line
        url = line.split()[2]
        runs = wait_for(lambda: len(get_json(f"{url}data/runs")) == len(ALPHAS) and get_json(f"{url}data/runs"))
        assert all(r.endswith("/run_history") for r in runs)
        proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)
            _, stacks = proc.communicate(timeout=30)
            raise AssertionError(f"not stopped 30 s after Ctrl-C; its threads then:\n{stacks}") from None
        assert proc.returncode == 0, err
        assert "Stopping TensorBoard" in out
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    time.sleep(0.2)
    with pytest.raises(OSError):
        get_json(f"{url}data/runs", timeout=2)


def test_tensorboard_command_killed_takes_tensorboard_and_its_temporary_folder_with_it(
    ws: Workspace, tmp_path: Path
) -> None:
    root_run = make_sweep(ws)
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXPBOARD_")}
    env["TMPDIR"] = str(tmp_path / "tmp")  # where the temporary mirror folder goes
    (tmp_path / "tmp").mkdir()
    cmd = [sys.executable, "-m", "expboard", "tensorboard", root_run.id, "--port", "0", "--mode", "files"]
    proc = subprocess.Popen(cmd, cwd=ws.path, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("TensorBoard at http://127.0.0.1:"), line
        url = line.split()[2]
        wait_for(lambda: len(get_json(f"{url}data/runs")) == len(ALPHAS))
        assert len(_mirrors(tmp_path / "tmp")) == 1
        proc.kill()  # no chance to stop anything itself
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()

    def gone() -> bool:
        try:
            get_json(f"{url}data/runs", timeout=2)
        except OSError:
            return True
        return False

    wait_for(gone, timeout=15)
    wait_for(lambda: not _mirrors(tmp_path / "tmp"), timeout=15)


def _mirrors(folder: Path) -> list[Path]:
    return list(folder.glob("expboard-tensorboard-*"))  # (TensorBoard keeps its .tensorboard-info there too)
