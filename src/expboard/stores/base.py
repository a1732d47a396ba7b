"""The store interface: everything the client API needs from a backend, and nothing more.

Implementations: :class:`~expboard.stores.sql.SqlStore` (SQLite, PostgreSQL) and the HTTP client store.
Every method is required; none is optional. Stores are thread-safe.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ValidationError
from ..names import check_metric_name, check_run_id
from ..records import ExperimentRecord, FileInfo, MetricKind, MetricSeries, RunRecord, RunStatus

__all__ = ["MetricChunk", "MetricInfo", "Store", "UNSET", "check_chunk"]


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()


# Points of one metric of one run logged together: the same fields as a stored series, so one class.
MetricChunk = MetricSeries


def check_chunk(chunk: MetricChunk) -> None:
    """What every store refuses in a chunk before storing or sending anything: a bad run id or metric name,
    values that are not a column of points (a string or a dict would be stored letter by letter or key by
    key), columns of different lengths, an unknown kind."""
    check_run_id(chunk.run_id)
    check_metric_name(chunk.name)
    values = chunk.values
    if isinstance(values, (str, bytes, dict)) or not hasattr(values, "__len__"):
        raise ValidationError(
            f"metric {chunk.name!r} of run {chunk.run_id!r}: values must be a list or an array of points, "
            f"got a {type(values).__name__}"
        )
    if not len(chunk.steps) == len(chunk.wall_times) == len(values):
        raise ValidationError(f"metric {chunk.name!r}: steps, wall times and values differ in length")
    try:
        MetricKind(chunk.kind)
    except ValueError:
        raise ValidationError(
            f"metric {chunk.name!r}: unknown kind {chunk.kind!r}; use one of {', '.join(k.value for k in MetricKind)}"
        ) from None


@dataclass(frozen=True)
class MetricInfo:
    """A summary of one metric of one run, read without its points: what a dashboard lists before it plots.

    ``numeric``: every value is stored as a number or bool (no strings, rows or other JSON values).
    ``last_value``: the value of the last point logged (a float, int or bool when numeric, else a JSON value).
    """

    run_id: str
    name: str
    kind: MetricKind
    count: int
    max_step: int
    last_step: int
    last_wall_time: float
    last_value: Any
    numeric: bool


class Store(ABC):
    """Run history: experiments, runs, metrics and files."""

    # --- experiments -------------------------------------------------------------------------
    @abstractmethod
    def get_or_create_experiment(self, name: str) -> ExperimentRecord: ...

    @abstractmethod
    def get_experiment(self, name: str) -> ExperimentRecord:
        """Raises NotFoundError."""

    @abstractmethod
    def list_experiments(self) -> list[ExperimentRecord]: ...

    # --- runs --------------------------------------------------------------------------------
    @abstractmethod
    def create_run(self, run: RunRecord) -> RunRecord:
        """Store a new run (its id chosen by the caller); the experiment must exist."""

    @abstractmethod
    def get_run(self, run_id: str) -> RunRecord:
        """Raises NotFoundError."""

    @abstractmethod
    def list_runs(
        self,
        experiment: str | None = None,
        parent_id: str | None | Any = UNSET,
        statuses: Sequence[RunStatus] | None = None,
    ) -> list[RunRecord]:
        """Runs newest first; ``parent_id=None`` selects top-level runs, ``UNSET`` all runs."""

    @abstractmethod
    def update_run(
        self,
        run_id: str,
        *,
        status: RunStatus | Any = UNSET,
        start_time: float | None | Any = UNSET,
        end_time: float | None | Any = UNSET,
        heartbeat: float | None | Any = UNSET,
        error: dict[str, Any] | None | Any = UNSET,
        display_name: str | Any = UNSET,
        only_if_status: Sequence[RunStatus] | None = None,
    ) -> RunRecord:
        """Change the given fields. With ``only_if_status``, change nothing unless the run's current status
        is one of them (an atomic compare-and-set); the returned record tells which happened."""

    @abstractmethod
    def set_tags(self, run_id: str, tags: Mapping[str, str | None]) -> None:
        """Set tags; a value of None removes the tag."""

    @abstractmethod
    def add_properties(self, run_id: str, properties: Mapping[str, str]) -> None:
        """Add properties; changing an existing one raises ConflictError (same value is fine)."""

    # --- metrics -----------------------------------------------------------------------------
    @abstractmethod
    def log_metrics(self, chunks: Sequence[MetricChunk], batch_id: str | None = None) -> None:
        """Append chunks atomically. A batch id seen before makes the call a no-op (safe retries)."""

    @abstractmethod
    def get_metrics(
        self,
        run_id: str,
        name: str | None = None,
        min_step: int | None = None,
        max_step: int | None = None,
        max_points: int | None = None,
    ) -> list[MetricSeries]:
        """Every metric of a run (or one), points in logging order, optionally within a step range.

        With ``max_points``, a longer series is thinned to that many evenly spaced points (its first and
        last point always kept), for plotting long series without reading every point."""

    @abstractmethod
    def get_metric_info(self, run_ids: Sequence[str]) -> list[MetricInfo]:
        """One :class:`MetricInfo` per metric of each of the runs (unknown ids have none), without reading the
        points: one query for many runs, for listing tags and answering "latest value" reads."""

    # --- files -------------------------------------------------------------------------------
    @abstractmethod
    def write_file(self, run_id: str, name: str, data: bytes) -> FileInfo:
        """Create or replace a file of the run."""

    @abstractmethod
    def append_file(self, run_id: str, name: str, data: bytes, offset: int) -> FileInfo:
        """Append at ``offset``, which must equal the current size (0 creates the file), else ConflictError.
        Appending the same bytes again at an offset already covered by them is a no-op (safe retries)."""

    @abstractmethod
    def read_file(self, run_id: str, name: str, offset: int = 0, length: int | None = None) -> bytes: ...

    @abstractmethod
    def list_files(self, run_id: str, prefix: str = "") -> list[FileInfo]: ...

    @abstractmethod
    def flush(self, timeout: float | None = None) -> None:
        """Wait until every ``log_metrics`` call so far is stored (a remote store may still be sending).
        Raises StoreUnavailableError, saying what is still pending, if that takes longer than ``timeout``."""

    @abstractmethod
    def close(self) -> None:
        """Flush and release connections and threads. A store that cannot deliver everything raises
        StoreUnavailableError saying what is pending (and where it is kept), after releasing its resources."""
