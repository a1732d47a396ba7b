"""MLflow's tracking REST API on the expboard tracking server, so that stock MLflow clients log into it.

Routes: ``/api/2.0/mlflow/...`` (and the same under ``/ajax-api/2.0/mlflow/``), the artifact proxy
``/api/2.0/mlflow-artifacts/artifacts/...`` and ``/api/3.0/mlflow/server-info``. The same bearer-token
auth as the rest of the server applies (MLflow clients send ``MLFLOW_TRACKING_TOKEN`` as a bearer token).

How MLflow's entities map onto the run history:

- experiment = experiment; its MLflow id is its name, except the ``Default`` experiment, whose id is ``0``
  (MLflow's default). Names follow expboard's rule (letters, digits, ``_``, ``-``).
- run = run: the MLflow run name is the display name, the ``mlflow.parentRunId`` tag makes a child run,
  statuses map both ways (``mlflow_search.MLFLOW_STATUS``), times are kept (milliseconds on the wire).
- metrics = scalar metric series, MLflow's step and millisecond timestamps kept; a run's metrics in
  searches are the latest values (highest step, then latest timestamp, then largest value).
- params = properties (add-only, as in MLflow); tags = tags; artifacts = run files (the artifact root of a
  run is its file root, so ``logs/`` written by MLflow feeds TensorBoard like any run's).
- dataset inputs (``log_inputs``) are kept in the run file ``system_logs/mlflow_inputs.json``.
- logged models (MLflow 3, what ``log_model`` and autologging create) live in their source run: their
  files under ``models/<model id>/``, their description in ``system_logs/mlflow_models/<model id>.json``.

Every answer to an MLflow route is MLflow-shaped: ``{"error_code": ..., "message": ...}`` with MLflow's
HTTP status for the code. The model registry's routes are in :mod:`.mlflow_registry`. Calls expboard does
not serve (traces, prompts...) get ``ENDPOINT_NOT_FOUND`` (404), never a 500.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import posixpath
import random
import re
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from ..errors import (
    AuthError,
    ConflictError,
    ExpboardError,
    NotFoundError,
    PayloadTooLargeError,
    StoreUnavailableError,
    ValidationError,
)
from ..records import MetricKind, RunRecord, RunStatus
from ..stores.base import UNSET, MetricChunk, QueryStore, RunCondition, Store
from .mlflow_registry import MlflowRegistry, RegistryError
from .mlflow_search import mlflow_status, parse_filter, parse_order_by

__all__ = ["DEFAULT_EXPERIMENT", "MlflowApi", "MlflowError", "mlflow_router"]

_log = logging.getLogger("expboard.server.mlflow")

DEFAULT_EXPERIMENT = "Default"  # MLflow's experiment "0"
PARENT_TAG = "mlflow.parentRunId"
RUN_NAME_TAG = "mlflow.runName"
USER_TAG = "mlflow.user"
INPUTS_FILE = "system_logs/mlflow_inputs.json"
MODELS_DIR = "system_logs/mlflow_models"  # a logged model's description; its files are under models/<id>/
MODELS_TAG = "mlflow.loggedModels"  # the ids of a run's logged models
MODEL_HISTORY_TAG = "mlflow.log-model.history"
HEARTBEAT_EVERY_S = 10.0
MAX_RESULTS = 50_000  # MLflow's cap for search-runs
_FROM_MLFLOW_STATUS = {
    "RUNNING": RunStatus.RUNNING,
    "SCHEDULED": RunStatus.QUEUED,
    "FINISHED": RunStatus.COMPLETED,
    "FAILED": RunStatus.FAILED,
    "KILLED": RunStatus.CANCELED,
}
_HTTP_STATUS = {
    "INVALID_PARAMETER_VALUE": 400,
    "RESOURCE_ALREADY_EXISTS": 400,
    "INVALID_STATE": 400,
    "BAD_REQUEST": 400,
    "MALFORMED_REQUEST": 400,
    "UNAUTHENTICATED": 401,
    "RESOURCE_DOES_NOT_EXIST": 404,
    "ENDPOINT_NOT_FOUND": 404,
    "REQUEST_LIMIT_EXCEEDED": 413,
    "NOT_IMPLEMENTED": 501,
    "TEMPORARILY_UNAVAILABLE": 503,
    "INTERNAL_ERROR": 500,
}


class MlflowError(Exception):
    """An error answered in MLflow's shape."""

    def __init__(self, error_code: str, message: str) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.message = message

    @property
    def status_code(self) -> int:
        return _HTTP_STATUS.get(self.error_code, 400)


def _from_expboard(exc: ExpboardError) -> MlflowError:
    code = {
        ValidationError: "INVALID_PARAMETER_VALUE",
        NotFoundError: "RESOURCE_DOES_NOT_EXIST",
        ConflictError: "INVALID_PARAMETER_VALUE",
        AuthError: "UNAUTHENTICATED",
        PayloadTooLargeError: "REQUEST_LIMIT_EXCEEDED",
        StoreUnavailableError: "TEMPORARILY_UNAVAILABLE",
    }
    for cls, name in code.items():
        if isinstance(exc, cls):
            return MlflowError(name, str(exc))
    return MlflowError("INTERNAL_ERROR", str(exc))


def error_response(exc: MlflowError) -> JSONResponse:
    return JSONResponse({"error_code": exc.error_code, "message": exc.message}, status_code=exc.status_code)


# --- small helpers ------------------------------------------------------------------------------------
def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else int(round(seconds * 1000))


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        special = {"nan": math.nan, "infinity": math.inf, "-infinity": -math.inf, "inf": math.inf, "-inf": -math.inf}
        if value.strip().lower() in special:
            return special[value.strip().lower()]
        try:
            return float(value)
        except ValueError:
            pass
    raise MlflowError("INVALID_PARAMETER_VALUE", f"{what} must be a number, got {value!r}")


def _int(value: Any, what: str, default: int | None = None) -> int | None:
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise MlflowError("INVALID_PARAMETER_VALUE", f"{what} must be an integer, got {value!r}") from None


def _json_float(x: float) -> float | str:
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    return x


def _required(args: dict[str, Any], *names: str) -> Any:
    for name in names:
        value = args.get(name)
        if value not in (None, ""):
            return value
    raise MlflowError("INVALID_PARAMETER_VALUE", f"missing value for required parameter '{names[0]}'")


def _page_token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def _offset(token: Any) -> int:
    if not token:
        return 0
    try:
        offset = int(json.loads(base64.urlsafe_b64decode(str(token).encode()))["offset"])
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise MlflowError("INVALID_PARAMETER_VALUE", f"invalid page_token {token!r}") from None
    if offset < 0:
        raise MlflowError("INVALID_PARAMETER_VALUE", f"invalid page_token {token!r}")
    return offset


_ADJECTIVES = ("amber", "brisk", "calm", "deft", "eager", "fleet", "gentle", "keen", "lucid", "mellow", "nimble")
_NOUNS = ("otter", "heron", "lynx", "finch", "marten", "ibis", "wren", "stoat", "kestrel", "tern", "vole")


def _random_name() -> str:
    """A run name when the client gives none, as MLflow's server does."""
    return f"{random.choice(_ADJECTIVES)}-{random.choice(_NOUNS)}-{random.randint(100, 999)}"


def _experiment_id(name: str) -> str:
    return "0" if name == DEFAULT_EXPERIMENT else name


# --- the API ------------------------------------------------------------------------------------------
class MlflowApi:
    """The handlers of MLflow's REST API over a :class:`QueryStore`; each takes the request's arguments
    (query string merged with the JSON body) and returns the JSON answer."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._beats: dict[str, float] = {}
        self._beat_lock = threading.Lock()
        self.routes: dict[tuple[str, str], Callable[[dict[str, Any]], dict[str, Any]]] = {
            ("POST", "experiments/create"): self.create_experiment,
            ("GET", "experiments/get"): self.get_experiment,
            ("GET", "experiments/get-by-name"): self.get_experiment_by_name,
            ("POST", "experiments/search"): self.search_experiments,
            ("GET", "experiments/search"): self.search_experiments,
            ("POST", "experiments/update"): self.update_experiment,
            ("POST", "experiments/delete"): self.delete_experiment,
            ("POST", "experiments/restore"): self.restore_experiment,
            ("POST", "runs/create"): self.create_run,
            ("GET", "runs/get"): self.get_run,
            ("POST", "runs/update"): self.update_run,
            ("POST", "runs/delete"): self.delete_run,
            ("POST", "runs/restore"): self.restore_run,
            ("POST", "runs/search"): self.search_runs,
            ("POST", "runs/set-tag"): self.set_tag,
            ("POST", "runs/delete-tag"): self.delete_tag,
            ("POST", "runs/log-parameter"): self.log_param,
            ("POST", "runs/log-metric"): self.log_metric,
            ("POST", "runs/log-batch"): self.log_batch,
            ("POST", "runs/log-inputs"): self.log_inputs,
            ("GET", "metrics/get-history"): self.get_metric_history,
            ("GET", "artifacts/list"): self.list_run_artifacts,
            ("POST", "logged-models/search"): self.search_logged_models,
            ("POST", "logged-models"): self.create_logged_model,
            ("POST", "runs/outputs"): self.log_outputs,
            ("POST", "runs/log-model"): self.log_model_history,
        }

    @property
    def query(self) -> QueryStore:
        if not isinstance(self.store, QueryStore):
            raise MlflowError(
                "NOT_IMPLEMENTED",
                f"the MLflow API needs a SQL store behind the server, not {type(self.store).__name__}",
            )
        return self.store

    # --- experiments ----------------------------------------------------------------------------------
    def _experiment_name(self, experiment_id: Any) -> str:
        """The expboard experiment of an MLflow experiment id (``0`` is created on first use)."""
        exp_id = str(experiment_id)
        if exp_id == "0":
            self.store.get_or_create_experiment(DEFAULT_EXPERIMENT)
            return DEFAULT_EXPERIMENT
        try:
            self.store.get_experiment(exp_id)
        except NotFoundError:
            raise MlflowError("RESOURCE_DOES_NOT_EXIST", f"no experiment with id {exp_id!r}") from None
        return exp_id

    def _experiment_json(self, name: str, created: float, deleted: set[str]) -> dict[str, Any]:
        exp_id = _experiment_id(name)
        return {
            "experiment_id": exp_id,
            "name": name,
            "artifact_location": f"mlflow-artifacts:/{exp_id}",
            "lifecycle_stage": "deleted" if name in deleted else "active",
            "creation_time": _ms(created),
            "last_update_time": _ms(created),
            "tags": [],
        }

    def create_experiment(self, args: dict[str, Any]) -> dict[str, Any]:
        name = str(_required(args, "name"))
        if args.get("tags"):
            raise MlflowError("NOT_IMPLEMENTED", "expboard experiments have no tags: create it without tags")
        try:
            self.store.get_experiment(name)
        except NotFoundError:
            pass
        else:
            raise MlflowError("RESOURCE_ALREADY_EXISTS", f"an experiment named {name!r} already exists")
        record = self.store.get_or_create_experiment(name)
        return {"experiment_id": _experiment_id(record.name)}

    def get_experiment(self, args: dict[str, Any]) -> dict[str, Any]:
        name = self._experiment_name(_required(args, "experiment_id"))
        record = self.store.get_experiment(name)
        return {"experiment": self._experiment_json(record.name, record.created, self.query.deleted_experiments())}

    def get_experiment_by_name(self, args: dict[str, Any]) -> dict[str, Any]:
        name = str(_required(args, "experiment_name"))
        try:
            record = self.store.get_experiment(name)
        except NotFoundError:
            raise MlflowError("RESOURCE_DOES_NOT_EXIST", f"no experiment named {name!r}") from None
        return {"experiment": self._experiment_json(record.name, record.created, self.query.deleted_experiments())}

    def search_experiments(self, args: dict[str, Any]) -> dict[str, Any]:
        view = str(args.get("view_type") or "ACTIVE_ONLY").upper()
        if view in ("1",):
            view = "ACTIVE_ONLY"
        max_results = _int(args.get("max_results"), "max_results", 1000) or 1000
        offset = _offset(args.get("page_token"))
        deleted = self.query.deleted_experiments()
        records = self.store.list_experiments()
        match = _experiment_filter(args.get("filter"))
        keep = [
            r for r in records if match(r.name) and (view == "ALL" or (view == "DELETED_ONLY") == (r.name in deleted))
        ]
        for clause in reversed(_as_list(args.get("order_by"))):
            parts = clause.split()
            key = parts[0].split(".")[-1] if parts else ""
            desc = len(parts) > 1 and parts[1].upper() == "DESC"
            if key == "name":
                keep.sort(key=lambda r: r.name, reverse=desc)
            elif key in ("creation_time", "last_update_time"):
                keep.sort(key=lambda r: r.created, reverse=desc)
            elif key != "experiment_id":
                raise MlflowError("INVALID_PARAMETER_VALUE", f"cannot order experiments by {clause!r}")
        page = keep[offset : offset + max_results]
        out: dict[str, Any] = {"experiments": [self._experiment_json(r.name, r.created, deleted) for r in page]}
        if offset + max_results < len(keep):
            out["next_page_token"] = _page_token(offset + max_results)
        return out

    def update_experiment(self, args: dict[str, Any]) -> dict[str, Any]:
        name = self._experiment_name(_required(args, "experiment_id"))
        new_name = args.get("new_name")
        if new_name and new_name != name:
            raise MlflowError(
                "NOT_IMPLEMENTED",
                "expboard experiments cannot be renamed (an MLflow experiment's id is its name here); "
                f"create a new experiment instead of renaming {name!r}",
            )
        return {}

    def delete_experiment(self, args: dict[str, Any]) -> dict[str, Any]:
        self.query.set_experiment_deleted(self._experiment_name(_required(args, "experiment_id")), True)
        return {}

    def restore_experiment(self, args: dict[str, Any]) -> dict[str, Any]:
        self.query.set_experiment_deleted(self._experiment_name(_required(args, "experiment_id")), False)
        return {}

    # --- runs -----------------------------------------------------------------------------------------
    def _run(self, args: dict[str, Any]) -> RunRecord:
        run_id = str(_required(args, "run_id", "run_uuid"))
        try:
            return self.store.get_run(run_id)
        except NotFoundError:
            raise MlflowError("RESOURCE_DOES_NOT_EXIST", f"Run with id={run_id} not found") from None

    def _run_id(self, args: dict[str, Any]) -> str:
        return str(_required(args, "run_id", "run_uuid"))

    def _run_info(self, r: RunRecord, deleted: bool) -> dict[str, Any]:
        exp_id = _experiment_id(r.experiment)
        start = r.start_time if r.start_time is not None else r.created
        info: dict[str, Any] = {
            "run_id": r.run_id,
            "run_uuid": r.run_id,
            "run_name": r.display_name,
            "experiment_id": exp_id,
            "user_id": r.tags.get(USER_TAG, ""),
            "status": mlflow_status(r.status),
            "start_time": _ms(start),
            "artifact_uri": f"mlflow-artifacts:/{exp_id}/{r.run_id}/artifacts",
            "lifecycle_stage": "deleted" if deleted else "active",
        }
        if r.end_time is not None:
            info["end_time"] = _ms(r.end_time)
        return info

    def _run_json(
        self, r: RunRecord, deleted: bool, latest: list[Any], inputs: list[Any] | None = None
    ) -> dict[str, Any]:
        tags = dict(r.tags)
        tags[RUN_NAME_TAG] = r.display_name
        if r.parent_id is not None:
            tags[PARENT_TAG] = r.parent_id
        out: dict[str, Any] = {
            "info": self._run_info(r, deleted),
            "data": {
                "metrics": [
                    {"key": m.name, "value": _json_float(m.value), "timestamp": _ms(m.wall_time), "step": m.step}
                    for m in latest
                ],
                "params": [{"key": k, "value": v} for k, v in r.properties.items()],
                "tags": [{"key": k, "value": v} for k, v in tags.items()],
            },
        }
        if inputs:  # like MLflow's own answers, empty fields are left out
            out["inputs"] = {"dataset_inputs": inputs}
        return out

    def _beat(self, run_id: str) -> None:
        """A run logged into through MLflow is alive: heartbeat at most every HEARTBEAT_EVERY_S seconds (so
        it shows NotResponding only after its process stopped calling, and Running again when it calls)."""
        now = time.time()
        with self._beat_lock:
            if now - self._beats.get(run_id, 0.0) < HEARTBEAT_EVERY_S:
                return
            self._beats[run_id] = now
            if len(self._beats) > 100_000:
                self._beats.clear()
        record = self.store.update_run(run_id, heartbeat=now, only_if_status=[RunStatus.RUNNING])
        if record.status == RunStatus.NOT_RESPONDING:
            self.store.update_run(
                run_id, status=RunStatus.RUNNING, heartbeat=now, error=None, only_if_status=[RunStatus.NOT_RESPONDING]
            )

    def create_run(self, args: dict[str, Any]) -> dict[str, Any]:
        name = self._experiment_name(args.get("experiment_id") or "0")
        if name in self.query.deleted_experiments():
            raise MlflowError("INVALID_STATE", f"the experiment {name!r} is deleted: restore it to log runs into it")
        tags = {str(t["key"]): str(t.get("value", "")) for t in args.get("tags") or []}
        parent = tags.pop(PARENT_TAG, None) or None
        display_name = str(args.get("run_name") or tags.pop(RUN_NAME_TAG, "") or _random_name())
        tags.pop(RUN_NAME_TAG, None)
        if args.get("user_id") and USER_TAG not in tags:
            tags[USER_TAG] = str(args["user_id"])
        if parent is not None:
            try:
                self.store.get_run(parent)
            except NotFoundError:
                raise MlflowError("RESOURCE_DOES_NOT_EXIST", f"parent run {parent!r} not found") from None
        start_ms = _int(args.get("start_time"), "start_time")
        now = time.time()
        start = start_ms / 1000.0 if start_ms is not None else now
        record = RunRecord(
            run_id=uuid.uuid4().hex,
            experiment=name,
            status=RunStatus.RUNNING,
            created=start,
            display_name=display_name,
            parent_id=parent,
            run_type="child" if parent else "interactive",
            start_time=start,
            heartbeat=now,
            tags=tags,
        )
        created = self.store.create_run(record)
        with self._beat_lock:
            self._beats[created.run_id] = now
        return {"run": self._run_json(created, False, [])}

    def get_run(self, args: dict[str, Any]) -> dict[str, Any]:
        r = self._run(args)
        q = self.query
        latest = q.latest_metrics([r.run_id])[r.run_id]
        return {"run": self._run_json(r, bool(q.deleted_runs([r.run_id])), latest, self._inputs(r.run_id))}

    def update_run(self, args: dict[str, Any]) -> dict[str, Any]:
        r = self._run(args)
        fields: dict[str, Any] = {}
        if args.get("status"):
            status = _FROM_MLFLOW_STATUS.get(str(args["status"]).upper())
            if status is None:
                raise MlflowError("INVALID_PARAMETER_VALUE", f"unknown run status {args['status']!r}")
            fields["status"] = status
            if status == RunStatus.RUNNING:
                fields["heartbeat"] = time.time()
        end = _int(args.get("end_time"), "end_time")
        if end is not None:
            fields["end_time"] = end / 1000.0
        if args.get("run_name"):
            fields["display_name"] = str(args["run_name"])
        if fields:
            r = self.store.update_run(r.run_id, **fields)
        return {"run_info": self._run_info(r, bool(self.query.deleted_runs([r.run_id])))}

    def delete_run(self, args: dict[str, Any]) -> dict[str, Any]:
        self.query.set_run_deleted(self._run(args).run_id, True)
        return {}

    def restore_run(self, args: dict[str, Any]) -> dict[str, Any]:
        self.query.set_run_deleted(self._run(args).run_id, False)
        return {}

    def search_runs(self, args: dict[str, Any]) -> dict[str, Any]:
        exp_ids = _as_list(args.get("experiment_ids"))
        names = []
        for e in exp_ids:
            try:
                names.append(self._experiment_name(e))
            except MlflowError:
                continue  # MLflow answers no runs for an unknown experiment
        view = str(args.get("run_view_type") or "ACTIVE_ONLY").upper()
        deleted = {"ACTIVE_ONLY": False, "DELETED_ONLY": True, "ALL": None, "1": False, "2": True, "3": None}.get(view)
        if view not in ("ACTIVE_ONLY", "DELETED_ONLY", "ALL", "1", "2", "3"):
            raise MlflowError("INVALID_PARAMETER_VALUE", f"unknown run_view_type {view!r}")
        max_results = _int(args.get("max_results"), "max_results", 1000) or 1000
        if max_results > MAX_RESULTS:
            raise MlflowError("INVALID_PARAMETER_VALUE", f"max_results may be at most {MAX_RESULTS}")
        offset = _offset(args.get("page_token"))
        filters: list[RunCondition] = parse_filter(args.get("filter"))
        order = parse_order_by(_as_list(args.get("order_by")))
        q = self.query
        runs = q.search_runs(names, filters, order, offset=offset, limit=max_results, deleted=deleted)
        ids = [r.run_id for r in runs]
        latest = q.latest_metrics(ids)
        gone = q.deleted_runs(ids) if deleted is not False else set()
        out: dict[str, Any] = {"runs": [self._run_json(r, r.run_id in gone, latest[r.run_id]) for r in runs]}
        if len(runs) == max_results:
            out["next_page_token"] = _page_token(offset + max_results)
        return out

    # --- tags, params, metrics ------------------------------------------------------------------------
    def _set_tags(self, r: RunRecord, tags: dict[str, str]) -> None:
        name = tags.pop(RUN_NAME_TAG, None)
        if name is not None and name != r.display_name:
            self.store.update_run(r.run_id, display_name=name)
        if PARENT_TAG in tags:
            parent = tags.pop(PARENT_TAG)
            if parent != (r.parent_id or ""):
                raise MlflowError(
                    "INVALID_PARAMETER_VALUE",
                    f"the tag {PARENT_TAG} is set when a run is created (start_run(nested=True)); it cannot change",
                )
        if tags:
            self.store.set_tags(r.run_id, tags)

    def set_tag(self, args: dict[str, Any]) -> dict[str, Any]:
        r = self._run(args)
        self._set_tags(r, {str(_required(args, "key")): str(args.get("value", ""))})
        self._beat(r.run_id)
        return {}

    def delete_tag(self, args: dict[str, Any]) -> dict[str, Any]:
        r = self._run(args)
        key = str(_required(args, "key"))
        if key not in r.tags:
            raise MlflowError("RESOURCE_DOES_NOT_EXIST", f"no tag with key {key!r} in run {r.run_id!r}")
        self.store.set_tags(r.run_id, {key: None})
        return {}

    def _add_params(self, run_id: str, params: dict[str, str]) -> None:
        try:
            self.store.add_properties(run_id, params)
        except ConflictError as exc:
            raise MlflowError("INVALID_PARAMETER_VALUE", f"Changing param values is not allowed: {exc}") from None

    def log_param(self, args: dict[str, Any]) -> dict[str, Any]:
        run_id = self._run_id(args)
        self._add_params(run_id, {str(_required(args, "key")): str(args.get("value", ""))})
        self._beat(run_id)
        return {}

    def _chunks(self, run_id: str, metrics: list[dict[str, Any]]) -> list[MetricChunk]:
        grouped: dict[str, tuple[list[int], list[float], list[float]]] = {}
        for m in metrics:
            key = m.get("key")
            if not key:
                raise MlflowError("INVALID_PARAMETER_VALUE", "every metric needs a key")
            steps, times, values = grouped.setdefault(str(key), ([], [], []))
            steps.append(_int(m.get("step"), "step", 0) or 0)
            times.append((_int(m.get("timestamp"), "timestamp") or int(time.time() * 1000)) / 1000.0)
            values.append(_number(m.get("value"), f"the value of metric {key!r}"))
        return [
            MetricChunk(
                run_id,
                key,
                MetricKind.SCALAR,
                np.asarray(s, dtype=np.int64),
                np.asarray(t, dtype=np.float64),
                np.asarray(v, dtype=np.float64),
            )
            for key, (s, t, v) in grouped.items()
        ]

    def log_metric(self, args: dict[str, Any]) -> dict[str, Any]:
        run_id = self._run_id(args)
        self.store.log_metrics(self._chunks(run_id, [args]))
        self._beat(run_id)
        return {}

    def log_batch(self, args: dict[str, Any]) -> dict[str, Any]:
        run_id = self._run_id(args)
        params = {str(p["key"]): str(p.get("value", "")) for p in args.get("params") or []}
        tags: dict[str, str | None] = {str(t["key"]): str(t.get("value", "")) for t in args.get("tags") or []}
        metrics = args.get("metrics") or []
        chunks = self._chunks(run_id, metrics)  # validates before anything is written
        display_name: Any = UNSET
        if RUN_NAME_TAG in tags or PARENT_TAG in tags:
            r = self._run(args)
            name = tags.pop(RUN_NAME_TAG, None)
            if name is not None and name != r.display_name:
                display_name = name
            if PARENT_TAG in tags and tags.pop(PARENT_TAG) != (r.parent_id or ""):
                raise MlflowError(
                    "INVALID_PARAMETER_VALUE",
                    f"the tag {PARENT_TAG} is set when a run is created (start_run(nested=True)); it cannot change",
                )
        if params or tags or chunks or display_name is not UNSET:
            try:  # one transaction: the whole batch is stored, or nothing
                self.query.log_run_batch(run_id, properties=params, tags=tags, chunks=chunks, display_name=display_name)
            except ConflictError as exc:
                raise MlflowError("INVALID_PARAMETER_VALUE", f"Changing param values is not allowed: {exc}") from None
        self._beat(run_id)
        return {}

    def _inputs(self, run_id: str) -> list[Any]:
        try:
            data = self.store.read_file(run_id, INPUTS_FILE)
        except NotFoundError:
            return []
        loaded = json.loads(data)
        return loaded if isinstance(loaded, list) else []

    def log_inputs(self, args: dict[str, Any]) -> dict[str, Any]:
        r = self._run(args)
        datasets = args.get("datasets") or []
        if datasets:
            known = self._inputs(r.run_id)
            seen = {json.dumps(d, sort_keys=True) for d in known}
            known += [d for d in datasets if json.dumps(d, sort_keys=True) not in seen]
            self.store.write_file(r.run_id, INPUTS_FILE, json.dumps(known).encode())
        if args.get("models"):
            raise MlflowError("NOT_IMPLEMENTED", "expboard's MLflow API does not keep logged models as run inputs")
        return {}

    def get_metric_history(self, args: dict[str, Any]) -> dict[str, Any]:
        r = self._run(args)
        key = str(_required(args, "metric_key"))
        limit = _int(args.get("max_results"), "max_results")
        offset = _offset(args.get("page_token"))
        series = self.query.get_metric_page(r.run_id, key, offset, limit)
        values = series.values
        if not isinstance(values, np.ndarray) or values.dtype.kind not in "fiub":
            raise MlflowError("INVALID_PARAMETER_VALUE", f"the metric {key!r} of run {r.run_id!r} is not numeric")
        times = np.round(series.wall_times * 1000).astype(np.int64).tolist()
        vals = [_json_float(v) for v in values.astype(np.float64).tolist()]
        out: dict[str, Any] = {
            "metrics": [
                {"key": key, "value": v, "timestamp": t, "step": s}
                for v, t, s in zip(vals, times, series.steps.tolist(), strict=True)
            ]
        }
        if limit is not None and len(series) == limit:
            out["next_page_token"] = _page_token(offset + limit)
        return out

    # --- artifacts ------------------------------------------------------------------------------------
    def _list_dir(self, run_id: str, rel: str) -> list[dict[str, Any]]:
        prefix = f"{rel.strip('/')}/" if rel.strip("/") else ""
        entries: dict[str, dict[str, Any]] = {}
        for info in self.store.list_files(run_id, prefix):
            if not info.name.startswith(prefix):
                continue
            rest = info.name[len(prefix) :]
            head, sep, _ = rest.partition("/")
            if sep:
                entries.setdefault(head, {"path": head, "is_dir": True})
            else:
                entries[head] = {"path": head, "is_dir": False, "file_size": info.size}
        return [entries[k] for k in sorted(entries)]

    def list_run_artifacts(self, args: dict[str, Any]) -> dict[str, Any]:
        r = self._run(args)
        rel = str(args.get("path") or "")
        files = self._list_dir(r.run_id, rel)
        out: dict[str, Any] = {
            "root_uri": f"mlflow-artifacts:/{_experiment_id(r.experiment)}/{r.run_id}/artifacts",
            "files": [{**f, "path": posixpath.join(rel, f["path"]) if rel else f["path"]} for f in files],
        }
        return out

    def artifact_location(self, path: str) -> tuple[str, str]:
        """``<experiment id>/<run id>/artifacts/<file>`` -> (run id, file name inside the run)."""
        parts = [p for p in path.strip("/").split("/") if p]
        if len(parts) >= 4 and parts[1] == "models" and parts[3] == "artifacts":
            run, _ = self._model(parts[2])
            if _experiment_id(run.experiment) != parts[0]:
                raise MlflowError("RESOURCE_DOES_NOT_EXIST", f"model {parts[2]!r} is not in experiment {parts[0]!r}")
            return run.run_id, "/".join(["models", parts[2], *parts[4:]])
        if len(parts) < 3 or parts[2] != "artifacts":
            raise MlflowError(
                "INVALID_PARAMETER_VALUE",
                f"artifact path {path!r} is not inside a run: expected <experiment id>/<run id>/artifacts/...",
            )
        try:
            record = self.store.get_run(parts[1])
        except NotFoundError:
            raise MlflowError("RESOURCE_DOES_NOT_EXIST", f"Run with id={parts[1]} not found") from None
        if _experiment_id(record.experiment) != parts[0]:
            raise MlflowError("RESOURCE_DOES_NOT_EXIST", f"run {parts[1]!r} is not in experiment {parts[0]!r}")
        return record.run_id, "/".join(parts[3:])

    def list_artifacts(self, args: dict[str, Any]) -> dict[str, Any]:
        run_id, rel = self.artifact_location(str(_required(args, "path")))
        return {"files": self._list_dir(run_id, rel)}

    # --- logged models (MLflow 3): kept inside their source run ----------------------------------------
    def _model_run(self, model_id: str) -> RunRecord:
        m = re.fullmatch(r"m-([0-9a-f]{32})-[0-9a-f]{8}", model_id)
        if m is None:
            raise MlflowError("RESOURCE_DOES_NOT_EXIST", f"no logged model with id {model_id!r}")
        try:
            return self.store.get_run(m.group(1))
        except NotFoundError:
            raise MlflowError("RESOURCE_DOES_NOT_EXIST", f"no logged model with id {model_id!r}") from None

    def logged_model_files(self, model_id: str) -> tuple[str, str]:
        """(run id, folder of its files in the run) of a logged model."""
        run, _ = self._model(model_id)
        return run.run_id, f"models/{model_id}"

    def _model(self, model_id: str) -> tuple[RunRecord, dict[str, Any]]:
        run = self._model_run(model_id)
        try:
            return run, json.loads(self.store.read_file(run.run_id, f"{MODELS_DIR}/{model_id}.json"))
        except NotFoundError:
            raise MlflowError("RESOURCE_DOES_NOT_EXIST", f"no logged model with id {model_id!r}") from None

    def _save_model(self, run_id: str, model: dict[str, Any]) -> dict[str, Any]:
        model["info"]["last_updated_timestamp_ms"] = int(time.time() * 1000)
        self.store.write_file(run_id, f"{MODELS_DIR}/{model['info']['model_id']}.json", json.dumps(model).encode())
        return {"model": model}

    def create_logged_model(self, args: dict[str, Any]) -> dict[str, Any]:
        source = args.get("source_run_id")
        if not source:
            raise MlflowError(
                "NOT_IMPLEMENTED",
                "expboard keeps an MLflow logged model inside the run that produced it: log the model inside "
                "mlflow.start_run() (or give source_run_id)",
            )
        run = self._run({"run_id": source})
        exp_id = _experiment_id(run.experiment)
        if args.get("experiment_id") not in (None, "", exp_id):
            raise MlflowError(
                "INVALID_PARAMETER_VALUE", f"run {run.run_id!r} is not in experiment {args['experiment_id']!r}"
            )
        model_id = f"m-{run.run_id}-{uuid.uuid4().hex[:8]}"
        now = int(time.time() * 1000)
        model = {
            "info": {
                "model_id": model_id,
                "experiment_id": exp_id,
                "name": str(args.get("name") or "model"),
                "artifact_uri": f"mlflow-artifacts:/{exp_id}/models/{model_id}/artifacts",
                "creation_timestamp_ms": now,
                "status": "LOGGED_MODEL_PENDING",
                "source_run_id": run.run_id,
                "model_type": str(args.get("model_type") or ""),
                "tags": list(args.get("tags") or []),
            },
            "data": {"params": list(args.get("params") or []), "metrics": []},
        }
        index = [m for m in run.tags.get(MODELS_TAG, "").split(",") if m]
        self.store.set_tags(run.run_id, {MODELS_TAG: ",".join([*index, model_id])})
        return self._save_model(run.run_id, model)

    def logged_model(self, method: str, model_id: str, rest: str, args: dict[str, Any]) -> dict[str, Any]:
        run, model = self._model(model_id)
        if method == "GET" and not rest:
            return {"model": model}
        if method == "PATCH" and not rest:
            model["info"]["status"] = str(args.get("status") or model["info"]["status"])
            return self._save_model(run.run_id, model)
        if method == "PATCH" and rest == "tags":
            tags = {t["key"]: t for t in model["info"]["tags"]}
            tags.update({str(t["key"]): t for t in args.get("tags") or []})
            model["info"]["tags"] = list(tags.values())
            return self._save_model(run.run_id, model)
        if method == "DELETE" and rest.startswith("tags/"):
            key = rest[len("tags/") :]
            model["info"]["tags"] = [t for t in model["info"]["tags"] if t["key"] != key]
            return self._save_model(run.run_id, model)
        if method == "POST" and rest == "params":
            params = {p["key"]: p for p in model["data"]["params"]}
            params.update({str(p["key"]): p for p in args.get("params") or []})
            model["data"]["params"] = list(params.values())
            return self._save_model(run.run_id, model)
        if method == "GET" and rest == "artifacts/directories":
            return {
                "files": self._list_dir(run.run_id, f"models/{model_id}/{args.get('artifact_directory_path') or ''}")
            }
        raise MlflowError(
            "ENDPOINT_NOT_FOUND", f"expboard's MLflow API does not serve {method} logged-models/{model_id}/{rest}"
        )

    def search_logged_models(self, args: dict[str, Any]) -> dict[str, Any]:
        """The logged models of the given experiments' runs (matching ``name = '...'`` or
        ``source_run_id = '...'`` conditions joined by AND)."""
        conditions = []
        for clause in re.split(r"\s+AND\s+", str(args.get("filter") or "").strip(), flags=re.IGNORECASE):
            if not clause:
                continue
            m = re.fullmatch(r"\s*(name|source_run_id)\s*=\s*(['\"])(.*)\2\s*", clause)
            if m is None:
                raise MlflowError(
                    "INVALID_PARAMETER_VALUE",
                    f"unsupported logged-model filter {clause!r}: use name = '...' or source_run_id = '...'",
                )
            conditions.append((m.group(1), m.group(3)))
        names = []
        for e in _as_list(args.get("experiment_ids")):
            try:
                names.append(self._experiment_name(e))
            except MlflowError:
                continue
        runs = self.query.search_runs(names, [RunCondition("tag", MODELS_TAG, "IS NOT NULL")], limit=MAX_RESULTS)
        models = []
        for run in runs:
            for model_id in run.tags.get(MODELS_TAG, "").split(","):
                try:
                    _, model = self._model(model_id)
                except MlflowError:
                    continue
                if all(model["info"].get(k) == v for k, v in conditions):
                    models.append(model)
        models.sort(key=lambda m: -int(m["info"]["creation_timestamp_ms"]))
        max_results = _int(args.get("max_results"), "max_results", 100) or 100
        offset = _offset(args.get("page_token"))
        out: dict[str, Any] = {"models": models[offset : offset + max_results]}
        if offset + max_results < len(models):
            out["next_page_token"] = _page_token(offset + max_results)
        return out

    def log_model_history(self, args: dict[str, Any]) -> dict[str, Any]:
        """MLflow 2's record of a model logged as run artifacts: appended to the run's tag
        ``mlflow.log-model.history``, as MLflow's own server keeps it."""
        r = self._run(args)
        try:
            model = json.loads(str(_required(args, "model_json")))
        except ValueError:
            raise MlflowError("INVALID_PARAMETER_VALUE", "model_json is not valid JSON") from None
        history = json.loads(r.tags.get(MODEL_HISTORY_TAG, "[]"))
        self.store.set_tags(r.run_id, {MODEL_HISTORY_TAG: json.dumps([*history, model])})
        return {}

    def log_outputs(self, args: dict[str, Any]) -> dict[str, Any]:
        """Models as a run's outputs: the models are already kept in their source run."""
        self._run(args)
        for m in args.get("models") or []:
            self._model(str(m.get("model_id", "")))
        return {}

    def server_info(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "store_type": "expboard",
            "multipart_uploads_enabled": False,
            "multipart_downloads_enabled": False,
        }


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v) for v in value]
    return [str(value)]


def _name_check(op: str, value: str) -> Callable[[str], bool]:
    if op == "=":
        return lambda name: name == value
    if op == "!=":
        return lambda name: name != value
    pattern = re.compile(re.escape(value).replace("%", ".*").replace("_", "."), re.IGNORECASE if op == "ILIKE" else 0)
    return lambda name: pattern.fullmatch(name) is not None


def _experiment_filter(text: Any) -> Callable[[str], bool]:
    """MLflow's experiment filter, as far as expboard experiments go: conditions on ``name``."""
    if not text:
        return lambda name: True
    checks: list[Callable[[str], bool]] = []
    for clause in re.split(r"\s+AND\s+", str(text).strip(), flags=re.IGNORECASE):
        m = re.fullmatch(
            r"\s*(?:attributes?\.|attr\.)?name\s*(=|!=|LIKE|ILIKE)\s*(['\"])(.*)\2\s*", clause, flags=re.IGNORECASE
        )
        if not m:
            raise MlflowError(
                "INVALID_PARAMETER_VALUE",
                f"unsupported experiment filter {clause!r}: expboard experiments are searched by name "
                "(name = 'x', name LIKE 'x%', name ILIKE '%x%')",
            )
        checks.append(_name_check(m.group(1).upper(), m.group(3)))
    return lambda name: all(c(name) for c in checks)


# --- routing ------------------------------------------------------------------------------------------
def _is_trace_path(path: str) -> bool:
    return path.split("/", 1)[0] in ("traces", "trace", "spans")


def _traces_refused(request: Request) -> MlflowError:
    return MlflowError(
        "NOT_IMPLEMENTED",
        f"expboard does not store MLflow traces ({request.method} {request.url.path}): it keeps runs, metrics, "
        "params, tags, artifacts and models. Log traces to an MLflow server, or turn tracing off with "
        "mlflow.tracing.disable()",
    )


def mlflow_router(store: Store) -> APIRouter:
    """The MLflow routes, for ``FastAPI.include_router``."""
    api = MlflowApi(store)
    registry = MlflowRegistry(store, api.artifact_location, api.logged_model_files, _experiment_id)
    api.routes.update(registry.routes())
    router = APIRouter()

    async def answer(fn: Callable[[], Any]) -> Response:
        try:
            result = await run_in_threadpool(fn)
        except MlflowError as exc:
            return error_response(exc)
        except RegistryError as exc:
            return error_response(MlflowError(exc.error_code, exc.message))
        except ExpboardError as exc:
            return error_response(_from_expboard(exc))
        except Exception as exc:  # a bug: say so in MLflow's shape
            _log.exception("unexpected error in the MLflow API")
            return error_response(MlflowError("INTERNAL_ERROR", f"internal server error: {type(exc).__name__}"))
        if isinstance(result, Response):
            return result
        return Response(json.dumps(result, allow_nan=False), media_type="application/json")

    async def arguments(request: Request) -> dict[str, Any]:
        args: dict[str, Any] = {}
        for key in request.query_params:
            values = request.query_params.getlist(key)
            args[key] = values if len(values) > 1 or key in ("experiment_ids", "order_by") else values[0]
        body = await request.body()
        if body:
            try:
                data = json.loads(body)
            except ValueError:
                raise MlflowError("MALFORMED_REQUEST", "the request body is not valid JSON") from None
            if not isinstance(data, dict):
                raise MlflowError("MALFORMED_REQUEST", "the request body must be a JSON object")
            args.update(data)
        return args

    async def tracking(request: Request, path: str) -> Response:
        path = path.strip("/")
        handler = api.routes.get((request.method, path))
        if handler is None and path.startswith("logged-models/"):
            model_id, _, rest = path[len("logged-models/") :].partition("/")
            try:
                margs = await arguments(request)
            except MlflowError as exc:
                return error_response(exc)
            return await answer(lambda: api.logged_model(request.method, model_id, rest, margs))
        if handler is None and _is_trace_path(path):
            return error_response(_traces_refused(request))
        if handler is None:
            return error_response(
                MlflowError(
                    "ENDPOINT_NOT_FOUND",
                    f"expboard's MLflow API does not serve {request.method} {request.url.path}: it covers "
                    "experiments, runs, metrics, params, tags, dataset inputs, logged models, artifacts and the "
                    "model registry (not traces or prompts)",
                )
            )
        try:
            args = await arguments(request)
        except MlflowError as exc:
            return error_response(exc)
        return await answer(lambda: handler(args))

    for prefix in ("/api/2.0/mlflow", "/ajax-api/2.0/mlflow"):
        router.add_api_route(
            prefix + "/{path:path}",
            tracking,
            methods=["GET", "POST", "PATCH", "PUT", "DELETE"],
            include_in_schema=False,
        )

    async def other_versions(request: Request, path: str) -> Response:
        if request.method == "GET" and path.strip("/") == "server-info":
            return await answer(lambda: api.server_info({}))
        if _is_trace_path(path.strip("/")):
            return error_response(_traces_refused(request))
        return error_response(
            MlflowError(
                "ENDPOINT_NOT_FOUND", f"expboard's MLflow API does not serve {request.method} {request.url.path}"
            )
        )

    for prefix in ("/api/3.0/mlflow", "/ajax-api/3.0/mlflow"):
        router.add_api_route(
            prefix + "/{path:path}",
            other_versions,
            methods=["GET", "POST", "PATCH", "PUT", "DELETE"],
            include_in_schema=False,
        )

    artifacts = "/api/2.0/mlflow-artifacts/artifacts"

    async def list_artifacts(request: Request) -> Response:
        args = dict(request.query_params)
        return await answer(lambda: api.list_artifacts(args))

    async def artifact(request: Request, path: str) -> Response:
        if request.method == "GET":

            def download() -> Response:
                run_id, name = api.artifact_location(path)
                data = store.read_file(run_id, name)
                return Response(data, media_type="application/octet-stream")

            return await answer(download)
        if request.method == "PUT":
            body = await request.body()

            def upload() -> dict[str, Any]:
                run_id, name = api.artifact_location(path)
                if not name:
                    raise MlflowError("INVALID_PARAMETER_VALUE", "give the artifact's file name")
                store.write_file(run_id, name, body)
                return {}

            return await answer(upload)
        return error_response(
            MlflowError(
                "NOT_IMPLEMENTED",
                f"expboard keeps run files once written: {request.method} of an artifact is not supported",
            )
        )

    router.add_api_route(artifacts, list_artifacts, methods=["GET"], include_in_schema=False)
    router.add_api_route(
        artifacts + "/{path:path}", artifact, methods=["GET", "PUT", "DELETE", "POST"], include_in_schema=False
    )

    async def mlflow_artifacts_other(request: Request, path: str) -> Response:
        return error_response(
            MlflowError(
                "ENDPOINT_NOT_FOUND",
                f"expboard's MLflow API does not serve {request.method} {request.url.path} "
                "(multipart uploads are not supported; files up to the server's request size limit upload whole)",
            )
        )

    router.add_api_route(
        "/api/2.0/mlflow-artifacts/{path:path}",
        mlflow_artifacts_other,
        methods=["GET", "POST", "PUT", "DELETE", "PATCH"],
        include_in_schema=False,
    )
    return router
