"""Export run history (metrics logged with ``run.log`` & co.) as TensorBoard event files.

>>> from expboard.tensorboard.export import export_to_tensorboard
>>> export_to_tensorboard(root_run, "exportedTBlogs", hparams=["alpha"])   # doctest: +SKIP
>>> Tensorboard([], local_root="exportedTBlogs").start()                    # doctest: +SKIP

Layout of ``logdir``::

    logdir/
      events.out.tfevents.*.expboard-hparams      the HParams experiment (only when there are sessions)
      <name>_<id8>/events.out.tfevents.*          one folder per run: display name + 8 hex digits of its id
      <name>_<id8>/<child name>_<id8>/...         child runs nested in their parent's folder

Every metric kind is mapped as described in :mod:`expboard.tensorboard._convert`. Steps and wall times are
the stored ones (points of one tag are written in step order, which TensorBoard's Rust loader needs).

**HParams.** Child runs become HParams sessions (each in its own folder, never the logdir root); when no
exported run has children but several top-level runs are exported, those runs are the sessions. A session's
hyperparameters are its tags (but MLflow's ``mlflow.*`` system tags) and properties (MLflow's params) plus
single-valued metrics (logged exactly once, a number, bool or string) chosen by ``hparams``:

- ``hparams=["alpha", ...]``: exactly these metrics;
- ``hparams=None`` (default): the single-valued metrics whose name and value appear together in the run's
  display name, e.g. ``alpha`` = 0.1 in a child run named ``alpha0.1`` or ``alpha=0.1`` (as in Azure ML's how-to);
- ``hparams=[]``: none (tags and properties only).

The session's metrics are all its other numeric scalar series (the dashboard shows their last value).

**Re-exporting** into the same ``logdir`` first deletes the event files a previous export wrote for the same
runs (also in a folder whose display-name part has changed since), so nothing is duplicated.
"""

from __future__ import annotations

import errno
import functools
import os
import re
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ValidationError
from ..experiment import Experiment
from ..records import MetricKind, MetricSeries, RunRecord, RunStatus
from ..run import Run
from ..stores import Store
from ..tfevents import (
    EventFileWriter,
    HParam,
    MetricSpec,
    SessionStatus,
    hparams_experiment,
    hparams_session_end,
    hparams_session_start,
)
from ._convert import SeriesConverter

__all__ = ["MAX_FOLDER_PATH", "ExportResult", "export_to_tensorboard", "run_folder", "run_folder_name", "runs_of"]

HPARAMS_SUFFIX = ".expboard-hparams"
MAX_FOLDER_PATH = 1000  # characters of a run folder's path below the logdir (Linux allows 4096 in all)
_NAME_CHARS = 60  # of a display name in a folder name
_MIN_NAME_CHARS = 8  # fewer left to a display name: the folder goes up to the top-level run's folder
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_PROGRESS_MIN_POINTS = 200_000


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_to_tensorboard` wrote."""

    logdir: Path
    run_dirs: dict[str, Path] = field(default_factory=dict)  # run id -> its folder
    sessions: int = 0  # HParams sessions written
    points: int = 0  # metric points written


def short_id(run_id: str) -> str:
    """The last 8 characters of a run id (its random part) made filesystem-safe."""
    return _UNSAFE.sub("_", run_id[-8:])


def run_folder_name(record: RunRecord, max_chars: int = _NAME_CHARS + 9) -> str:
    """``<display name>_<id8>``: readable, filesystem-safe and stable for a run (``run_<id8>`` if unnamed).

    The display-name part is at most 60 characters, fewer when ``max_chars`` says so; the id part is always
    kept whole (it is what tells runs apart, and what re-exports find a run's old folder by)."""
    suffix = "_" + short_id(record.run_id)
    name = _UNSAFE.sub("_", record.display_name).strip("._")[:_NAME_CHARS] or "run"
    return f"{name[: max(1, max_chars - len(suffix))]}{suffix}"


def run_folder(root: Path, parent: Path, record: RunRecord) -> Path:
    """The folder of ``record``'s run, whose parent run's folder is ``parent`` (``root`` for a top-level run).

    Nested in ``parent`` while the path below ``root`` stays within ``MAX_FOLDER_PATH`` characters, the
    display-name part shortened to fit; deeper than that, directly in the folder of the top-level run above
    it (its own children nest in it again). Depends on nothing but the three arguments, so every export of
    the same runs into the same logdir picks the same folders."""
    if parent == root:
        return root / run_folder_name(record)
    rel = parent.relative_to(root)
    room = MAX_FOLDER_PATH - len(rel.as_posix()) - 1
    if room >= _MIN_NAME_CHARS + 1 + len(short_id(record.run_id)):
        return parent / run_folder_name(record, room)
    return root / rel.parts[0] / run_folder_name(record)


def runs_of(run_data: Any, caller: str = "export_to_tensorboard") -> list[Run]:
    """The runs meant by ``run_data``: a Run, a list of runs or an Experiment (its runs)."""
    if isinstance(run_data, Run):
        return [run_data]
    if isinstance(run_data, Experiment):
        return list(run_data.get_runs())
    if isinstance(run_data, Iterable) and not isinstance(run_data, (str, bytes)):
        runs = list(run_data)
        if all(isinstance(r, Run) for r in runs):
            return runs
    raise ValidationError(
        f"{caller} takes a Run, a list of runs or an Experiment, got {type(run_data).__name__}; e.g. {caller}([run])"
    )


def _read_file(store: Store, run_id: str, name: str) -> bytes:
    return store.read_file(run_id, name)


def _is_event_file(name: str) -> bool:
    return "tfevents" in name


def _remove_event_files(folder: Path, recursive: bool) -> None:
    if not folder.is_dir():
        return
    entries = folder.rglob("*") if recursive else folder.iterdir()
    for p in list(entries):
        if p.is_file() and _is_event_file(p.name):
            p.unlink()
    if recursive:  # drop folders left empty, deepest first
        for p in sorted((q for q in folder.rglob("*") if q.is_dir()), key=lambda q: -len(q.parts)):
            try:
                p.rmdir()
            except OSError:
                pass
        try:
            folder.rmdir()
        except OSError:
            pass


def _prepare_folder(root: Path, parent: Path, record: RunRecord) -> Path:
    """The run's folder, emptied of a previous export's event files: also in a folder of an older display
    name, or where an older layout put it (nested, or up in the top-level run's folder)."""
    folder = run_folder(root, parent, record)
    suffix = "_" + short_id(record.run_id)
    places = {parent, folder.parent}
    if parent != root:
        places.add(root / parent.relative_to(root).parts[0])
    for place in places:
        if place.is_dir():
            for old in place.iterdir():
                if old.is_dir() and old.name.endswith(suffix) and old != folder:
                    _remove_event_files(old, recursive=True)
    _remove_event_files(folder, recursive=False)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a logdir so deep that even a bounded path is too long here: flat in the logdir
        if exc.errno != errno.ENAMETOOLONG or folder.parent == root:
            raise
        folder = root / run_folder_name(record)
        _remove_event_files(folder, recursive=False)
        folder.mkdir(parents=True, exist_ok=True)
    return folder


# --------------------------------------------------------------------------------------------- hparams
def _single_value(s: MetricSeries) -> Any:
    """The value of a metric logged exactly once as a number, bool or string, else None."""
    if s.kind is not MetricKind.SCALAR or len(s) != 1:
        return None
    v = s.values[0]
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, (bool, int, float, str)):
        return v
    return None


def _named_in(display_name: str, name: str, value: Any) -> bool:
    """Whether ``display_name`` contains ``name`` followed by ``value`` (``alpha0.1``, ``alpha=0.1``, ...)."""
    texts = {str(value)}
    if isinstance(value, float) and value.is_integer():
        texts.add(str(int(value)))
    return any(re.search(re.escape(name) + r"[=_:\-]?" + re.escape(t) + r"(?![0-9])", display_name) for t in texts)


def _session_status(status: RunStatus) -> SessionStatus:
    if status is RunStatus.COMPLETED:
        return SessionStatus.SUCCESS
    if status in (RunStatus.FAILED, RunStatus.CANCELED, RunStatus.NOT_RESPONDING):
        return SessionStatus.FAILURE
    if status in (RunStatus.RUNNING, RunStatus.STARTING, RunStatus.FINALIZING, RunStatus.QUEUED):
        return SessionStatus.RUNNING
    return SessionStatus.UNKNOWN


def _hparam_infos(sessions: Sequence[dict[str, Any]]) -> list[HParam]:
    names = sorted({k for s in sessions for k in s})
    infos = []
    for name in names:
        values = [s[name] for s in sessions if name in s]
        distinct = sorted(set(values), key=lambda v: (str(type(v)), v))
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in distinct)
        if numeric and len(distinct) > 20:
            infos.append(HParam(name, interval=(float(min(distinct)), float(max(distinct)))))
        else:
            infos.append(HParam(name, values=distinct))
    return infos


def _normalize_types(sessions: list[dict[str, Any]]) -> None:
    """An hparam must have one type across sessions: mixed types become strings."""
    names = {k for s in sessions for k in s}
    for name in names:
        kinds = {
            "num" if isinstance(v, (int, float)) and not isinstance(v, bool) else type(v).__name__
            for s in sessions
            if name in s
            for v in [s[name]]
        }
        if len(kinds) > 1:
            for s in sessions:
                if name in s:
                    s[name] = str(s[name])


# --------------------------------------------------------------------------------------------- export
@dataclass
class _Planned:
    run: Run
    record: RunRecord
    folder: Path
    series: list[MetricSeries]
    session: bool


def export_to_tensorboard(
    run_data: Run | Sequence[Run] | Experiment,
    logdir: str | os.PathLike[str],
    recursive: bool = True,
    hparams: Sequence[str] | None = None,
    *,
    progress: bool | None = None,
) -> ExportResult:
    """Write the metrics of a run, a list of runs or an experiment (its top-level runs) into ``logdir``.

    ``recursive``: also export child runs (nested folders; they become HParams sessions). ``hparams``: the
    single-valued metrics that are hyperparameters (see the module docs for the default). ``progress``: a
    tqdm bar (default: on for a terminal and more than 200,000 points). Returns what was written.

    >>> export_to_tensorboard(root_run, "exportedTBlogs", hparams=["alpha"])   # doctest: +SKIP
    ExportResult(logdir=PosixPath('exportedTBlogs'), ...)
    """
    if isinstance(hparams, str):
        hparams = [h for h in hparams.split(",") if h]
    root = Path(logdir)
    root.mkdir(parents=True, exist_ok=True)
    top = runs_of(run_data)

    # plan: folders, series and sessions for every run (metrics are read once, here)
    planned: list[_Planned] = []
    todo: list[tuple[Run, Path, int]] = [(r, root, 0) for r in top]
    has_children = False
    while todo:
        run, parent_dir, depth = todo.pop(0)
        record = run.refresh()
        folder = _prepare_folder(root, parent_dir, record)
        planned.append(_Planned(run, record, folder, run.get_metric_series(), session=depth > 0))
        if recursive:
            children = sorted(run.get_children(), key=lambda r: (r.record.created, r.id))
            has_children = has_children or bool(children)
            todo.extend((c, folder, depth + 1) for c in children)
    if not has_children and len(top) > 1:
        for p in planned:
            p.session = True

    session_hparams: dict[str, dict[str, Any]] = {}
    metric_names: set[str] = set()
    for p in planned:
        if not p.session:
            continue
        tags = {k: v for k, v in p.record.tags.items() if not k.startswith("mlflow.")}  # not MLflow's own
        hp: dict[str, Any] = {**tags, **p.record.properties}
        chosen: set[str] = set()
        for s in p.series:
            v = _single_value(s)
            if v is None:
                continue
            if (hparams is not None and s.name in hparams) or (
                hparams is None and _named_in(p.record.display_name, s.name, v)
            ):
                hp[s.name] = v
                chosen.add(s.name)
        session_hparams[p.record.run_id] = hp
        for s in p.series:
            numeric = isinstance(s.values, np.ndarray) and s.values.dtype.kind in "fiub"
            if s.kind is MetricKind.SCALAR and numeric and s.name not in chosen:
                metric_names.add(s.name)
    hp_list = list(session_hparams.values())
    _normalize_types(hp_list)

    # write
    total = sum(len(s) for p in planned for s in p.series)
    show = progress if progress is not None else (total >= _PROGRESS_MIN_POINTS and sys.stderr.isatty())
    bar = _progress_bar(total, show)
    written = 0
    run_dirs: dict[str, Path] = {}
    try:
        for p in planned:
            run_dirs[p.record.run_id] = p.folder
            session_hp = session_hparams.get(p.record.run_id)
            if not p.series and session_hp is None:
                continue
            store, run_id = p.run.store, p.run.id
            with EventFileWriter(p.folder, flush_secs=0) as writer:
                conv = SeriesConverter(writer, functools.partial(_read_file, store, run_id), sort_steps=True)
                if session_hp is not None:
                    start = p.record.start_time or p.record.created
                    writer.add_summary_value(hparams_session_start(session_hp, start_time=start), 0, start)
                for s in p.series:
                    n = conv.write(s)
                    written += n
                    if bar is not None:
                        bar.update(n)
                if session_hp is not None and p.record.status.is_terminal:
                    end = p.record.end_time or time.time()
                    writer.add_summary_value(hparams_session_end(_session_status(p.record.status), end), 0, end)
    finally:
        if bar is not None:
            bar.close()

    if session_hparams:
        for old in root.iterdir():
            if old.is_file() and old.name.endswith(HPARAMS_SUFFIX):
                old.unlink()
        now = time.time()
        with EventFileWriter(root, filename_suffix=HPARAMS_SUFFIX, flush_secs=0) as writer:
            value = hparams_experiment(
                _hparam_infos(hp_list),
                [MetricSpec(name) for name in sorted(metric_names)],
                time_created_secs=now,
            )
            writer.add_summary_value(value, 0, now)
    return ExportResult(root, run_dirs, len(session_hparams), written)


def _progress_bar(total: int, show: bool) -> Any:
    if not show:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="pt", unit_scale=True, desc="export_to_tensorboard")
