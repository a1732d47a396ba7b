"""Shared fixtures: real workspaces on real SQLite files in tmp_path."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from expboard import Workspace

_CLEAN_ENV = (
    "EXPBOARD_TRACKING_URI",
    "EXPBOARD_ARTIFACT_ROOT",
    "EXPBOARD_TOKEN",
    "EXPBOARD_WORKSPACE",
    "EXPBOARD_RUN_ID",
)


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's own workspace settings."""
    for name in _CLEAN_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[Workspace]:
    """A fresh embedded workspace (SQLite + folder) in tmp_path."""
    workspace = Workspace.init(tmp_path / "project")
    yield workspace
    workspace.close()


def _run_python(
    code: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter (the real thing: separate process, real exit)."""
    full_env = {k: v for k, v in os.environ.items() if k not in _CLEAN_ENV}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def run_python():  # type: ignore[no-untyped-def]
    """``run_python(code, cwd, env=None)``: run code in a fresh interpreter and return the CompletedProcess."""
    return _run_python
