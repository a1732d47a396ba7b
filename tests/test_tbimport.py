from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from expboard import Experiment, RunStatus, ValidationError, Workspace
from expboard.cli import main
from expboard.errors import CorruptEventFileError
from expboard.tbimport import import_tensorboard
from expboard.tfevents import EventFileWriter, read_scalars


def test_import_tensorboardx_logs(ws: Workspace, tmp_path: Path) -> None:
    from tensorboardX import SummaryWriter  # type: ignore[import-untyped]

    logdir = tmp_path / "tb"
    for name, scale in (("a", 1.0), ("nested/b", 2.0)):
        with SummaryWriter(str(logdir / name)) as w:
            for step in range(0, 50, 5):
                w.add_scalar("loss", scale / (step + 1), step, walltime=1_700_000_000 + step)
            w.add_text("note", "hello", 0)
    result = import_tensorboard(logdir, Experiment(ws, "imported"))
    runs = result.runs
    assert result.damaged == []
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


def test_import_cli(
    ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from expboard import SummaryWriter

    with SummaryWriter(str(tmp_path / "logs" / "run1")) as w:
        w.add_scalar("acc", 0.5, 1)
    assert ws.path is not None
    monkeypatch.chdir(ws.path)
    assert main(["import-tensorboard", str(tmp_path / "logs"), "-e", "from-cli"]) == 0
    out = capsys.readouterr().out
    assert "Imported 1 run into experiment 'from-cli'" in out and "1 scalar points" in out


def damaged_logdir(tmp_path: Path) -> tuple[Path, Path, int]:
    """good/ (one intact file) and bad/ (a file damaged after 30 points, then an intact later file)."""
    logdir = tmp_path / "tb"
    with EventFileWriter(logdir / "good", flush_secs=0) as w:
        w.add_scalars_array("loss", np.arange(10), np.arange(10.0))
    with EventFileWriter(logdir / "bad", flush_secs=0, filename_suffix=".1") as w:
        w.add_scalars_array("loss", np.arange(60), np.arange(60.0))
        first = w.path
    with EventFileWriter(logdir / "bad", flush_secs=0, filename_suffix=".2") as w:
        w.add_scalars_array("loss", np.arange(60, 70), np.arange(60.0, 70.0))
    data = bytearray(first.read_bytes())
    pos, offsets = 0, []
    while pos < len(data):
        offsets.append(pos)
        pos += int.from_bytes(data[pos : pos + 8], "little") + 16
    data[offsets[31] + 14] ^= 0xFF  # a payload byte of the record after the first 30 points
    first.write_bytes(bytes(data))
    return logdir, first, offsets[31]


def test_import_damaged_file_imports_everything_readable(ws: Workspace, tmp_path: Path) -> None:
    logdir, damaged, offset = damaged_logdir(tmp_path)
    result = import_tensorboard(logdir, Experiment(ws, "imported"))
    assert [r.display_name for r in result.runs] == ["bad", "good"]
    (err,) = result.damaged
    assert isinstance(err, CorruptEventFileError) and err.path == str(damaged) and err.offset == offset
    assert "CRC" in err.reason
    bad, good = result.runs
    assert bad.get_status() == good.get_status() == RunStatus.COMPLETED
    assert bad.get_metric_series("loss")[0].steps.tolist() == [*range(30), *range(60, 70)]
    assert good.get_metric_series("loss")[0].steps.tolist() == list(range(10))
    assert bad.get_tags()["import_skipped"] == f"{damaged.name} from byte {offset}"
    stored = bad.download_file(f"logs/{damaged.name}", tmp_path / "stored.tfevents")
    assert stored.read_bytes() == damaged.read_bytes()[:offset]  # cut before the damage
    assert len(read_scalars(stored)["loss"].steps) == 30


def test_import_cli_damaged_file(
    ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    logdir, damaged, offset = damaged_logdir(tmp_path)
    assert ws.path is not None
    monkeypatch.chdir(ws.path)
    assert main(["import-tensorboard", str(logdir), "-e", "from-cli"]) == 1
    captured = capsys.readouterr()
    assert "Imported 2 runs into experiment 'from-cli'" in captured.out
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err
    assert str(damaged) in lines[0] and f"byte offset {offset}" in lines[0] and "payload CRC mismatch" in lines[0]
