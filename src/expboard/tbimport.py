"""Import existing TensorBoard logs into run history: ``expboard import-tensorboard LOGDIR``.

Every folder under LOGDIR that directly holds event files (a TensorBoard "run") becomes one expboard run:
its scalar series are logged with their original steps and wall times, and its event files are stored as
run files under ``logs/`` so ``Tensorboard([run])`` shows everything they hold (images, histograms, text).
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import ValidationError
from .experiment import Experiment
from .run import Run
from .tfevents import event_files, read_scalars

__all__ = ["find_event_runs", "import_tensorboard"]


def find_event_runs(logdir: str | os.PathLike[str]) -> list[Path]:
    """Folders under ``logdir`` (itself included) that directly contain event files, sorted."""
    root = Path(logdir)
    if not root.is_dir():
        raise ValidationError(f"no such folder: {root}")
    return sorted(Path(d) for d, _dirs, _files in os.walk(root) if event_files(d))


def import_tensorboard(logdir: str | os.PathLike[str], experiment: Experiment) -> list[Run]:
    """One Completed run per TensorBoard run folder under ``logdir``; returns the runs, in folder order."""
    root = Path(logdir).resolve()
    folders = find_event_runs(root)
    if not folders:
        raise ValidationError(f"no TensorBoard event files under {root} (names containing 'tfevents')")
    runs = []
    for folder in folders:
        rel = folder.relative_to(root).as_posix()
        run = experiment.start_logging(
            display_name=rel if rel != "." else root.name, properties={"imported_from": str(folder)}
        )
        try:
            for tag, series in read_scalars(folder).items():
                if len(series.steps):
                    run.log_array(tag, series.values, steps=series.steps, wall_times=series.wall_times)
            for path in event_files(folder):
                run.upload_file(f"logs/{path.name}", path)
        except BaseException as exc:
            run.fail(exc)
            raise
        run.complete()
        runs.append(run)
    return runs
