"""Run history in SQL: SQLite (embedded default) and PostgreSQL behind one implementation.

SQL is written once with ``?`` placeholders; :class:`Dialect` adapts placeholders, column types and
connections. Schema changes are numbered migrations applied under a lock. SQLite runs in WAL mode with
one writer connection per process (``BEGIN IMMEDIATE``, busy timeout) so several processes can log into
one workspace at once; reads use per-thread connections.

Metric points are stored as chunks: one row per metric per logged batch, its columns packed as arrays
(see :mod:`.wire`), which is what makes a million points per second possible.
"""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import unquote, urlparse

from ..errors import ConflictError, NotFoundError, StoreUnavailableError, ValidationError
from ..lazy import lazy_import
from ..names import (
    check_experiment_name,
    check_file_name,
    check_key,
    check_model_name,
    check_run_id,
    check_text,
    check_time,
)
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
from .base import (
    MAX_CHUNK_RUNS,
    RUN_ATTRIBUTES,
    UNSET,
    LatestMetric,
    MetricChunk,
    MetricChunkPage,
    MetricInfo,
    QueryStore,
    RunCondition,
    RunOrder,
    check_chunk,
    check_object,
)
from .files import FileStorage, FileWriter
from .query import RunFilter, RunPage, decode_page_token, encode_page_token, page_size
from .storages import open_file_storage
from .wire import concat_values, decode_values, encode_values, pack_f8, pack_i8, unpack_f8, unpack_i8

if TYPE_CHECKING:
    import numpy as np
else:  # numpy loads on first use: opening a store (a run agent's start) does not pay for it
    np = lazy_import("numpy", globals(), "np")

__all__ = ["MAX_CHUNK_BYTES", "MAX_CHUNK_POINTS", "MIGRATIONS", "SqlStore", "downsample", "sqlite_path_from_uri"]

# Numbered migrations. {id}, {blob} and {real} are replaced per dialect. Never edit a released step: add one.
MIGRATIONS: list[tuple[int, list[str]]] = [
    (
        1,
        [
            "CREATE TABLE experiments (name TEXT PRIMARY KEY, created {real} NOT NULL)",
            """CREATE TABLE runs (
                run_id TEXT PRIMARY KEY,
                experiment TEXT NOT NULL REFERENCES experiments(name),
                parent_id TEXT REFERENCES runs(run_id),
                display_name TEXT NOT NULL DEFAULT '',
                run_type TEXT NOT NULL,
                target TEXT NOT NULL DEFAULT 'local',
                status TEXT NOT NULL,
                created {real} NOT NULL,
                start_time {real},
                end_time {real},
                heartbeat {real},
                error TEXT
            )""",
            "CREATE INDEX runs_by_experiment ON runs (experiment, created)",
            "CREATE INDEX runs_by_parent ON runs (parent_id)",
            """CREATE TABLE tags (run_id TEXT NOT NULL REFERENCES runs(run_id), key TEXT NOT NULL,
                value TEXT NOT NULL, PRIMARY KEY (run_id, key))""",
            """CREATE TABLE properties (run_id TEXT NOT NULL REFERENCES runs(run_id), key TEXT NOT NULL,
                value TEXT NOT NULL, PRIMARY KEY (run_id, key))""",
            """CREATE TABLE metric_chunks (
                id {id},
                run_id TEXT NOT NULL REFERENCES runs(run_id),
                name TEXT NOT NULL,
                kind TEXT NOT NULL,
                n INTEGER NOT NULL,
                step_min BIGINT NOT NULL,
                step_max BIGINT NOT NULL,
                dtype TEXT NOT NULL,
                steps {blob} NOT NULL,
                wall_times {blob} NOT NULL,
                vals {blob} NOT NULL
            )""",
            "CREATE INDEX metric_chunks_by_run ON metric_chunks (run_id, name, id)",
            "CREATE TABLE metric_batches (batch_id TEXT PRIMARY KEY, created {real} NOT NULL)",
        ],
    ),
    (
        2,  # soft deletion, and each chunk's latest point (for searches on a run's latest metric values)
        [
            "ALTER TABLE runs ADD COLUMN deleted_time {real}",
            "ALTER TABLE experiments ADD COLUMN deleted_time {real}",
            "ALTER TABLE metric_chunks ADD COLUMN last_time {real}",
            "ALTER TABLE metric_chunks ADD COLUMN last_value {real}",
            "CREATE INDEX metric_chunks_latest ON metric_chunks (run_id, name, step_max, last_time)",
        ],
    ),
    (
        3,
        [
            # the last logged value of every numeric scalar metric, for filters such as "mse<0.3" in SQL
            """CREATE TABLE metric_last (run_id TEXT NOT NULL REFERENCES runs(run_id), name TEXT NOT NULL,
                step BIGINT NOT NULL, value {real}, PRIMARY KEY (run_id, name))""",
            "CREATE INDEX metric_last_by_name ON metric_last (name, value)",
            # pages of runs newest first, with or without an experiment
            "CREATE INDEX runs_by_created ON runs (created, run_id)",
            "CREATE INDEX runs_by_experiment_created ON runs (experiment, created, run_id)",
        ],
    ),
    (
        4,  # experiments: tags and an archived flag (Azure ML)
        [
            "ALTER TABLE experiments ADD COLUMN archived INTEGER NOT NULL DEFAULT 0",
            """CREATE TABLE experiment_tags (experiment TEXT NOT NULL REFERENCES experiments(name),
                key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (experiment, key))""",
        ],
    ),
    (
        5,  # a versioned model registry (Azure ML's Model, MLflow's registered models and model versions)
        [
            """CREATE TABLE models (name TEXT PRIMARY KEY, created {real} NOT NULL, updated {real} NOT NULL,
                description TEXT NOT NULL DEFAULT '', latest_version INTEGER NOT NULL DEFAULT 0)""",
            """CREATE TABLE model_versions (
                name TEXT NOT NULL REFERENCES models(name),
                version INTEGER NOT NULL,
                storage_id TEXT NOT NULL,
                status TEXT NOT NULL,
                created {real} NOT NULL,
                updated {real} NOT NULL,
                description TEXT NOT NULL DEFAULT '',
                run_id TEXT,
                run_path TEXT,
                experiment TEXT,
                PRIMARY KEY (name, version)
            )""",
            "CREATE INDEX model_versions_by_run ON model_versions (run_id)",
            # version 0 holds the registered model's own tags
            """CREATE TABLE model_tags (name TEXT NOT NULL, version INTEGER NOT NULL, key TEXT NOT NULL,
                value TEXT NOT NULL, PRIMARY KEY (name, version, key))""",
            """CREATE TABLE model_properties (name TEXT NOT NULL, version INTEGER NOT NULL, key TEXT NOT NULL,
                value TEXT NOT NULL, PRIMARY KEY (name, version, key))""",
            """CREATE TABLE model_aliases (name TEXT NOT NULL, alias TEXT NOT NULL, version INTEGER NOT NULL,
                PRIMARY KEY (name, alias))""",
        ],
    ),
    (
        6,
        [
            # the chunks of runs stored after a cursor (live mirror, streamed export)
            "CREATE INDEX IF NOT EXISTS metric_chunks_by_run_id ON metric_chunks (run_id, id)",
            # a run's latest metric values are kept once: in the chunks' latest-point columns (version 2),
            # which MLflow's searches and the run list's metric filters both read
            "DROP INDEX IF EXISTS metric_last_by_name",
            "DROP TABLE IF EXISTS metric_last",
        ],
    ),
    (
        7,  # named, versioned workspace objects (environments), one JSON definition per version
        [
            """CREATE TABLE workspace_objects (kind TEXT NOT NULL, name TEXT NOT NULL, version INTEGER NOT NULL,
                body TEXT NOT NULL, created {real} NOT NULL, PRIMARY KEY (kind, name, version))""",
        ],
    ),
    (
        8,  # runs: a description, and a number per experiment (Azure ML's run.number) from a counter
        [
            "ALTER TABLE runs ADD COLUMN description TEXT NOT NULL DEFAULT ''",
            "ALTER TABLE runs ADD COLUMN number INTEGER",
            "ALTER TABLE experiments ADD COLUMN run_count INTEGER NOT NULL DEFAULT 0",
            # existing runs are numbered in the order they were created, the counter set past them
            """UPDATE runs SET number = (SELECT COUNT(*) FROM runs r WHERE r.experiment = runs.experiment
                AND (r.created < runs.created OR (r.created = runs.created AND r.run_id <= runs.run_id)))""",
            "UPDATE experiments SET run_count = (SELECT COUNT(*) FROM runs WHERE runs.experiment = experiments.name)",
            "CREATE UNIQUE INDEX runs_number ON runs (experiment, number)",
        ],
    ),
    (
        9,  # runs by status, newest first: the liveness check (active and NotResponding runs) reads only those
        ["CREATE INDEX IF NOT EXISTS runs_by_status ON runs (status, created, run_id)"],
    ),
]

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_MAX_ERROR_BYTES = 1024 * 1024
_READ_PIECE = 64 * 1024 * 1024


def _check_times(**times: Any) -> None:
    for what, value in times.items():
        if value is not None and value is not UNSET:
            check_time(value, what)


def _error_json(error: Any) -> str:
    """A run's error as JSON text: an object of JSON values (finite numbers), at most 1 MiB."""
    if not isinstance(error, dict):
        raise ValidationError(f"a run's error must be a JSON object such as {{'message': '...'}}, got {error!r:.80}")
    try:
        text = json.dumps(error, allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise ValidationError(
            f"a run's error must hold JSON values (finite numbers, text, lists, objects): {exc}"
        ) from None
    if not _utf8_ok(text) or len(text) > _MAX_ERROR_BYTES:
        raise ValidationError(f"a run's error must be valid UTF-8 and at most {_MAX_ERROR_BYTES} bytes as JSON")
    return text


def _utf8_ok(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _clamp_step(step: int | None) -> int | None:
    return None if step is None else max(_INT64_MIN, min(_INT64_MAX, int(step)))


# One stored chunk holds at most this many points and about this many bytes (SQLite refuses rows over 1 GB,
# PostgreSQL values over 1 GB): longer logged chunks are stored as several rows, read back as one series.
MAX_CHUNK_POINTS = 16_384  # points per row: thinned reads touch few bytes of each row
MAX_CHUNK_BYTES = 128 * 1024 * 1024

_SCALAR = MetricKind.SCALAR.value

_RUN_COLUMNS = (
    "run_id, experiment, parent_id, display_name, run_type, target, status, created, "
    "start_time, end_time, heartbeat, error, description, number"
)


class Dialect:
    """What differs between SQLite and PostgreSQL."""

    name = "sqlite"
    types = {"id": "INTEGER PRIMARY KEY AUTOINCREMENT", "blob": "BLOB", "real": "REAL"}
    integrity_errors: tuple[type[BaseException], ...] = (sqlite3.IntegrityError,)
    operational_errors: tuple[type[BaseException], ...] = (sqlite3.OperationalError,)
    data_errors: tuple[type[BaseException], ...] = (sqlite3.DataError,)  # values the database cannot hold

    def __init__(self, uri: str) -> None:
        self.path = sqlite_path_from_uri(uri)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def connect(self) -> Any:
        conn = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=60000")
        return conn

    def sql(self, statement: str) -> str:
        return statement

    def begin(self, conn: Any) -> None:
        conn.execute("BEGIN IMMEDIATE")

    def lock_migrations(self, conn: Any) -> None:
        """Called inside the migration transaction; BEGIN IMMEDIATE already serializes writers."""

    def __str__(self) -> str:
        return f"sqlite:///{self.path}"


class PostgresDialect(Dialect):
    name = "postgresql"
    types = {"id": "BIGSERIAL PRIMARY KEY", "blob": "BYTEA", "real": "DOUBLE PRECISION"}

    def __init__(self, uri: str) -> None:
        try:
            import psycopg
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise StoreUnavailableError(
                "a postgresql:// tracking URI needs the PostgreSQL driver: pip install 'expboard[server]'"
            ) from exc
        self._psycopg = psycopg
        self.uri = uri.replace("postgresql+psycopg://", "postgresql://", 1)
        self.integrity_errors = (psycopg.errors.IntegrityError,)
        self.operational_errors = (psycopg.OperationalError,)
        self.data_errors = (psycopg.DataError,)  # e.g. NUL characters, which PostgreSQL text cannot hold

    def connect(self) -> Any:
        try:
            return self._psycopg.connect(self.uri, autocommit=True)
        except self._psycopg.OperationalError as exc:
            raise StoreUnavailableError(f"cannot connect to PostgreSQL at {self}: {exc}") from exc

    def sql(self, statement: str) -> str:
        return statement.replace("?", "%s")

    def begin(self, conn: Any) -> None:
        conn.execute("BEGIN")

    def lock_migrations(self, conn: Any) -> None:
        conn.execute("SELECT pg_advisory_xact_lock(4242017)")

    def __str__(self) -> str:
        parsed = urlparse(self.uri)
        return f"postgresql://{parsed.hostname}:{parsed.port or 5432}{parsed.path}"


def _broken(conn: Any) -> bool:
    """Whether a database connection is of no more use (PostgreSQL's was dropped: psycopg marks it broken)."""
    return bool(getattr(conn, "broken", False) or getattr(conn, "closed", False))


def sqlite_path_from_uri(uri: str) -> Path:
    """``sqlite:///relative.db``, ``sqlite:////abs/path.db`` -> a Path."""
    parsed = urlparse(uri)
    if parsed.scheme != "sqlite":
        raise ValidationError(f"not a sqlite URI: {uri!r}")
    path = unquote(uri[len("sqlite:///") :]) if uri.startswith("sqlite:///") else ""
    if not path or path == ":memory:":
        raise ValidationError(f"give the SQLite file in the URI, such as sqlite:///path/to/expboard.db (got {uri!r})")
    return Path(path)


class SqlStore(QueryStore):
    """Run history in SQLite or PostgreSQL; run files in a folder or object storage (``artifact_root``: a
    path, ``s3://bucket/prefix`` or an open :class:`~expboard.stores.files.FileStorage`).

    >>> store = SqlStore("sqlite:////tmp/ws/expboard.db", "/tmp/ws/artifacts")  # doctest: +SKIP
    """

    def __init__(self, uri: str, artifact_root: str | os.PathLike[str] | FileStorage) -> None:
        scheme = urlparse(uri).scheme
        if scheme == "sqlite":
            self.dialect: Dialect = Dialect(uri)
        elif scheme in ("postgresql", "postgres", "postgresql+psycopg"):
            self.dialect = PostgresDialect(uri)
        else:
            raise ValidationError(f"unsupported database URI {uri!r}: use sqlite:///... or postgresql://...")
        self.files: FileStorage = open_file_storage(artifact_root)
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._connections: list[Any] = []
        self._conn_lock = threading.Lock()
        self._closed = False
        self._migrate()

    # --- connections and transactions ------------------------------------------------------------
    def _conn(self) -> Any:
        if self._closed:
            raise StoreUnavailableError("the store is closed")
        conn = getattr(self._local, "conn", None)
        if conn is not None and _broken(conn):
            # PostgreSQL went away (a restart, a cut connection): this thread connects again
            with self._conn_lock:
                if conn in self._connections:
                    self._connections.remove(conn)
            try:
                conn.close()
            except Exception:
                pass
            conn = self._local.conn = None
        if conn is None:
            try:
                conn = self.dialect.connect()
            except self.dialect.operational_errors as exc:
                raise StoreUnavailableError(f"cannot open {self.dialect}: {exc}") from exc
            self._local.conn = conn
            with self._conn_lock:
                self._connections.append(conn)
        return conn

    @contextmanager
    def _write(self) -> Iterator[Any]:
        """One write transaction; writers of this process go one at a time."""
        with self._write_lock:
            conn = self._conn()
            try:
                try:
                    self.dialect.begin(conn)
                except self.dialect.operational_errors:
                    if not _broken(conn):
                        raise
                    conn = self._conn()  # a connection the server dropped meanwhile: once more on a new one
                    self.dialect.begin(conn)
            except self.dialect.operational_errors as exc:
                raise StoreUnavailableError(f"{self.dialect} is not available for writing: {exc}") from exc
            try:
                yield conn
            except self.dialect.data_errors + (UnicodeEncodeError,) as exc:
                conn.execute("ROLLBACK")
                raise ValidationError(f"{self.dialect} cannot store this value: {exc}") from exc
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            else:
                conn.execute("COMMIT")

    def _exec(self, conn: Any, statement: str, params: Sequence[Any] = ()) -> Any:
        return conn.execute(self.dialect.sql(statement), params)

    def _query(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        conn = self._conn()
        try:
            return list(conn.execute(self.dialect.sql(statement), params).fetchall())
        except self.dialect.operational_errors as exc:
            if not _broken(conn):
                raise
            try:  # a connection the server dropped meanwhile: once more on a new one
                return list(self._conn().execute(self.dialect.sql(statement), params).fetchall())
            except self.dialect.operational_errors as again:
                raise StoreUnavailableError(f"{self.dialect} is not available: {again}") from exc

    def _migrate(self) -> None:
        with self._write() as conn:
            self.dialect.lock_migrations(conn)
            self._exec(conn, "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            rows = self._exec(conn, "SELECT MAX(version) FROM schema_version").fetchall()
            current = rows[0][0] or 0
            latest = MIGRATIONS[-1][0]
            if current > latest:
                raise StoreUnavailableError(
                    f"{self.dialect} has schema version {current}, newer than this expboard knows ({latest}); "
                    "upgrade expboard"
                )
            for version, statements in MIGRATIONS:
                if version <= current:
                    continue
                for statement in statements:
                    self._exec(conn, statement.format(**self.dialect.types))
                if version == 2:
                    self._backfill_latest(conn)
                self._exec(conn, "INSERT INTO schema_version (version) VALUES (?)", (version,))

    def flush(self, timeout: float | None = None) -> None:
        """Nothing to wait for: every write is committed before its call returns."""

    def close(self) -> None:
        with self._conn_lock:
            self._closed = True
            for conn in self._connections:
                try:
                    conn.close()
                except Exception:
                    pass
            self._connections.clear()
        self.files.close()

    # --- experiments -----------------------------------------------------------------------------
    def get_or_create_experiment(self, name: str) -> ExperimentRecord:
        check_experiment_name(name)
        with self._write() as conn:
            self._exec(
                conn,
                "INSERT INTO experiments (name, created) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
                (name, time.time()),
            )
        return self.get_experiment(name)

    def get_experiment(self, name: str) -> ExperimentRecord:
        rows = self._query("SELECT name, created, archived FROM experiments WHERE name = ?", (name,))
        if not rows:
            raise NotFoundError(f"no experiment named {name!r}; create it with Experiment(ws, {name!r})")
        tags = self._query("SELECT key, value FROM experiment_tags WHERE experiment = ?", (name,))
        return ExperimentRecord(name=rows[0][0], created=rows[0][1], archived=bool(rows[0][2]), tags=dict(tags))

    def list_experiments(self) -> list[ExperimentRecord]:
        rows = self._query("SELECT name, created, archived FROM experiments ORDER BY created DESC, name")
        tags: dict[str, dict[str, str]] = {}
        for experiment, key, value in self._query("SELECT experiment, key, value FROM experiment_tags"):
            tags.setdefault(experiment, {})[key] = value
        return [ExperimentRecord(name=n, created=c, archived=bool(a), tags=tags.get(n, {})) for n, c, a in rows]

    def update_experiment(
        self, name: str, *, archived: bool | Any = UNSET, tags: Mapping[str, str | None] | None = None
    ) -> ExperimentRecord:
        for key, value in (tags or {}).items():
            check_key(key, "tag")
            if value is not None:
                check_text(str(value), f"value of tag {key!r}")
        self.get_experiment(name)
        with self._write() as conn:
            if archived is not UNSET:
                self._exec(conn, "UPDATE experiments SET archived = ? WHERE name = ?", (1 if archived else 0, name))
            tag_values = {k: None if v is None else str(v) for k, v in (tags or {}).items()}
            self._put_map(conn, "experiment_tags", {"experiment": name}, tag_values)
        return self.get_experiment(name)

    # --- runs ------------------------------------------------------------------------------------
    def create_run(self, run: RunRecord) -> RunRecord:
        check_run_id(run.run_id)
        if run.parent_id is not None:
            check_run_id(run.parent_id)
        _check_times(created=run.created, start_time=run.start_time, end_time=run.end_time, heartbeat=run.heartbeat)
        if run.created is None:
            raise ValidationError("created must be a time in seconds since 1970 (UTC)")
        check_text(run.display_name, "display name")
        check_text(run.description, "description")
        check_text(run.run_type, "run type")
        check_text(run.target, "compute target")
        error = _error_json(run.error) if run.error is not None else None
        for key, value in run.tags.items():
            check_key(key, "tag")
            check_text(value, f"value of tag {key!r}")
        for key, value in run.properties.items():
            check_key(key, "property")
            check_text(value, f"value of property {key!r}")
        self.get_experiment(run.experiment)
        if run.parent_id is not None:
            self.get_run(run.parent_id)
        try:
            with self._write() as conn:
                # the experiment's row is the lock: two processes creating runs never share a number
                self._exec(conn, "UPDATE experiments SET run_count = run_count + 1 WHERE name = ?", (run.experiment,))
                number = self._exec(
                    conn, "SELECT run_count FROM experiments WHERE name = ?", (run.experiment,)
                ).fetchall()[0][0]
                self._exec(
                    conn,
                    f"INSERT INTO runs ({_RUN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        run.run_id,
                        run.experiment,
                        run.parent_id,
                        run.display_name,
                        run.run_type,
                        run.target,
                        run.status.value,
                        run.created,
                        run.start_time,
                        run.end_time,
                        run.heartbeat,
                        error,
                        run.description,
                        number,
                    ),
                )
                self._put_map(conn, "tags", {"run_id": run.run_id}, run.tags)
                self._put_map(conn, "properties", {"run_id": run.run_id}, run.properties)
        except self.dialect.integrity_errors as exc:
            raise ConflictError(f"a run with id {run.run_id!r} already exists") from exc
        return self.get_run(run.run_id)

    def _put_map(
        self,
        conn: Any,
        table: str,
        owner: Mapping[str, Any],
        values: Mapping[str, Any],
        key: str = "key",
        value: str = "value",
    ) -> None:
        """Set (or, for None, delete) each key of ``values`` in a key-value ``table`` of rows ``owner`` names:
        run tags and properties, experiment tags, model tags, properties and aliases."""
        cols = [*owner, key]
        where = " AND ".join(f"{c} = ?" for c in cols)
        insert = (
            f"INSERT INTO {table} ({', '.join(cols)}, {value}) VALUES ({', '.join('?' * (len(cols) + 1))}) "
            f"ON CONFLICT ({', '.join(cols)}) DO UPDATE SET {value} = excluded.{value}"
        )
        for k, v in values.items():
            if v is None:
                self._exec(conn, f"DELETE FROM {table} WHERE {where}", (*owner.values(), k))
            else:
                self._exec(conn, insert, (*owner.values(), k, v))

    def _runs_from_rows(self, rows: list[tuple[Any, ...]]) -> list[RunRecord]:
        if not rows:
            return []
        ids = [r[0] for r in rows]
        tags: dict[str, dict[str, str]] = {i: {} for i in ids}
        props: dict[str, dict[str, str]] = {i: {} for i in ids}
        for start in range(0, len(ids), 500):
            part = ids[start : start + 500]
            among, args = self._among("run_id", part)
            for run_id, key, value in self._query(f"SELECT run_id, key, value FROM tags WHERE {among}", args):
                tags[run_id][key] = value
            for run_id, key, value in self._query(f"SELECT run_id, key, value FROM properties WHERE {among}", args):
                props[run_id][key] = value
        out = []
        for r in rows:
            out.append(
                RunRecord(
                    run_id=r[0],
                    experiment=r[1],
                    parent_id=r[2],
                    display_name=r[3],
                    run_type=r[4],
                    target=r[5],
                    status=RunStatus(r[6]),
                    created=r[7],
                    start_time=r[8],
                    end_time=r[9],
                    heartbeat=r[10],
                    error=json.loads(r[11]) if r[11] else None,
                    tags=dict(sorted(tags[r[0]].items())),
                    properties=dict(sorted(props[r[0]].items())),
                    description=r[12],
                    number=r[13],
                )
            )
        return out

    def get_run(self, run_id: str) -> RunRecord:
        check_run_id(run_id)
        rows = self._query(f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id = ?", (run_id,))
        if not rows:
            raise NotFoundError(f"no run with id {run_id!r}; list runs with `expboard runs list`")
        return self._runs_from_rows(rows)[0]

    def list_runs(
        self,
        experiment: str | None = None,
        parent_id: str | None | Any = UNSET,
        statuses: Sequence[RunStatus] | None = None,
    ) -> list[RunRecord]:
        where, params = [], []
        if experiment is not None:
            where.append("experiment = ?")
            params.append(experiment)
        if parent_id is None:
            where.append("parent_id IS NULL")
        elif parent_id is not UNSET:
            check_run_id(parent_id)
            where.append("parent_id = ?")
            params.append(parent_id)
        if statuses:
            where.append(f"status IN ({', '.join('?' * len(statuses))})")
            params.extend(RunStatus(s).value for s in statuses)
        where.append("deleted_time IS NULL")
        clause = f" WHERE {' AND '.join(where)}"
        rows = self._query(f"SELECT {_RUN_COLUMNS} FROM runs{clause} ORDER BY created DESC, run_id DESC", params)
        return self._runs_from_rows(rows)

    def list_children(self, run_ids: Sequence[str]) -> list[RunRecord]:
        ids = list(dict.fromkeys(run_ids))
        for run_id in ids:
            check_run_id(run_id)
        out: list[RunRecord] = []
        for start in range(0, len(ids), 500):
            part = ids[start : start + 500]
            rows = self._query(
                f"SELECT {_RUN_COLUMNS} FROM runs WHERE parent_id IN ({', '.join('?' * len(part))}) "
                "AND deleted_time IS NULL",
                part,
            )
            out += self._runs_from_rows(rows)
        return out

    def query_runs(
        self,
        experiment: str | None = None,
        parent_id: str | None | Any = UNSET,
        filter: RunFilter | None = None,
        limit: int | None = None,
        page_token: str | None = None,
    ) -> RunPage:
        size = page_size(limit)
        where: list[str] = []
        params: list[Any] = []
        if experiment is not None:
            where.append("experiment = ?")
            params.append(experiment)
        if parent_id is None:
            where.append("parent_id IS NULL")
        elif parent_id is not UNSET:
            where.append("parent_id = ?")
            params.append(parent_id)
        if page_token:
            created, run_id = decode_page_token(page_token)
            where.append("(created < ? OR (created = ? AND run_id < ?))")
            params += [created, created, run_id]
        f = filter or RunFilter()
        if f.statuses:
            where.append(f"status IN ({', '.join('?' * len(f.statuses))})")
            params.extend(s.value for s in f.statuses)
        for table, wanted in (("tags", f.tags), ("properties", f.properties)):
            for key, value in wanted.items():
                cond = f"SELECT 1 FROM {table} x WHERE x.run_id = runs.run_id AND x.key = ?"
                params.append(key)
                if value is not None:
                    cond += " AND x.value = ?"
                    params.append(value)
                where.append(f"EXISTS ({cond})")
        for name, op, number in f.metrics:  # the latest point: highest step, then time, then value
            where.append(
                f"(SELECT c.last_value FROM metric_chunks c WHERE c.run_id = runs.run_id AND c.name = ? "
                f"AND c.kind = '{_SCALAR}' AND c.last_time IS NOT NULL "
                f"ORDER BY c.step_max DESC, c.last_time DESC, c.last_value DESC LIMIT 1) {'<>' if op == '!=' else op} ?"
            )
            params += [name, number]
        if f.text:
            escaped = f.text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            where.append("LOWER(display_name) LIKE ? ESCAPE '\\'")
            params.append(f"%{escaped}%")
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        rows = self._query(
            f"SELECT {_RUN_COLUMNS} FROM runs{clause} ORDER BY created DESC, run_id DESC LIMIT ?", [*params, size + 1]
        )
        more = len(rows) > size
        runs = self._runs_from_rows(rows[:size])
        token = encode_page_token(runs[-1].created, runs[-1].run_id) if more else None
        return RunPage(runs, token)

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
        check_run_id(run_id)
        _check_times(start_time=start_time, end_time=end_time, heartbeat=heartbeat)
        if display_name is not UNSET:
            check_text(display_name, "display name")
        if description is not UNSET:
            check_text(description, "description")
        sets: list[str] = []
        params: list[Any] = []
        for column, value in (
            ("status", RunStatus(status).value if status is not UNSET else UNSET),
            ("start_time", start_time),
            ("end_time", end_time),
            ("heartbeat", heartbeat),
            ("error", _error_json(error) if error is not UNSET and error is not None else error),
            ("display_name", display_name),
            ("description", description),
        ):
            if value is not UNSET:
                sets.append(f"{column} = ?")
                params.append(value)
        if sets:
            where = "run_id = ?"
            params.append(run_id)
            if only_if_status:
                where += f" AND status IN ({', '.join('?' * len(only_if_status))})"
                params.extend(RunStatus(s).value for s in only_if_status)
            with self._write() as conn:
                self._exec(conn, f"UPDATE runs SET {', '.join(sets)} WHERE {where}", params)
        record = self.get_run(run_id)
        if status is not UNSET and record.status == RunStatus(status) and record.status.is_terminal:
            self.files.finalize(run_id)  # the run has ended: its appended files may be compacted
        return record

    def set_tags(self, run_id: str, tags: Mapping[str, str | None]) -> None:
        for key, value in tags.items():
            check_key(key, "tag")
            if value is not None:
                check_text(str(value), f"value of tag {key!r}")
        self.get_run(run_id)
        with self._write() as conn:
            self._set_tags_in(conn, run_id, tags)

    def _set_tags_in(self, conn: Any, run_id: str, tags: Mapping[str, str | None]) -> None:
        for key, value in tags.items():
            check_key(key, "tag")
            if value is None:
                self._exec(conn, "DELETE FROM tags WHERE run_id = ? AND key = ?", (run_id, key))
            else:
                self._put_map(conn, "tags", {"run_id": run_id}, {key: str(value)})

    def log_run_batch(
        self,
        run_id: str,
        *,
        properties: Mapping[str, str] | None = None,
        tags: Mapping[str, str | None] | None = None,
        chunks: Sequence[MetricChunk] = (),
        display_name: str | Any = UNSET,
    ) -> None:
        properties, tags = dict(properties or {}), dict(tags or {})
        for key, value in properties.items():
            check_key(key, "property")
            check_text(str(value), f"value of property {key!r}")
        for key, tag in tags.items():
            check_key(key, "tag")
            if tag is not None:
                check_text(str(tag), f"value of tag {key!r}")
        if display_name is not UNSET:
            check_text(display_name, "display name")
        if any(c.run_id != run_id for c in chunks):
            raise ValidationError(f"log_run_batch: every metric chunk must be of run {run_id!r}")
        rows = self._metric_rows(chunks)
        self.get_run(run_id)
        with self._write() as conn:
            if display_name is not UNSET:
                self._exec(conn, "UPDATE runs SET display_name = ? WHERE run_id = ?", (display_name, run_id))
            self._add_properties_in(conn, run_id, properties)
            self._set_tags_in(conn, run_id, tags)
            self._insert_metric_rows(conn, rows, None)

    def add_properties(self, run_id: str, properties: Mapping[str, str]) -> None:
        for key, value in properties.items():
            check_key(key, "property")
            check_text(str(value), f"value of property {key!r}")
        self.get_run(run_id)
        with self._write() as conn:
            self._add_properties_in(conn, run_id, properties)

    def _add_properties_in(self, conn: Any, run_id: str, properties: Mapping[str, str]) -> None:
        for key, value in properties.items():
            check_key(key, "property")
            rows = self._exec(
                conn, "SELECT value FROM properties WHERE run_id = ? AND key = ?", (run_id, key)
            ).fetchall()
            if rows and rows[0][0] != str(value):
                raise ConflictError(
                    f"property {key!r} of run {run_id!r} is already {rows[0][0]!r}; properties can be added "
                    "but not changed (use a tag for values that change)"
                )
            if not rows:
                self._exec(
                    conn, "INSERT INTO properties (run_id, key, value) VALUES (?, ?, ?)", (run_id, key, str(value))
                )

    # --- metrics ---------------------------------------------------------------------------------
    def log_metrics(self, chunks: Sequence[MetricChunk], batch_id: str | None = None) -> None:
        rows = self._metric_rows(chunks)
        if not rows and batch_id is None:
            return
        try:
            with self._write() as conn:
                self._insert_metric_rows(conn, rows, batch_id)
        except self.dialect.integrity_errors as exc:
            missing = {c.run_id for c in chunks} - {r.run_id for r in self._runs_exist({c.run_id for c in chunks})}
            if missing:
                raise NotFoundError(f"cannot log metrics: no run with id {sorted(missing)[0]!r}") from exc
            if batch_id is not None:  # a concurrent retry of the same batch won the race
                return
            raise

    def _metric_rows(self, chunks: Sequence[MetricChunk]) -> list[tuple[Any, ...]]:
        """The chunk rows of ``chunks``, checked (nothing written)."""
        rows: list[tuple[Any, ...]] = []
        for chunk in chunks:
            check_chunk(chunk)
            n = len(chunk.steps)
            if n == 0:
                continue
            try:
                kind = MetricKind(chunk.kind).value
                steps = np.asarray(chunk.steps, dtype=np.int64)
                times = np.asarray(chunk.wall_times, dtype=np.float64)
                # a long chunk becomes several rows, each one the database can hold (read back in id order)
                for start in range(0, n, MAX_CHUNK_POINTS):
                    stop = min(n, start + MAX_CHUNK_POINTS)
                    self._chunk_rows(rows, chunk, kind, steps, times, start, stop)
            except (TypeError, ValueError, OverflowError, RecursionError) as exc:
                raise ValidationError(
                    f"metric {chunk.name!r} of run {chunk.run_id!r} cannot be stored: {exc} (steps must be integers "
                    "within int64, wall times numbers, values int, float, bool, str, None or JSON objects)"
                ) from exc
        return rows

    def _insert_metric_rows(self, conn: Any, rows: list[tuple[Any, ...]], batch_id: str | None) -> None:
        """Store prepared metric rows in the open transaction ``conn`` (nothing when ``batch_id`` was seen)."""
        if batch_id is not None:
            seen = self._exec(conn, "SELECT 1 FROM metric_batches WHERE batch_id = ?", (batch_id,)).fetchall()
            if seen:
                return
            self._exec(conn, "INSERT INTO metric_batches (batch_id, created) VALUES (?, ?)", (batch_id, time.time()))
        if rows:
            conn.cursor().executemany(
                self.dialect.sql(
                    "INSERT INTO metric_chunks (run_id, name, kind, n, step_min, step_max, dtype, steps, "
                    "wall_times, vals, last_time, last_value) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                ),
                rows,
            )

    def _chunk_rows(
        self,
        rows: list[tuple[Any, ...]],
        chunk: MetricChunk,
        kind: str,
        steps: np.ndarray,
        times: np.ndarray,
        start: int,
        stop: int,
    ) -> None:
        """Append the rows of points ``start:stop`` of ``chunk``, halving the range until a row fits."""
        dtype, vals = encode_values(chunk.values[start:stop])
        n = stop - start
        if n > 1 and 16 * n + len(vals) > MAX_CHUNK_BYTES:
            middle = start + n // 2
            self._chunk_rows(rows, chunk, kind, steps, times, start, middle)
            self._chunk_rows(rows, chunk, kind, steps, times, middle, stop)
            return
        part = steps[start:stop]
        rows.append(
            (
                chunk.run_id,
                chunk.name,
                kind,
                n,
                int(part.min()),
                int(part.max()),
                dtype,
                pack_i8(part),
                pack_f8(times[start:stop]),
                vals,
                *_latest_point(part, times[start:stop], chunk.values[start:stop], dtype),
            )
        )

    def _runs_exist(self, ids: set[str]) -> list[RunRecord]:
        out = []
        for run_id in ids:
            try:
                out.append(self.get_run(run_id))
            except NotFoundError:
                pass
        return out

    def get_metrics(
        self,
        run_id: str,
        name: str | None = None,
        min_step: int | None = None,
        max_step: int | None = None,
        max_points: int | None = None,
    ) -> list[MetricSeries]:
        if max_points is not None and max_points < 1:
            raise ValidationError(f"max_points must be at least 1 (got {max_points})")
        check_run_id(run_id)
        min_step, max_step = _clamp_step(min_step), _clamp_step(max_step)  # beyond int64 nothing is stored
        if max_points is not None and min_step is None and max_step is None:
            return self._thinned(run_id, name, max_points)
        where: list[str] = ["run_id = ?"]
        params: list[Any] = [run_id]
        if name is not None:
            where.append("name = ?")
            params.append(name)
        if min_step is not None:
            where.append("step_max >= ?")
            params.append(int(min_step))
        if max_step is not None:
            where.append("step_min <= ?")
            params.append(int(max_step))
        meta = self._query(
            f"SELECT id, name, kind, n, dtype, step_min, step_max FROM metric_chunks WHERE {' AND '.join(where)} "
            "ORDER BY id",
            params,
        )
        out = []
        for mname, (kind, chunks) in _group_chunks(meta).items():
            lo = _INT64_MIN if min_step is None else min_step
            hi = _INT64_MAX if max_step is None else max_step
            series = self._read_series(run_id, mname, kind, chunks, lo, hi)
            if max_points is not None and len(series) > max_points:
                series = downsample(series, max_points)
            out.append(series)
        return out

    def _read_series(
        self, run_id: str, name: str, kind: str, chunks: list[tuple[int, int, str, int, int]], lo: int, hi: int
    ) -> MetricSeries:
        """One series from its chunks (id, n, dtype, step_min, step_max), decoded straight into arrays
        allocated once for all of it: the stored columns are fetched a page of rows at a time, so reading a
        long series costs its decoded size plus one page, never a copy of every point."""
        total = sum(c[1] for c in chunks)
        dtypes = {c[2] for c in chunks}
        numeric = len(dtypes) == 1 and next(iter(dtypes)) != "json"
        steps = np.empty(total, dtype=np.int64)
        walls = np.empty(total, dtype=np.float64)
        values: Any = np.empty(total, dtype=_NUMPY[next(iter(dtypes))]) if numeric else []
        filled = 0
        for page in _pages(chunks):
            rows = self._query(
                f"SELECT id, steps, wall_times, vals FROM metric_chunks WHERE id IN ({', '.join('?' * len(page))})",
                [c[0] for c in page],
            )
            by_id = {int(r[0]): r for r in rows}
            for cid, n, dtype, step_min, step_max in page:
                _, s, t, v = by_id.pop(cid)
                chunk_steps = np.frombuffer(s, dtype="<i8")
                whole = step_min >= lo and step_max <= hi
                keep = None if whole else (chunk_steps >= lo) & (chunk_steps <= hi)
                m = n if keep is None else int(np.count_nonzero(keep))
                if m == 0:
                    continue
                end = filled + m
                chunk_walls = np.frombuffer(t, dtype="<f8")
                if keep is None:
                    steps[filled:end], walls[filled:end] = chunk_steps, chunk_walls
                else:
                    steps[filled:end], walls[filled:end] = chunk_steps[keep], chunk_walls[keep]
                if numeric:
                    column = np.frombuffer(v, dtype=_WIRE[dtype])
                    values[filled:end] = column if keep is None else column[keep]
                else:
                    items = decode_values(dtype, bytes(v))
                    items = items.tolist() if isinstance(items, np.ndarray) else items
                    values.extend(
                        items if keep is None else [x for x, k in zip(items, keep.tolist(), strict=True) if k]
                    )
                filled = end
            del rows, by_id
        if filled < total:  # a step range left points out: give back the rest in place
            steps.resize(filled, refcheck=False)
            walls.resize(filled, refcheck=False)
            if numeric:
                values.resize(filled, refcheck=False)
        if not numeric and not chunks:
            values = np.zeros(0, dtype=np.float64)
        return MetricSeries(run_id, name, MetricKind(kind), steps, walls, values)

    def read_metric_chunks(
        self, run_ids: Sequence[str], after: int = 0, max_points: int = 1_000_000
    ) -> MetricChunkPage:
        ids = _chunk_run_ids(run_ids)
        if not ids:
            return MetricChunkPage([], after, False)
        marks = ", ".join("?" * len(ids))
        meta = self._query(
            f"SELECT id, n FROM metric_chunks WHERE run_id IN ({marks}) AND id > ? ORDER BY id LIMIT ?",
            [*ids, int(after), _PAGE_ROWS * 5],
        )
        take: list[int] = []
        points = 0
        for cid, n in meta:
            if take and points + int(n) > max_points:
                break
            take.append(int(cid))
            points += int(n)
        more = len(take) < len(meta) or len(meta) == _PAGE_ROWS * 5
        chunks: list[MetricChunk] = []
        for start in range(0, len(take), _PAGE_ROWS):
            part = take[start : start + _PAGE_ROWS]
            rows = self._query(
                "SELECT run_id, name, kind, dtype, steps, wall_times, vals FROM metric_chunks "
                f"WHERE id IN ({', '.join('?' * len(part))}) ORDER BY id",
                part,
            )
            for run_id, mname, kind, dtype, s, t, v in rows:
                chunks.append(
                    MetricChunk(
                        run_id, mname, MetricKind(kind), unpack_i8(s), unpack_f8(t), decode_values(dtype, bytes(v))
                    )
                )
        return MetricChunkPage(chunks, take[-1] if take else int(after), more)

    def count_metric_points(self, run_id: str, name: str, kind: MetricKind | None = None) -> int:
        where, params = "run_id = ? AND name = ?", [run_id, name]
        if kind is not None:
            where += " AND kind = ?"
            params.append(MetricKind(kind).value)
        rows = self._query(f"SELECT COALESCE(SUM(n), 0) FROM metric_chunks WHERE {where}", params)
        return int(rows[0][0])

    def _thinned(self, run_id: str, name: str | None, max_points: int) -> list[MetricSeries]:
        """``get_metrics`` with ``max_points`` and no step range, thinned in the database.

        The chunks' sizes are read first (no points); the evenly spaced picks, first and last point included,
        are mapped to chunks. A chunk with few picks for its size gives just those points (SQLite: incremental
        blob reads of 8 bytes; PostgreSQL: ``substr`` of the packed columns in SQL); a chunk with many picks,
        or of JSON values, is read whole and indexed with numpy. So a long series costs about ``max_points``
        points of transfer, never a decode of every point."""
        where, params = ["run_id = ?"], [run_id]
        if name is not None:
            where.append("name = ?")
            params.append(name)
        meta = self._query(
            f"SELECT name, kind, id, n, dtype FROM metric_chunks WHERE {' AND '.join(where)} ORDER BY id", params
        )
        by_name: dict[str, tuple[str, list[tuple[int, int, str]]]] = {}
        for mname, kind, cid, n, dtype in meta:
            by_name.setdefault(mname, (kind, []))[1].append((int(cid), int(n), str(dtype)))
        out = []
        for mname, (kind, chunks) in by_name.items():
            sizes = np.array([n for _, n, _ in chunks], dtype=np.int64)
            total = int(sizes.sum())
            if total <= max_points:
                keep = np.arange(total, dtype=np.int64)
            elif max_points == 1:
                keep = np.array([total - 1], dtype=np.int64)
            else:
                keep = np.unique(np.round(np.linspace(0, total - 1, max_points)).astype(np.int64))
            starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
            owner = np.searchsorted(starts, keep, side="right") - 1
            dtypes = {c[2] for c in chunks}
            numeric = len(dtypes) == 1 and next(iter(dtypes)) != "json"
            steps = np.empty(len(keep), dtype=np.int64)
            walls = np.empty(len(keep), dtype=np.float64)
            values: Any = np.empty(len(keep), dtype=_NUMPY[next(iter(dtypes))]) if numeric else [None] * len(keep)
            owners, first = np.unique(owner, return_index=True)
            bounds = [*first.tolist(), len(keep)]
            whole: list[tuple[int, int, int]] = []  # chunk index, first and last+1 position in keep
            points: list[tuple[int, int, int, int, int]] = []  # chunk id, offset, value byte, width, position
            blob_points: list[tuple[int, int, int, int, int]] = []  # the same, read with SQLite's blob I/O
            blob_reads = self._blob_reads_available()
            for j, ci in enumerate(owners.tolist()):
                cid, n, dtype = chunks[ci]
                width = _WIDTHS.get(dtype)
                count = bounds[j + 1] - bounds[j]
                big = blob_reads and n > _BLOB_READ_MIN_POINTS  # seeking in one blob beats reading it whole
                if width is None or count * 8 >= n or (count > 64 and not big):
                    whole.append((ci, bounds[j], bounds[j + 1]))
                else:
                    offsets = (keep[bounds[j] : bounds[j + 1]] - starts[ci]).tolist()
                    target = blob_points if big else points
                    target += [(cid, o, o * width, width, bounds[j] + k) for k, o in enumerate(offsets)]
            self._read_whole(chunks, starts, keep, whole, steps, walls, values, numeric)
            chunk_dtypes = {c[0]: c[2] for c in chunks}
            self._read_points(points, chunk_dtypes, steps, walls, values, blobs=False)
            self._read_points(blob_points, chunk_dtypes, steps, walls, values, blobs=True)
            out.append(MetricSeries(run_id, mname, MetricKind(kind), steps, walls, values))
        return out

    def _blob_reads_available(self) -> bool:
        return self.dialect.name == "sqlite" and hasattr(sqlite3.Connection, "blobopen")

    def _read_whole(
        self,
        chunks: list[tuple[int, int, str]],
        starts: np.ndarray,
        keep: np.ndarray,
        whole: list[tuple[int, int, int]],
        steps: np.ndarray,
        walls: np.ndarray,
        values: Any,
        numeric: bool,
    ) -> None:
        by_id = {chunks[ci][0]: (ci, a, b) for ci, a, b in whole}
        ids = list(by_id)
        for start in range(0, len(ids), 200):
            part = ids[start : start + 200]
            marks = ", ".join("?" * len(part))
            sql = f"SELECT id, dtype, steps, wall_times, vals FROM metric_chunks WHERE id IN ({marks})"
            for cid, dtype, s, t, v in self._query(sql, part):
                ci, a, b = by_id[int(cid)]
                offsets = keep[a:b] - starts[ci]
                steps[a:b] = unpack_i8(bytes(s))[offsets]
                walls[a:b] = unpack_f8(bytes(t))[offsets]
                column = decode_values(dtype, bytes(v))
                if numeric:
                    values[a:b] = np.asarray(column)[offsets]
                else:
                    items = column.tolist() if isinstance(column, np.ndarray) else column
                    values[a:b] = [items[o] for o in offsets.tolist()]

    def _read_points(
        self,
        points: list[tuple[int, int, int, int, int]],
        dtypes: dict[int, str],
        steps: np.ndarray,
        walls: np.ndarray,
        values: Any,
        blobs: bool,
    ) -> None:
        if not points:
            return
        if blobs:  # SQLite reads just those bytes of the stored columns
            conn = self._conn()
            by_chunk: dict[int, list[tuple[int, int, int, int, int]]] = {}
            for p in points:
                by_chunk.setdefault(p[0], []).append(p)
            for cid, picks in by_chunk.items():
                with (
                    conn.blobopen("metric_chunks", "steps", cid, readonly=True) as bs,
                    conn.blobopen("metric_chunks", "wall_times", cid, readonly=True) as bt,
                    conn.blobopen("metric_chunks", "vals", cid, readonly=True) as bv,
                ):
                    raw_s, raw_t, raw_v = bytearray(), bytearray(), bytearray()
                    for _, o, vpos, width, _ in picks:
                        bs.seek(o * 8)
                        raw_s += bs.read(8)
                        bt.seek(o * 8)
                        raw_t += bt.read(8)
                        bv.seek(vpos)
                        raw_v += bv.read(width)
                positions = [p[4] for p in picks]
                steps[positions] = unpack_i8(bytes(raw_s))
                walls[positions] = unpack_f8(bytes(raw_t))
                column = decode_values(dtypes[cid], bytes(raw_v))
                if isinstance(values, np.ndarray):
                    values[positions] = column
                else:
                    for pos, v in zip(positions, np.asarray(column).tolist(), strict=True):
                        values[pos] = v
            return
        for start in range(0, len(points), 500):
            batch = points[start : start + 500]
            pick = ", ".join(
                ["(CAST(? AS BIGINT), CAST(? AS INTEGER), CAST(? AS INTEGER), CAST(? AS INTEGER))"] * len(batch)
            )
            rows = self._query(
                "SELECT p.column2, c.dtype, substr(c.steps, p.column2 * 8 + 1, 8), "
                "substr(c.wall_times, p.column2 * 8 + 1, 8), substr(c.vals, p.column3, p.column4), p.column1 "
                f"FROM (VALUES {pick}) AS p JOIN metric_chunks c ON c.id = p.column1",
                [x for cid, o, vpos, width, _ in batch for x in (cid, o, vpos + 1, width)],
            )
            where = {(cid, o): pos for cid, o, _, _, pos in batch}
            for offset, dtype, step, wall, val, cid in rows:
                pos = where[(int(cid), int(offset))]
                steps[pos] = unpack_i8(bytes(step))[0]
                walls[pos] = unpack_f8(bytes(wall))[0]
                value = decode_values(dtype, bytes(val))[0]
                values[pos] = value.item() if isinstance(value, np.generic) and isinstance(values, list) else value

    def get_metric_info(self, run_ids: Sequence[str]) -> list[MetricInfo]:
        ids = list(dict.fromkeys(run_ids))
        out: list[MetricInfo] = []
        for start in range(0, len(ids), 500):
            part = ids[start : start + 500]
            marks = ", ".join("?" * len(part))
            groups = self._query(
                "SELECT run_id, name, MIN(kind), SUM(n), MAX(step_max), MAX(id), "
                "COUNT(DISTINCT dtype), MIN(dtype) "
                f"FROM metric_chunks WHERE run_id IN ({marks}) GROUP BY run_id, name",
                part,
            )
            last_ids = [int(g[5]) for g in groups]
            last: dict[int, tuple[int, float, Any]] = {}
            for s2 in range(0, len(last_ids), 500):
                chunk_ids = last_ids[s2 : s2 + 500]
                rows = self._query(
                    "SELECT id, dtype, substr(steps, 8 * n - 7, 8), substr(wall_times, 8 * n - 7, 8), "
                    "CASE dtype WHEN 'json' THEN vals WHEN 'b1' THEN substr(vals, n, 1) "
                    "ELSE substr(vals, 8 * n - 7, 8) END "
                    f"FROM metric_chunks WHERE id IN ({', '.join('?' * len(chunk_ids))})",
                    chunk_ids,
                )
                for cid, dtype, step, wall, val in rows:
                    value = decode_values(dtype, bytes(val))[-1]
                    last[int(cid)] = (
                        int(unpack_i8(bytes(step))[0]),
                        float(unpack_f8(bytes(wall))[0]),
                        value.item() if isinstance(value, np.generic) else value,
                    )
            for run_id, mname, kind, count, max_step, last_id, dtypes, dtype in groups:
                step, wall, value = last[int(last_id)]
                out.append(
                    MetricInfo(
                        run_id=run_id,
                        name=mname,
                        kind=MetricKind(kind),
                        count=int(count),
                        max_step=int(max_step),
                        last_step=step,
                        last_wall_time=wall,
                        last_value=value,
                        numeric=int(dtypes) == 1 and dtype != "json",  # one array type, as get_metrics returns
                    )
                )
        return out

    # --- files -----------------------------------------------------------------------------------
    def write_file(self, run_id: str, name: str, data: bytes) -> FileInfo:
        name = check_file_name(name, may_be_folder=False)  # stored and answered as normalized: a//b is a/b
        self.get_run(run_id)
        return self.files.write(run_id, name, data)

    def append_file(self, run_id: str, name: str, data: bytes, offset: int) -> FileInfo:
        name = check_file_name(name, may_be_folder=False)
        if not 0 <= offset <= _INT64_MAX:
            raise ValidationError(f"offset must be from 0 to {_INT64_MAX}, got {offset}")
        self.get_run(run_id)
        return self.files.append(run_id, name, data, offset)

    def read_file(self, run_id: str, name: str, offset: int = 0, length: int | None = None) -> bytes:
        check_run_id(run_id)
        name = check_file_name(name)
        if not 0 <= offset <= _INT64_MAX or (length is not None and not 0 <= length <= _INT64_MAX):
            raise ValidationError(f"offset and length must be from 0 to {_INT64_MAX}")
        try:
            if length is None or length <= _READ_PIECE:
                return self.files.read(run_id, name, offset, length)
            # a large length asks for up to that much, not for that much memory: read in pieces until the end
            parts: list[bytes] = []
            while length > 0:
                part = self.files.read(run_id, name, offset, min(length, _READ_PIECE))
                parts.append(part)
                offset, length = offset + len(part), length - len(part)
                if len(part) < _READ_PIECE:
                    break
            return b"".join(parts)
        except OSError as exc:
            if exc.errno == errno.EINVAL:  # an offset past what any file system holds: past the end
                return b""
            raise

    def list_files(self, run_id: str, prefix: str = "") -> list[FileInfo]:
        check_run_id(run_id)
        return self.files.list(run_id, prefix)

    def open_file_writer(self, run_id: str, name: str) -> FileWriter:
        self.get_run(run_id)
        return self.files.open_writer(run_id, name)

    def iter_file(self, run_id: str, name: str, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        return self.files.iter_read(run_id, name, offset, length)

    def file_info(self, run_id: str, name: str) -> FileInfo:
        return self.files.stat(run_id, name)

    def open_file_read(
        self, run_id: str, name: str, offset: int = 0, length: int | None = None
    ) -> tuple[FileInfo, Iterator[bytes]]:
        return self.files.open_read(run_id, name, offset, length)

    def presigned_file_url(self, run_id: str, name: str, min_size: int = 0) -> str | None:
        check_run_id(run_id)
        return self.files.presigned_url(run_id, name, min_size)

    # --- queries over many runs (QueryStore) -------------------------------------------------------
    def _among(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        """``column IN (...)``: one array parameter on PostgreSQL (long placeholder lists are slow to
        prepare), one placeholder per value on SQLite."""
        if self.dialect.name == "postgresql":
            return f"{column} = ANY(?)", [list(values)]
        return f"{column} IN ({', '.join('?' * len(values))})", list(values)

    def _backfill_latest(self, conn: Any) -> None:
        """Fill the latest-point columns of chunks stored before they existed (once, while migrating)."""
        rows = self._exec(
            conn, "SELECT id, steps, wall_times, vals, dtype FROM metric_chunks WHERE dtype IN ('f8', 'i8', 'b1')"
        ).fetchall()
        updates = []
        for chunk_id, steps, times, vals, dtype in rows:
            values = decode_values(dtype, bytes(vals))
            last_time, last_value = _latest_point(unpack_i8(bytes(steps)), unpack_f8(bytes(times)), values, dtype)
            updates.append((last_time, last_value, chunk_id))
        if updates:
            conn.cursor().executemany(
                self.dialect.sql("UPDATE metric_chunks SET last_time = ?, last_value = ? WHERE id = ?"), updates
            )

    def _like(self, column: str, op: str) -> str:
        """Case-sensitive LIKE and case-insensitive ILIKE in both dialects (SQLite's LIKE ignores case)."""
        if self.dialect.name == "postgresql":
            return f"{column} {op} ?"
        return f"{column} GLOB ?" if op == "LIKE" else f"{column} LIKE ?"

    def _like_param(self, op: str, pattern: str) -> str:
        if self.dialect.name == "postgresql" or op == "ILIKE":
            return pattern
        out = []
        for ch in pattern:  # a LIKE pattern as a GLOB pattern
            out.append("*" if ch == "%" else "?" if ch == "_" else f"[{ch}]" if ch in "*?[]" else ch)
        return "".join(out)

    def _value_expr(self, field: str, key: str, params: list[Any]) -> str:
        """The SQL expression of a run's attribute, tag, property or latest metric value."""
        if field == "attribute":
            if key not in RUN_ATTRIBUTES:
                raise ValidationError(f"unknown run attribute {key!r}: use one of {', '.join(RUN_ATTRIBUTES)}")
            return f"r.{key}"
        if field in ("tag", "property"):
            params.append(key)
            table = "tags" if field == "tag" else "properties"
            return f"(SELECT x.value FROM {table} x WHERE x.run_id = r.run_id AND x.key = ?)"
        if field == "metric":
            params.append(key)
            return (
                "(SELECT c.last_value FROM metric_chunks c WHERE c.run_id = r.run_id AND c.name = ? "
                "AND c.last_time IS NOT NULL ORDER BY c.step_max DESC, c.last_time DESC, c.last_value DESC LIMIT 1)"
            )
        raise ValidationError(f"unknown run field {field!r}: use metric, property, tag or attribute")

    def _condition(self, f: RunCondition, params: list[Any]) -> str:
        op = f.op.upper()
        if f.field in ("tag", "property") and op in ("IS NULL", "IS NOT NULL"):
            table = "tags" if f.field == "tag" else "properties"
            params.append(f.key)
            exists = f"EXISTS (SELECT 1 FROM {table} x WHERE x.run_id = r.run_id AND x.key = ?)"
            return exists if op == "IS NOT NULL" else f"NOT {exists}"
        expr = self._value_expr(f.field, f.key, params)
        if op in ("IS NULL", "IS NOT NULL"):
            return f"{expr} {op}"
        if op in ("IN", "NOT IN"):
            values = list(f.value)
            if not values:
                return "1 = 0" if op == "IN" else "1 = 1"
            params.extend(values)
            return f"{expr} {op} ({', '.join('?' * len(values))})"
        if op in ("LIKE", "ILIKE"):
            params.append(self._like_param(op, str(f.value)))
            return self._like(expr, op)
        if op not in ("=", "!=", "<", "<=", ">", ">="):
            raise ValidationError(f"unsupported comparison {f.op!r}")
        params.append(f.value)
        return f"{expr} {op} ?"

    def search_runs(
        self,
        experiments: Sequence[str] | None = None,
        filters: Sequence[RunCondition] = (),
        order_by: Sequence[RunOrder] = (),
        offset: int = 0,
        limit: int = 1000,
        deleted: bool | None = False,
    ) -> list[RunRecord]:
        params: list[Any] = []
        where: list[str] = []
        if experiments is not None:
            if not experiments:
                return []
            where.append(f"r.experiment IN ({', '.join('?' * len(experiments))})")
            params.extend(experiments)
        if deleted is not None:
            where.append("r.deleted_time IS NOT NULL" if deleted else "r.deleted_time IS NULL")
        where.extend(self._condition(f, params) for f in filters)
        orders = []
        for o in order_by:
            expr = self._value_expr(o.field, o.key, params)
            orders.append(f"{expr} {'DESC' if o.descending else 'ASC'} NULLS LAST")
        orders += ["r.created DESC", "r.run_id DESC"]
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        params += [int(limit), int(offset)]
        columns = ", ".join(f"r.{c.strip()}" for c in _RUN_COLUMNS.split(","))
        rows = self._query(
            f"SELECT {columns} FROM runs r{clause} ORDER BY {', '.join(orders)} LIMIT ? OFFSET ?", params
        )
        return self._runs_from_rows(rows)

    def latest_metrics(self, run_ids: Sequence[str]) -> dict[str, list[LatestMetric]]:
        out: dict[str, list[LatestMetric]] = {r: [] for r in run_ids}
        ids = list(out)
        for start in range(0, len(ids), 500):
            part = ids[start : start + 500]
            among, args = self._among("run_id", part)
            rows = self._query(
                "SELECT run_id, name, step_max, last_time, last_value FROM (SELECT run_id, name, step_max, "
                "last_time, last_value, ROW_NUMBER() OVER (PARTITION BY run_id, name ORDER BY step_max DESC, "
                f"last_time DESC, last_value DESC) AS k FROM metric_chunks WHERE {among} AND last_time IS NOT NULL) x "
                "WHERE k = 1 ORDER BY run_id, name",
                args,
            )
            for run_id, name, step, wall_time, value in rows:
                out[run_id].append(
                    LatestMetric(name, int(step), float(wall_time), float("nan") if value is None else float(value))
                )
        return out

    def get_metric_page(self, run_id: str, name: str, offset: int = 0, limit: int | None = None) -> MetricSeries:
        if offset < 0 or (limit is not None and limit < 0):
            raise ValidationError("offset and limit must not be negative")
        sizes = self._query("SELECT id, n FROM metric_chunks WHERE run_id = ? AND name = ? ORDER BY id", (run_id, name))
        end = None if limit is None else offset + limit
        wanted: list[int] = []
        first = seen = 0
        for chunk_id, n in sizes:
            if seen + n > offset and (end is None or seen < end):
                if not wanted:
                    first = seen
                wanted.append(chunk_id)
            seen += n
        empty = MetricSeries(run_id, name, MetricKind.SCALAR, np.zeros(0, np.int64), np.zeros(0), np.zeros(0))
        if not wanted:
            return empty
        rows = self._query(
            "SELECT kind, dtype, steps, wall_times, vals FROM metric_chunks WHERE run_id = ? AND name = ? "
            "AND id >= ? AND id <= ? ORDER BY id",
            (run_id, name, wanted[0], wanted[-1]),
        )
        steps = np.concatenate([unpack_i8(bytes(r[2])) for r in rows])
        times = np.concatenate([unpack_f8(bytes(r[3])) for r in rows])
        values = concat_values([decode_values(r[1], bytes(r[4])) for r in rows])
        lo = offset - first
        hi = None if end is None else end - first
        values = values[lo:hi]
        return MetricSeries(run_id, name, MetricKind(rows[0][0]), steps[lo:hi], times[lo:hi], values)

    def set_run_deleted(self, run_id: str, deleted: bool) -> None:
        self.get_run(run_id)
        with self._write() as conn:
            self._exec(
                conn, "UPDATE runs SET deleted_time = ? WHERE run_id = ?", (time.time() if deleted else None, run_id)
            )

    def deleted_runs(self, run_ids: Sequence[str]) -> set[str]:
        out: set[str] = set()
        ids = list(run_ids)
        for start in range(0, len(ids), 500):
            part = ids[start : start + 500]
            among, args = self._among("run_id", part)
            rows = self._query(f"SELECT run_id FROM runs WHERE {among} AND deleted_time IS NOT NULL", args)
            out.update(r[0] for r in rows)
        return out

    def set_experiment_deleted(self, name: str, deleted: bool) -> None:
        self.get_experiment(name)
        with self._write() as conn:
            self._exec(
                conn, "UPDATE experiments SET deleted_time = ? WHERE name = ?", (time.time() if deleted else None, name)
            )

    def deleted_experiments(self) -> set[str]:
        return {r[0] for r in self._query("SELECT name FROM experiments WHERE deleted_time IS NOT NULL")}

    # --- workspace objects -----------------------------------------------------------------------------
    def register_object(self, kind: str, name: str, body: Mapping[str, Any]) -> WorkspaceObjectRecord:
        text = check_object(kind, name, body)
        for attempt in range(20):  # another process took the same version number first: take the next one
            try:
                with self._write() as conn:
                    rows = self._exec(
                        conn, "SELECT MAX(version) FROM workspace_objects WHERE kind = ? AND name = ?", (kind, name)
                    ).fetchall()
                    version = int(rows[0][0] or 0) + 1
                    created = time.time()
                    self._exec(
                        conn,
                        "INSERT INTO workspace_objects (kind, name, version, body, created) VALUES (?, ?, ?, ?, ?)",
                        (kind, name, version, text, created),
                    )
                return WorkspaceObjectRecord(kind, name, version, json.loads(text), created)
            except self.dialect.integrity_errors:
                time.sleep(0.01 * (attempt + 1))
        raise ConflictError(f"could not store a new version of {kind} {name!r}: too many writers at once; try again")

    def get_object(self, kind: str, name: str, version: int | None = None) -> WorkspaceObjectRecord:
        check_object(kind, name, version=version)
        if version is None:
            rows = self._query(
                "SELECT version, body, created FROM workspace_objects WHERE kind = ? AND name = ? "
                "ORDER BY version DESC LIMIT 1",
                (kind, name),
            )
        else:
            rows = self._query(
                "SELECT version, body, created FROM workspace_objects WHERE kind = ? AND name = ? AND version = ?",
                (kind, name, version),
            )
        if not rows:
            which = f"version {version} of " if version is not None else ""
            raise NotFoundError(f"no {which}{kind} {name!r} is registered in this workspace")
        v, body, created = rows[0]
        return WorkspaceObjectRecord(kind, name, int(v), json.loads(body), float(created))

    def list_objects(self, kind: str, name: str | None = None) -> list[WorkspaceObjectRecord]:
        check_object(kind, name if name is not None else "x")
        where, params = "kind = ?", [kind]
        if name is not None:
            where += " AND name = ?"
            params.append(name)
        rows = self._query(
            f"SELECT name, version, body, created FROM workspace_objects WHERE {where} ORDER BY name, version", params
        )
        return [WorkspaceObjectRecord(kind, n, int(v), json.loads(b), float(c)) for n, v, b, c in rows]

    # --- models ------------------------------------------------------------------------------------
    def _registered(self, rows: list[tuple[Any, ...]]) -> list[RegisteredModelRecord]:
        if not rows:
            return []
        names = [r[0] for r in rows]
        tags: dict[str, dict[str, str]] = {}
        aliases: dict[str, dict[str, int]] = {}
        for start in range(0, len(names), 500):
            among, args = self._among("name", names[start : start + 500])
            for n, k, v in self._query(f"SELECT name, key, value FROM model_tags WHERE version = 0 AND {among}", args):
                tags.setdefault(n, {})[k] = v
            for n, a, v in self._query(f"SELECT name, alias, version FROM model_aliases WHERE {among}", args):
                aliases.setdefault(n, {})[a] = int(v)
        return [
            RegisteredModelRecord(
                name=n,
                created=c,
                updated=u,
                description=d,
                latest_version=int(latest),
                tags=tags.get(n, {}),
                aliases=aliases.get(n, {}),
            )
            for n, c, u, d, latest in rows
        ]

    _REGISTERED = "SELECT name, created, updated, description, latest_version FROM models"

    def create_registered_model(
        self, name: str, *, description: str = "", tags: Mapping[str, str] | None = None
    ) -> RegisteredModelRecord:
        check_model_name(name)
        check_text(description, "model description")
        _check_map(tags, "tag")
        now = time.time()
        try:
            with self._write() as conn:
                self._exec(
                    conn,
                    "INSERT INTO models (name, created, updated, description) VALUES (?, ?, ?, ?)",
                    (name, now, now, description),
                )
                self._put_model_map(conn, "model_tags", name, 0, tags or {})
        except self.dialect.integrity_errors as exc:
            raise ConflictError(f"a model named {name!r} is already registered") from exc
        return self.get_registered_model(name)

    def get_registered_model(self, name: str) -> RegisteredModelRecord:
        check_model_name(name)
        found = self._registered(self._query(f"{self._REGISTERED} WHERE name = ?", (name,)))
        if not found:
            raise NotFoundError(f"no registered model named {name!r}; register one with Model.register")
        return found[0]

    def list_registered_models(self) -> list[RegisteredModelRecord]:
        return self._registered(self._query(f"{self._REGISTERED} ORDER BY name"))

    def update_registered_model(
        self,
        name: str,
        *,
        description: str | Any = UNSET,
        tags: Mapping[str, str | None] | None = None,
        aliases: Mapping[str, int | None] | None = None,
    ) -> RegisteredModelRecord:
        self.get_registered_model(name)
        if description is not UNSET:
            check_text(description, "model description")
        _check_map(tags, "tag", removable=True)
        for alias, version in (aliases or {}).items():
            check_key(alias, "alias")
            if version is not None:
                self.get_model_version(name, _check_version(version))
        with self._write() as conn:
            self._exec(conn, "UPDATE models SET updated = ? WHERE name = ?", (time.time(), name))
            if description is not UNSET:
                self._exec(conn, "UPDATE models SET description = ? WHERE name = ?", (description, name))
            self._put_model_map(conn, "model_tags", name, 0, tags or {})
            alias_versions = {a: None if v is None else int(v) for a, v in (aliases or {}).items()}
            self._put_map(conn, "model_aliases", {"name": name}, alias_versions, key="alias", value="version")
        return self.get_registered_model(name)

    def _put_model_map(self, conn: Any, table: str, name: str, version: int, values: Mapping[str, str | None]) -> None:
        self._put_map(conn, table, {"name": name, "version": version}, values)

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
        check_model_name(name)
        check_text(description, "model description")
        _check_map(tags, "tag")
        _check_map(properties, "property")
        experiment = None
        if run_path is not None and run_id is None:
            raise ValidationError("run_path names files of a run: give run_id too")
        if run_id is not None:
            experiment = self.get_run(run_id).experiment
        storage_id = f"model@{uuid.uuid4().hex}"
        status = ModelStatus.PENDING
        if run_path is not None:
            assert run_id is not None
            self._copy_run_files(run_id, check_file_name(run_path), storage_id)
            status = ModelStatus.READY
        now = time.time()
        with self._write() as conn:
            # one statement takes the next number: concurrent registrations (any process) serialize on the row
            row = self._exec(
                conn,
                "INSERT INTO models (name, created, updated, latest_version) VALUES (?, ?, ?, 1) "
                "ON CONFLICT (name) DO UPDATE SET latest_version = models.latest_version + 1, "
                "updated = excluded.updated RETURNING latest_version",
                (name, now, now),
            ).fetchone()
            version = int(row[0])
            self._exec(
                conn,
                "INSERT INTO model_versions (name, version, storage_id, status, created, updated, description, "
                "run_id, run_path, experiment) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (name, version, storage_id, status.value, now, now, description, run_id, run_path, experiment),
            )
            self._put_model_map(conn, "model_tags", name, version, tags or {})
            self._put_model_map(conn, "model_properties", name, version, properties or {})
        return self.get_model_version(name, version)

    def _copy_run_files(self, run_id: str, run_path: str, storage_id: str) -> None:
        path = run_path.rstrip("/")
        base = path.rsplit("/", 1)[-1]
        infos = [i for i in self.files.list(run_id, path) if i.name == path or i.name.startswith(path + "/")]
        if not infos:
            raise NotFoundError(
                f"run {run_id!r} has no file or folder {run_path!r}; upload the model first "
                "(run.upload_file or the outputs folder), or register it from a local path with Model.register"
            )
        for info in infos:
            target = base if info.name == path else f"{base}/{info.name[len(path) + 1 :]}"
            with self.files.open_writer(storage_id, target) as writer:
                for piece in self.files.iter_read(run_id, info.name):
                    writer.write(piece)
                writer.commit()

    def _storage_id(self, name: str, version: int) -> tuple[str, ModelStatus]:
        check_model_name(name)
        rows = self._query(
            "SELECT storage_id, status FROM model_versions WHERE name = ? AND version = ?",
            (name, _check_version(version)),
        )
        if not rows:
            raise NotFoundError(f"model {name!r} has no version {version}")
        return str(rows[0][0]), ModelStatus(rows[0][1])

    def write_model_file(self, name: str, version: int, file_name: str, stream: BinaryIO) -> FileInfo:
        file_name = check_file_name(file_name, may_be_folder=False)
        storage_id, status = self._storage_id(name, version)
        if status is not ModelStatus.PENDING:
            raise ConflictError(f"model {name!r} version {version} is {status.value}: its files can no longer change")
        with self.files.open_writer(storage_id, file_name) as writer:
            while piece := stream.read(_COPY_PIECE):
                writer.write(piece)
            return writer.commit()

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
        current = self.get_model_version(name, _check_version(version))
        if status is not UNSET:
            status = ModelStatus(status)
            if status is not current.status and current.status is not ModelStatus.PENDING:
                raise ConflictError(
                    f"model {name!r} version {version} is {current.status.value}; only a pending version changes status"
                )
        if description is not UNSET:
            check_text(description, "model description")
        _check_map(tags, "tag", removable=True)
        _check_map(properties, "property")
        for key, value in (properties or {}).items():
            if key in current.properties and current.properties[key] != value:
                raise ConflictError(
                    f"property {key!r} of model {name!r} version {version} is already "
                    f"{current.properties[key]!r}; properties cannot change (use a tag for values that do)"
                )
        with self._write() as conn:
            sets: list[str] = ["updated = ?"]
            args: list[Any] = [time.time()]
            if status is not UNSET:
                sets.append("status = ?")
                args.append(status.value)
            if description is not UNSET:
                sets.append("description = ?")
                args.append(description)
            self._exec(
                conn,
                f"UPDATE model_versions SET {', '.join(sets)} WHERE name = ? AND version = ?",
                [*args, name, version],
            )
            self._put_model_map(conn, "model_tags", name, version, tags or {})
            for key, value in (properties or {}).items():
                self._exec(
                    conn,
                    "INSERT INTO model_properties (name, version, key, value) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (name, version, key) DO NOTHING",
                    (name, version, key, value),
                )
        return self.get_model_version(name, version)

    _VERSIONS = (
        "SELECT name, version, status, created, updated, description, run_id, run_path, experiment FROM model_versions"
    )

    def _versions(self, rows: list[tuple[Any, ...]]) -> list[ModelRecord]:
        if not rows:
            return []
        names = sorted({r[0] for r in rows})
        maps: dict[str, dict[tuple[str, int], dict[str, str]]] = {"model_tags": {}, "model_properties": {}}
        for table, out in maps.items():
            for start in range(0, len(names), 500):
                among, args = self._among("name", names[start : start + 500])
                for n, v, k, val in self._query(
                    f"SELECT name, version, key, value FROM {table} WHERE version > 0 AND {among}", args
                ):
                    out.setdefault((n, int(v)), {})[k] = val
        return [
            ModelRecord(
                name=n,
                version=int(v),
                status=ModelStatus(st),
                created=c,
                updated=u,
                description=d,
                run_id=rid,
                run_path=rp,
                experiment=exp,
                tags=maps["model_tags"].get((n, int(v)), {}),
                properties=maps["model_properties"].get((n, int(v)), {}),
            )
            for n, v, st, c, u, d, rid, rp, exp in rows
        ]

    def get_model_version(self, name: str, version: int | None = None) -> ModelRecord:
        check_model_name(name)
        if version is None:
            rows = self._query(
                f"{self._VERSIONS} WHERE name = ? AND status = ? ORDER BY version DESC LIMIT 1",
                (name, ModelStatus.READY.value),
            )
            if not rows:
                raise NotFoundError(f"no registered model named {name!r} has a version ready; register one first")
        else:
            rows = self._query(f"{self._VERSIONS} WHERE name = ? AND version = ?", (name, _check_version(version)))
            if not rows:
                raise NotFoundError(f"model {name!r} has no version {version}")
        return self._versions(rows)[0]

    def list_model_versions(self, name: str | None = None, run_id: str | None = None) -> list[ModelRecord]:
        where, args = [], []
        if name is not None:
            where.append("name = ?")
            args.append(check_model_name(name))
        if run_id is not None:
            where.append("run_id = ?")
            args.append(check_run_id(run_id))
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        return self._versions(self._query(f"{self._VERSIONS}{clause} ORDER BY name, version DESC", args))

    def list_model_files(self, name: str, version: int) -> list[FileInfo]:
        storage_id, _ = self._storage_id(name, version)
        return self.files.list(storage_id)

    def iter_model_file(
        self, name: str, version: int, file_name: str, offset: int = 0, length: int | None = None
    ) -> Iterator[bytes]:
        storage_id, _ = self._storage_id(name, version)
        file_name = check_file_name(file_name)
        try:
            return self.files.iter_read(storage_id, file_name, offset, length)
        except NotFoundError:
            raise NotFoundError(f"model {name!r} version {version} has no file {file_name!r}") from None


_COPY_PIECE = 1024 * 1024


def _check_version(version: object) -> int:
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= _INT64_MAX:
        raise ValidationError(f"a model version is a whole number from 1, got {version!r}")
    return version


def _check_map(values: Mapping[str, str | None] | None, what: str, removable: bool = False) -> None:
    if values is None:
        return
    if not isinstance(values, Mapping):
        raise ValidationError(f"{what}s must be a dict of names to strings, got {type(values).__name__}")
    for key, value in values.items():
        check_key(key, what)
        if value is None and removable:
            continue
        check_text(value, f"value of {what} {key!r}")


def _latest_point(steps: np.ndarray, wall_times: Any, values: Any, dtype: str) -> tuple[float | None, float | None]:
    """(wall time, value) of a chunk's latest point: highest step, then latest time, then largest value;
    (None, None) unless the values are numbers. A NaN value is stored as NULL."""
    if dtype not in ("f8", "i8", "b1"):
        return None, None
    times = np.asarray(wall_times, dtype=np.float64)
    vals = np.asarray(values, dtype=np.float64)
    cand = np.flatnonzero(steps == steps.max())
    if len(cand) > 1:
        cand = cand[times[cand] == times[cand].max()]
    if len(cand) > 1 and not np.isnan(vals[cand]).all():
        cand = cand[[int(np.nanargmax(vals[cand]))]]
    i = int(cand[-1])
    value = float(vals[i])
    return float(times[i]), None if np.isnan(value) else value


def downsample(series: MetricSeries, max_points: int) -> MetricSeries:
    """``series`` thinned to ``max_points`` evenly spaced points, the first and the last always kept."""
    n = len(series)
    if n <= max_points:
        return series
    if max_points == 1:
        keep = np.array([n - 1])
    else:
        keep = np.unique(np.round(np.linspace(0, n - 1, max_points)).astype(np.int64))
    values = series.values
    values = values[keep] if isinstance(values, np.ndarray) else [values[i] for i in keep]
    return replace(series, steps=series.steps[keep], wall_times=series.wall_times[keep], values=values)


_WIDTHS = {"f8": 8, "i8": 8, "b1": 1}
_BLOB_READ_MIN_POINTS = 4096  # chunks this long are read point by point (SQLite), not whole
_ROW_POINTS = 16384  # points of one metric chunk per row at most
_NUMPY: dict[str, Any] = {"f8": "float64", "i8": "int64", "b1": bool}  # by name: numpy loads on first use
_WIRE: dict[str, str] = {"f8": "<f8", "i8": "<i8", "b1": "?"}  # the stored bytes of a value column, as numpy reads them
_PAGE_POINTS = 65_536  # points of the stored rows fetched at once when reading whole series
_PAGE_ROWS = 200


def _chunk_run_ids(run_ids: Sequence[str]) -> list[str]:
    ids = list(dict.fromkeys(run_ids))
    if len(ids) > MAX_CHUNK_RUNS:
        raise ValidationError(f"read_metric_chunks takes at most {MAX_CHUNK_RUNS} runs at a time (got {len(ids)})")
    for run_id in ids:
        check_run_id(run_id)
    return ids


def _group_chunks(meta: list[tuple[Any, ...]]) -> dict[str, tuple[str, list[tuple[int, int, str, int, int]]]]:
    """Rows (id, name, kind, n, dtype, step_min, step_max) grouped by metric name, in id order."""
    by_name: dict[str, tuple[str, list[tuple[int, int, str, int, int]]]] = {}
    for cid, mname, kind, n, dtype, step_min, step_max in meta:
        by_name.setdefault(mname, (kind, []))[1].append((int(cid), int(n), str(dtype), int(step_min), int(step_max)))
    return by_name


def _pages(chunks: list[Any]) -> Iterator[list[Any]]:
    """Consecutive runs of chunks (``n`` second) of about ``_PAGE_POINTS`` points, at most ``_PAGE_ROWS``."""
    page: list[Any] = []
    points = 0
    for c in chunks:
        page.append(c)
        points += c[1]
        if points >= _PAGE_POINTS or len(page) >= _PAGE_ROWS:
            yield page
            page, points = [], 0
    if page:
        yield page
