"""``expboard demo --no-wait``: both TensorBoard workflows (exported history, live script logs) in one
TensorBoard, everything stopped after."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from expboard import Experiment, RunStatus, Workspace
from polling import alive

ROOT = Path(__file__).resolve().parents[1]


def test_demo_train_script_is_the_example() -> None:
    from expboard.demo import TRAIN_SCRIPT

    example = ROOT / "examples" / "sample_projects" / "tensorboard-demo" / "train.py"
    assert example.read_text() == TRAIN_SCRIPT


def test_demo_no_wait(tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    workdir = tmp_path / "demo"
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "expboard", "demo", "--no-wait", "--port", "0", "--workdir", str(workdir)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
    )
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert elapsed < 60, f"the demo took {elapsed:.0f} s"
    match = re.search(r"TensorBoard at (http://127\.0\.0\.1:\d+/)", out)
    assert match, out
    url = match.group(1)
    assert "epoch  20" in out and "Status: Completed" in out and "TensorBoard stopped." in out
    # one TensorBoard served both workflows: the live mirror of the script run and the export
    served = re.findall(r"^  (\S+): (.*)$", out, flags=re.M)
    tags = dict(served)
    assert any(name.endswith("/train") and "loss" in t for name, t in tags.items()), out
    assert any(name.endswith("/test") and "accuracy" in t for name, t in tags.items()), out
    assert sum("export-to-tensorboard/" in name and "alpha" in t for name, t in tags.items()) == 11, out

    ws = Workspace(workdir)
    (script_run,) = Experiment.get(ws, "tensorboard-demo").get_runs()
    assert script_run.get_status() == RunStatus.COMPLETED
    files = script_run.get_file_names()
    assert any(f.startswith("logs/train/events.out.tfevents.") for f in files)
    assert "outputs/model.pkl" in files
    (root_run,) = Experiment.get(ws, "export-to-tensorboard").get_runs()
    children = root_run.get_children()
    assert sorted(c.get_metrics()["alpha"] for c in children) == pytest.approx([i / 10 for i in range(11)])
    assert list((workdir / "tensorboard" / "export-to-tensorboard").rglob("events.out.tfevents.*"))
    # everything the demo started is gone: TensorBoard, the agent, the script
    with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
        urllib.request.urlopen(url, timeout=2)
    props = script_run.get_properties()
    for key in ("expboard.agent_pid", "expboard.script_pid"):
        pid = int(props[key])
        deadline = time.monotonic() + 10
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(pid), f"{key} {pid} still running"
    ws.close()
