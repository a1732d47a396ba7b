"""The model registry on the tracking server: registered models and their numbered versions under ``/api/v1``.

- ``GET /models``, ``POST /models`` (a model without versions), ``GET|PATCH /models/{name}`` (description,
  tags, aliases);
- ``POST /models/{name}/versions`` registers the next version: with ``run_path`` the run's files are copied
  into it on the server (READY at once); without, it is PENDING until its files are uploaded with
  ``PUT .../files/{file}`` (streamed, any size) and its status is set to READY with ``PATCH``;
- ``GET /models/{name}/versions/{version|latest}``, ``GET /model-versions?name=&run_id=``;
- ``GET .../files`` lists a version's files, ``GET .../files/{file}`` downloads one (``Range`` honoured).

Token scopes are the server's: a read token may GET, a write token may register.
"""

from __future__ import annotations

import tempfile
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

from ..errors import NotFoundError, ValidationError
from ..names import check_file_name
from ..records import FileInfo, ModelRecord, ModelStatus, RegisteredModelRecord
from ..stores.base import UNSET, Store
from .ranges import parse_range, range_headers

__all__ = ["MODEL_FILE_PUT_PATTERN", "models_router"]

# uploads to these paths stream past the request size limit (as run files do)
MODEL_FILE_PUT_PATTERN = r"/models/[^/]+/versions/[^/]+/files/.+"
_SPOOL_BYTES = 8 * 1024 * 1024  # an upload is kept in memory up to this size, then on disk


class RegisteredModelCreate(BaseModel):
    name: str
    description: str = ""
    tags: dict[str, str] = {}


class RegisteredModelUpdate(BaseModel):
    """``description`` changes only when present; a tag or alias set to ``null`` is removed."""

    description: str | None = None
    tags: dict[str, str | None] = {}
    aliases: dict[str, int | None] = {}


class ModelVersionCreate(BaseModel):
    run_id: str | None = None
    run_path: str | None = None
    description: str = ""
    tags: dict[str, str] = {}
    properties: dict[str, str] = {}


class ModelVersionUpdate(BaseModel):
    status: ModelStatus | None = None
    description: str | None = None
    tags: dict[str, str | None] = {}
    properties: dict[str, str] = {}


def _version(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValidationError(f"a model version is a whole number from 1 (or 'latest'), got {text!r}") from None
    if value < 1:
        raise ValidationError(f"a model version is a whole number from 1, got {value}")
    return value


def _registered(m: RegisteredModelRecord) -> dict[str, Any]:
    return m.to_json()


def _model(m: ModelRecord) -> dict[str, Any]:
    return m.to_json()


def _info(i: FileInfo) -> dict[str, Any]:
    return {"name": i.name, "size": i.size, "modified": i.modified}


def models_router(store: Store, prefix: str) -> APIRouter:
    """The registry's routes under ``prefix`` (the server's ``/api/v1``)."""
    router = APIRouter(prefix=prefix, tags=["models"])

    @router.get("/models")
    async def list_registered_models() -> Any:
        return [_registered(m) for m in await run_in_threadpool(store.list_registered_models)]

    @router.post("/models", status_code=201)
    async def create_registered_model(body: RegisteredModelCreate) -> Any:
        """A registered model without versions; 409 if the name is taken."""
        m = await run_in_threadpool(
            lambda: store.create_registered_model(body.name, description=body.description, tags=body.tags)
        )
        return _registered(m)

    @router.get("/models/{name}")
    async def get_registered_model(name: str) -> Any:
        return _registered(await run_in_threadpool(store.get_registered_model, name))

    @router.patch("/models/{name}")
    async def update_registered_model(name: str, body: RegisteredModelUpdate) -> Any:
        description: Any = UNSET if body.description is None else body.description
        m = await run_in_threadpool(
            lambda: store.update_registered_model(name, description=description, tags=body.tags, aliases=body.aliases)
        )
        return _registered(m)

    @router.post("/models/{name}/versions", status_code=201)
    async def create_model_version(name: str, body: ModelVersionCreate) -> Any:
        """Register the next version (numbers are given atomically)."""
        m = await run_in_threadpool(
            lambda: store.create_model_version(
                name,
                run_id=body.run_id,
                run_path=body.run_path,
                description=body.description,
                tags=body.tags,
                properties=body.properties,
            )
        )
        return _model(m)

    @router.get("/model-versions")
    async def list_model_versions(name: str | None = None, run_id: str | None = None) -> Any:
        return [_model(m) for m in await run_in_threadpool(store.list_model_versions, name, run_id)]

    @router.get("/models/{name}/versions/{version}")
    async def get_model_version(name: str, version: str) -> Any:
        """One version; ``latest`` is the newest READY one."""
        number = None if version == "latest" else _version(version)
        return _model(await run_in_threadpool(store.get_model_version, name, number))

    @router.patch("/models/{name}/versions/{version}")
    async def update_model_version(name: str, version: str, body: ModelVersionUpdate) -> Any:
        number = _version(version)
        status: Any = UNSET if body.status is None else body.status
        description: Any = UNSET if body.description is None else body.description
        m = await run_in_threadpool(
            lambda: store.update_model_version(
                name, number, status=status, description=description, tags=body.tags, properties=body.properties
            )
        )
        return _model(m)

    @router.get("/models/{name}/versions/{version}/files")
    async def list_model_files(name: str, version: str) -> Any:
        return [_info(i) for i in await run_in_threadpool(store.list_model_files, name, _version(version))]

    @router.put("/models/{name}/versions/{version}/files/{file_name:path}")
    async def write_model_file(name: str, version: str, file_name: str, request: Request) -> Any:
        """Add a file to a PENDING version from the request body (streamed; any size)."""
        number = _version(version)
        file_name = check_file_name(file_name, may_be_folder=False)
        with tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES) as spool:
            async for piece in request.stream():
                await run_in_threadpool(spool.write, piece)
            spool.seek(0)
            info = await run_in_threadpool(store.write_model_file, name, number, file_name, spool)  # type: ignore[arg-type]
        return _info(info)

    @router.get("/models/{name}/versions/{version}/files/{file_name:path}")
    async def read_model_file(
        name: str,
        version: str,
        file_name: str,
        request: Request,
    ) -> Response:
        """Download a version's file, streamed; honours ``Range: bytes=start-[end]`` (answered 206)."""
        number = _version(version)
        file_name = check_file_name(file_name)
        infos = await run_in_threadpool(store.list_model_files, name, number)
        info = next((i for i in infos if i.name == file_name), None)
        if info is None:
            raise NotFoundError(f"model {name!r} version {number} has no file {file_name!r}")
        header = request.headers.get("range")
        offset, length = parse_range(header) if header is not None else (0, None)
        start, stop, headers = range_headers(info.size, offset, length, partial=header is not None)
        pieces = await run_in_threadpool(store.iter_model_file, name, number, file_name, start, stop - start)
        return StreamingResponse(
            iterate_in_threadpool(pieces),
            status_code=206 if header is not None else 200,
            media_type="application/octet-stream",
            headers=headers,
        )

    return router
