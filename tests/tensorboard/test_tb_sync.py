"""The live sync without TensorBoard: FolderDownload and MetricSync, read back with TensorBoard's Python loader."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tbhelpers import accumulator, event_records, scalar_values

import expboard.tensorboard as tb_package
from expboard import Experiment, Workspace
from expboard.tensorboard.export import export_to_tensorboard
from expboard.tensorboard.sync import MetricSync
from expboard.transfer import FolderDownload


def test_public_names() -> None:
    assert sorted(tb_package.__all__) == [
        "ExportResult",
        "PortInUseError",
        "Tensorboard",
        "TensorboardError",
        "export_to_tensorboard",
    ]


def test_file_mirror_appends_and_recopies_replaced_files(ws: Workspace, tmp_path: Path) -> None:
    run = Experiment(ws, "mirror").start_logging()
    name = "logs/train/events.out.tfevents.1.host.run.0"
    first = event_records("loss", [(0, 1.0)], header=True)
    ws.store.append_file(run.id, name, first, 0)
    ws.store.write_file(run.id, "logs/notes.txt", b"hello")
    mirror = FolderDownload(ws.store, run.id, tmp_path)
    assert mirror.poll() == len(first) + 5
    local = tmp_path / "train" / "events.out.tfevents.1.host.run.0"
    assert local.read_bytes() == first and (tmp_path / "notes.txt").read_bytes() == b"hello"
    assert mirror.poll() == 0  # nothing new: nothing read
    more = event_records("loss", [(1, 0.5)])
    ws.store.append_file(run.id, name, more, len(first))
    assert mirror.poll() == len(more)  # only the appended bytes
    assert local.read_bytes() == first + more
    # replaced by a longer file with other first bytes: copied again under a new name
    replacement = event_records("loss", [(0, 9.0), (1, 8.0), (2, 7.0)], wall=1_800_000_000.0, header=True)
    ws.store.write_file(run.id, name, replacement)
    mirror.poll()
    assert not local.exists()
    renamed = local.with_name(local.name + ".r1")
    assert renamed.read_bytes() == replacement and mirror.recopies == 1
    assert scalar_values(accumulator(tmp_path / "train"), "loss")[2].tolist() == [9.0, 8.0, 7.0]
    # truncated: copied again
    ws.store.write_file(run.id, name, first)
    mirror.poll()
    assert local.with_name(local.name + ".r2").read_bytes() == first and not renamed.exists()
    run.complete()


def test_metric_sync_is_incremental_and_complete(
    ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = Experiment(ws, "metrics").start_logging()
    dest = tmp_path / "run_history"
    read: list[int] = []  # points of each chunk read by the polls
    chunks_of = ws.store.read_metric_chunks

    def counted(*args: Any, **kwargs: Any) -> Any:
        page = chunks_of(*args, **kwargs)
        read.extend(len(c) for c in page.chunks)
        return page

    def whole_series(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a poll read whole series")

    monkeypatch.setattr(ws.store, "read_metric_chunks", counted)
    monkeypatch.setattr(ws.store, "get_metrics", whole_series)
    sync = MetricSync(ws.store, run.id, dest, page_points=5)
    assert sync.poll() == 0 and not dest.exists()  # no metrics: no event file
    run.log("alpha", 0.5)
    for step in range(30):
        run.log("loss", 1.0 / (step + 1), step=step)
        if step == 20:
            run.log("alpha", 0.7)  # a quiet series gets a point below the others' steps
            run.log("loss", 9.0, step=3)  # and one below its own last step
        if step % 3 == 0:
            run.log_row("row", a=step, b="x")
        run.flush()
        sync.poll()
        if step == 20:  # written live, not only after the run ends
            assert scalar_values(accumulator(dest), "loss")[2][-1] == 9.0
    run.log_array("long", np.arange(12.0))  # one chunk longer than a page: read on its own
    run.complete()
    sync.poll(final=True)
    sync.close()
    monkeypatch.undo()
    acc = accumulator(dest)
    stored = {s.name: s for s in run.get_metric_series()}
    steps, walls, values = scalar_values(acc, "loss")
    assert steps == stored["loss"].steps.tolist() and walls == stored["loss"].wall_times.tolist()
    assert values[:21] == pytest.approx([1.0 / (s + 1) for s in range(21)]) and values[21] == 9.0
    assert scalar_values(acc, "alpha")[2].tolist() == pytest.approx([0.5, 0.7])
    assert scalar_values(acc, "row/a")[0] == list(range(10))
    assert scalar_values(acc, "long")[2].tolist() == list(range(12))
    total = sum(len(s) for s in stored.values())
    assert sync.points == total and sum(read) == total  # every point read exactly once over all polls


def test_export_progress_bar(ws: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = Experiment(ws, "progress").start_logging()
    run.log_list("values", list(range(100)))
    run.complete()
    export_to_tensorboard(run, tmp_path, progress=True)
    assert "export_to_tensorboard" in capsys.readouterr().err
