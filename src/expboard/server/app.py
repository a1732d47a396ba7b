"""The tracking server's ASGI app: the whole :class:`~expboard.stores.base.Store` over a versioned REST API.

Routes live under ``/api/v1``; the OpenAPI document is ``/api/v1/openapi.json`` (browsable at
``/api/v1/docs``). Metric batches travel in the compact binary format of ``stores.wire``
(``application/x-expboard-metrics``); metric reads answer in it too, or as JSON with ``format=json``
(non-finite floats as the strings ``"nan"``, ``"inf"``, ``"-inf"``). Every error is JSON,
``{"error": ClassName, "message": ...}``, with the HTTP status of its class, so the HTTP client raises the
same class again.

>>> app = create_app(SqlStore("sqlite:////tmp/s/expboard.db", "/tmp/s/artifacts"))  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import ConflictError, ExpboardError, ForbiddenError, ValidationError
from ..names import MAX_RUN_ID_LENGTH, check_file_name, check_run_id
from ..records import ExperimentRecord, FileInfo, MetricKind, MetricSeries, RunRecord, RunStatus
from ..stores.base import MAX_CHUNK_RUNS, UNSET, MetricChunk, Store
from ..stores.query import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, RunFilter
from ..stores.wire import WIRE_CONTENT_TYPE, decode_batch, encode_batch, json_safe
from .auth import TOKEN_SCOPE_KEY, AuthMiddleware, SizeLimitMiddleware, Token
from .mlflow_api import mlflow_router
from .models_api import MODEL_FILE_PUT_PATTERN, models_router
from .ranges import INT64_MAX, parse_range, range_headers

__all__ = ["API_PREFIX", "DEFAULT_MAX_REQUEST_BYTES", "create_app"]

API_PREFIX = "/api/v1"
DEFAULT_MAX_REQUEST_BYTES = 64 * 1024 * 1024
_log = logging.getLogger("expboard.server")
T = TypeVar("T")
_INT64_MAX = INT64_MAX
_RUN_ID_SCHEMA: dict[str, Any] = {"pattern": r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*$", "maxLength": MAX_RUN_ID_LENGTH}


# --- wire models (OpenAPI) ----------------------------------------------------------------------------
class ExperimentModel(BaseModel):
    name: str
    created: float
    archived: bool = False
    tags: dict[str, str] = {}


class ExperimentUpdateModel(BaseModel):
    """``archived`` changes only when present; a tag set to ``null`` is removed."""

    archived: bool | None = None
    tags: dict[str, str | None] = {}


class WorkspaceObjectBodyModel(BaseModel):
    body: dict[str, Any]


class WorkspaceObjectModel(BaseModel):
    kind: str
    name: str
    version: int
    body: dict[str, Any]
    created: float


class RunModel(BaseModel):
    # checked by expboard.names.check_run_id (the same check on every route and store); the schema documents it
    run_id: str = Field(min_length=1, json_schema_extra=_RUN_ID_SCHEMA)
    experiment: str
    status: RunStatus
    created: float
    display_name: str = ""
    parent_id: str | None = None
    run_type: str = "interactive"
    target: str = "local"
    start_time: float | None = None
    end_time: float | None = None
    heartbeat: float | None = None
    error: dict[str, Any] | None = None
    tags: dict[str, str] = {}
    properties: dict[str, str] = {}
    description: str = ""
    number: int | None = Field(None, description="assigned by the store when the run is created")


class RunUpdateModel(BaseModel):
    """Only the fields present are changed (``null`` clears a field). With ``only_if_status`` nothing
    changes unless the run's status is one of those (an atomic compare-and-set); the answer tells."""

    status: RunStatus | None = None
    start_time: float | None = None
    end_time: float | None = None
    heartbeat: float | None = None
    error: dict[str, Any] | None = None
    display_name: str | None = None
    description: str | None = None
    only_if_status: list[RunStatus] | None = None


class RunPageModel(BaseModel):
    runs: list[RunModel]
    next_page_token: str | None = None


class FileInfoModel(BaseModel):
    name: str
    size: int
    modified: float


class WhoAmIModel(BaseModel):
    name: str = Field(description="the token's name in the token file ('anonymous' when auth is off)")
    scope: str = Field(description="read, write or admin")


class ErrorModel(BaseModel):
    error: str = Field(description="the expboard error class, e.g. NotFoundError")
    message: str


def run_to_json(run: RunRecord) -> dict[str, Any]:
    return run.to_json()


def run_from_json(data: dict[str, Any]) -> RunRecord:
    return RunRecord.from_json(data)


def series_to_json(s: MetricSeries) -> dict[str, Any]:
    values = s.values.tolist() if hasattr(s.values, "tolist") else list(s.values)
    return {
        "run_id": s.run_id,
        "name": s.name,
        "kind": str(s.kind),
        "steps": s.steps.tolist(),
        "wall_times": [json_safe(t) for t in s.wall_times.tolist()],
        "values": [json_safe(v) for v in values],
    }


_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorModel, "description": desc}
    for code, desc in [
        (400, "invalid input"),
        (401, "missing or invalid bearer token"),
        (403, "the token's scope does not allow this request"),
        (404, "not found"),
        (409, "conflict"),
        (413, "request body too large"),
        (503, "the database is unavailable"),
    ]
}
FILE_PIECE_BYTES = 2 * 1024 * 1024  # file bodies are handed to the store in pieces of this size
_FILE_PUT_RE = re.compile(rf"^{API_PREFIX}(/runs/[^/]+/files/.+|{MODEL_FILE_PUT_PATTERN})")


class _StreamedUploads:
    """Send file uploads (PUT .../files/NAME, streamed to the store in pieces) past the request size limit;
    everything else, appends included, through it."""

    def __init__(self, app: Any, limited: Any) -> None:
        self.app, self.limited = app, limited

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "PUT" and _FILE_PUT_RE.match(scope["path"]):
            await self.app(scope, receive, send)
        else:
            await self.limited(scope, receive, send)


def create_app(
    store: Store,
    tokens: list[str] | list[Token] | None = None,
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    presign_min_bytes: int | None = None,
) -> Any:
    """The ASGI app serving ``store``. With ``tokens`` (bare strings are write tokens), every route but
    health and the API docs needs one as a bearer token, and the token's scope decides what it may do.
    Bodies over ``max_request_bytes`` get 413. With ``presign_min_bytes``, a download of a whole file of
    at least that size in object storage is answered 307 with a presigned URL (the client fetches it from
    the storage itself); without, or for any other file, files go through the server."""
    from .. import __version__ as version

    api = FastAPI(
        title="expboard tracking server",
        version=str(version),
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=None,
        responses=_ERRORS,
        description="Experiment run history over HTTP: experiments, runs, metric batches and run files.",
    )

    async def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await run_in_threadpool(fn, *args, **kwargs)

    @api.exception_handler(ExpboardError)
    async def _expboard_error(request: Request, exc: ExpboardError) -> JSONResponse:
        return JSONResponse({"error": type(exc).__name__, "message": str(exc)}, status_code=exc.status_code)

    @api.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = [f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()]
        return JSONResponse({"error": "ValidationError", "message": "; ".join(parts)}, status_code=400)

    @api.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        cause = exc.__cause__
        if isinstance(cause, ExpboardError):  # e.g. a JSON body over the size limit, seen while parsing it
            return await _expboard_error(request, cause)
        if isinstance(cause, RecursionError):
            return await _expboard_error(request, ValidationError("JSON nested too deeply"))
        name = (
            "NotFoundError"
            if exc.status_code == 404
            else "ValidationError"
            if exc.status_code < 500
            else "ExpboardError"
        )
        return JSONResponse(
            {"error": name, "message": f"{exc.detail} ({request.method} {request.url.path})"},
            status_code=exc.status_code,
        )

    @api.exception_handler(IsADirectoryError)
    @api.exception_handler(NotADirectoryError)
    @api.exception_handler(FileExistsError)
    async def _name_taken(request: Request, exc: OSError) -> JSONResponse:
        # a file where a folder is (or the reverse): the request's name is in the way, not the server broken
        return await _expboard_error(
            request,
            ConflictError(
                f"{request.url.path}: a file and a folder cannot have the same name in a run ({exc.strerror}); "
                "choose another name"
            ),
        )

    @api.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        _log.exception("unexpected error in %s %s", request.method, request.url.path)
        return JSONResponse(
            {"error": "ExpboardError", "message": f"internal server error: {type(exc).__name__}"}, status_code=500
        )

    # --- health ---------------------------------------------------------------------------------------
    @api.get(f"{API_PREFIX}/health", tags=["server"])
    async def health() -> dict[str, Any]:
        """Liveness: answers without a token. ``max_request_bytes`` is the largest request body accepted, so
        clients can split what they send to fit."""
        return {"status": "ok", "version": str(version), "max_request_bytes": max_request_bytes}

    @api.get(f"{API_PREFIX}/whoami", tags=["server"], response_model=WhoAmIModel)
    async def whoami(request: Request) -> Any:
        """The name and scope of the token this request carries."""
        token: Token = request.scope[TOKEN_SCOPE_KEY]
        return {"name": token.name, "scope": token.scope}

    @api.get(f"{API_PREFIX}/tokens", tags=["server"], response_model=list[WhoAmIModel])
    async def list_tokens(request: Request) -> Any:
        """The names and scopes of the accepted tokens (never the tokens themselves); admin tokens only."""
        token: Token = request.scope[TOKEN_SCOPE_KEY]
        if token.scope != "admin":
            raise ForbiddenError(f"token {token.name!r} has scope {token.scope!r}; listing tokens needs an admin token")
        return [{"name": t.name, "scope": t.scope} for t in auth.tokens]

    # --- experiments ----------------------------------------------------------------------------------
    def exp_json(e: ExperimentRecord) -> dict[str, Any]:
        return {"name": e.name, "created": e.created, "archived": e.archived, "tags": dict(e.tags)}

    @api.get(f"{API_PREFIX}/experiments", tags=["experiments"], response_model=list[ExperimentModel])
    async def list_experiments() -> Any:
        return [exp_json(e) for e in await call(store.list_experiments)]

    @api.put(f"{API_PREFIX}/experiments/{{name}}", tags=["experiments"], response_model=ExperimentModel)
    async def get_or_create_experiment(name: str) -> Any:
        """Get the experiment, creating it if it does not exist."""
        return exp_json(await call(store.get_or_create_experiment, name))

    @api.get(f"{API_PREFIX}/experiments/{{name}}", tags=["experiments"], response_model=ExperimentModel)
    async def get_experiment(name: str) -> Any:
        return exp_json(await call(store.get_experiment, name))

    @api.patch(f"{API_PREFIX}/experiments/{{name}}", tags=["experiments"], response_model=ExperimentModel)
    async def update_experiment(name: str, update: ExperimentUpdateModel) -> Any:
        """Archive or reactivate the experiment, and set its tags (``null`` removes one)."""
        archived = UNSET if update.archived is None else update.archived
        return exp_json(await call(store.update_experiment, name, archived=archived, tags=update.tags))

    # --- workspace objects (environments) --------------------------------------------------------------
    @api.post(
        f"{API_PREFIX}/objects/{{kind}}/{{name}}",
        tags=["objects"],
        status_code=201,
        response_model=WorkspaceObjectModel,
    )
    async def register_object(kind: str, name: str, new: WorkspaceObjectBodyModel) -> Any:
        """Store the next version of a named workspace object (1 for a new name)."""
        return (await call(store.register_object, kind, name, new.body)).to_json()

    @api.get(f"{API_PREFIX}/objects/{{kind}}/{{name}}", tags=["objects"], response_model=WorkspaceObjectModel)
    async def get_object(
        kind: str, name: str, version: int | None = Query(None, description="latest if left out")
    ) -> Any:
        return (await call(store.get_object, kind, name, version)).to_json()

    @api.get(f"{API_PREFIX}/objects/{{kind}}", tags=["objects"], response_model=list[WorkspaceObjectModel])
    async def list_objects(kind: str, name: str | None = None) -> Any:
        """Every version of every object of ``kind`` (or of ``name``), by name, then version."""
        return [o.to_json() for o in await call(store.list_objects, kind, name)]

    # --- runs -----------------------------------------------------------------------------------------
    @api.post(f"{API_PREFIX}/runs", tags=["runs"], status_code=201, response_model=RunModel)
    async def create_run(run: RunModel) -> Any:
        """Store a new run; the caller chooses its id. 409 if the id exists."""
        return run_to_json(await call(store.create_run, run_from_json(run.model_dump())))

    @api.get(f"{API_PREFIX}/runs", tags=["runs"], response_model=list[RunModel])
    async def list_runs(
        experiment: str | None = None,
        parent_id: str | None = Query(None, description="only the children of this run"),
        top_level: bool = Query(False, description="only runs without a parent"),
        status: list[RunStatus] | None = Query(None, description="only runs in one of these statuses"),
    ) -> Any:
        """Runs, newest first."""
        if top_level and parent_id is not None:
            raise ValidationError("give parent_id or top_level, not both")
        parent: Any = None if top_level else parent_id if parent_id is not None else UNSET
        return [run_to_json(r) for r in await call(store.list_runs, experiment, parent, status or None)]

    @api.get(f"{API_PREFIX}/run-children", tags=["runs"], response_model=list[RunModel])
    async def list_children(run_id: list[str] = Query(..., description="parent runs (at most 100)")) -> Any:
        """The child runs of each of these runs (one level down), in no particular order."""
        if len(run_id) > MAX_CHUNK_RUNS:
            raise ValidationError(f"at most {MAX_CHUNK_RUNS} run_id parameters a request, got {len(run_id)}")
        return [run_to_json(r) for r in await call(store.list_children, run_id)]

    @api.get(f"{API_PREFIX}/run-pages", tags=["runs"], response_model=RunPageModel)
    async def query_runs(
        experiment: str | None = None,
        parent_id: str | None = Query(None, description="only the children of this run"),
        top_level: bool = Query(False, description="only runs without a parent"),
        status: list[str] | None = Query(None, description="only runs in one of these statuses"),
        tag: list[str] | None = Query(None, description="key=value (or key): runs with this tag"),
        property: list[str] | None = Query(None, description="key=value (or key): runs with this property"),
        metric: list[str] | None = Query(None, description='e.g. "mse<0.3": the last logged value compared'),
        text: str | None = Query(None, description="contained in the display name (case-insensitive)"),
        limit: int = Query(DEFAULT_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE),
        page_token: str | None = Query(None, description="the next_page_token of the previous page"),
    ) -> Any:
        """One page of runs, newest first, filtered by the store; follow ``next_page_token`` for more."""
        if top_level and parent_id is not None:
            raise ValidationError("give parent_id or top_level, not both")
        parent: Any = None if top_level else parent_id if parent_id is not None else UNSET
        run_filter = RunFilter.parse(status=status, tags=tag, properties=property, metrics=metric, text=text)
        page = await call(store.query_runs, experiment, parent, run_filter, limit, page_token)
        return {"runs": [run_to_json(r) for r in page.runs], "next_page_token": page.next_page_token}

    @api.get(f"{API_PREFIX}/runs/{{run_id}}", tags=["runs"], response_model=RunModel)
    async def get_run(run_id: str) -> Any:
        """A run's details: status, times, error, tags and properties."""
        check_run_id(run_id)
        return run_to_json(await call(store.get_run, run_id))

    @api.get(f"{API_PREFIX}/runs/{{run_id}}/children", tags=["runs"], response_model=list[RunModel])
    async def get_children(run_id: str) -> Any:
        check_run_id(run_id)
        await call(store.get_run, run_id)
        return [run_to_json(r) for r in await call(store.list_runs, None, run_id, None)]

    @api.patch(f"{API_PREFIX}/runs/{{run_id}}", tags=["runs"], response_model=RunModel)
    async def update_run(run_id: str, update: RunUpdateModel) -> Any:
        """Change status, times, error, display name or description; see ``only_if_status`` for compare-and-set."""
        check_run_id(run_id)
        fields: dict[str, Any] = {k: getattr(update, k) for k in update.model_fields_set if k != "only_if_status"}
        if "status" in fields and fields["status"] is None:
            raise ValidationError("status cannot be null")
        for name in ("display_name", "description"):
            if name in fields and fields[name] is None:
                raise ValidationError(f"{name} cannot be null")
        return run_to_json(await call(store.update_run, run_id, only_if_status=update.only_if_status, **fields))

    @api.patch(f"{API_PREFIX}/runs/{{run_id}}/tags", tags=["runs"], status_code=204)
    async def set_tags(run_id: str, tags: dict[str, str | None]) -> Response:
        """Set tags; ``null`` removes one."""
        check_run_id(run_id)
        await call(store.set_tags, run_id, tags)
        return Response(status_code=204)

    @api.post(f"{API_PREFIX}/runs/{{run_id}}/properties", tags=["runs"], status_code=204)
    async def add_properties(run_id: str, properties: dict[str, str]) -> Response:
        """Add properties; changing an existing one is a 409."""
        check_run_id(run_id)
        await call(store.add_properties, run_id, properties)
        return Response(status_code=204)

    # --- metrics --------------------------------------------------------------------------------------
    @api.post(
        f"{API_PREFIX}/metric-batches",
        tags=["metrics"],
        status_code=204,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {WIRE_CONTENT_TYPE: {"schema": {"type": "string", "format": "binary"}}},
                "description": "A metric batch in the binary format of expboard.stores.wire.encode_batch; "
                "a batch id seen before makes the request a no-op (safe retries).",
            }
        },
    )
    async def log_metrics(request: Request) -> Response:
        """Append a batch of metric points atomically, once per batch id."""
        body = await request.body()
        try:
            batch_id, parts = decode_batch(body)
            chunks = [
                MetricChunk(p["run_id"], p["name"], MetricKind(p["kind"]), p["steps"], p["wall_times"], p["values"])
                for p in parts
            ]
        except RecursionError:
            raise ValidationError("malformed metric batch: its JSON is nested too deeply") from None
        except Exception as exc:  # untrusted bytes: whatever fails to parse is the sender's mistake
            raise ValidationError(f"malformed metric batch: {type(exc).__name__}: {exc}") from exc
        for chunk in chunks:
            check_run_id(chunk.run_id)
            if not isinstance(chunk.values, (list, np.ndarray)):  # a JSON column must be a list of points
                raise ValidationError(
                    f"malformed metric batch: metric {chunk.name!r} has values of type {type(chunk.values).__name__}, "
                    "not a list"
                )
        await call(store.log_metrics, chunks, batch_id)
        return Response(status_code=204)

    @api.get(
        f"{API_PREFIX}/runs/{{run_id}}/metrics",
        tags=["metrics"],
        responses={
            200: {
                "content": {WIRE_CONTENT_TYPE: {}, "application/json": {}},
                "description": "the series, binary (default) or JSON (format=json)",
            }
        },
    )
    async def get_metrics(
        run_id: str,
        name: str | None = None,
        min_step: int | None = None,
        max_step: int | None = None,
        max_points: int | None = Query(None, ge=1, description="thin long series to this many points"),
        format: str = Query("binary", pattern="^(binary|json)$"),
    ) -> Response:
        """A run's metrics in logging order, optionally one metric, a step range, downsampled."""
        check_run_id(run_id)
        series = await call(store.get_metrics, run_id, name, min_step, max_step, max_points)
        if format == "json":
            return JSONResponse({"series": [series_to_json(s) for s in series]})
        return Response(encode_batch(series), media_type=WIRE_CONTENT_TYPE)

    @api.get(f"{API_PREFIX}/runs/{{run_id}}/metric-count", tags=["metrics"])
    async def count_metric_points(run_id: str, name: str, kind: MetricKind | None = None) -> dict[str, int]:
        """How many points one metric of a run has (of one kind, when given), without reading them."""
        return {"count": await call(store.count_metric_points, run_id, name, kind)}

    @api.get(
        f"{API_PREFIX}/metric-chunks",
        tags=["metrics"],
        responses={200: {"content": {WIRE_CONTENT_TYPE: {}}, "description": "the chunks, binary"}},
    )
    async def read_metric_chunks(
        run_id: list[str] = Query(..., description=f"at most {MAX_CHUNK_RUNS} runs"),
        after: int = Query(0, ge=0, description="the cursor of the previous page (0: from the first chunk)"),
        max_points: int = Query(1_000_000, ge=1, le=10_000_000),
    ) -> Response:
        """The runs' metric chunks stored after a cursor, in storing order (what is new since the last read).
        The next cursor is in the ``X-Expboard-Cursor`` header; ``X-Expboard-More: 1`` when the page was cut."""
        page = await call(store.read_metric_chunks, run_id, after, max_points)
        headers = {"X-Expboard-Cursor": str(page.cursor), "X-Expboard-More": "1" if page.more else "0"}
        return Response(encode_batch(page.chunks), media_type=WIRE_CONTENT_TYPE, headers=headers)

    @api.get(f"{API_PREFIX}/metric-info", tags=["metrics"])
    async def get_metric_info(run_id: list[str] = Query(...)) -> Any:
        """Per metric of each run: kind, count, highest step and the last point, without the points."""
        infos = await call(store.get_metric_info, run_id)
        return [
            {
                **dataclasses.asdict(i),
                "kind": str(i.kind),
                "last_wall_time": json_safe(i.last_wall_time),
                "last_value": json_safe(i.last_value),
            }
            for i in infos
        ]

    # --- files ----------------------------------------------------------------------------------------
    def info_json(i: FileInfo) -> dict[str, Any]:
        return {"name": i.name, "size": i.size, "modified": i.modified}

    @api.get(f"{API_PREFIX}/runs/{{run_id}}/files", tags=["files"], response_model=list[FileInfoModel])
    async def list_files(run_id: str, prefix: str = "") -> Any:
        check_run_id(run_id)
        return [info_json(i) for i in await call(store.list_files, run_id, prefix)]

    binary_body = {
        "requestBody": {
            "required": True,
            "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
        }
    }

    @api.put(
        f"{API_PREFIX}/runs/{{run_id}}/files/{{name:path}}",
        tags=["files"],
        response_model=FileInfoModel,
        openapi_extra=binary_body,
    )
    async def write_file(run_id: str, name: str, request: Request) -> Any:
        """Create or replace a file of the run with the request body, streamed (any size, not bound by the
        request size limit): the file appears whole when the body has arrived, or not at all."""
        check_run_id(run_id)
        name = check_file_name(name, may_be_folder=False)
        writer = await call(store.open_file_writer, run_id, name)
        try:
            buf = bytearray()
            async for piece in request.stream():
                buf += piece
                if len(buf) >= FILE_PIECE_BYTES:
                    data, buf = bytes(buf), bytearray()
                    await call(writer.write, data)
            if buf:
                await call(writer.write, bytes(buf))
            info = await call(writer.commit)
        except BaseException:
            await call(writer.abort)
            raise
        return info_json(info)

    @api.post(
        f"{API_PREFIX}/runs/{{run_id}}/files/{{name:path}}",
        tags=["files"],
        response_model=FileInfoModel,
        openapi_extra=binary_body,
    )
    async def append_file(
        run_id: str,
        name: str,
        request: Request,
        offset: int = Query(..., ge=0, le=_INT64_MAX, description="must equal the file's size"),
    ) -> Any:
        """Append the body at ``offset`` (safe to retry: bytes already stored at ``offset`` are skipped, and
        only what lies past the end is appended)."""
        check_run_id(run_id)
        name = check_file_name(name, may_be_folder=False)
        info: FileInfo | None = None
        buf = bytearray()
        async for piece in request.stream():
            buf += piece
            if len(buf) >= FILE_PIECE_BYTES:
                data, buf = bytes(buf), bytearray()
                info = await call(store.append_file, run_id, name, data, offset)
                offset += len(data)
        if buf or info is None:
            info = await call(store.append_file, run_id, name, bytes(buf), offset)
        return info_json(info)

    @api.get(
        f"{API_PREFIX}/runs/{{run_id}}/files/{{name:path}}",
        tags=["files"],
        responses={200: {"content": {"application/octet-stream": {}}}, 206: {"description": "a byte range"}},
    )
    async def read_file(
        run_id: str,
        name: str,
        request: Request,
        offset: int = Query(0, ge=0, le=_INT64_MAX),
        length: int | None = Query(None, ge=0, le=_INT64_MAX),
    ) -> Response:
        """Download a file, streamed; honours ``Range: bytes=start-[end]`` (answered 206) or offset/length.
        A server started with presigned downloads answers 307 to a URL in the object storage for large
        files stored as one object (unless offset/length are given); the Range header works there too."""
        check_run_id(run_id)
        name = check_file_name(name)
        if (
            presign_min_bytes is not None
            and "offset" not in request.query_params
            and "length" not in request.query_params
        ):
            url = await call(store.presigned_file_url, run_id, name, presign_min_bytes)
            if url is not None:
                return Response(status_code=307, headers={"location": url, "cache-control": "no-store"})
        range_header = request.headers.get("range")
        if range_header is not None:
            offset, length = parse_range(range_header)
        info, pieces = await call(store.open_file_read, run_id, name, offset, length)  # one look-up for both
        _, _, headers = range_headers(info.size, offset, length, partial=range_header is not None)
        return StreamingResponse(
            iterate_in_threadpool(pieces),
            status_code=206 if range_header is not None else 200,
            media_type="application/octet-stream",
            headers=headers,
        )

    api.include_router(models_router(store, API_PREFIX))  # the model registry: server/models_api.py
    api.include_router(mlflow_router(store))  # MLflow's tracking REST API: server/mlflow_api.py

    open_paths = [f"{API_PREFIX}/health", f"{API_PREFIX}/openapi.json", f"{API_PREFIX}/docs"]
    # auth first: a client without a valid token gets its 401 before the server reads any of its body
    auth = AuthMiddleware(_StreamedUploads(api, SizeLimitMiddleware(api, max_request_bytes)), tokens or [], open_paths)
    app: Any = auth
    app.api = api  # for tests and embedding: the FastAPI app inside the middleware
    return app
