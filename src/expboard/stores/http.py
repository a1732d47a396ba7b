"""The HTTP client store: the :class:`~expboard.stores.base.Store` interface against an expboard tracking server.

Standard library only (``http.client`` over a small pool of keep-alive connections), so clients need no web
stack.

Delivery of metric batches:

- every batch carries a batch id (one is made when the caller gives none); the server stores a batch id
  once, so a batch sent again after a lost answer is never stored twice;
- connection errors and 5xx answers are retried with exponential back-off;
- when the server stays unreachable, batches go to a spool folder on disk (bounded by ``spool_max_bytes``)
  and a background thread sends them, in order, once it answers again; while anything is spooled, new
  batches queue behind it so points stay in logging order;
- :meth:`HttpStore.flush` waits for the spool to drain and raises ``StoreUnavailableError`` saying what is
  still pending; :meth:`HttpStore.close` does the same after releasing its thread and connections. What is
  left stays on disk and is sent by the next ``HttpStore`` for the same server once this process has ended.

Every other call is retried the same way (they are all idempotent) and then raises
``StoreUnavailableError``. Errors from the server are raised again with the class the server raised.

>>> store = HttpStore("http://127.0.0.1:5000", token="...")  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import random
import threading
import time
import uuid
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlparse

from .. import settings
from ..errors import ConflictError, ExpboardError, StoreUnavailableError, ValidationError, error_class
from ..names import check_metric_name
from ..records import ExperimentRecord, FileInfo, MetricKind, MetricSeries, RunRecord, RunStatus
from .base import UNSET, MetricChunk, Store
from .wire import WIRE_CONTENT_TYPE, decode_batch, encode_batch

__all__ = ["TOKEN_ENV", "HttpStore"]

TOKEN_ENV = settings.env("token")
API = "/api/v1"
_RETRY_STATUSES = frozenset({500, 502, 503, 504})
_MAX_IDLE = 16
_CONNECTION_ERRORS = (OSError, http.client.HTTPException)  # refused, reset, timed out, broken pipe, bad status


class _Retryable(Exception):
    """A failure worth retrying: no connection, or a 5xx answer."""


@dataclass
class _Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def _default_spool_root() -> Path:
    folder = settings.get("spool_dir")
    if folder:
        return Path(folder)
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "expboard" / "spool"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
        self._idle: list[http.client.HTTPConnection] = []  # keep-alive connections not in use
        self._conn_lock = threading.Lock()
        weakref.finalize(self, _close_all, self._idle, self._conn_lock)  # a store never closed leaks no socket
        self._closed = False
        # spool
        self.spool_max_bytes = spool_max_bytes
        server_key = hashlib.sha256(self.url.encode()).hexdigest()[:16]
        self._spool_base = Path(spool_dir) if spool_dir is not None else _default_spool_root() / server_key
        self.spool_dir = self._spool_base / f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._spool_lock = threading.Condition()
        self._spooled: list[Path] = []  # oldest first
        self._spooled_bytes = 0
        self._seq = 0
        self._rejected: list[str] = []  # spooled batches the server refused (4xx), reported by flush()
        self._rejected_class: type[ExpboardError] = ExpboardError
        self._sender: threading.Thread | None = None
        self._stop = threading.Event()
        self._adopt_orphans()

    # --- HTTP ----------------------------------------------------------------------------------------
    def _acquire(self) -> http.client.HTTPConnection:
        with self._conn_lock:
            if self._idle:
                return self._idle.pop()
        cls = http.client.HTTPSConnection if self._scheme == "https" else http.client.HTTPConnection
        return cls(self._host, self._port, timeout=self.timeout)

    def _release(self, conn: http.client.HTTPConnection, reuse: bool) -> None:
        with self._conn_lock:
            if reuse and not self._closed and len(self._idle) < _MAX_IDLE:
                self._idle.append(conn)
                return
        conn.close()

    def _once(self, method: str, path: str, body: bytes | None, headers: Mapping[str, str]) -> _Response:
        """One request; raises _Retryable for connection errors and 5xx, the server's error class for 4xx."""
        conn = self._acquire()
        try:
            conn.request(method, self._base_path + path, body=body, headers={**self._headers, **headers})
            resp = conn.getresponse()
            data = resp.read()
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
        if resp.status in _RETRY_STATUSES:
            raise _Retryable(f"{cls.__name__}: {message}")
        raise cls(message)

    def _request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        retry_for: float | None = None,
        retried: list[bool] | None = None,
    ) -> _Response:
        """A request retried with exponential back-off (and jitter) for ``retry_for`` seconds."""
        if self._closed:
            raise StoreUnavailableError("the store is closed")
        retry_for = self.retry_for if retry_for is None else retry_for
        deadline = time.monotonic() + retry_for
        delay, attempt = 0.05, 0
        while True:
            attempt += 1
            try:
                return self._once(method, path, body, headers or {})
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

    # --- runs ------------------------------------------------------------------------------------------
    @staticmethod
    def _run(data: dict[str, Any]) -> RunRecord:
        return RunRecord.from_json(data)

    def create_run(self, run: RunRecord) -> RunRecord:
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
        return self._run(self._json("GET", f"{API}/runs/{quote(run_id, safe='')}"))

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
        payload: dict[str, Any] = {
            k: v
            for k, v in (
                ("start_time", start_time),
                ("end_time", end_time),
                ("heartbeat", heartbeat),
                ("error", error),
                ("display_name", display_name),
            )
            if v is not UNSET
        }
        if status is not UNSET:
            payload["status"] = RunStatus(status).value
        if only_if_status:
            payload["only_if_status"] = [RunStatus(s).value for s in only_if_status]
        return self._run(self._json("PATCH", f"{API}/runs/{quote(run_id, safe='')}", payload))

    def set_tags(self, run_id: str, tags: Mapping[str, str | None]) -> None:
        payload = {k: (None if v is None else str(v)) for k, v in tags.items()}
        self._json("PATCH", f"{API}/runs/{quote(run_id, safe='')}/tags", payload)

    def add_properties(self, run_id: str, properties: Mapping[str, str]) -> None:
        payload = {k: str(v) for k, v in properties.items()}
        self._json("POST", f"{API}/runs/{quote(run_id, safe='')}/properties", payload)

    # --- metrics ---------------------------------------------------------------------------------------
    def _encode_parts(self, chunks: Sequence[MetricChunk], batch_id: str) -> list[bytes]:
        """The batch as request bodies within ``max_request_bytes``; pieces get ids derived from the batch's."""
        body = encode_batch(chunks, batch_id)
        if len(body) <= self.max_request_bytes or sum(len(c) for c in chunks) <= 1:
            return [body]
        pieces: list[list[MetricChunk]] = []
        for chunk in chunks:  # split by rows: about max_request_bytes / 2 per piece
            per_point = max(1, len(encode_batch([chunk])) // max(1, len(chunk)))
            step = max(1, self.max_request_bytes // 2 // per_point)
            for start in range(0, len(chunk), step):
                rows = slice(start, start + step)
                pieces.append(
                    [
                        MetricChunk(
                            chunk.run_id,
                            chunk.name,
                            chunk.kind,
                            chunk.steps[rows],
                            chunk.wall_times[rows],
                            chunk.values[rows],
                        )
                    ]
                )
        return [encode_batch(p, f"{batch_id}#{i}") for i, p in enumerate(pieces)]

    def log_metrics(self, chunks: Sequence[MetricChunk], batch_id: str | None = None) -> None:
        for chunk in chunks:  # refuse here what the server would refuse, before anything is spooled
            check_metric_name(chunk.name)
            if not len(chunk.wall_times) == len(chunk.values) == len(chunk.steps):
                raise ValidationError(f"metric {chunk.name!r}: steps, wall times and values differ in length")
            MetricKind(chunk.kind)
        chunks = [c for c in chunks if len(c)]
        if not chunks and batch_id is None:
            return
        if self._closed:
            raise StoreUnavailableError("the store is closed")
        bodies = self._encode_parts(chunks, batch_id or uuid.uuid4().hex)
        for i, body in enumerate(bodies):
            with self._spool_lock:
                queued = bool(self._spooled)
            if queued:  # keep logging order: behind what is already waiting
                self._spool(bodies[i:])
                return
            try:
                self._request(
                    "POST",
                    f"{API}/metric-batches",
                    body,
                    {"Content-Type": WIRE_CONTENT_TYPE},
                    retry_for=self.metrics_retry_for,
                )
            except StoreUnavailableError:
                if self._closed:
                    raise
                self._spool(bodies[i:])
                return

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
        path = f"{API}/runs/{quote(run_id, safe='')}/metrics" + (f"?{query}" if query else "")
        _, parts = decode_batch(self._request("GET", path, headers={"Accept": WIRE_CONTENT_TYPE}).body)
        return [
            MetricSeries(p["run_id"], p["name"], MetricKind(p["kind"]), p["steps"], p["wall_times"], p["values"])
            for p in parts
        ]

    # --- spool -----------------------------------------------------------------------------------------
    def _spool(self, bodies: list[bytes]) -> None:
        with self._spool_lock:
            size = sum(len(b) for b in bodies)
            if self._spooled_bytes + size > self.spool_max_bytes:
                raise StoreUnavailableError(
                    f"tracking server {self.url} is unreachable and the spool {self.spool_dir} is full "
                    f"({len(self._spooled)} batches, {self._spooled_bytes} bytes of {self.spool_max_bytes}); "
                    "this batch was not stored: retry it when the server is back"
                )
            self.spool_dir.mkdir(parents=True, exist_ok=True)
            for body in bodies:
                self._seq += 1
                path = self.spool_dir / f"{self._seq:012d}.batch"
                tmp = path.with_suffix(".tmp")
                with open(tmp, "wb") as f:
                    f.write(body)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
                self._spooled.append(path)
                self._spooled_bytes += len(body)
            self._ensure_sender()

    def _ensure_sender(self) -> None:
        """Start the sender thread if batches wait and none runs (call with the spool lock held)."""
        if self._spooled and (self._sender is None or not self._sender.is_alive()) and not self._stop.is_set():
            self._sender = threading.Thread(target=self._send_spooled, name="expboard-http-spool", daemon=True)
            self._sender.start()

    def _send_spooled(self) -> None:
        delay = 0.05
        while not self._stop.is_set():
            with self._spool_lock:
                if not self._spooled:
                    self._sender = None
                    return
                path = self._spooled[0]
            body = path.read_bytes()
            try:
                self._once("POST", f"{API}/metric-batches", body, {"Content-Type": WIRE_CONTENT_TYPE})
            except _Retryable:
                self._stop.wait(delay * (0.75 + random.random() / 2))
                delay = min(delay * 2, 2.0)
                continue
            except ExpboardError as exc:  # refused (4xx): sending it again cannot help
                with self._spool_lock:
                    self._rejected.append(f"{path.name}: {type(exc).__name__}: {exc}")
                    if len(self._rejected) == 1:
                        self._rejected_class = type(exc)
            delay = 0.05
            with self._spool_lock:
                self._spooled.pop(0)
                self._spooled_bytes -= len(body)
                path.unlink(missing_ok=True)
                self._spool_lock.notify_all()

    def _adopt_orphans(self) -> None:
        """Take over batches spooled for this server by processes that have ended, to send them."""
        if not self._spool_base.is_dir():
            return
        for folder in sorted(self._spool_base.iterdir()):
            pid = folder.name.split("-", 1)[0]
            if not folder.is_dir() or folder == self.spool_dir or not pid.isdigit() or _pid_alive(int(pid)):
                continue
            claimed = folder.with_name(f"{folder.name}.adopted-{os.getpid()}")
            try:
                folder.rename(claimed)  # atomic: only one adopter wins
            except OSError:
                continue
            bodies = [p.read_bytes() for p in sorted(claimed.glob("*.batch"))]
            if bodies:
                with self._spool_lock:
                    self.spool_max_bytes = max(self.spool_max_bytes, self._spooled_bytes + sum(map(len, bodies)))
                self._spool(bodies)
            for p in claimed.iterdir():
                p.unlink()
            claimed.rmdir()

    def pending(self) -> tuple[int, int]:
        """Metric batches and points spooled and not yet delivered."""
        with self._spool_lock:
            paths = list(self._spooled)
        points = 0
        for p in paths:
            try:
                points += sum(len(c["steps"]) for c in decode_batch(p.read_bytes())[1])
            except (OSError, ValueError):
                pass
        return len(paths), points

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every spooled metric batch is delivered; ``timeout=None`` waits as long as it takes."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._spool_lock:
            while self._spooled and (self._sender is not None and self._sender.is_alive()):
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                self._spool_lock.wait(left if left is None else min(left, 1.0))
            rejected, self._rejected = self._rejected, []
            waiting = bool(self._spooled)
        if waiting:
            batches, points = self.pending()
            raise StoreUnavailableError(
                f"{batches} metric batch(es) with {points} points are not yet delivered to {self.url} "
                f"(waited {timeout:g} s); they are kept in {self.spool_dir} and will be sent when the server "
                "answers again, by this process or the next one that opens this store"
                if timeout is not None
                else f"{batches} metric batch(es) are not delivered to {self.url}"
            )
        if rejected:
            raise self._rejected_class(
                f"the tracking server refused {len(rejected)} spooled metric batch(es): " + "; ".join(rejected[:5])
            )

    # --- files -----------------------------------------------------------------------------------------
    def _file_path(self, run_id: str, name: str) -> str:
        return f"{API}/runs/{quote(run_id, safe='')}/files/{quote(name, safe='/')}"

    def _info(self, data: dict[str, Any]) -> FileInfo:
        return FileInfo(name=data["name"], size=int(data["size"]), modified=float(data["modified"]))

    def write_file(self, run_id: str, name: str, data: bytes) -> FileInfo:
        piece = self.max_request_bytes
        head = bytes(data[:piece])
        info = self._info(
            self._request(
                "PUT", self._file_path(run_id, name), head, {"Content-Type": "application/octet-stream"}
            ).json()
        )
        for offset in range(piece, len(data), piece):  # larger files: the rest in appends
            info = self.append_file(run_id, name, data[offset : offset + piece], offset)
        return info

    def append_file(self, run_id: str, name: str, data: bytes, offset: int) -> FileInfo:
        path = f"{self._file_path(run_id, name)}?offset={int(offset)}"
        return self._info(self._request("POST", path, bytes(data), {"Content-Type": "application/octet-stream"}).json())

    def read_file(self, run_id: str, name: str, offset: int = 0, length: int | None = None) -> bytes:
        if offset < 0 or (length is not None and length < 0):
            raise ValidationError("offset and length must not be negative")
        path = self._file_path(run_id, name)
        if length == 0:
            return self._request("GET", f"{path}?offset={offset}&length=0").body
        end = "" if length is None else str(offset + length - 1)
        return self._request("GET", path, headers={"Range": f"bytes={offset}-{end}"}).body

    def list_files(self, run_id: str, prefix: str = "") -> list[FileInfo]:
        return [self._info(i) for i in self._json("GET", f"{API}/runs/{quote(run_id, safe='')}/files", prefix=prefix)]

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
        try:
            self.spool_dir.rmdir()  # only when empty
        except OSError:
            pass
        if error is not None:
            raise error

    def __repr__(self) -> str:
        return f"HttpStore({self.url!r})"
