"""Helpers for the compute tests (imported by name: this folder is on sys.path under pytest)."""

from __future__ import annotations

import time
from collections.abc import Callable

from expboard import Run
from polling import alive  # noqa: F401  (the compute tests import it from here)


def wait_until(condition: Callable[[], object], timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def read(run: Run, name: str) -> bytes:
    return run.workspace.store.read_file(run.id, name)
