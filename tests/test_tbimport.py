from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from expboard import Experiment, RunStatus, ValidationError, Workspace
from expboard.cli import main
from expboard.tbimport import import_tensorboard


def test_import_tensorboardx_logs(ws: Workspace, tmp_path: Path) -> None:
    from tensorboardX import SummaryWriter

    logdir = tmp_path / "tb"
    for name, scale in (("a", 1.0), ("nested/b", 2.0)):
        with SummaryWriter(str(logdir / name)) as w:
            for step in range(0, 50, 5):
                w.add_scalar("loss", scale / (step + 1), step, walltime=1_700_000_000 + step)
            w.add_text("note", "hello", 0)
    runs = import_tensorboard(logdir, Experiment(ws, "imported"))
    assert [r.display_name for r in runs] == ["a", "nested/b"]
    for run, scale in zip(runs, (1.0, 2.0), strict=True):
        assert run.get_status() == RunStatus.COMPLETED
        (series,) = run.get_metric_series("loss")
        assert series.steps.tolist() == list(range(0, 50, 5))
        np.testing.assert_allclose(series.values, [np.float32(scale / (s + 1)) for s in range(0, 50, 5)])
        np.testing.assert_allclose(series.wall_times, [1_700_000_000 + s for s in range(0, 50, 5)])
        names = run.get_file_names()
        assert len(names) == 1 and names[0].startswith("logs/events.out.tfevents.")


def test_import_errors(ws: Workspace, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="no such folder"):
        import_tensorboard(tmp_path / "missing", Experiment(ws, "x"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValidationError, match="no TensorBoard event files"):
        import_tensorboard(tmp_path / "empty", Experiment(ws, "x"))


def test_import_cli(ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    from expboard import SummaryWriter

    with SummaryWriter(str(tmp_path / "logs" / "run1")) as w:
        w.add_scalar("acc", 0.5, 1)
    monkeypatch.chdir(ws.path)
    assert main(["import-tensorboard", str(tmp_path / "logs"), "-e", "from-cli"]) == 0
    out = capsys.readouterr().out
    assert "Imported 1 run into experiment 'from-cli'" in out and "1 scalar points" in out
