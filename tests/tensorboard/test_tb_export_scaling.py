"""Export costs the same per run however many siblings it has: folders are listed once, records read once."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from expboard import Experiment, Workspace
from expboard.tensorboard import export as export_module
from expboard.tensorboard.export import export_to_tensorboard


def _sweep(ws: Workspace, children: int) -> Any:
    root = Experiment(ws, "wide").start_logging()
    for i in range(children):
        with root.child_run(f"alpha{i}") as child:
            child.log_array("mse", np.arange(5, dtype=np.float64))
    root.complete()
    return root


def _counted(monkeypatch: pytest.MonkeyPatch, obj: Any, name: str) -> list[int]:
    calls = [0]
    real = getattr(obj, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(obj, name, wrapper)
    return calls


@pytest.mark.parametrize("children", [10, 40])
def test_export_lists_each_folder_once_and_reads_each_run_once(
    ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, children: int
) -> None:
    root = _sweep(ws, children)
    logdir = tmp_path / "tb"
    export_to_tensorboard(root, logdir)  # a first export, so the re-export finds every folder present
    scans = _counted(monkeypatch, export_module.os, "scandir")
    get_run = _counted(monkeypatch, ws.store, "get_run")
    get_metrics = _counted(monkeypatch, ws.store, "get_metrics")
    list_runs = _counted(monkeypatch, ws.store, "list_runs")
    result = export_to_tensorboard(root, logdir)
    assert len(result.run_dirs) == children + 1 and result.sessions == children
    assert scans[0] == 2  # the logdir and the root run's folder, whatever the number of children
    assert get_run[0] <= 2  # the top-level run only (refreshed)
    assert get_metrics[0] == children + 1 and list_runs[0] == children + 1
    for run_id, folder in result.run_dirs.items():  # the re-export replaced the first one's files
        if run_id != root.id:  # (the root run logged nothing: no event file)
            assert len([p for p in os.listdir(folder) if "tfevents" in p]) == 1
