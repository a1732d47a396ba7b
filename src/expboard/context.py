"""Where ``Run.get_context()`` finds its run: the submitted run named by ``EXPBOARD_RUN_ID``, or else one
offline run per process, kept in a temporary history that is removed at exit."""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from . import settings, state
from .experiment import Experiment
from .workspace import Workspace

__all__ = ["ENV_RUN_ID", "offline_run", "submitted_run_id"]

ENV_RUN_ID = settings.env("run_id")

R = TypeVar("R")

_offline: Any = None
_offline_lock = threading.Lock()


def submitted_run_id() -> str | None:
    """The id of the submitted run this process belongs to (set by the run agent), if any."""
    run_id: str | None = settings.get("run_id")
    return run_id


def offline_run(start: Callable[[Experiment], R]) -> R:
    """This process's offline run, made by ``start(experiment)`` on first use in a temporary workspace (an
    experiment named ``offline``) that lives as long as the process."""
    global _offline
    with _offline_lock:
        if _offline is None:
            folder = Path(tempfile.mkdtemp(prefix="expboard-offline-"))
            ws = Workspace(tracking_uri=f"sqlite:///{folder / 'offline.db'}", artifact_root=folder / "artifacts")
            _offline = start(Experiment(ws, "offline"))

            def _remove() -> None:  # what an offline run logged lives as long as its process
                ws.close()
                shutil.rmtree(folder, ignore_errors=True)

            state.on_exit(_remove)
        run: R = _offline
        return run
