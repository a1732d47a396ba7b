"""Fixtures for script runs: short agent timings, a source folder helper, and a check that every process a
test started (agents, scripts, their children) is gone when it ends."""

from __future__ import annotations

import os
import signal
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # the test modules import compute_helpers

from compute_helpers import alive
from ray_helpers import ray_cluster  # noqa: F401  (the session's Ray cluster, for test_ray_*.py)

from expboard import Run, Workspace


@pytest.fixture(autouse=True)
def _fast_agent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXPBOARD_HEARTBEAT_S", "0.3")
    monkeypatch.setenv("EXPBOARD_HEARTBEAT_TIMEOUT_S", "4")
    monkeypatch.setenv("EXPBOARD_LOG_SYNC_S", "0.2")
    monkeypatch.setenv("EXPBOARD_CANCEL_GRACE_S", "1.5")


@pytest.fixture
def project(tmp_path: Path) -> Callable[..., Path]:
    """``project(train="...python...", **other_files)`` writes a source folder and returns it."""

    def make(name: str = "src", **files: str) -> Path:
        root = tmp_path / name
        root.mkdir(exist_ok=True)
        for fn, text in files.items():
            path = root / fn.replace("__", "/")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(text))
        return root

    return make


@pytest.fixture
def pids(ws: Workspace) -> Iterator[list[int]]:
    """Pids the test knows about; at the end, the agent and script pids of every run are added, and all
    of them must be gone (they are killed if not, and the test fails)."""
    known: list[int] = []
    yield known
    for run in Run.list(ws, include_children=True):
        props = run.get_properties()
        for key in ("expboard.agent_pid", "expboard.script_pid"):
            if key in props:
                known.append(int(props[key]))
    deadline = time.monotonic() + 10
    while any(alive(p) for p in known) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = [p for p in known if alive(p)]
    for p in left:
        try:
            os.kill(p, signal.SIGKILL)
        except OSError:
            pass
    assert not left, f"processes left running: {left}"
