"""The HTTP client store: the :class:`~expboard.stores.base.Store` interface against an expboard tracking server.

Standard library only (``http.client`` over a small pool of keep-alive connections), so clients need no web
stack.

Delivery of metric batches:

- every batch carries a batch id (one is made when the caller gives none); the server stores a batch id
  once, so a batch sent again after a lost answer is never stored twice;
- transient failures (connection refused or reset, timeouts, 408, 429, 502, 503, 504) are retried with
  exponential back-off; a 500 is retried ``server_error_tries`` times (3) for the same batch, then it is
  permanent, like every 4xx: never retried;
- when the server stays unreachable, batches go to a spool folder on disk (bounded by ``spool_max_bytes``;
  a :class:`~expboard.stores.journal.Journal`, as the metric buffer's journal is) and a background thread
  sends them, in order, once it answers again; while anything is spooled, new batches queue behind it so
  points stay in logging order;
- batches are cut to fit the server's body limit (it says it in ``/health``); a batch the server refuses
  for good is cut into its metrics, so every metric the server takes is stored, and each refused one goes
  to the quarantine folder next to the spool (``<spool>/quarantine``: the batch as sent and a ``.json`` with
  the server's answer), reported once by a warning on the ``expboard.stores.http`` logger naming run,
  metric, batch and reason, and never sent again by itself (:meth:`HttpStore.resend_quarantined` does);
  the spool never stalls behind it. Refused on a direct call, the error is also raised to the caller (and
  a retry of that batch id is a no-op, as on the server);
- :meth:`HttpStore.flush` waits for the spool to drain and raises ``StoreUnavailableError`` saying what is
  still pending, also without a timeout when the server keeps answering with transient errors for
  ``retry_for`` seconds; :meth:`HttpStore.close` does the same after releasing its thread and connections.
  What is left stays on disk and is sent by the next ``HttpStore`` for the same server once this process
  has ended.

Every other call is retried the same way (they are all idempotent) and then raises
``StoreUnavailableError`` (or the server's error after ``server_error_tries`` answers of 500). Errors from
the server are raised again with the class the server raised.

>>> store = HttpStore("http://127.0.0.1:5000", token="...")  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import random
import stat
import threading
import time
import urllib.error
import urllib.request
import uuid
import weakref
from collections import OrderedDict, deque
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote, urlencode, urlparse

from .. import settings
from ..errors import (
    ConflictError,
    ExpboardError,
    PayloadTooLargeError,
    StoreUnavailableError,
    ValidationError,
    error_class,
)
from ..names import check_file_name, check_model_name, check_run_id
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
from .base import MAX_CHUNK_RUNS, UNSET, MetricChunk, MetricChunkPage, MetricInfo, Store, check_chunk, check_object
from .journal import Journal, JournalFullError
from .query import RunFilter, RunPage, page_size
from .wire import WIRE_CONTENT_TYPE, decode_batch, encode_batch

__all__ = ["TOKEN_ENV", "HttpStore"]

TOKEN_ENV = settings.env("token")
API = "/api/v1"
_TRANSIENT_STATUSES = frozenset({408, 429, 502, 503, 504})
_AUTH_STATUSES = frozenset({401, 403})  # the token, not the data: raised, never quarantined by a direct call
_MAX_IDLE = 16
_MAX_BATCH_ID = 200  # what the server accepts
_CONNECTION_ERRORS = (OSError, http.client.HTTPException)  # refused, reset, timed out, broken pipe, bad status
_ENCODE_ERRORS = (TypeError, ValueError, OverflowError, RecursionError)
_log = logging.getLogger(__name__)
_BLOCK = 1024 * 1024  # how much of a streamed request body is read and sent at a time
FILE_PIECE_BYTES = 8 * 1024 * 1024  # downloads travel in ranges of this size
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_RANGES_AHEAD = 4  # ranges of a download in flight at once
_APPEND_SUFFIX = ".append"  # a spooled file append: one JSON header line (run, name, offset), then the bytes


class _Retryable(Exception):
    """A transient failure: no connection, a timeout, or 408/429/502/503/504."""

    def __init__(self, message: str, answered: bool = False) -> None:
        super().__init__(message)
        self.answered = answered  # the server answered (a 5xx), rather than not at all


class _Refused(Exception):
    """The server answered with an error that sending the same request again will not change (4xx, 500)."""

    def __init__(self, status: int, cls: type[ExpboardError], message: str) -> None:
        super().__init__(f"{cls.__name__}: {message}")
        self.status, self.cls, self.message = status, cls, message


def _rid(run_id: str) -> str:
    """A run id as a URL path segment, checked as every store checks it."""
    return quote(check_run_id(run_id), safe="")


def _derive(batch_id: str, suffix: str) -> str:
    """The id of a piece of batch ``batch_id``: the same piece of the same batch always gets the same id."""
    out = f"{batch_id}{suffix}"
    return out if len(out) <= _MAX_BATCH_ID else "h" + hashlib.sha256(out.encode()).hexdigest()


@dataclass
class _Response:
    status: int
    headers: dict[str, str]
    body: bytes | bytearray

    def json(self) -> Any:
        return json.loads(self.body)


def _read_body(resp: http.client.HTTPResponse, into_bytearray: bool) -> bytes | bytearray:
    """The response's body; a metric read's into one bytearray of the announced length, which the decoder
    then views without copying (the series' arrays are that buffer)."""
    length = resp.getheader("Content-Length")
    if not into_bytearray or length is None or not length.isdigit():
        return resp.read()
    buf = bytearray(int(length))
    view, got = memoryview(buf), 0
    while got < len(buf):
        n = resp.readinto(view[got:])
        if not n:
            raise http.client.IncompleteRead(b"", len(buf) - got)
        got += n
    return buf


def _default_spool_root() -> Path:
    folder = settings.get("spool_dir")
    if folder:
        return Path(folder)
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "expboard" / "spool"


def _close_all(connections: list[http.client.HTTPConnection], lock: threading.Lock) -> None:
    with lock:
        for conn in connections:
            conn.close()
        connections.clear()


class HttpStore(Store):
    """Run history on an expboard tracking server (``http(s)://host:port``).

    ``token`` defaults to ``EXPBOARD_TOKEN``. ``retry_for`` bounds how long a call retries an unreachable
    server; ``metrics_retry_for`` how long ``log_metrics`` does so before spooling the batch to disk.
    """

    read_piece_bytes = FILE_PIECE_BYTES  # ranges of 8 MiB, each retried on its own (survives a restart)

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        timeout: float = 120.0,
        retry_for: float = 30.0,
        metrics_retry_for: float = 2.0,
        spool_dir: str | os.PathLike[str] | None = None,
        spool_max_bytes: int = 512 * 1024 * 1024,
        max_request_bytes: int = 8 * 1024 * 1024,
        close_timeout: float = 30.0,
        server_error_tries: int = 3,
    ) -> None:
        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValidationError(f"not a tracking server URL: {url!r}; use http(s)://host:port")
        self.url = url.rstrip("/")
        self._scheme, self._host, self._port = parsed.scheme, parsed.hostname, parsed.port
        self._base_path = parsed.path.rstrip("/")
        token = token if token is not None else settings.get("token")
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.timeout = timeout
        self.retry_for = retry_for
        self.metrics_retry_for = metrics_retry_for
        self.max_request_bytes = max_request_bytes
        self.close_timeout = close_timeout
        self.server_error_tries = max(1, server_error_tries)
        self._server_limit: int | None = None  # the server's body limit, from /health
        self._server_limit_checked = -1e9
        self._idle: list[http.client.HTTPConnection] = []  # keep-alive connections not in use
        self._conn_lock = threading.Lock()
        weakref.finalize(self, _close_all, self._idle, self._conn_lock)  # a store never closed leaks no socket
        self._closed = False
        self._brief = threading.local()  # retry_for of the calls of a thread in retrying_briefly()
        # spool: the journal of requests the server has not answered (the metric buffer's journal is the same kind)
        server_key = hashlib.sha256(self.url.encode()).hexdigest()[:16]
        self._spool_base = Path(spool_dir) if spool_dir is not None else _default_spool_root() / server_key
        self._spool = Journal(self._spool_base, spool_max_bytes, suffixes=(".batch", _APPEND_SUFFIX))
        self._spool_lock = threading.Condition()
        self.quarantine_dir = self._spool_base / "quarantine"
        self._handled: OrderedDict[str, None] = OrderedDict()  # batch ids refused and reported: retries are no-ops
        self._server_errors: dict[Path, int] = {}  # spooled batch -> 500 answers so far
        self._last_progress = time.monotonic()  # the sender delivered or quarantined a batch
        self._answering_badly = False  # the sender's last try got a transient error answer (not silence)
        self._sender: threading.Thread | None = None
        self._stop = threading.Event()
        self._adopt_orphans()

    @property
    def spool_dir(self) -> Path:
        """This store's spool folder (created when something is spooled)."""
        return self._spool.folder

    @property
    def spool_max_bytes(self) -> int:
        return self._spool.max_bytes

    @spool_max_bytes.setter
    def spool_max_bytes(self, value: int) -> None:
        self._spool.max_bytes = int(value)

    # --- HTTP ----------------------------------------------------------------------------------------
    def _acquire(self) -> http.client.HTTPConnection:
        with self._conn_lock:
            if self._idle:
                return self._idle.pop()
        cls = http.client.HTTPSConnection if self._scheme == "https" else http.client.HTTPConnection
        return cls(self._host, self._port, timeout=self.timeout, blocksize=_BLOCK)

    def _release(self, conn: http.client.HTTPConnection, reuse: bool) -> None:
        with self._conn_lock:
            if reuse and not self._closed and len(self._idle) < _MAX_IDLE:
                self._idle.append(conn)
                return
        conn.close()

    def _once(self, method: str, path: str, body: Any, headers: Mapping[str, str]) -> _Response:
        """One request; raises _Retryable for transient failures, _Refused for the other error answers.
        ``body``: bytes, None, or a callable giving the body (a file object is streamed) for this try."""
        conn = self._acquire()
        try:
            if callable(body):
                body = body()
            conn.request(method, self._base_path + path, body=body, headers={**self._headers, **headers})
            resp = conn.getresponse()
            data = _read_body(resp, into_bytearray=headers.get("Accept") == WIRE_CONTENT_TYPE)
        except _CONNECTION_ERRORS as exc:
            conn.close()
            raise _Retryable(f"{type(exc).__name__}: {exc}") from exc
        except BaseException:
            conn.close()
            raise
        self._release(conn, reuse=not resp.will_close)
        result = _Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
        if resp.status < 400:
            return result
        try:
            payload = result.json()
            cls, message = error_class(str(payload["error"])), str(payload["message"])
        except (ValueError, KeyError, TypeError):
            cls, message = ExpboardError, f"HTTP {resp.status} from {self.url}: {data[:200]!r}"
        if resp.status in _TRANSIENT_STATUSES:
            raise _Retryable(f"HTTP {resp.status}: {cls.__name__}: {message}", answered=True)
        raise _Refused(resp.status, cls, message)

    def _request(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        retry_for: float | None = None,
        retried: list[bool] | None = None,
    ) -> _Response:
        """A request retried with exponential back-off (and jitter) for ``retry_for`` seconds."""
        if self._closed:
            raise StoreUnavailableError("the store is closed")
        if retry_for is None:
            retry_for = getattr(self._brief, "retry_for", None) or self.retry_for
        deadline = time.monotonic() + retry_for
        delay, attempt, server_errors = 0.05, 0, 0
        while True:
            attempt += 1
            try:
                return self._once(method, path, body, headers or {})
            except _Refused as exc:
                if exc.status < 500:
                    raise exc.cls(exc.message) from None
                server_errors += 1  # a 500: maybe a passing fault, maybe this request; a few tries tell
                if server_errors >= self.server_error_tries:
                    raise exc.cls(
                        f"{exc.message} (the tracking server {self.url} answered {exc.status} "
                        f"{server_errors} times for this request)"
                    ) from None
                if retried is not None:
                    retried.append(True)
                time.sleep(delay * (0.75 + random.random() / 2))
                delay = min(delay * 2, 2.0)
            except _Retryable as exc:
                if retried is not None:
                    retried.append(True)
                if attempt == 1:  # a stale keep-alive connection (server restarted): retry at once
                    continue
                if time.monotonic() + delay > deadline:
                    raise StoreUnavailableError(
                        f"tracking server {self.url} unreachable for {retry_for:g} s ({attempt} tries): {exc}"
                    ) from None
                time.sleep(delay * (0.75 + random.random() / 2))
                delay = min(delay * 2, 2.0)

    def _json(self, method: str, path: str, payload: Any = None, **query: Any) -> Any:
        if query:
            path += "?" + urlencode({k: v for k, v in query.items() if v is not None}, doseq=True)
        body = None if payload is None else json.dumps(payload).encode()
        headers = {"Content-Type": "application/json"} if body is not None else {}
        resp = self._request(method, path, body, headers)
        return resp.json() if resp.body else None

    # --- experiments -----------------------------------------------------------------------------------
    def get_or_create_experiment(self, name: str) -> ExperimentRecord:
        return ExperimentRecord(**self._json("PUT", f"{API}/experiments/{quote(name, safe='')}"))

    def get_experiment(self, name: str) -> ExperimentRecord:
        return ExperimentRecord(**self._json("GET", f"{API}/experiments/{quote(name, safe='')}"))

    def list_experiments(self) -> list[ExperimentRecord]:
        return [ExperimentRecord(**e) for e in self._json("GET", f"{API}/experiments")]

    def update_experiment(
        self, name: str, *, archived: bool | Any = UNSET, tags: Mapping[str, str | None] | None = None
    ) -> ExperimentRecord:
        payload: dict[str, Any] = {"tags": {k: (None if v is None else str(v)) for k, v in (tags or {}).items()}}
        if archived is not UNSET:
            payload["archived"] = bool(archived)
        return ExperimentRecord(**self._json("PATCH", f"{API}/experiments/{quote(name, safe='')}", payload))

    # --- workspace objects -------------------------------------------------------------------------------
    def register_object(self, kind: str, name: str, body: Mapping[str, Any]) -> WorkspaceObjectRecord:
        check_object(kind, name, body)
        path = f"{API}/objects/{quote(kind, safe='')}/{quote(name, safe='')}"
        return WorkspaceObjectRecord.from_json(self._json("POST", path, {"body": dict(body)}))

    def get_object(self, kind: str, name: str, version: int | None = None) -> WorkspaceObjectRecord:
        check_object(kind, name, version=version)
        path = f"{API}/objects/{quote(kind, safe='')}/{quote(name, safe='')}"
        return WorkspaceObjectRecord.from_json(self._json("GET", path, version=version))

    def list_objects(self, kind: str, name: str | None = None) -> list[WorkspaceObjectRecord]:
        check_object(kind, name if name is not None else "x")
        data = self._json("GET", f"{API}/objects/{quote(kind, safe='')}", name=name)
        return [WorkspaceObjectRecord.from_json(d) for d in data]

    # --- runs ------------------------------------------------------------------------------------------
    @staticmethod
    def _run(data: dict[str, Any]) -> RunRecord:
        return RunRecord.from_json(data)

    def create_run(self, run: RunRecord) -> RunRecord:
        check_run_id(run.run_id)
        payload = run.to_json()
        retried: list[bool] = []
        try:
            resp = self._request(
                "POST",
                f"{API}/runs",
                json.dumps(payload).encode(),
                {"Content-Type": "application/json"},
                retried=retried,
            )
        except ConflictError:
            if retried:  # our first try was stored but its answer lost
                return self.get_run(run.run_id)
            raise
        return self._run(resp.json())

    def get_run(self, run_id: str) -> RunRecord:
        return self._run(self._json("GET", f"{API}/runs/{_rid(run_id)}"))

    def list_runs(
        self,
        experiment: str | None = None,
        parent_id: str | None | Any = UNSET,
        statuses: Sequence[RunStatus] | None = None,
    ) -> list[RunRecord]:
        query: dict[str, Any] = {"experiment": experiment}
        if parent_id is None:
            query["top_level"] = "true"
        elif parent_id is not UNSET:
            query["parent_id"] = parent_id
        if statuses:
            query["status"] = [RunStatus(s).value for s in statuses]
        return [self._run(r) for r in self._json("GET", f"{API}/runs", **query)]

    def list_children(self, run_ids: Sequence[str]) -> list[RunRecord]:
        ids = list(dict.fromkeys(run_ids))
        out: list[RunRecord] = []
        for start in range(0, len(ids), MAX_CHUNK_RUNS):  # bounded URLs
            part = ids[start : start + MAX_CHUNK_RUNS]
            out += [self._run(r) for r in self._json("GET", f"{API}/run-children", run_id=part)]
        return out

    def query_runs(
        self,
        experiment: str | None = None,
        parent_id: str | None | Any = UNSET,
        filter: RunFilter | None = None,
        limit: int | None = None,
        page_token: str | None = None,
    ) -> RunPage:
        query: dict[str, Any] = {"experiment": experiment, "limit": page_size(limit), "page_token": page_token}
        if parent_id is None:
            query["top_level"] = "true"
        elif parent_id is not UNSET:
            query["parent_id"] = parent_id
        if filter is not None:
            query.update(filter.to_query())
        data = self._json("GET", f"{API}/run-pages", **query)
        return RunPage([self._run(r) for r in data["runs"]], data.get("next_page_token"))

    @contextmanager
    def retrying_briefly(self) -> Iterator[None]:
        """Calls in this block (this thread) retry an unreachable server for ``metrics_retry_for`` seconds,
        not ``retry_for``: the metric buffer's writer, which keeps what it could not send and tries again."""
        before = getattr(self._brief, "retry_for", None)
        self._brief.retry_for = self.metrics_retry_for
        try:
            yield
        finally:
            self._brief.retry_for = before

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
        payload: dict[str, Any] = {
            k: v
            for k, v in (
                ("start_time", start_time),
                ("end_time", end_time),
                ("heartbeat", heartbeat),
                ("error", error),
                ("display_name", display_name),
                ("description", description),
            )
            if v is not UNSET
        }
        if status is not UNSET:
            payload["status"] = RunStatus(status).value
        if only_if_status:
            payload["only_if_status"] = [RunStatus(s).value for s in only_if_status]
        return self._run(self._json("PATCH", f"{API}/runs/{_rid(run_id)}", payload))

    def set_tags(self, run_id: str, tags: Mapping[str, str | None]) -> None:
        payload = {k: (None if v is None else str(v)) for k, v in tags.items()}
        self._json("PATCH", f"{API}/runs/{_rid(run_id)}/tags", payload)

    def add_properties(self, run_id: str, properties: Mapping[str, str]) -> None:
        payload = {k: str(v) for k, v in properties.items()}
        self._json("POST", f"{API}/runs/{_rid(run_id)}/properties", payload)

    # --- metrics ---------------------------------------------------------------------------------------
    def _limit(self) -> int:
        """The largest body to send: ours, or the server's if it says a smaller one (asked once a minute
        until it answers)."""
        now = time.monotonic()
        if self._server_limit is None and now - self._server_limit_checked > 60:
            self._server_limit_checked = now
            try:
                limit = self._once("GET", f"{API}/health", None, {}).json().get("max_request_bytes")
                self._server_limit = int(limit) if limit is not None else 0
            except (_Retryable, _Refused, ValueError, TypeError, AttributeError):
                pass
        return min(self.max_request_bytes, self._server_limit or self.max_request_bytes)

    def _encode_parts(
        self, chunks: Sequence[MetricChunk], batch_id: str, limit: int
    ) -> tuple[list[bytes], list[tuple[MetricChunk, ExpboardError]]]:
        """The batch as request bodies within ``limit`` bytes, pieces with ids derived from the batch's (the
        same batch always gives the same pieces); and the chunks that cannot be sent, with why."""
        try:
            body = encode_batch(chunks, batch_id)
        except _ENCODE_ERRORS:
            body = None
        if body is not None and len(body) <= limit:
            return [body], []
        refused: list[tuple[MetricChunk, ExpboardError]] = []
        sized: list[tuple[MetricChunk, int]] = []
        for chunk in chunks:
            try:
                sized.append((chunk, len(encode_batch([chunk]))))
            except _ENCODE_ERRORS as exc:
                refused.append(
                    (
                        chunk,
                        ValidationError(
                            f"metric {chunk.name!r} of run {chunk.run_id!r} cannot be sent: {exc} (steps must be "
                            "integers within int64, values int, float, bool, str, None or JSON objects)"
                        ),
                    )
                )
        groups: list[list[MetricChunk]] = []
        size = 0
        for chunk, n in sized:  # whole metrics together while they fit in half the limit
            if n > limit // 2:
                rows = max(1, len(chunk) * (limit // 2) // n)
                groups += [[_rows(chunk, slice(i, i + rows))] for i in range(0, len(chunk), rows)]
                size = limit
            elif groups and size + n <= limit // 2:
                groups[-1].append(chunk)
                size += n
            else:
                groups.append([chunk])
                size = n
        bodies: list[bytes] = []
        for i, group in enumerate(groups):
            self._fit(group, _derive(batch_id, f"#{i}"), limit, bodies, refused)
        return bodies, refused

    def _fit(
        self,
        group: list[MetricChunk],
        batch_id: str,
        limit: int,
        bodies: list[bytes],
        refused: list[tuple[MetricChunk, ExpboardError]],
    ) -> None:
        body = encode_batch(group, batch_id)
        if len(body) <= limit:
            bodies.append(body)
        elif len(group) == 1 and len(group[0]) == 1:
            (chunk,) = group
            refused.append(
                (
                    chunk,
                    PayloadTooLargeError(
                        f"a point of metric {chunk.name!r} of run {chunk.run_id!r} takes {len(body)} bytes, more "
                        f"than the tracking server takes in one request ({limit} bytes); log smaller values, "
                        "store large ones as a file (run.upload_file), or raise expboard server --max-request-mb"
                    ),
                )
            )
        else:
            for j, half in enumerate(_halves(group)):
                self._fit(half, _derive(batch_id, f"~{j}"), limit, bodies, refused)

    def log_metrics(self, chunks: Sequence[MetricChunk], batch_id: str | None = None) -> None:
        for chunk in chunks:  # refuse here what the server would refuse, before anything is spooled
            check_chunk(chunk)
        chunks = [c for c in chunks if len(c)]
        if not chunks and batch_id is None:
            return
        if self._closed:
            raise StoreUnavailableError("the store is closed")
        batch_id = batch_id or uuid.uuid4().hex
        if batch_id in self._handled:  # refused and reported before: like a batch id the server has seen
            return
        bodies, local = self._encode_parts(chunks, batch_id, self._limit())
        errors: list[ExpboardError] = []
        for chunk, error in local:
            errors.append(error)
            self._quarantine(_encode_or_none(chunk, batch_id), [chunk], None, error, batch_id)
        queue = deque(bodies)
        while queue:
            body = queue.popleft()
            with self._spool_lock:
                queued = bool(self._spool)
            if queued:  # keep logging order: behind what is already waiting
                self._to_spool([body, *queue])
                break
            try:
                self._post_batch(body)
            except StoreUnavailableError:
                if self._closed:
                    raise
                self._to_spool([body, *queue])
                break
            except _Refused as exc:
                if exc.status in _AUTH_STATUSES:
                    raise exc.cls(exc.message) from None
                pieces = _split(body, exc.status)
                if pieces:  # find which metrics it refuses; send the others
                    queue.extendleft(reversed(pieces))
                    continue
                errors.append(self._quarantine(body, None, exc.status, exc.cls(exc.message)))
        if errors:
            self._handled[batch_id] = None
            while len(self._handled) > 10_000:
                self._handled.popitem(last=False)
            first = errors[0]
            error = type(first)(
                f"{first} ({len(errors)} refused part(s) of batch {batch_id} kept in {self.quarantine_dir}; "
                "everything else in the batch is stored)"
            )
            error.rest_stored = True
            raise error

    def _post_batch(self, body: bytes) -> None:
        """Send one metric batch: transient failures retried for ``metrics_retry_for`` (then
        StoreUnavailableError), a 500 up to ``server_error_tries`` times; _Refused when it is refused for good."""
        deadline = time.monotonic() + self.metrics_retry_for
        delay, attempt, server_errors = 0.05, 0, 0
        while True:
            attempt += 1
            try:
                self._once("POST", f"{API}/metric-batches", body, {"Content-Type": WIRE_CONTENT_TYPE})
                return
            except _Refused as exc:
                if exc.status < 500:
                    raise
                server_errors += 1
                if server_errors >= self.server_error_tries:
                    raise
            except _Retryable as exc:
                if attempt == 1:  # a stale keep-alive connection: retry at once
                    continue
                if time.monotonic() + delay > deadline:
                    raise StoreUnavailableError(
                        f"tracking server {self.url} unreachable for {self.metrics_retry_for:g} s: {exc}"
                    ) from None
            time.sleep(delay * (0.75 + random.random() / 2))
            delay = min(delay * 2, 2.0)

    def _quarantine(
        self,
        body: bytes | None,
        chunks: Sequence[MetricChunk] | None,
        status: int | None,
        error: ExpboardError,
        batch_id: str | None = None,
    ) -> ExpboardError:
        """Keep a refused batch in the quarantine folder with the reason, and warn once."""
        metrics: list[dict[str, Any]] = []
        if body is not None:
            try:
                batch_id, parts = decode_batch(body)
                metrics = [{"run_id": p["run_id"], "name": p["name"], "points": len(p["steps"])} for p in parts]
            except (ValueError, KeyError, TypeError):
                pass
        if chunks is not None:
            metrics = [{"run_id": c.run_id, "name": c.name, "points": len(c)} for c in chunks]
        kept = "not kept (it cannot be encoded)"
        if body is not None and len(body) <= self.spool_max_bytes:
            try:
                self.quarantine_dir.mkdir(parents=True, exist_ok=True)
                stem = f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
                record = {
                    "server": self.url,
                    "batch_id": batch_id,
                    "status": status,
                    "error": type(error).__name__,
                    "message": str(error),
                    "metrics": metrics,
                    "time": time.time(),
                }
                (self.quarantine_dir / f"{stem}.json").write_text(json.dumps(record, indent=1))
                (self.quarantine_dir / f"{stem}.batch").write_bytes(body)
                kept = f"kept in {self.quarantine_dir / stem}.batch"
            except OSError as exc:
                kept = f"not kept ({exc})"
        named = ", ".join(f"{m['name']!r} of run {m['run_id']!r}" for m in metrics[:5]) or "?"
        answer = f"answered {status}" if status is not None else "was not sent"
        _log.warning(
            "expboard: metric batch %s refused (%s): metric %s: %s: %s; %s and not retried",
            batch_id,
            answer,
            named,
            type(error).__name__,
            error,
            kept,
        )
        return error

    def quarantined(self) -> list[dict[str, Any]]:
        """What is in the quarantine folder: per refused batch, the server's answer and its metrics."""
        out = []
        for path in sorted(self.quarantine_dir.glob("*.json")):
            try:
                out.append({**json.loads(path.read_text()), "path": str(path.with_suffix(".batch"))})
            except (OSError, ValueError):
                continue
        return out

    def resend_quarantined(self) -> tuple[int, int]:
        """Send the quarantined batches again (after the server or the data was fixed); returns how many
        were stored and how many are still refused (those stay, with the new answer)."""
        stored = refused = 0
        for path in sorted(self.quarantine_dir.glob("*.batch")):
            meta = path.with_suffix(".json")
            try:
                body = path.read_bytes()
                self._post_batch(body)
            except _Refused as exc:
                refused += 1
                try:
                    record = json.loads(meta.read_text())
                    record.update(status=exc.status, error=exc.cls.__name__, message=exc.message, time=time.time())
                    meta.write_text(json.dumps(record, indent=1))
                except (OSError, ValueError):
                    pass
                continue
            except OSError:
                continue
            path.unlink(missing_ok=True)
            meta.unlink(missing_ok=True)
            stored += 1
        return stored, refused

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
        query = urlencode(
            {
                k: v
                for k, v in (("name", name), ("min_step", min_step), ("max_step", max_step), ("max_points", max_points))
                if v is not None
            }
        )
        path = f"{API}/runs/{_rid(run_id)}/metrics" + (f"?{query}" if query else "")
        _, parts = decode_batch(self._request("GET", path, headers={"Accept": WIRE_CONTENT_TYPE}).body)
        return [
            MetricSeries(p["run_id"], p["name"], MetricKind(p["kind"]), p["steps"], p["wall_times"], p["values"])
            for p in parts
        ]

    def read_metric_chunks(
        self, run_ids: Sequence[str], after: int = 0, max_points: int = 1_000_000
    ) -> MetricChunkPage:
        ids = list(dict.fromkeys(run_ids))
        if len(ids) > MAX_CHUNK_RUNS:
            raise ValidationError(f"read_metric_chunks takes at most {MAX_CHUNK_RUNS} runs at a time (got {len(ids)})")
        if not ids:
            return MetricChunkPage([], after, False)
        query = urlencode({"run_id": ids, "after": int(after), "max_points": int(max_points)}, doseq=True)
        resp = self._request("GET", f"{API}/metric-chunks?{query}", headers={"Accept": WIRE_CONTENT_TYPE})
        _, parts = decode_batch(resp.body)
        chunks = [
            MetricChunk(p["run_id"], p["name"], MetricKind(p["kind"]), p["steps"], p["wall_times"], p["values"])
            for p in parts
        ]
        return MetricChunkPage(
            chunks, int(resp.headers["x-expboard-cursor"]), resp.headers.get("x-expboard-more") == "1"
        )

    def count_metric_points(self, run_id: str, name: str, kind: MetricKind | None = None) -> int:
        path = f"{API}/runs/{quote(run_id, safe='')}/metric-count"
        data = self._json("GET", path, name=name, kind=MetricKind(kind).value if kind is not None else None)
        return int(data["count"])

    def get_metric_info(self, run_ids: Sequence[str]) -> list[MetricInfo]:
        ids = list(dict.fromkeys(run_ids))
        out: list[MetricInfo] = []
        for start in range(0, len(ids), 100):  # bounded URLs
            for d in self._json("GET", f"{API}/metric-info", run_id=ids[start : start + 100]):
                value = d["last_value"]
                if d["numeric"] and isinstance(value, str):  # non-finite floats travel as "nan", "inf", "-inf"
                    value = float(value)
                out.append(
                    MetricInfo(
                        run_id=d["run_id"],
                        name=d["name"],
                        kind=MetricKind(d["kind"]),
                        count=int(d["count"]),
                        max_step=int(d["max_step"]),
                        last_step=int(d["last_step"]),
                        last_wall_time=float(d["last_wall_time"]),
                        last_value=value,
                        numeric=bool(d["numeric"]),
                    )
                )
        return out

    # --- spool -----------------------------------------------------------------------------------------
    def _to_spool(self, bodies: list[bytes], suffix: str = ".batch") -> None:
        with self._spool_lock:
            try:
                self._spool.append(bodies, suffix)
            except JournalFullError:
                raise StoreUnavailableError(
                    f"tracking server {self.url} is unreachable and the spool {self.spool_dir} is full "
                    f"({len(self._spool)} batches, {self._spool.nbytes} bytes of {self.spool_max_bytes}); "
                    "this batch was not stored: retry it when the server is back"
                ) from None
            self._ensure_sender()

    def _ensure_sender(self) -> None:
        """Start the sender thread if batches wait and none runs (call with the spool lock held)."""
        if self._spool and (self._sender is None or not self._sender.is_alive()) and not self._stop.is_set():
            self._sender = threading.Thread(target=self._send_spooled, name="expboard-http-spool", daemon=True)
            self._sender.start()

    def _send_spooled(self) -> None:
        delay = 0.05
        while not self._stop.is_set():
            with self._spool_lock:
                path = self._spool.oldest()
                if path is None:
                    self._sender = None
                    self._spool_lock.notify_all()
                    return
            try:
                body = path.read_bytes()
            except OSError:  # gone (removed by hand): nothing to send
                self._done_spooled(path)
                continue
            try:
                if path.suffix == _APPEND_SUFFIX:
                    self._send_spooled_append(body)
                else:
                    self._once("POST", f"{API}/metric-batches", body, {"Content-Type": WIRE_CONTENT_TYPE})
            except _Retryable as exc:
                self._answering_badly = exc.answered
                self._stop.wait(delay * (0.75 + random.random() / 2))
                delay = min(delay * 2, 2.0)
                continue
            except _Refused as exc:
                if exc.status >= 500:
                    count = self._server_errors[path] = self._server_errors.get(path, 0) + 1
                    if count < self.server_error_tries:
                        self._answering_badly = True
                        self._stop.wait(delay * (0.75 + random.random() / 2))
                        delay = min(delay * 2, 2.0)
                        continue
                refused_whole = exc.status in _AUTH_STATUSES or path.suffix == _APPEND_SUFFIX
                pieces = [] if refused_whole else _split(body, exc.status)
                if pieces:
                    with self._spool_lock:  # in its place, in order (file names sort the same way)
                        self._server_errors.pop(path, None)
                        self._spool.replace(path, pieces)
                    continue
                self._quarantine(body, None, exc.status, exc.cls(exc.message))
            delay = 0.05
            self._done_spooled(path)

    def _done_spooled(self, path: Path) -> None:
        with self._spool_lock:
            self._spool.remove(path)
            self._server_errors.pop(path, None)
            self._last_progress = time.monotonic()
            self._answering_badly = False
            self._spool_lock.notify_all()

    def _adopt_orphans(self) -> None:
        """Take over batches spooled for this server by processes that have ended, to send them (first)."""
        with self._spool_lock:
            if self._spool.adopt():
                self._ensure_sender()

    def pending(self) -> tuple[int, int]:
        """Metric batches and points spooled and not yet delivered."""
        with self._spool_lock:
            paths = self._spool.paths()
        points = 0
        for p in paths:
            try:
                points += sum(len(c["steps"]) for c in decode_batch(p.read_bytes())[1])
            except (OSError, ValueError):
                pass
        return len(paths), points

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every spooled metric batch is delivered; ``timeout=None`` waits as long as it takes."""
        start = time.monotonic()
        deadline = None if timeout is None else start + timeout
        stalled = False
        with self._spool_lock:
            while self._spool and (self._sender is not None and self._sender.is_alive()):
                now = time.monotonic()
                left = None if deadline is None else deadline - now
                if left is not None and left <= 0:
                    break
                if self._answering_badly and now - max(start, self._last_progress) > self.retry_for:
                    stalled = True  # the server answers, but with errors: do not wait forever
                    break
                self._spool_lock.wait(1.0 if left is None else min(left, 1.0))
            waiting = bool(self._spool)
        if waiting and stalled:
            batches, points = self.pending()
            raise StoreUnavailableError(
                f"{batches} metric batch(es) with {points} points are not yet delivered: the tracking server "
                f"{self.url} has answered with transient errors for {self.retry_for:g} s; they are kept in "
                f"{self.spool_dir} and will be sent when it recovers, by this process or the next one"
            )
        if waiting:
            batches, points = self.pending()
            raise StoreUnavailableError(
                f"{batches} metric batch(es) with {points} points are not yet delivered to {self.url} "
                f"(waited {timeout:g} s); they are kept in {self.spool_dir} and will be sent when the server "
                "answers again, by this process or the next one that opens this store"
                if timeout is not None
                else f"{batches} metric batch(es) are not delivered to {self.url}"
            )

    # --- files -----------------------------------------------------------------------------------------
    def _file_path(self, run_id: str, name: str) -> str:
        check_file_name(name)  # refused here as the server would; sent as given (the server normalizes)
        return f"{API}/runs/{_rid(run_id)}/files/{quote(name, safe='/')}"

    def _info(self, data: dict[str, Any]) -> FileInfo:
        return FileInfo(name=data["name"], size=int(data["size"]), modified=float(data["modified"]))

    def write_file(self, run_id: str, name: str, data: bytes) -> FileInfo:
        """Create or replace a file in one streamed request (any size): it appears whole or not at all."""
        return self._info(
            self._request(
                "PUT", self._file_path(run_id, name), bytes(data), {"Content-Type": "application/octet-stream"}
            ).json()
        )

    def _put_stream(self, path: str, stream: BinaryIO) -> FileInfo:
        """PUT a binary file object from its current position; a seekable one is sent again when a try fails
        (a stream that cannot seek back gets one try)."""
        headers = {"Content-Type": "application/octet-stream"}
        try:
            start: int | None = stream.tell() if stream.seekable() else None
        except (OSError, AttributeError):
            start = None
        try:
            st = os.fstat(stream.fileno())
            if start is not None and stat.S_ISREG(st.st_mode):
                headers["Content-Length"] = str(st.st_size - start)
        except (OSError, AttributeError, ValueError):
            pass

        def body() -> BinaryIO:
            if start is not None:
                stream.seek(start)
            return stream

        resp = self._request("PUT", path, body, headers, retry_for=None if start is not None else 0.0)
        return self._info(resp.json())

    def write_file_stream(self, run_id: str, name: str, stream: BinaryIO) -> FileInfo:
        """Create or replace a file from a binary file object, streamed from its current position (memory stays
        small whatever the size). A seekable stream is sent again from that position when a try fails."""
        check_file_name(name)
        return self._put_stream(self._file_path(run_id, name), stream)

    def append_file(self, run_id: str, name: str, data: bytes, offset: int) -> FileInfo:
        """Append at ``offset``. While the server is unreachable (or its object storage is), appends are
        spooled to disk with the metric batches and sent in order when it answers again."""
        self._file_path(run_id, name)  # run id and name refused here, before anything is spooled
        name = check_file_name(name)
        data, offset = bytes(data), int(offset)
        if offset < 0:
            raise ValidationError(f"offset must not be negative (got {offset})")
        if self._closed:
            raise StoreUnavailableError("the store is closed")
        with self._spool_lock:
            queued = bool(self._spool)
        if not queued:
            path = f"{self._file_path(run_id, name)}?offset={offset}"
            try:
                resp = self._request(
                    "POST", path, data, {"Content-Type": "application/octet-stream"}, retry_for=self.metrics_retry_for
                )
                return self._info(resp.json())
            except StoreUnavailableError:
                if self._closed:
                    raise
        header = json.dumps({"run_id": run_id, "name": name, "offset": offset}).encode()
        self._to_spool([header + b"\n" + data], _APPEND_SUFFIX)
        return FileInfo(name=name, size=offset + len(data), modified=time.time())

    def _send_spooled_append(self, record: bytes) -> None:
        header, _, data = record.partition(b"\n")
        meta = json.loads(header)
        path = f"{self._file_path(str(meta['run_id']), str(meta['name']))}?offset={int(meta['offset'])}"
        self._once("POST", path, data, {"Content-Type": "application/octet-stream"})

    def read_file(self, run_id: str, name: str, offset: int = 0, length: int | None = None) -> bytes:
        if offset < 0 or (length is not None and length < 0):
            raise ValidationError("offset and length must not be negative")
        path = self._file_path(run_id, name)
        if length == 0:
            return bytes(self._request("GET", f"{path}?offset={offset}&length=0").body)
        end = "" if length is None else str(offset + length - 1)
        resp = self._request("GET", path, headers={"Range": f"bytes={offset}-{end}"})
        if resp.status in _REDIRECTS and "location" in resp.headers:
            return self._read_presigned(resp.headers["location"], offset, end)
        return bytes(resp.body)

    def _read_presigned(self, url: str, offset: int, end: str) -> bytes:
        """A range of a file from the presigned URL a server redirected to: straight from the object
        storage, without this store's token (the URL carries its own signature); retried like any request."""
        deadline = time.monotonic() + self.retry_for
        delay = 0.05
        while True:
            req = urllib.request.Request(url, headers={"Range": f"bytes={offset}-{end}"})
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as answer:
                    return bytes(answer.read())
            except urllib.error.HTTPError as exc:
                if exc.code == 416:  # the range starts at or past the end: nothing there, as the server answers
                    return b""
                if exc.code not in _TRANSIENT_STATUSES and exc.code < 500:
                    raise StoreUnavailableError(
                        f"object storage refused the presigned download the tracking server {self.url} gave "
                        f"(HTTP {exc.code}); it may have expired: read the file again"
                    ) from None
                error: Exception = exc
            except _CONNECTION_ERRORS as exc:
                error = exc
            if time.monotonic() + delay > deadline:
                raise StoreUnavailableError(
                    f"object storage unreachable for a presigned download ({type(error).__name__}: {error}); "
                    "a client must reach the storage's endpoint when the server redirects downloads there"
                ) from None
            time.sleep(delay * (0.75 + random.random() / 2))
            delay = min(delay * 2, 2.0)

    def iter_file(self, run_id: str, name: str, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        """A file's bytes in ranges of ``read_piece_bytes``, up to ``_RANGES_AHEAD`` of them fetched at once
        (as boto3's downloads do), each retried on its own; NotFoundError is raised at once."""
        want = self.read_piece_bytes if length is None else min(length, self.read_piece_bytes)
        first = self.read_file(run_id, name, offset, want)
        return self._iter_ahead(run_id, name, first, offset, length)

    def _iter_ahead(self, run_id: str, name: str, first: bytes, offset: int, length: int | None) -> Iterator[bytes]:
        piece = self.read_piece_bytes
        stop = None if length is None else offset + length
        yield first
        if len(first) < piece or (stop is not None and offset + len(first) >= stop):
            return
        pos = offset + len(first)
        pool = ThreadPoolExecutor(_RANGES_AHEAD, thread_name_prefix="expboard-download")
        ahead: deque[Future[bytes]] = deque()
        try:
            while True:
                while len(ahead) < _RANGES_AHEAD and (stop is None or pos < stop):
                    n = piece if stop is None else min(piece, stop - pos)
                    ahead.append(pool.submit(self.read_file, run_id, name, pos, n))
                    pos += n
                if not ahead:
                    return
                data = ahead.popleft().result()
                if data:
                    yield data
                if len(data) < piece:  # the end of the file (ranges asked past it come back empty)
                    return
        finally:
            for f in ahead:
                f.cancel()
            pool.shutdown(wait=True)

    def list_files(self, run_id: str, prefix: str = "") -> list[FileInfo]:
        return [self._info(i) for i in self._json("GET", f"{API}/runs/{_rid(run_id)}/files", prefix=prefix)]

    # --- models ----------------------------------------------------------------------------------------
    @staticmethod
    def _model_path(name: str, version: int | None = None) -> str:
        path = f"{API}/models/{quote(check_model_name(name), safe='')}"
        return path if version is None else f"{path}/versions/{int(version)}"

    def create_registered_model(
        self, name: str, *, description: str = "", tags: Mapping[str, str] | None = None
    ) -> RegisteredModelRecord:
        payload = {"name": check_model_name(name), "description": description, "tags": dict(tags or {})}
        return RegisteredModelRecord.from_json(self._json("POST", f"{API}/models", payload))

    def get_registered_model(self, name: str) -> RegisteredModelRecord:
        return RegisteredModelRecord.from_json(self._json("GET", self._model_path(name)))

    def list_registered_models(self) -> list[RegisteredModelRecord]:
        return [RegisteredModelRecord.from_json(m) for m in self._json("GET", f"{API}/models")]

    def update_registered_model(
        self,
        name: str,
        *,
        description: str | Any = UNSET,
        tags: Mapping[str, str | None] | None = None,
        aliases: Mapping[str, int | None] | None = None,
    ) -> RegisteredModelRecord:
        payload: dict[str, Any] = {"tags": dict(tags or {}), "aliases": dict(aliases or {})}
        if description is not UNSET:
            payload["description"] = description
        return RegisteredModelRecord.from_json(self._json("PATCH", self._model_path(name), payload))

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
        payload = {
            "run_id": run_id,
            "run_path": run_path,
            "description": description,
            "tags": dict(tags or {}),
            "properties": dict(properties or {}),
        }
        body = json.dumps(payload).encode()
        # not retried after an answer: a second try could register a second version
        resp = self._request(
            "POST", f"{self._model_path(name)}/versions", body, {"Content-Type": "application/json"}, retry_for=0.0
        )
        return ModelRecord.from_json(resp.json())

    def write_model_file(self, name: str, version: int, file_name: str, stream: BinaryIO) -> FileInfo:
        """Streamed from the file object's position; a seekable stream is sent again when a try fails."""
        path = f"{self._model_path(name, version)}/files/{quote(check_file_name(file_name), safe='/')}"
        return self._put_stream(path, stream)

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
        payload: dict[str, Any] = {"tags": dict(tags or {}), "properties": dict(properties or {})}
        if status is not UNSET:
            payload["status"] = ModelStatus(status).value
        if description is not UNSET:
            payload["description"] = description
        return ModelRecord.from_json(self._json("PATCH", self._model_path(name, version), payload))

    def get_model_version(self, name: str, version: int | None = None) -> ModelRecord:
        if version is None:
            return ModelRecord.from_json(self._json("GET", f"{self._model_path(name)}/versions/latest"))
        return ModelRecord.from_json(self._json("GET", self._model_path(name, version)))

    def list_model_versions(self, name: str | None = None, run_id: str | None = None) -> list[ModelRecord]:
        if name is not None:
            check_model_name(name)
        if run_id is not None:
            check_run_id(run_id)
        return [ModelRecord.from_json(m) for m in self._json("GET", f"{API}/model-versions", name=name, run_id=run_id)]

    def list_model_files(self, name: str, version: int) -> list[FileInfo]:
        return [self._info(i) for i in self._json("GET", f"{self._model_path(name, version)}/files")]

    def iter_model_file(
        self, name: str, version: int, file_name: str, offset: int = 0, length: int | None = None
    ) -> Iterator[bytes]:
        path = f"{self._model_path(name, version)}/files/{quote(check_file_name(file_name), safe='/')}"

        def piece(at: int, want: int) -> bytes:
            return bytes(self._request("GET", path, headers={"Range": f"bytes={at}-{at + want - 1}"}).body)

        want = self.read_piece_bytes if length is None else min(length, self.read_piece_bytes)
        first = piece(offset, want) if want > 0 else b""
        return self._model_pieces(piece, first, offset, length)

    def _model_pieces(self, piece: Any, first: bytes, offset: int, length: int | None) -> Iterator[bytes]:
        data = first
        while data:
            yield data
            offset += len(data)
            if length is not None:
                length -= len(data)
                if length <= 0:
                    return
            if len(data) < self.read_piece_bytes:
                return
            data = piece(offset, self.read_piece_bytes if length is None else min(length, self.read_piece_bytes))

    # --- life cycle ------------------------------------------------------------------------------------
    def close(self, timeout: float | None = None) -> None:
        """Wait up to ``timeout`` (default ``close_timeout``) for spooled batches, then stop the sender thread
        and close connections; raise StoreUnavailableError if batches are left (they stay on disk)."""
        if self._closed:
            return
        error: ExpboardError | None = None
        try:
            self.flush(self.close_timeout if timeout is None else timeout)
        except ExpboardError as exc:
            error = exc
        self._closed = True
        self._stop.set()
        sender = self._sender
        if sender is not None:
            sender.join(10)
        _close_all(self._idle, self._conn_lock)
        self._spool.close()  # its folders, when empty
        if error is not None:
            raise error

    def __repr__(self) -> str:
        return f"HttpStore({self.url!r})"


def _rows(chunk: MetricChunk, rows: slice) -> MetricChunk:
    return MetricChunk(
        chunk.run_id, chunk.name, chunk.kind, chunk.steps[rows], chunk.wall_times[rows], chunk.values[rows]
    )


def _halves(group: list[MetricChunk]) -> list[list[MetricChunk]]:
    if len(group) > 1:
        return [group[: len(group) // 2], group[len(group) // 2 :]]
    (chunk,) = group
    mid = len(chunk) // 2
    return [[_rows(chunk, slice(0, mid))], [_rows(chunk, slice(mid, None))]]


def _encode_or_none(chunk: MetricChunk, batch_id: str) -> bytes | None:
    try:
        return encode_batch([chunk], batch_id)
    except _ENCODE_ERRORS:
        return None


def _split(body: bytes, status: int) -> list[bytes]:
    """The pieces to try when the server refused ``body`` for good: its metrics one by one, or, when it was
    too large (413), its rows in halves; [] when it is one metric that cannot be cut further."""
    try:
        batch_id, parts = decode_batch(body)
    except ValueError:
        return []
    chunks = [
        MetricChunk(p["run_id"], p["name"], MetricKind(p["kind"]), p["steps"], p["wall_times"], p["values"])
        for p in parts
    ]
    base = batch_id or uuid.uuid4().hex
    if len(chunks) > 1:
        return [encode_batch([c], _derive(base, f"/{i}")) for i, c in enumerate(chunks)]
    if status == 413 and chunks and len(chunks[0]) > 1:
        return [encode_batch(h, _derive(base, f"~{j}")) for j, h in enumerate(_halves(chunks))]
    return []
