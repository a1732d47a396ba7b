"""Runs: metrics, status, child runs, tags, properties and files of one execution.

The run is a thin front: what may be logged is checked in :mod:`.values`, points wait in the store's
:class:`~.buffer.MetricBuffer`, files travel through :mod:`.transfer`, process-wide state (owned runs, exit
hooks) lives in :mod:`.state`, and where ``Run.get_context()`` finds its run in :mod:`.context`.
"""

from __future__ import annotations

import builtins
import html
import io
import logging
import os
import secrets
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Any, cast

import numpy as np

from . import context, metric_schemas, plugins, snapshots, state, transfer
from .buffer import MetricBuffer, Series, store_key
from .errors import ExpboardError, NotFoundError, RunFailedError, StoreUnavailableError, ValidationError
from .experiment import Experiment, matches
from .liveness import is_silent, is_stale, reap_unresponsive
from .model import Model, register_run_model
from .names import check_file_name, check_key, check_metric_name
from .records import TERMINAL_STATUSES, MetricKind, MetricSeries, RunRecord, RunStatus
from .state import flush_all
from .stores import UNSET, Store
from .stores.query import RunFilter
from .values import (
    check_step_range,
    coerce_step,
    coerce_value,
    error_dict,
    iso_time,
    json_value,
    metric_value,
)
from .workspace import Workspace

__all__ = ["ENV_RUN_ID", "Run", "flush_all", "new_run_id"]

ENV_RUN_ID = context.ENV_RUN_ID
FINISH_WAIT_S = 10.0  # how long complete()/fail()/cancel() wait for the store to take the metrics and status

log = logging.getLogger(__name__)

_time = time.time
_SCALAR = MetricKind.SCALAR
_INT64 = 2**63
_ENDED = (RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELED, RunStatus.NOT_RESPONDING)


def new_run_id(experiment: str) -> str:
    """Readable and unique across processes: ``<experiment (first 200 characters)>_<unix seconds>_<8 hex digits>``."""
    return f"{experiment[:200]}_{int(time.time())}_{secrets.token_hex(4)}"  # within the 255 of a run id


def _created(record: RunRecord) -> tuple[float, str]:
    return (record.created, record.run_id)  # reversed: newest first, the order of list_runs


class Run:
    """One execution: metrics, status, child runs, tags, properties and files.

    >>> run = experiment.start_logging()        # doctest: +SKIP
    >>> run.log("loss", 0.25, step=1)            # doctest: +SKIP
    >>> run.complete()                            # doctest: +SKIP
    """

    def __init__(self, experiment: Experiment, run_id: str, *, record: RunRecord | None = None) -> None:
        self.experiment = experiment
        self.id = run_id
        store = experiment.workspace.store
        self._store = store
        self._record = record if record is not None else store.get_run(run_id)
        if self._record.experiment != experiment.name:
            raise ValidationError(
                f"run {run_id!r} belongs to experiment {self._record.experiment!r}, not {experiment.name!r}"
            )
        self._buf: MetricBuffer = state.buffer_for(store)
        self._series_cache: dict[str, Series] = {}
        self._fresh = False  # created by this process: nothing was logged to it before
        self._finished = False  # ended by this object (its final status queued or stored)
        self._child_count = 0
        self._outputs: Path | None = None  # a folder uploaded as outputs/ when the run ends

    # --- identity ---------------------------------------------------------------------------------
    @property
    def workspace(self) -> Workspace:
        return self.experiment.workspace

    @property
    def store(self) -> Store:
        """The store this run's history lives in."""
        return self._store

    @property
    def record(self) -> RunRecord:
        """The run's record as last read (see :meth:`refresh`)."""
        return self._record

    def refresh(self) -> RunRecord:
        """Read the run's record from the store again and return it."""
        self._record = self._store.get_run(self.id)
        return self._record

    @property
    def display_name(self) -> str:
        return self._record.display_name

    @display_name.setter
    def display_name(self, value: str) -> None:
        self._record = self._store.update_run(self.id, display_name=str(value))

    @property
    def name(self) -> str:
        """Azure ML's ``run.name``: the display name."""
        return self._record.display_name

    @property
    def type(self) -> str:
        """``interactive``, ``script`` or ``child``."""
        return self._record.run_type

    @property
    def description(self) -> str:
        """Azure ML's ``run.description``: free text, settable, stored with the run."""
        return self._record.description

    @description.setter
    def description(self, value: str) -> None:
        self._record = self._store.update_run(self.id, description=str(value))

    @property
    def number(self) -> int:
        """The run's number in its experiment, as Azure ML numbers runs: 1, 2, ... in the order runs were
        created (child runs included), assigned by the store when the run is created."""
        if self._record.number is not None:
            return self._record.number
        # a store that does not number runs (an older tracking server): the place in the creation order
        records = self._store.list_runs(experiment=self.experiment.name)
        order = sorted(records, key=lambda r: (r.created, r.run_id))
        return next(i for i, r in enumerate(order, 1) if r.run_id == self.id)

    @property
    def parent(self) -> Run | None:
        if self._record.parent_id is None:
            return None
        return Run(self.experiment, self._record.parent_id)

    @property
    def status(self) -> RunStatus:
        return self.get_status()

    @property
    def properties(self) -> dict[str, str]:
        return self.get_properties()

    @property
    def tags(self) -> dict[str, str]:
        return self.get_tags()

    def __repr__(self) -> str:
        return f"Run(experiment={self.experiment.name!r}, id={self.id!r}, status={self._record.status.value!r})"

    def get_portal_url(self) -> str | None:
        """The URL of a TensorBoard this process started that shows this run, while it still runs: one
        started for the run (``Tensorboard([run]).start()``), for a run above it (child runs are shown
        nested in their parent's), or for its experiment. Else None: there is no portal besides TensorBoard."""
        r: RunRecord | None = self._record
        while r is not None:
            url = state.serving_url(r.run_id)
            if url is not None:
                return url
            r = self._store.get_run(r.parent_id) if r.parent_id is not None else None
        return state.serving_url(experiment=self.experiment.name)

    def _repr_html_(self) -> str:
        """A table row for Jupyter: experiment, id, type, status, duration, and a link to the TensorBoard
        serving the run when one does."""
        r = self.refresh()
        end = r.end_time if r.end_time is not None else (_time() if r.start_time is not None else None)
        duration = f"{end - r.start_time:.1f} s" if end is not None and r.start_time is not None else ""
        cells = [self.experiment.name, str(self.number), self.id, r.display_name, r.run_type, r.status.value, duration]
        heads = ("Experiment", "Number", "Id", "Display name", "Type", "Status", "Duration")
        head = "".join(f"<th>{h}</th>" for h in heads)
        row = "".join(f"<td>{html.escape(c)}</td>" for c in cells)
        url = self.get_portal_url()
        link = f'<td><a href="{html.escape(url)}" target="_blank">TensorBoard</a></td>' if url else "<td></td>"
        return f"<table><tr>{head}<th>Details</th></tr><tr>{row}{link}</tr></table>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Run) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    # --- finding and creating runs --------------------------------------------------------------
    @classmethod
    def get(cls, workspace: Workspace, run_id: str) -> Run:
        """The run with this id, in whatever experiment it is."""
        record = workspace.store.get_run(run_id)
        return cls(Experiment.get(workspace, record.experiment), run_id, record=record)

    @classmethod
    def find(cls, workspace: Workspace, id_or_name: str) -> Run:
        """The run with this id, else the one run with this display name (in any experiment).

        Raises NotFoundError when there is none, ValidationError listing the candidates when several runs
        have that display name."""
        try:
            return cls.get(workspace, id_or_name)
        except (NotFoundError, ValidationError):
            pass
        found = [r for r in cls.list(workspace, include_children=True) if r.display_name == id_or_name]
        if len(found) == 1:
            return found[0]
        if not found:
            raise NotFoundError(f"no run with id or display name {id_or_name!r} in {workspace!r}")
        candidates = ", ".join(f"{r.id} ({r.experiment.name})" for r in found)
        raise ValidationError(
            f"{len(found)} runs have the display name {id_or_name!r}: {candidates}; give the run's id instead"
        )

    @classmethod
    def list(
        cls,
        source: Workspace | Experiment,
        include_children: bool = False,
        tags: Mapping[str, Any] | str | Sequence[str] | None = None,
        properties: Mapping[str, Any] | str | Sequence[str] | None = None,
        status: RunStatus | str | None = None,
        filter: RunFilter | Mapping[str, Any] | None = None,
        page_size: int | None = None,
        type: str | None = None,
    ) -> Iterator[Run]:
        """Runs of an experiment, or of every experiment of a workspace, newest first: top-level runs
        unless ``include_children``; only those with ``tags`` and ``properties`` (a name, a list of names or
        a mapping: see :func:`~expboard.experiment.matches`), ``status`` and ``type`` (``interactive``,
        ``script``, ``child``) when given, and passing ``filter`` (a :class:`~expboard.stores.query.RunFilter`,
        or its :meth:`~expboard.stores.query.RunFilter.parse` arguments as a dict, e.g.
        ``{"metrics": ["mse<0.3"], "text": "alpha"}``). The store evaluates the filter; runs are fetched
        lazily, ``page_size`` (default 100) at a time."""
        if isinstance(source, Experiment):
            workspace, experiment_name = source.workspace, source.name
            experiments = {source.name: source}
        else:
            workspace, experiment_name, experiments = source, None, {}
        run_filter = filter if isinstance(filter, RunFilter) else RunFilter.parse(**(filter or {}))
        # tags and properties are matched here, in Azure ML's forms (a name, a list of names, a mapping)
        extra = RunFilter.parse(status=[status] if status is not None else None)
        statuses = extra.statuses or run_filter.statuses
        if extra.statuses and run_filter.statuses:  # both given: a run must pass both
            statuses = tuple(x for x in extra.statuses if x in run_filter.statuses)
            if not statuses:
                return
        run_filter = replace(
            run_filter,
            statuses=statuses,
            tags={**run_filter.tags, **extra.tags},
            properties={**run_filter.properties, **extra.properties},
        )
        token: str | None = None
        while True:
            page = workspace.store.query_runs(
                experiment=experiment_name,
                parent_id=UNSET if include_children else None,
                filter=run_filter,
                limit=page_size,
                page_token=token,
            )
            for record in page.runs:
                if type is not None and record.run_type != type:
                    continue
                if not matches(record.tags, tags) or not matches(record.properties, properties):
                    continue
                exp = experiments.get(record.experiment)
                if exp is None:
                    exp = experiments[record.experiment] = Experiment.get(workspace, record.experiment)
                yield cls(exp, record.run_id, record=record)
            token = page.next_page_token
            if token is None:
                return

    @classmethod
    def create(
        cls,
        experiment: Experiment,
        *,
        display_name: str = "",
        parent: Run | None = None,
        run_type: str = "interactive",
        status: RunStatus = RunStatus.RUNNING,
        target: str = "local",
        tags: Mapping[str, Any] | None = None,
        properties: Mapping[str, Any] | None = None,
        snapshot_directory: str | os.PathLike[str] | None = None,
        outputs: str | os.PathLike[str] | None = None,
        description: str = "",
    ) -> Run:
        """Create a run record. Interactive and child runs are owned by this process: kept alive by its
        heartbeat while Running, and completed at exit if left running. Script runs belong to their agent.

        ``snapshot_directory``: a folder stored with the run as ``snapshot.zip`` (its ignore files honoured);
        ``outputs``: a folder uploaded as the run's ``outputs/`` when the run ends."""
        snapshot = plugins.snapshot(snapshot_directory) if snapshot_directory is not None else None
        now = _time()
        running = status == RunStatus.RUNNING
        record = RunRecord(
            run_id=new_run_id(experiment.name),
            experiment=experiment.name,
            status=status,
            created=now,
            display_name=display_name,
            parent_id=parent.id if parent is not None else None,
            run_type=run_type,
            target=target,
            start_time=now if running else None,
            heartbeat=now if running else None,
            tags={check_key(k): str(v) for k, v in (tags or {}).items()},
            properties={check_key(k, "property"): str(v) for k, v in (properties or {}).items()},
            description=str(description),
        )
        record = experiment.workspace.store.create_run(record)
        run = cls(experiment, record.run_id, record=record)
        run._fresh = True
        run._outputs = Path(outputs) if outputs is not None else None
        if snapshot is not None:
            run._store.write_file(run.id, "snapshot.zip", snapshot)
        if run_type != "script":
            state.own(run.id, run._finish_at_exit)
            if running:
                run._buf.track(run.id)
        return run

    @classmethod
    def get_context(cls, allow_offline: bool = True) -> Run:
        """Inside a submitted script: the submitted run. Elsewhere: an offline run that accepts every call
        and keeps what is logged in a temporary history, so scripts run unchanged outside expboard."""
        run_id = context.submitted_run_id()
        if run_id:
            return cls.get(Workspace.from_config(), run_id)
        if not allow_offline:
            raise ExpboardError(f"not inside a submitted run ({ENV_RUN_ID} is not set)")
        return context.offline_run(lambda exp: cls.create(exp, display_name="offline"))

    # --- metrics --------------------------------------------------------------------------------
    def _series(self, name: str, kind: MetricKind) -> Series:
        check_metric_name(name)
        # A run made elsewhere (another process, a submitted script): default steps go on from the points
        # already stored, as if one process had logged them all; the buffer's writer reads how many there
        # are, so this never waits for the store.
        s = self._buf.series(self.id, name, kind, relative=not self._fresh)
        if kind is _SCALAR:
            self._series_cache[name] = s
        return s

    def log(self, name: str, value: Any, step: int | None = None) -> None:
        """Log one value (int, float, bool, str, None or a numpy scalar). Logged several times, a metric
        becomes a series; ``step`` defaults to the point's index."""
        tv = type(value)
        if tv is not float and tv is not int:
            value = coerce_value(name, value)
        elif tv is int and not -_INT64 <= value < _INT64:
            value = float(value)
        if step is not None:
            if type(step) is not int:
                step = coerce_step(step)
            elif not -_INT64 <= step < _INT64:
                check_step_range(step)
        s = self._series_cache.get(name)
        if s is None:
            s = self._series(name, _SCALAR)
        self._buf.append(s, value, step)

    def log_array(
        self,
        name: str,
        values: Any,
        steps: Any = None,
        wall_times: Any = None,
    ) -> None:
        """Log many points of one metric at once from arrays (the fast path for numpy users).

        ``steps`` defaults to the points' indices continuing the series, ``wall_times`` to now.
        """
        vals = np.asarray(values)
        if vals.ndim != 1:
            raise ValidationError(f"metric {name!r}: log_array takes a 1-D array, got shape {vals.shape}")
        if vals.dtype.kind not in "fiub":
            raise ValidationError(f"metric {name!r}: log_array takes numbers or booleans, got dtype {vals.dtype}")
        n = len(vals)
        s = self._series_cache.get(name) or self._series(name, _SCALAR)
        if steps is None:
            step_arr = np.arange(s.count, s.count + n, dtype=np.int64)
        else:
            step_arr = np.asarray(steps)
            if step_arr.shape != (n,) or step_arr.dtype.kind not in "iu":
                raise ValidationError(f"metric {name!r}: steps must be {n} integers")
            if step_arr.dtype.kind == "u" and n and int(step_arr.max()) >= _INT64:
                check_step_range(int(step_arr.max()))
            step_arr = step_arr.astype(np.int64, copy=False)
        times = np.full(n, _time()) if wall_times is None else np.asarray(wall_times, dtype=np.float64)
        if times.shape != (n,):
            raise ValidationError(f"metric {name!r}: wall_times must be {n} numbers")
        if wall_times is not None and n and not np.isfinite(times).all():
            raise ValidationError(f"metric {name!r}: wall_times must be finite unix times (no NaN or infinity)")
        self._buf.write_direct(s, step_arr, times, vals, given_steps=steps is not None)

    def log_list(self, name: str, value: Sequence[Any]) -> None:
        """Log a list of values; element i gets step i."""
        if isinstance(value, (str, bytes, dict)) or not hasattr(value, "__iter__"):
            raise ValidationError(f"metric {name!r}: log_list takes a list of values, got {type(value).__name__}")
        items = [coerce_value(name, v) for v in (value.tolist() if isinstance(value, np.ndarray) else value)]
        self._buf.extend(self._series(name, MetricKind.LIST), items)

    def log_row(self, name: str, **kwargs: Any) -> None:
        """Log one row of a table: ``run.log_row("results", alpha=0.1, mse=3.2)``; read back as columns."""
        if not kwargs:
            raise ValidationError(f"metric {name!r}: log_row needs at least one column, like log_row(name, x=1)")
        row = {k: coerce_value(f"{name}.{k}", v) for k, v in kwargs.items()}
        self._buf.extend(self._series(name, MetricKind.ROW), [row])

    def log_table(self, name: str, value: Mapping[str, Sequence[Any]]) -> None:
        """Log a table as a dict of equally long columns: ``{"alpha": [..], "mse": [..]}``."""
        if not isinstance(value, Mapping) or not value:
            raise ValidationError(f"metric {name!r}: log_table takes a non-empty dict of columns")
        columns = {}
        for col, items in value.items():
            if isinstance(items, (str, bytes)) or not hasattr(items, "__iter__"):
                raise ValidationError(f"metric {name!r}: column {col!r} must be a list of values")
            seq = items.tolist() if isinstance(items, np.ndarray) else list(items)
            columns[str(col)] = [coerce_value(f"{name}.{col}", v) for v in seq]
        lengths = {len(c) for c in columns.values()}
        if len(lengths) != 1:
            raise ValidationError(f"metric {name!r}: table columns differ in length ({sorted(lengths)})")
        self._buf.extend(self._series(name, MetricKind.TABLE), [columns])

    def log_confusion_matrix(self, name: str, value: Mapping[str, Any] | Any) -> None:
        """Log a confusion matrix: a 2-D array, or Azure's dict
        ``{"schema_type": "confusion_matrix", "data": {"class_labels": [...], "matrix": [[...]]}}``."""
        if isinstance(value, Mapping):
            data = value.get("data", value)
            matrix, labels = data.get("matrix"), data.get("class_labels")
        else:
            matrix, labels = value, None
        arr = np.asarray(matrix)
        if arr.ndim != 2 or arr.shape[0] != arr.shape[1] or arr.dtype.kind not in "iuf":
            raise ValidationError(f"metric {name!r}: a confusion matrix is a square 2-D array of counts")
        if labels is None:
            labels = [str(i) for i in range(arr.shape[0])]
        if len(labels) != arr.shape[0]:
            raise ValidationError(
                f"metric {name!r}: {len(labels)} class labels for a {arr.shape[0]}x{arr.shape[0]} matrix"
            )
        cm = {
            "schema_type": "confusion_matrix",
            "schema_version": "1.0.0",
            "data": {"class_labels": [str(x) for x in labels], "matrix": arr.tolist()},
        }
        self._buf.extend(self._series(name, MetricKind.CONFUSION_MATRIX), [json_value(cm, f"metric {name!r}")])

    def log_accuracy_table(self, name: str, value: Mapping[str, Any], description: str = "") -> None:
        """Log Azure ML's accuracy table: ``{"schema_type": "accuracy_table", "schema_version": "1.0.1",
        "data": {"class_labels": [...], "probability_thresholds": [...], "percentile_thresholds": [...],
        "probability_tables": [...], "percentile_tables": [...]}}``, each table one list per class of
        ``[TP, FP, TN, FN]`` per threshold (see :mod:`expboard.metric_schemas`)."""
        self._log_schema(MetricKind.ACCURACY_TABLE, name, value)

    def log_predictions(self, name: str, value: Mapping[str, Any], description: str = "") -> None:
        """Log Azure ML's predictions metric: ``{"schema_type": "predictions", "schema_version": "1.0.0",
        "data": {"bin_averages": [...], "bin_errors": [...], "bin_counts": [...], "bin_edges": [...]}}``
        (one more edge than bins)."""
        self._log_schema(MetricKind.PREDICTIONS, name, value)

    def log_residuals(self, name: str, value: Mapping[str, Any], description: str = "") -> None:
        """Log Azure ML's residuals histogram: ``{"schema_type": "residuals", "schema_version": "1.0.0",
        "data": {"bin_edges": [...], "bin_counts": [...]}}`` (one more edge than counts)."""
        self._log_schema(MetricKind.RESIDUALS, name, value)

    def _log_schema(self, kind: MetricKind, name: str, value: Any) -> None:
        check_metric_name(name)
        checked = metric_schemas.check(kind.value, name, value)
        self._buf.extend(self._series(name, kind), [json_value(checked, f"metric {name!r}")])

    def log_image(self, name: str, path: str | os.PathLike[str] | None = None, plot: Any = None) -> None:
        """Log an image from a file (``path``) or a matplotlib figure (``plot``); it is stored as a run file.
        Like run.log, it waits for the store only while it answers promptly: a store that is locked or down
        gets the file through the journal (bounded by journal_max_mb)."""
        if (path is None) == (plot is None):
            raise ValidationError(f"metric {name!r}: give exactly one of path= or plot=")
        check_metric_name(name)
        if plot is not None:
            fig = plot.gcf() if hasattr(plot, "gcf") else plot
            if not hasattr(fig, "savefig"):
                raise ValidationError(f"metric {name!r}: plot must be a matplotlib figure or pyplot")
            out = io.BytesIO()
            fig.savefig(out, format="png")
            data, ext = out.getvalue(), ".png"
        else:
            p = Path(path)  # type: ignore[arg-type]
            if not p.is_file():
                raise ValidationError(f"metric {name!r}: no image file at {p}")
            data, ext = p.read_bytes(), p.suffix.lower() or ".png"
        s = self._series(name, MetricKind.IMAGE)
        slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        step = self._buf.known_step(s)
        # A series stored by another process whose count is not known yet: a name of this process's own.
        file_name = (
            f"logged_images/{slug}/{step:05d}{ext}"
            if step is not None
            else f"logged_images/{slug}/{s.count:05d}-{self._buf.origin[:8]}{ext}"
        )
        # the file queues before its point, so a reader never sees a point before its image
        self._buf.write_file(self.id, file_name, data)
        self._buf.extend(s, [file_name])

    def register_model(
        self,
        model_name: str,
        model_path: str,
        tags: Mapping[str, str] | None = None,
        properties: Mapping[str, str] | None = None,
        description: str | None = None,
        **unsupported: Any,
    ) -> Model:
        """Register the run's file or folder ``model_path`` (such as ``outputs/model.pkl``) as the next version
        of model ``model_name`` (Azure ML's ``run.register_model``); its files are copied into the registry.
        A path under ``outputs/`` still only in this run's local outputs folder is uploaded first."""
        if unsupported:
            raise ValidationError(
                f"register_model: {', '.join(sorted(unsupported))} belong to Azure ML's deployment, which expboard "
                "does not do; leave them out"
            )
        name = check_file_name(model_path).rstrip("/")
        local = self._outputs
        if local is not None and name.startswith("outputs/") and not self._store.list_files(self.id, name):
            source = local / name[len("outputs/") :]
            if source.is_dir():
                transfer.upload_folder(self._store, self.id, name, source)
            elif source.is_file():
                transfer.upload(self._store, self.id, name, source)
        return register_run_model(self.workspace, self.id, model_name, name, tags, properties, description)

    def flush(self, timeout: float | None = None) -> None:
        """Write every point logged in this process; with a remote store, wait until it has them (raising
        StoreUnavailableError that says what is pending if that takes longer than ``timeout`` seconds)."""
        self._buf.flush()
        self._store.flush(timeout)

    def get_metrics(
        self, name: str | None = None, recursive: bool = False, run_type: str | None = None
    ) -> dict[str, Any]:
        """Metrics by name: one value if logged once, a list if logged several times, columns (a dict of
        lists) for rows and tables. With ``recursive=True``: ``{run_id: metrics}`` for this run and every
        descendant."""
        self.flush()
        if recursive:
            runs = [self, *self.get_children(recursive=True)]
            if run_type is not None:
                runs = [r for r in runs if r._record.run_type == run_type]
            return {r.id: r._metrics_dict(name) for r in runs}
        return self._metrics_dict(name)

    def _metrics_dict(self, name: str | None) -> dict[str, Any]:
        return {s.name: metric_value(s) for s in self._store.get_metrics(self.id, name=name)}

    def get_metric_series(self, name: str | None = None) -> builtins.list[MetricSeries]:
        """The raw series (steps, wall times, values, kind) as stored."""
        self.flush()
        return self._store.get_metrics(self.id, name=name)

    # --- status ---------------------------------------------------------------------------------
    def get_status(self) -> RunStatus:
        """The run's status. An active run whose heartbeat stopped becomes NotResponding here, and a silent
        script run whose compute target knows it is gone (its Ray job ended) ends Failed here."""
        record = self.refresh()
        if is_stale(record) or is_silent(record):
            reap_unresponsive(self._store, run_ids=[self.id])
            record = self.refresh()
        return record.status

    def has_ended(self) -> bool:
        """Whether the run reached a final status, NotResponding included (the heartbeat is checked)."""
        return self.get_status() in _ENDED

    def _finish(self, status: RunStatus, error: dict[str, Any] | None = None, wait: float | None = None) -> None:
        """End the run: its final status queues behind its points, and the store gets ``wait`` seconds (default
        FINISH_WAIT_S) to take both; if it does not (locked, down), they are written in the background, the
        status journaled at once, so that nothing is lost if this process ends (see the buffer's end_run)."""
        wait = FINISH_WAIT_S if wait is None else wait
        begun = time.monotonic()
        try:
            if self._outputs is not None and self._outputs.is_dir():
                outputs, self._outputs = self._outputs, None
                self._upload_outputs(outputs)
        finally:
            now = _time()
            update: dict[str, Any] = {
                "status": status.value,
                "end_time": now,
                "heartbeat": now,
                "only_if_status": [s.value for s in RunStatus if s not in TERMINAL_STATUSES],
            }
            if error is not None:
                update["error"] = error
            state.disown(self.id)
            record = self._buf.end_run(self.id, update, max(0.0, begun + wait - time.monotonic()), keep=wait > 0)
            self._finished = True
            self._series_cache.clear()
            self._buf.forget_run(self.id)
            if record is not None:
                self._record = record
                try:
                    self._store.flush(max(0.0, begun + wait - time.monotonic()))  # a remote store's spool
                except StoreUnavailableError as exc:
                    log.warning("expboard: run %s ended; %s", self.id, exc)
            else:
                self._record = replace(self._record, status=status, end_time=now)
                if wait > 0:
                    log.warning(
                        "expboard: %s did not take run %s's points and final status %s (%.1f s, at most %g); they are "
                        "written in the background while this process lives, else kept in the journal %s and "
                        "written by the next process that opens the store or `expboard journal`",
                        store_key(self._store),
                        self.id,
                        status.value,
                        time.monotonic() - begun,
                        wait,
                        self._buf.journal.base,
                    )

    def _upload_outputs(self, folder: Path) -> None:
        """The ``outputs=`` folder, at the run's end. A store that does not answer (each try given up soon, as
        the background writer's are) stops the upload with one warning instead of holding up the end of the
        script: the files stay in the folder, to be uploaded with ``upload_folder`` once the store answers."""
        try:
            with self._store.retrying_briefly():
                transfer.upload_folder(self._store, self.id, "outputs", folder)
        except StoreUnavailableError as exc:
            log.warning(
                "expboard: run %s ends without the files of its outputs folder %s (%s). They are still there; "
                "once the store answers, upload them with Run.get(ws, %r).upload_folder('outputs', %r)",
                self.id,
                folder,
                exc,
                self.id,
                str(folder),
            )

    def _finish_at_exit(self, status: RunStatus) -> None:
        """End a run left running at interpreter exit: the status is queued; the buffer's close writes it. A run
        whose workspace was closed before is left as it is (its store is closed too)."""
        if not self._buf.closed:
            self._finish(status, wait=0.0)

    def start(self) -> None:
        """Mark a NotStarted run Running."""
        now = _time()
        self._record = self._store.update_run(self.id, status=RunStatus.RUNNING, start_time=now, heartbeat=now)

    def complete(self, set_status: bool = True) -> None:
        """Write everything logged and mark the run Completed."""
        if set_status:
            self._finish(RunStatus.COMPLETED)
        else:
            self.flush()

    def fail(self, error_details: BaseException | str | None = None, error_code: str | None = None) -> None:
        """Mark the run Failed, recording the error (an exception or a message)."""
        self._finish(RunStatus.FAILED, error_dict(error_details, error_code))

    def cancel(self) -> None:
        """Cancel the run. A submitted run still Queued ends Canceled at once; a started one becomes
        CancelRequested and its agent stops the script (SIGTERM, then SIGKILL) and marks it Canceled."""
        if self._record.run_type == "script":
            now = _time()
            self._record = self._store.update_run(
                self.id,
                status=RunStatus.CANCELED,
                end_time=now,
                only_if_status=[RunStatus.NOT_STARTED, RunStatus.QUEUED, RunStatus.NOT_RESPONDING],
            )
            if self._record.status != RunStatus.CANCELED:
                self._record = self._store.update_run(
                    self.id,
                    status=RunStatus.CANCEL_REQUESTED,
                    only_if_status=[RunStatus.STARTING, RunStatus.RUNNING, RunStatus.FINALIZING],
                )
        else:
            self._finish(RunStatus.CANCELED)

    def wait_for_completion(
        self, show_output: bool = False, *, raise_on_error: bool = True, timeout: float | None = None
    ) -> dict[str, Any]:
        """Wait until the run ends; with ``show_output`` stream its driver log. Raises RunFailedError when it
        failed or stopped responding (unless ``raise_on_error=False``). Returns :meth:`get_details`.

        A submitted run whose agent stopped writing heartbeats is marked NotResponding here, so this never
        waits forever on a run nobody supervises."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if show_output:
            self._print_log(deadline)
        while not self.has_ended():
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"run {self.id} still {self._record.status.value} after {timeout} s")
            time.sleep(0.2)
        details = self.get_details()
        if raise_on_error and self._record.status in (RunStatus.FAILED, RunStatus.NOT_RESPONDING):
            err = (self._record.error or {}).get("message", "")
            what = "failed" if self._record.status == RunStatus.FAILED else "stopped responding"
            hint = f" (its output: `expboard runs logs {self.id}`)" if self._record.run_type == "script" else ""
            raise RunFailedError(f"run {self.id} {what}{hint}: {err}".rstrip(": "))
        return details

    def _print_log(self, deadline: float | None) -> None:
        """Print the driver log to stdout while the run runs, like Azure ML's ``show_output=True``."""
        print(f"RunId: {self.id}")
        print(f"Streaming {transfer.DRIVER_LOG}")
        print("=" * 40, flush=True)
        for text in transfer.iter_log(self._store, self.id, has_ended=self.has_ended, deadline=deadline):
            print(text, end="", flush=True)
        status = self.get_status()
        print("\n" + "=" * 40)
        print("Execution Summary")
        print(f"RunId: {self.id}")
        print(f"Status: {status.value}", flush=True)

    def get_details(self) -> dict[str, Any]:
        """Status, times, tags, properties, error and log files, with Azure ML's keys."""
        r = self.refresh()
        details: dict[str, Any] = {
            "runId": r.run_id,
            "experiment": r.experiment,
            "displayName": r.display_name,
            "description": r.description,
            "number": self.number,
            "parentRunId": r.parent_id,
            "runType": r.run_type,
            "target": r.target,
            "status": r.status.value,
            "createdUtc": iso_time(r.created),
            "startTimeUtc": iso_time(r.start_time),
            "endTimeUtc": iso_time(r.end_time),
            "properties": dict(r.properties),
            "tags": dict(r.tags),
            "logFiles": {f.name: f.name for f in self._store.list_files(self.id, "system_logs/")},
        }
        if r.error:
            details["error"] = r.error
        return details

    def get_details_with_logs(self) -> dict[str, Any]:
        """:meth:`get_details` with the text of each log file: ``logFiles`` maps each ``system_logs/`` file
        (the driver log, the agent log) to its content, as Azure ML's ``get_details_with_logs`` does."""
        details = self.get_details()
        details["logFiles"] = {
            name: b"".join(self._store.iter_file(self.id, name)).decode("utf-8", errors="replace")
            for name in details["logFiles"]
        }
        return details

    # --- snapshots ------------------------------------------------------------------------------
    def take_snapshot(self, file_or_folder_path: str | os.PathLike[str]) -> str:
        """Store a snapshot of a file or folder with the run (a zip, built as a submitted run's snapshot is:
        ignore files honoured, ``logs/`` and ``outputs/`` left out) and return its id."""
        return snapshots.take(self._store, self.id, file_or_folder_path)

    def restore_snapshot(self, snapshot_id: str | None = None, path: str | os.PathLike[str] | None = None) -> str:
        """Write a snapshot of the run as a zip file and return the zip's path, as Azure ML does: the latest
        snapshot the run took unless ``snapshot_id`` is given (a submitted run's own snapshot when it took
        none), as ``<snapshot_id>.zip`` in folder ``path`` (made if missing; default the current folder), or
        to ``path`` itself when it names a ``.zip`` file."""
        return str(snapshots.restore(self._store, self.id, snapshot_id, path))

    # --- children -------------------------------------------------------------------------------
    def create_children(
        self, count: int | None = None, tag_key: str | None = None, tag_values: Sequence[str] | None = None
    ) -> builtins.list[Run]:
        """Azure ML's ``create_children``: ``count`` Running child runs, or one per value of ``tag_values``,
        each tagged ``tag_key: value``."""
        if tag_values is not None and tag_key is None:
            raise ValidationError("create_children: tag_values needs tag_key, the tag they are the values of")
        if count is None and tag_values is None:
            raise ValidationError("create_children needs count, or tag_key and tag_values")
        if count is not None and tag_values is not None and count != len(tag_values):
            raise ValidationError(f"create_children: count={count} but {len(tag_values)} tag_values; give one")
        n = len(tag_values) if tag_values is not None else int(count or 0)
        children = []
        for i in range(n):
            self._child_count += 1
            tags = {tag_key: str(tag_values[i])} if tag_key is not None and tag_values is not None else None
            children.append(
                Run.create(
                    self.experiment,
                    display_name=f"child_{self._child_count}",
                    parent=self,
                    run_type="child",
                    tags=tags,
                )
            )
        return children

    def submit_child(self, config: Any, tags: Mapping[str, Any] | None = None, **kwargs: Any) -> Run:
        """Submit a ScriptRunConfig as a child run of this run (through the compute target it names) and
        return the child at once, Queued, as Azure ML's ``submit_child`` does."""
        if kwargs:
            raise ValidationError(f"submit_child takes config and tags; unknown: {', '.join(sorted(kwargs))}")
        child = plugins.submitter()(self.experiment, config, tags=tags, parent=self)
        return cast("Run", child)

    def child_run(self, name: str | None = None) -> Run:
        """Create a Running child run. As a context manager it ends Completed, or Failed (error recorded and
        the exception re-raised) when the block raises."""
        self._child_count += 1
        return Run.create(
            self.experiment, display_name=name or f"child_{self._child_count}", parent=self, run_type="child"
        )

    def get_children(
        self,
        recursive: bool = False,
        tags: Mapping[str, Any] | str | Sequence[str] | None = None,
        properties: Mapping[str, Any] | str | Sequence[str] | None = None,
        type: str | None = None,
        status: RunStatus | str | None = None,
    ) -> builtins.list[Run]:
        """Child runs, newest first; with ``recursive``, every descendant. ``tags``, ``properties``,
        ``type`` and ``status`` keep only the runs that match, as in :meth:`list`."""
        wanted_status = RunStatus(status) if status is not None else None
        out: builtins.list[Run] = []
        level = [self.id]
        while level:  # a level of the tree at a time: one list_children call (a tracking server too)
            found: dict[str, builtins.list[RunRecord]] = {}
            for child in self._store.list_children(level):
                found.setdefault(child.parent_id or "", []).append(child)
            records = [r for parent in level for r in sorted(found.get(parent, []), key=_created, reverse=True)]
            level = [r.run_id for r in records] if recursive else []
            for record in records:
                if (
                    (type is not None and record.run_type != type)
                    or (wanted_status is not None and record.status != wanted_status)
                    or not matches(record.tags, tags)
                    or not matches(record.properties, properties)
                ):
                    continue
                out.append(Run(self.experiment, record.run_id, record=record))
        return out

    def __enter__(self) -> Run:
        return self

    def __exit__(
        self, exc_type: builtins.type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._finished or (self._record.status.is_terminal and self.get_status().is_terminal):
            return
        if exc is None:
            self.complete()
        elif isinstance(exc, (KeyboardInterrupt, SystemExit)):
            self._finish(RunStatus.CANCELED, error_dict(exc, "Interrupted"))
        else:
            self.fail(exc)

    # --- tags and properties --------------------------------------------------------------------
    def tag(self, key: str, value: Any = None) -> None:
        """Set a tag (tags can change; a tag without value is stored as '')."""
        self.set_tags({key: "" if value is None else value})

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self._store.set_tags(self.id, {check_key(k): str(v) for k, v in tags.items()})

    def remove_tags(self, keys: Sequence[str]) -> None:
        self._store.set_tags(self.id, {k: None for k in keys})

    def get_tags(self) -> dict[str, str]:
        return dict(self.refresh().tags)

    def add_properties(self, properties: Mapping[str, Any]) -> None:
        """Add properties; a property cannot be changed once set (ConflictError)."""
        self._store.add_properties(self.id, {check_key(k, "property"): str(v) for k, v in properties.items()})

    def get_properties(self) -> dict[str, str]:
        return dict(self.refresh().properties)

    # --- files ----------------------------------------------------------------------------------
    def upload_file(self, name: str, path_or_stream: str | os.PathLike[str] | Any) -> None:
        """Store a file with the run under ``name`` (a relative path like ``outputs/model.pkl``).

        ``path_or_stream`` is a path or a binary (or text) file object; large files travel in pieces."""
        transfer.upload(self._store, self.id, name, path_or_stream)

    def upload_folder(self, name: str, path: str | os.PathLike[str]) -> builtins.list[str]:
        """Store every file under folder ``path`` as ``name/<relative path>``; returns the stored names."""
        return transfer.upload_folder(self._store, self.id, name, path)

    def upload_files(
        self,
        names: Sequence[str],
        paths: Sequence[str | os.PathLike[str]],
        return_artifacts: bool = False,
        timeout_seconds: float | None = None,
    ) -> None:
        """Azure ML's ``upload_files``: store ``paths[i]`` as ``names[i]``."""
        if len(names) != len(paths):
            raise ValidationError(f"upload_files: {len(names)} names for {len(paths)} paths; give one name per path")
        for name, path in zip(names, paths, strict=True):
            self.upload_file(name, path)

    def get_all_logs(self, destination: str | os.PathLike[str] | None = None) -> builtins.list[Path]:
        """Download the run's logs (``system_logs/`` and ``logs/``) into ``destination`` (default: a folder
        named after the run id), as Azure ML's ``get_all_logs``; returns the local paths."""
        out_dir = Path(destination) if destination is not None else Path(self.id)
        return [p for prefix in ("system_logs/", "logs/") for p in self.download_files(prefix, out_dir)]

    def get_file_names(self) -> builtins.list[str]:
        return [f.name for f in self._store.list_files(self.id)]

    def download_file(self, name: str, output_file_path: str | os.PathLike[str] | None = None) -> Path:
        """Copy a run file to ``output_file_path`` (a file or folder; default: its base name in cwd)."""
        name = check_file_name(name)
        out = Path(output_file_path) if output_file_path is not None else Path(Path(name).name)
        if out.is_dir():
            out = out / Path(name).name
        return transfer.download(self._store, self.id, name, out)

    def download_files(
        self,
        prefix: str | None = None,
        output_directory: str | os.PathLike[str] | None = None,
        output_paths: Sequence[str | os.PathLike[str]] | None = None,
        batch_size: int = 100,
        append_prefix: bool = True,
        timeout_seconds: float | None = None,
    ) -> builtins.list[Path]:
        """Copy every run file (under ``prefix``) into ``output_directory``, keeping relative paths, as Azure
        ML does: ``append_prefix=False`` drops ``prefix`` from the local paths; ``output_paths`` gives one
        local path per file instead (in the order of ``get_file_names``). ``batch_size`` and
        ``timeout_seconds`` are accepted and unused."""
        out_dir = Path(output_directory) if output_directory is not None else Path.cwd()
        infos = self._store.list_files(self.id, prefix or "")
        if output_paths is not None:
            if len(output_paths) != len(infos):
                raise ValidationError(
                    f"output_paths has {len(output_paths)} paths for {len(infos)} files under prefix {prefix!r}; "
                    f"give one path per file, or output_directory instead"
                )
            return [
                transfer.download(self._store, self.id, check_file_name(info.name), Path(p))
                for info, p in zip(infos, output_paths, strict=True)
            ]
        out: builtins.list[Path] = []
        for info in infos:
            # names are checked again: a remote store must not be able to write outside out_dir
            rel = check_file_name(info.name)
            if not append_prefix and prefix and rel.startswith(prefix):
                rel = check_file_name(rel[len(prefix) :].lstrip("/") or Path(rel).name)
            out.append(transfer.download(self._store, self.id, info.name, out_dir / rel))
        return out
