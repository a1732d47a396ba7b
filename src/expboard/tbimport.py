"""Import existing TensorBoard logs into run history: ``expboard import-tensorboard LOGDIR``.

Every folder under LOGDIR that directly holds event files (a TensorBoard "run") becomes one expboard run:
its scalar series are logged with their original steps and wall times, and its event files are stored as
run files under ``logs/`` so ``Tensorboard([run])`` shows everything they hold (images, histograms, text).

A damaged event file (a CRC mismatch, or a record that is not a valid Event) does not stop the import:
the records before its first damaged one are imported (and stored as the run file, cut there, so
TensorBoard never meets the damage), the rest of that file is skipped, and every other file is imported
whole. :attr:`ImportResult.damaged` names each damaged file with the offset and the reason.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path

from .errors import CorruptEventFileError, ValidationError
from .experiment import Experiment
from .run import Run
from .tfevents import event_files, read_scalars

__all__ = ["ImportResult", "find_event_runs", "import_tensorboard"]


@dataclass(frozen=True)
class ImportResult:
    """What :func:`import_tensorboard` did: the runs created (in folder order), and one error per damaged
    event file (``path``, ``offset`` of its first damaged record, ``reason``) whose rest was skipped."""

    runs: list[Run] = field(default_factory=list)
    damaged: list[CorruptEventFileError] = field(default_factory=list)


def find_event_runs(logdir: str | os.PathLike[str]) -> list[Path]:
    """Folders under ``logdir`` (itself included) that directly contain event files, sorted."""
    root = Path(logdir)
    if not root.is_dir():
        raise ValidationError(f"no such folder: {root}")
    return sorted(Path(d) for d, _dirs, _files in os.walk(root) if event_files(d))


def import_tensorboard(logdir: str | os.PathLike[str], experiment: Experiment) -> ImportResult:
    """One Completed run per TensorBoard run folder under ``logdir``; everything readable is imported.

    A run whose folder held a damaged file gets the tag ``import_skipped`` saying what was left out."""
    root = Path(logdir).resolve()
    folders = find_event_runs(root)
    if not folders:
        raise ValidationError(f"no TensorBoard event files under {root} (names containing 'tfevents')")
    result = ImportResult()
    for folder in folders:
        rel = folder.relative_to(root).as_posix()
        run = experiment.start_logging(
            display_name=rel if rel != "." else root.name, properties={"imported_from": str(folder)}
        )
        damaged: list[CorruptEventFileError] = []
        try:
            for tag, series in read_scalars(folder, damaged=damaged).items():
                if len(series.steps):
                    run.log_array(tag, series.values, steps=series.steps, wall_times=series.wall_times)
            cut = {err.path: err.offset for err in damaged}
            for path in event_files(folder):
                if str(path) in cut:  # only the intact records before the damage
                    with open(path, "rb") as f:
                        prefix = f.read(cut[str(path)])
                    run.upload_file(f"logs/{path.name}", io.BytesIO(prefix))
                else:
                    run.upload_file(f"logs/{path.name}", path)
            if damaged:
                run.set_tags(
                    {"import_skipped": "; ".join(f"{Path(e.path).name} from byte {e.offset}" for e in damaged)}
                )
        except BaseException as exc:
            run.fail(exc)
            raise
        run.complete()
        result.runs.append(run)
        result.damaged.extend(damaged)
    return result
