"""Runs as HParams sessions: the one rule shared by ``export_to_tensorboard`` and the data provider.

Which runs are sessions: child runs (any depth); when no run has children but there are several
top-level runs, those runs. A session's hyperparameters are its tags and properties plus single-valued
metrics (logged exactly once, a number, bool or string) chosen by ``hparams``:

- ``hparams=["alpha", ...]``: exactly these metrics;
- ``hparams=None`` (default): the single-valued metrics whose name and value appear together in the run's
  display name, e.g. ``alpha`` = 0.1 in a child run named ``alpha0.1`` or ``alpha=0.1``;
- ``hparams=[]``: none (tags and properties only).

The session's metrics are all its other numeric scalar series (the dashboard shows their last value).
An hparam of mixed types across sessions becomes a string. The rule works on :class:`MetricInfo`
summaries, so the data provider never reads points to build the HParams dashboard.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..records import MetricKind, MetricSeries, RunRecord, RunStatus
from ..stores.base import MetricInfo
from ..tfevents import (
    HParam,
    MetricSpec,
    SessionStatus,
    hparams_experiment,
    hparams_session_end,
    hparams_session_start,
)

__all__ = [
    "SessionCandidate",
    "SessionPlan",
    "info_of_series",
    "plan_sessions",
    "session_status",
]


@dataclass(frozen=True)
class SessionCandidate:
    """A run that may become a session: its record, its depth below the runs asked for (0: one of them)
    and a summary of its metrics."""

    record: RunRecord
    depth: int
    metrics: Sequence[MetricInfo]


@dataclass
class SessionPlan:
    """Per session run id its hyperparameters, and the experiment's metric names."""

    hparams: dict[str, dict[str, Any]] = field(default_factory=dict)
    metric_names: list[str] = field(default_factory=list)

    def experiment_value(self, time_created: float | None = None) -> bytes:
        """The ``_hparams_/experiment`` Summary.Value (encoded)."""
        return hparams_experiment(
            _hparam_infos(list(self.hparams.values())),
            [MetricSpec(name) for name in self.metric_names],
            time_created_secs=time.time() if time_created is None else time_created,
        )

    def start_value(self, record: RunRecord) -> tuple[bytes, float] | None:
        """The session's ``_hparams_/session_start_info`` value and its wall time, None if not a session."""
        hp = self.hparams.get(record.run_id)
        if hp is None:
            return None
        start = record.start_time or record.created
        return hparams_session_start(hp, start_time=start), start

    def end_value(self, record: RunRecord, now: float | None = None) -> tuple[bytes, float] | None:
        """The ``_hparams_/session_end_info`` value and its wall time for a session run that has ended."""
        if record.run_id not in self.hparams or not record.status.is_terminal:
            return None
        end = record.end_time or (time.time() if now is None else now)
        return hparams_session_end(session_status(record.status), end), end


def info_of_series(series: MetricSeries) -> MetricInfo:
    """The :class:`MetricInfo` of a series already read (what the store's ``get_metric_info`` returns)."""
    values = series.values
    numeric = isinstance(values, np.ndarray) and values.dtype.kind in "fiub"
    last = values[-1] if len(series) else None
    if isinstance(last, np.generic):
        last = last.item()
    steps = np.asarray(series.steps)
    return MetricInfo(
        run_id=series.run_id,
        name=series.name,
        kind=series.kind,
        count=len(series),
        max_step=int(steps.max()) if len(steps) else 0,
        last_step=int(steps[-1]) if len(steps) else 0,
        last_wall_time=float(series.wall_times[-1]) if len(steps) else 0.0,
        last_value=last,
        numeric=numeric,
    )


def _single_value(m: MetricInfo) -> Any:
    """The value of a metric logged exactly once as a number, bool or string, else None."""
    if m.kind is not MetricKind.SCALAR or m.count != 1:
        return None
    v = m.last_value
    if isinstance(v, (bool, int, float, str)):
        return v
    return None


def _named_in(display_name: str, name: str, value: Any) -> bool:
    """Whether ``display_name`` contains ``name`` followed by ``value`` (``alpha0.1``, ``alpha=0.1``, ...)."""
    texts = {str(value)}
    if isinstance(value, float) and value.is_integer():
        texts.add(str(int(value)))
    return any(re.search(re.escape(name) + r"[=_:\-]?" + re.escape(t) + r"(?![0-9])", display_name) for t in texts)


def session_status(status: RunStatus) -> SessionStatus:
    """A run status as an HParams session status."""
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


def plan_sessions(candidates: Sequence[SessionCandidate], hparams: Sequence[str] | None = None) -> SessionPlan:
    """Which candidates are sessions, with which hyperparameters, and the experiment's metric names."""
    has_children = any(c.depth > 0 for c in candidates)
    top = sum(1 for c in candidates if c.depth == 0)
    plan = SessionPlan()
    metric_names: set[str] = set()
    for c in candidates:
        if not (c.depth > 0 or (not has_children and top > 1)):
            continue
        tags = {k: v for k, v in c.record.tags.items() if not k.startswith("mlflow.")}  # not MLflow's own
        hp: dict[str, Any] = {**tags, **c.record.properties}
        chosen: set[str] = set()
        for m in c.metrics:
            v = _single_value(m)
            if v is None:
                continue
            if (hparams is not None and m.name in hparams) or (
                hparams is None and _named_in(c.record.display_name, m.name, v)
            ):
                hp[m.name] = v
                chosen.add(m.name)
        plan.hparams[c.record.run_id] = hp
        for m in c.metrics:
            if m.kind is MetricKind.SCALAR and m.numeric and m.name not in chosen:
                metric_names.add(m.name)
    _normalize_types(list(plan.hparams.values()))
    plan.metric_names = sorted(metric_names)
    return plan
