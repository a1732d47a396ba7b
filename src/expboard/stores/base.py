"""The store interface: everything the client API needs from a backend, and nothing more.

Implementations: :class:`~expboard.stores.sql.SqlStore` (SQLite, PostgreSQL) and the HTTP client store.
Every method is required; none is optional. Stores are thread-safe.
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, BinaryIO

from ..errors import ValidationError
from ..names import check_metric_name, check_run_id
from ..records import (
    ExperimentRecord,
    FileInfo,
    MetricKind,
    MetricSeries,
    ModelRecord,
    ModelStatus,
    RegisteredModelRecord,
    RunRecord,
    RunStatus,
    WorkspaceObjectRecord,
)
from .files import READ_PIECE_BYTES, FileWriter
from .query import RunFilter, RunPage

__all__ = [
    "LatestMetric",
    "MAX_CHUNK_RUNS",
    "MetricChunk",
    "MetricChunkPage",
    "MetricInfo",
    "QueryStore",
    "RunCondition",
    "RunOrder",
    "Store",
    "UNSET",
    "check_chunk",
    "check_object",
]


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


MAX_OBJECT_BYTES = 1024 * 1024
_OBJECT_NAME_RE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,254}")


def check_object(kind: object, name: object, body: object = None, version: object = None) -> str:
    """Check a workspace object's kind, name (letters, digits, ``_``, ``-`` and ``.``, 1 to 255, not
    starting with ``.``), version (a whole number from 1) and body (a JSON object of at most 1 MiB);
    returns the body as JSON text ("" without a body)."""
    for what, value in (("kind", kind), ("name", name)):
        if not isinstance(value, str) or not _OBJECT_NAME_RE.fullmatch(value):
            raise ValidationError(
                f"invalid {what} {value!r}: use 1 to 255 letters, digits, '_', '-' or '.', not starting with '.'"
            )
    if version is not None and (not isinstance(version, int) or isinstance(version, bool) or version < 1):
        raise ValidationError(f"invalid version {version!r}: versions are whole numbers from 1")
    if body is None:
        return ""
    if not isinstance(body, Mapping):
        raise ValidationError(f"the definition of {kind} {name!r} must be a JSON object, not {type(body).__name__}")
    try:
        text = json.dumps(dict(body), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"the definition of {kind} {name!r} is not plain JSON: {exc}") from None
    if len(text.encode("utf-8", "surrogatepass")) > MAX_OBJECT_BYTES:
        raise ValidationError(f"the definition of {kind} {name!r} is over 1 MiB as JSON")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError(f"the definition of {kind} {name!r} is not valid UTF-8 (a lone surrogate)") from None
    return text


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


MAX_CHUNK_RUNS = 100  # runs whose chunks one read_metric_chunks call may ask for


@dataclass(frozen=True)
class MetricChunkPage:
    """Stored chunks after a cursor, in the order they were stored (see :meth:`Store.read_metric_chunks`).

    ``chunks``: one :class:`MetricChunk` per stored row (a long ``log_array`` is several). ``cursor``: pass it
    as ``after`` to get the chunks stored after these (it is ``after`` itself when there were none).
    ``more``: the page was cut short at ``max_points``; more chunks are stored already."""

    chunks: list[MetricChunk]
    cursor: int
    more: bool


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

    @abstractmethod
    def update_experiment(
        self, name: str, *, archived: bool | Any = UNSET, tags: Mapping[str, str | None] | None = None
    ) -> ExperimentRecord:
        """Archive or reactivate an experiment, and set its tags (a value of None removes one).
        Raises NotFoundError."""

    # --- runs --------------------------------------------------------------------------------
    @abstractmethod
    def create_run(self, run: RunRecord) -> RunRecord:
        """Store a new run (its id chosen by the caller); the experiment must exist. The store assigns its
        ``number``: the next of its experiment's sequence, atomically (concurrent creators never share one)."""

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

    def list_children(self, run_ids: Sequence[str]) -> list[RunRecord]:
        """The child runs of each of these runs (one level down, any number of parents), in no particular
        order. Stores that can answer for many parents at once override this loop over ``list_runs`` (and
        split long lists into requests they can take themselves)."""
        return [r for run_id in dict.fromkeys(run_ids) for r in self.list_runs(parent_id=run_id)]

    @abstractmethod
    def query_runs(
        self,
        experiment: str | None = None,
        parent_id: str | None | Any = UNSET,
        filter: RunFilter | None = None,
        limit: int | None = None,
        page_token: str | None = None,
    ) -> RunPage:
        """One page of runs newest first (``limit`` runs, default 100) that pass ``filter``, evaluated by the
        store itself; pass the page's ``next_page_token`` for the next one. ``parent_id`` as in list_runs."""

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
        description: str | Any = UNSET,
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
    def read_metric_chunks(
        self, run_ids: Sequence[str], after: int = 0, max_points: int = 1_000_000
    ) -> MetricChunkPage:
        """The chunks of these runs (at most ``MAX_CHUNK_RUNS``) stored after cursor ``after`` (0: from the
        first), in storing order, about ``max_points`` points (always at least one chunk, if any): for reading
        only what is new since the last call (the live TensorBoard mirror) and for reading long series in
        bounded memory (export). Whatever order the steps were logged in, every point comes exactly once."""

    @abstractmethod
    def count_metric_points(self, run_id: str, name: str, kind: MetricKind | None = None) -> int:
        """How many points metric ``name`` of the run has (of ``kind`` only, when given), without reading
        them: a sum over the stored chunks' sizes, for going on with a long series."""

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

    # Streaming file transfer. These have working defaults built on the methods above (in pieces, so
    # memory stays bounded where the store allows it); stores with a file storage behind them override them.
    def open_file_writer(self, run_id: str, name: str) -> FileWriter:
        """A writer for a new version of a file: nothing is visible until its ``commit()``."""
        return _BufferedWriter(self, run_id, name)

    def write_file_stream(self, run_id: str, name: str, stream: BinaryIO) -> FileInfo:
        """Create or replace a file from a binary file object (read from its current position), in pieces; the
        file appears whole or not at all."""
        writer = self.open_file_writer(run_id, name)
        with writer:
            while piece := stream.read(READ_PIECE_BYTES):
                writer.write(piece)
            return writer.commit()

    read_piece_bytes = READ_PIECE_BYTES  # a store that pays per request reads larger pieces

    def iter_file(self, run_id: str, name: str, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        """A file's bytes in pieces of at most ``read_piece_bytes``, each read on its own (so a remote store
        retries each piece); NotFoundError is raised at once if the file does not exist."""
        want = self.read_piece_bytes if length is None else min(length, self.read_piece_bytes)
        first = self.read_file(run_id, name, offset, want)
        return self._iter_rest(run_id, name, first, offset, length)

    def _iter_rest(self, run_id: str, name: str, piece: bytes, offset: int, length: int | None) -> Iterator[bytes]:
        while piece:
            yield piece
            offset += len(piece)
            if length is not None:
                length -= len(piece)
                if length <= 0:
                    return
            want = self.read_piece_bytes if length is None else min(length, self.read_piece_bytes)
            piece = self.read_file(run_id, name, offset, want)

    def open_file_read(
        self, run_id: str, name: str, offset: int = 0, length: int | None = None
    ) -> tuple[FileInfo, Iterator[bytes]]:
        """A file's info and its bytes from ``offset`` (``length`` of them or to the end, clamped to the size
        in the info), for a download's answer; stores with a file storage behind them look the file up once."""
        info = self.file_info(run_id, name)
        start = min(offset, info.size)
        stop = info.size if length is None else min(info.size, offset + length)
        return info, self.iter_file(run_id, name, start, stop - start)

    def presigned_file_url(self, run_id: str, name: str, min_size: int = 0) -> str | None:
        """A URL to download the file straight from its object storage without credentials (a tracking
        server redirects large downloads to it), when the file storage can give one; else None."""
        return None

    def file_info(self, run_id: str, name: str) -> FileInfo:
        """One file's name, size and modification time; NotFoundError if there is none."""
        from ..errors import NotFoundError
        from ..names import check_file_name

        name = check_file_name(name)
        for info in self.list_files(run_id, name):
            if info.name == name:
                return info
        raise NotFoundError(f"run {run_id!r} has no file {name!r}")

    # --- named, versioned workspace objects (environments) ------------------------------------------
    @abstractmethod
    def register_object(self, kind: str, name: str, body: Mapping[str, Any]) -> WorkspaceObjectRecord:
        """Store ``body`` (JSON-able, at most 1 MiB as JSON) as the next version of object ``name`` of
        ``kind`` (1 for a new name); two writers at once get two versions, never one twice."""

    @abstractmethod
    def get_object(self, kind: str, name: str, version: int | None = None) -> WorkspaceObjectRecord:
        """One version of an object, the latest when ``version`` is None; NotFoundError when there is none."""

    @abstractmethod
    def list_objects(self, kind: str, name: str | None = None) -> list[WorkspaceObjectRecord]:
        """Every version of every object of ``kind`` (or of ``name`` only), by name, then version."""

    # --- models (a versioned registry) ----------------------------------------------------------------
    @abstractmethod
    def create_registered_model(
        self, name: str, *, description: str = "", tags: Mapping[str, str] | None = None
    ) -> RegisteredModelRecord:
        """A new registered model without versions yet; ConflictError if the name is taken."""

    @abstractmethod
    def get_registered_model(self, name: str) -> RegisteredModelRecord:
        """Raises NotFoundError."""

    @abstractmethod
    def list_registered_models(self) -> list[RegisteredModelRecord]:
        """Every registered model, by name."""

    @abstractmethod
    def update_registered_model(
        self,
        name: str,
        *,
        description: str | Any = UNSET,
        tags: Mapping[str, str | None] | None = None,
        aliases: Mapping[str, int | None] | None = None,
    ) -> RegisteredModelRecord:
        """Set the description, tags (None removes one) and aliases (alias -> version; None removes one)."""

    @abstractmethod
    def create_model_version(
        self,
        name: str,
        *,
        run_id: str | None = None,
        run_path: str | None = None,
        description: str = "",
        tags: Mapping[str, str] | None = None,
        properties: Mapping[str, str] | None = None,
    ) -> ModelRecord:
        """Register the next version of model ``name`` (creating the model): versions are numbered 1, 2, ...
        atomically, so two processes registering at once get different numbers.

        With ``run_path``, the run's file or folder of that name is copied into the version, which is READY
        at once (a file keeps its base name, a folder its name and layout). Without it the version is PENDING:
        add its files with :meth:`write_model_file`, then set its status to READY."""

    @abstractmethod
    def write_model_file(self, name: str, version: int, file_name: str, stream: BinaryIO) -> FileInfo:
        """Add a file (read from a binary file object) to a PENDING version; ConflictError once it is READY."""

    @abstractmethod
    def update_model_version(
        self,
        name: str,
        version: int,
        *,
        status: ModelStatus | Any = UNSET,
        description: str | Any = UNSET,
        tags: Mapping[str, str | None] | None = None,
        properties: Mapping[str, str] | None = None,
    ) -> ModelRecord:
        """Change a version's status (PENDING to READY or FAILED) and description, set its tags (None removes
        one) and add properties (add-only, as on runs)."""

    @abstractmethod
    def get_model_version(self, name: str, version: int | None = None) -> ModelRecord:
        """One version; ``None``: the latest READY one. Raises NotFoundError."""

    @abstractmethod
    def list_model_versions(self, name: str | None = None, run_id: str | None = None) -> list[ModelRecord]:
        """Versions of one model (or of every model), by name then newest version first."""

    @abstractmethod
    def list_model_files(self, name: str, version: int) -> list[FileInfo]:
        """The files of a version, names relative to the version."""

    @abstractmethod
    def iter_model_file(
        self, name: str, version: int, file_name: str, offset: int = 0, length: int | None = None
    ) -> Iterator[bytes]:
        """A version's file in pieces; NotFoundError at once if there is none."""

    @contextmanager
    def retrying_briefly(self) -> Iterator[None]:
        """Calls made in this block by this thread give up soon on a store that does not answer (a background
        writer that tries again on its own uses it). The default changes nothing."""
        yield

    @abstractmethod
    def flush(self, timeout: float | None = None) -> None:
        """Wait until every ``log_metrics`` call so far is stored (a remote store may still be sending).
        Raises StoreUnavailableError, saying what is still pending, if that takes longer than ``timeout``."""

    @abstractmethod
    def close(self) -> None:
        """Flush and release connections and threads. A store that cannot deliver everything raises
        StoreUnavailableError saying what is pending (and where it is kept), after releasing its resources."""


class _BufferedWriter(FileWriter):
    """The default writer: collects the pieces and writes the file on commit."""

    def __init__(self, store: Store, run_id: str, name: str) -> None:
        self._store, self._run_id, self._name = store, run_id, name
        self._buf = bytearray()
        self._done = False

    def write(self, data: bytes) -> None:
        self._buf += data

    def commit(self) -> FileInfo:
        self._done = True
        return self._store.write_file(self._run_id, self._name, bytes(self._buf))

    def abort(self) -> None:
        self._done = True
        self._buf = bytearray()


# --- queries over many runs (the tracking server's search API) --------------------------------------
RUN_ATTRIBUTES = ("run_id", "display_name", "status", "parent_id", "created", "start_time", "end_time")


@dataclass(frozen=True)
class RunCondition:
    """One condition of a run search.

    ``field`` is ``metric`` (the run's latest value of metric ``key``), ``property``, ``tag`` or ``attribute``
    (``key`` one of ``RUN_ATTRIBUTES``). ``op`` is one of ``= != < <= > >=``, ``LIKE``, ``ILIKE``, ``IN``,
    ``NOT IN`` (``value`` a sequence), ``IS NULL`` or ``IS NOT NULL`` (no value)."""

    field: str
    key: str
    op: str
    value: Any = None


@dataclass(frozen=True)
class RunOrder:
    """One key of a run search's order, fields as in :class:`RunCondition`. Runs without the key sort last."""

    field: str
    key: str
    descending: bool = False


@dataclass(frozen=True)
class LatestMetric:
    """A run's latest point of a numeric metric: the one of the highest step, then the latest wall time,
    then the largest value (MLflow's rule)."""

    name: str
    step: int
    wall_time: float
    value: float


class QueryStore(Store):
    """A store that answers queries over many runs in the database itself: searches with filters, order
    and paging, latest metric values, paged metric history and soft deletion (what MLflow's API needs)."""

    @abstractmethod
    def search_runs(
        self,
        experiments: Sequence[str] | None = None,
        filters: Sequence[RunCondition] = (),
        order_by: Sequence[RunOrder] = (),
        offset: int = 0,
        limit: int = 1000,
        deleted: bool | None = False,
    ) -> list[RunRecord]:
        """Runs matching every filter, in ``order_by`` order (then newest first), ``limit`` of them from
        ``offset``. ``deleted``: False only runs not deleted, True only deleted ones, None both."""

    @abstractmethod
    def log_run_batch(
        self,
        run_id: str,
        *,
        properties: Mapping[str, str] | None = None,
        tags: Mapping[str, str | None] | None = None,
        chunks: Sequence[MetricChunk] = (),
        display_name: str | Any = UNSET,
    ) -> None:
        """Add properties, set tags (None removes one), append metric chunks of one run and set its display name,
        all in one transaction: all of it is stored or none (MLflow's log-batch). A changed property is a
        ConflictError, as in add_properties."""

    @abstractmethod
    def latest_metrics(self, run_ids: Sequence[str]) -> dict[str, list[LatestMetric]]:
        """For each run, the latest point of each of its numeric metrics (by name)."""

    @abstractmethod
    def get_metric_page(self, run_id: str, name: str, offset: int = 0, limit: int | None = None) -> MetricSeries:
        """Points ``offset`` to ``offset + limit`` (logging order) of one metric; reads only the chunks that
        hold them. An unknown metric gives an empty series."""

    @abstractmethod
    def set_run_deleted(self, run_id: str, deleted: bool) -> None:
        """Soft-delete a run (hidden from ``list_runs`` and default searches) or restore it."""

    @abstractmethod
    def deleted_runs(self, run_ids: Sequence[str]) -> set[str]:
        """Those of ``run_ids`` that are deleted."""

    @abstractmethod
    def set_experiment_deleted(self, name: str, deleted: bool) -> None:
        """Soft-delete an experiment (its runs stay) or restore it."""

    @abstractmethod
    def deleted_experiments(self) -> set[str]: ...
