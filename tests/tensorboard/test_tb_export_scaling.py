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
    list_children = _counted(monkeypatch, ws.store, "list_children")
    infos = _counted(monkeypatch, ws.store, "get_metric_info")
    chunk_reads = _counted(monkeypatch, ws.store, "read_metric_chunks")
    result = export_to_tensorboard(root, logdir)
    assert len(result.run_dirs) == children + 1 and result.sessions == children
    assert scans[0] == 2  # the logdir and the root run's folder, whatever the number of children
    assert get_run[0] <= 2  # the top-level run only (refreshed)
    assert list_runs[0] == 0 and list_children[0] == 2  # the root's children, then theirs (100 runs a call)
    assert get_metrics[0] == 0 and infos[0] == 1 and chunk_reads[0] == 1  # every run's points in one read
    for run_id, folder in result.run_dirs.items():  # the re-export replaced the first one's files
        if run_id != root.id:  # (the root run logged nothing: no event file)
            assert len([p for p in os.listdir(folder) if "tfevents" in p]) == 1


def test_export_of_a_long_run_reads_and_writes_page_by_page(
    ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tbhelpers import accumulator, scalar_values

    run = Experiment(ws, "long").start_logging()
    run.log_array("loss", np.arange(50, dtype=np.float64))
    run.log_array("loss", np.arange(50, 90, dtype=np.float64))
    run.log("note", "text")
    run.log_array("acc", np.arange(30, dtype=np.float64) / 10)
    run.complete()
    small = export_to_tensorboard(run, tmp_path / "whole")
    monkeypatch.setattr(export_module, "_BATCH_POINTS", 20)  # the run counts as long: streamed
    monkeypatch.setattr(export_module, "_PAGE_POINTS", 20)
    pages: list[int] = []
    real = ws.store.read_metric_chunks

    def counted(*args: Any, **kwargs: Any) -> Any:
        page = real(*args, **kwargs)
        pages.append(sum(len(c) for c in page.chunks))
        return page

    monkeypatch.setattr(ws.store, "read_metric_chunks", counted)
    monkeypatch.setattr(ws.store, "get_metrics", None)  # never whole series
    streamed = export_to_tensorboard(run, tmp_path / "paged")
    assert streamed.points == small.points == 121 and len(pages) >= 4 and max(pages) <= 50  # one stored chunk
    for logdir in (tmp_path / "whole", tmp_path / "paged"):
        acc = accumulator(logdir / small.run_dirs[run.id].name)
        assert scalar_values(acc, "loss")[2].tolist() == list(range(90))
        assert scalar_values(acc, "acc")[0] == list(range(30))


def test_export_encodes_a_batch_together_and_writes_runs_with_images_apart(
    ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tbhelpers import accumulator, scalar_values

    from expboard.tfevents._png import encode_png

    root = _sweep(ws, 30)
    png = tmp_path / "img.png"
    png.write_bytes(encode_png(np.zeros((4, 4, 3), dtype=np.uint8)))
    with root.child_run("images") as child:  # a run with images is written apart, as it is read
        child.log_image("img", str(png))
        child.log_array("mse", np.arange(3, dtype=np.float64))
    encodes = _counted(monkeypatch, export_module, "encode_scalar_series")
    result = export_to_tensorboard(root, tmp_path / "tb")
    assert encodes[0] == 1  # one tag ("mse") over the 30 runs without images, in one call
    assert len(result.run_dirs) == 32 and result.sessions == 31
    for child in root.get_children():
        acc = accumulator(result.run_dirs[child.id])
        assert scalar_values(acc, "mse")[0] == list(range(5 if child.display_name != "images" else 3))
        assert ("img" in acc.Tags()["tensors"]) == (child.display_name == "images")


def test_export_error_writing_a_run_is_raised(ws: Workspace, tmp_path: Path) -> None:
    root = _sweep(ws, 5)
    logdir = tmp_path / "tb"
    first = export_to_tensorboard(root, logdir)
    victim = next(d for run_id, d in first.run_dirs.items() if run_id != root.id)
    for p in victim.iterdir():
        p.unlink()
    victim.rmdir()
    victim.write_text("a file where the run's folder goes")
    with pytest.raises(OSError):
        export_to_tensorboard(root, logdir)
    assert victim.read_text() == "a file where the run's folder goes"
