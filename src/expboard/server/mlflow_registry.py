"""MLflow's model registry REST API (``registered-models/...``, ``model-versions/...``) on expboard's registry.

A model registered by MLflow (``mlflow.register_model("runs:/ID/model", "name")``) is a version of the same
registry that Azure ML's ``Model`` API uses, and the other way round. The version's source decides where its
files come from: ``runs:/<run id>/<path>``, ``mlflow-artifacts:/...`` of a run or ``models:/<logged model id>``
are copied from the run's files when the version is created; any other source (a local path, a bucket) is
kept as the version's ``mlflow.source`` property, without files. Stages are MLflow's deprecated ``None``
only; aliases are served.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import unquote, urlparse

from ..errors import ConflictError, NotFoundError
from ..records import ModelRecord, ModelStatus, RegisteredModelRecord
from ..stores.base import Store

__all__ = ["SOURCE_PROPERTY", "MlflowRegistry", "RegistryError"]

SOURCE_PROPERTY = "mlflow.source"  # the source URI an MLflow client gave, as it gave it
_MAX_RESULTS = 1000


class RegistryError(Exception):
    """An MLflow error code and message; turned into MLflow's error shape by the MLflow router."""

    def __init__(self, error_code: str, message: str) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.message = message


Handler = Callable[[dict[str, Any]], dict[str, Any]]


class MlflowRegistry:
    """The registry handlers. ``locate`` maps an ``mlflow-artifacts`` path to (run id, file name);
    ``logged_model_files`` a logged model id to (run id, folder of its files)."""

    def __init__(
        self,
        store: Store,
        locate: Callable[[str], tuple[str, str]],
        logged_model_files: Callable[[str], tuple[str, str]],
        experiment_id: Callable[[str], str],
    ) -> None:
        self.store = store
        self.locate = locate
        self.logged_model_files = logged_model_files
        self.experiment_id = experiment_id

    def routes(self) -> dict[tuple[str, str], Handler]:
        out: dict[tuple[str, str], Handler] = {
            ("POST", "registered-models/create"): self.create_registered_model,
            ("GET", "registered-models/get"): self.get_registered_model,
            ("PATCH", "registered-models/update"): self.update_registered_model,
            ("POST", "registered-models/set-tag"): self.set_registered_model_tag,
            ("DELETE", "registered-models/delete-tag"): self.delete_registered_model_tag,
            ("POST", "registered-models/alias"): self.set_alias,
            ("DELETE", "registered-models/alias"): self.delete_alias,
            ("GET", "registered-models/alias"): self.get_by_alias,
            ("POST", "model-versions/create"): self.create_model_version,
            ("GET", "model-versions/get"): self.get_model_version,
            ("PATCH", "model-versions/update"): self.update_model_version,
            ("POST", "model-versions/set-tag"): self.set_model_version_tag,
            ("DELETE", "model-versions/delete-tag"): self.delete_model_version_tag,
            ("GET", "model-versions/get-download-uri"): self.get_download_uri,
        }
        for method in ("GET", "POST"):
            out[(method, "registered-models/search")] = self.search_registered_models
            out[(method, "registered-models/get-latest-versions")] = self.get_latest_versions
            out[(method, "model-versions/search")] = self.search_model_versions
        for path in ("registered-models/delete", "model-versions/delete", "registered-models/rename"):
            out[("DELETE" if path.endswith("delete") else "POST", path)] = self._refused(path)
        out[("POST", "model-versions/transition-stage")] = self._refused("model-versions/transition-stage")
        return out

    def _refused(self, path: str) -> Handler:
        def refuse(args: dict[str, Any]) -> dict[str, Any]:
            what = {
                "registered-models/delete": "deleting a registered model",
                "model-versions/delete": "deleting a model version",
                "registered-models/rename": "renaming a registered model",
                "model-versions/transition-stage": "model stages (deprecated by MLflow; use aliases)",
            }[path]
            raise RegistryError(
                "NOT_IMPLEMENTED", f"expboard's model registry keeps every version: {what} is not supported"
            )

        return refuse

    # --- JSON shapes ------------------------------------------------------------------------------
    def _version_json(self, m: ModelRecord, aliases: dict[str, int] | None = None) -> dict[str, Any]:
        if aliases is None:
            aliases = self.store.get_registered_model(m.name).aliases
        out: dict[str, Any] = {
            "name": m.name,
            "version": str(m.version),
            "creation_timestamp": int(m.created * 1000),
            "last_updated_timestamp": int(m.updated * 1000),
            "current_stage": "None",
            "description": m.description,
            "source": self._source(m),
            "run_id": m.run_id or "",
            "status": m.status.value,
            "tags": [{"key": k, "value": v} for k, v in sorted(m.tags.items())],
            "run_link": "",
            "aliases": sorted(a for a, v in aliases.items() if v == m.version),
        }
        return out

    def _source(self, m: ModelRecord) -> str:
        if SOURCE_PROPERTY in m.properties:
            return m.properties[SOURCE_PROPERTY]
        if m.run_id and m.run_path:
            return f"runs:/{m.run_id}/{m.run_path}"
        return ""

    def _registered_json(self, r: RegisteredModelRecord) -> dict[str, Any]:
        versions = [v for v in self.store.list_model_versions(r.name) if v.status is ModelStatus.READY]
        latest = [self._version_json(versions[0], r.aliases)] if versions else []
        return {
            "name": r.name,
            "creation_timestamp": int(r.created * 1000),
            "last_updated_timestamp": int(r.updated * 1000),
            "description": r.description,
            "latest_versions": latest,
            "tags": [{"key": k, "value": v} for k, v in sorted(r.tags.items())],
            "aliases": [{"alias": a, "version": str(v)} for a, v in sorted(r.aliases.items())],
        }

    # --- registered models ------------------------------------------------------------------------
    def _registered(self, name: Any) -> RegisteredModelRecord:
        try:
            return self.store.get_registered_model(_name(name))
        except NotFoundError:
            raise RegistryError("RESOURCE_DOES_NOT_EXIST", f"Registered Model with name={name} not found") from None

    def create_registered_model(self, args: dict[str, Any]) -> dict[str, Any]:
        name = _name(args.get("name"))
        try:
            r = self.store.create_registered_model(
                name, description=str(args.get("description") or ""), tags=_tags(args.get("tags"))
            )
        except ConflictError:
            raise RegistryError("RESOURCE_ALREADY_EXISTS", f"Registered Model (name={name}) already exists.") from None
        return {"registered_model": self._registered_json(r)}

    def get_registered_model(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"registered_model": self._registered_json(self._registered(args.get("name")))}

    def update_registered_model(self, args: dict[str, Any]) -> dict[str, Any]:
        r = self._registered(args.get("name"))
        if "description" in args:
            r = self.store.update_registered_model(r.name, description=str(args.get("description") or ""))
        return {"registered_model": self._registered_json(r)}

    def set_registered_model_tag(self, args: dict[str, Any]) -> dict[str, Any]:
        r = self._registered(args.get("name"))
        self.store.update_registered_model(r.name, tags={_key(args): str(args.get("value") or "")})
        return {}

    def delete_registered_model_tag(self, args: dict[str, Any]) -> dict[str, Any]:
        r = self._registered(args.get("name"))
        self.store.update_registered_model(r.name, tags={_key(args): None})
        return {}

    def set_alias(self, args: dict[str, Any]) -> dict[str, Any]:
        r = self._registered(args.get("name"))
        version = self._version(r.name, args.get("version"))
        self.store.update_registered_model(r.name, aliases={_alias(args): version.version})
        return {}

    def delete_alias(self, args: dict[str, Any]) -> dict[str, Any]:
        r = self._registered(args.get("name"))
        self.store.update_registered_model(r.name, aliases={_alias(args): None})
        return {}

    def get_by_alias(self, args: dict[str, Any]) -> dict[str, Any]:
        r = self._registered(args.get("name"))
        alias = _alias(args)
        if alias not in r.aliases:
            raise RegistryError(
                "INVALID_PARAMETER_VALUE", f"Registered model alias {alias} not found for model {r.name}"
            )
        m = self.store.get_model_version(r.name, r.aliases[alias])
        return {"model_version": self._version_json(m, r.aliases)}

    def search_registered_models(self, args: dict[str, Any]) -> dict[str, Any]:
        conditions = _conditions(args.get("filter"), ("name",))
        found = [
            r
            for r in self.store.list_registered_models()
            if all(_holds(c, {"name": r.name}, r.tags) for c in conditions)
        ]
        found = _ordered(
            found,
            args.get("order_by"),
            {"name": lambda r: r.name, "last_updated_timestamp": lambda r: r.updated, "timestamp": lambda r: r.updated},
            default="name",
        )
        page, token = _page(found, args)
        out: dict[str, Any] = {"registered_models": [self._registered_json(r) for r in page]}
        if token:
            out["next_page_token"] = token
        return out

    def get_latest_versions(self, args: dict[str, Any]) -> dict[str, Any]:
        r = self._registered(args.get("name"))
        stages = args.get("stages") or []
        stages = [stages] if isinstance(stages, str) else list(stages)
        if any(str(s).lower() != "none" for s in stages):
            return {"model_versions": []}  # expboard's versions are all in stage "None"
        versions = [v for v in self.store.list_model_versions(r.name) if v.status is ModelStatus.READY]
        return {"model_versions": [self._version_json(versions[0], r.aliases)] if versions else []}

    # --- model versions ---------------------------------------------------------------------------
    def _version(self, name: str, version: Any) -> ModelRecord:
        try:
            number = int(str(version))
        except (TypeError, ValueError):
            raise RegistryError("INVALID_PARAMETER_VALUE", f"a model version is a number, got {version!r}") from None
        try:
            return self.store.get_model_version(name, number)
        except NotFoundError:
            raise RegistryError(
                "RESOURCE_DOES_NOT_EXIST", f"Model Version (name={name}, version={version}) not found"
            ) from None

    def _run_files(self, source: str, run_id: str | None) -> tuple[str, str] | None:
        """(run id, file or folder in the run) for the sources whose files the run holds, else None."""
        parsed = urlparse(source)
        if parsed.scheme == "runs":
            rest = source[len("runs:") :].lstrip("/")
            found_run, _, path = rest.partition("/")
            return found_run, path.strip("/")
        if parsed.scheme == "mlflow-artifacts":
            run, name = self.locate(unquote(parsed.path))
            return run, name.strip("/")
        if parsed.scheme == "models":
            model_id = source[len("models:") :].strip("/")
            if re.fullmatch(r"m-[0-9a-f]{32}-[0-9a-f]{8}", model_id):
                return self.logged_model_files(model_id)
        return None

    def create_model_version(self, args: dict[str, Any]) -> dict[str, Any]:
        name = _name(args.get("name"))
        source = str(args.get("source") or "")
        if not source:
            raise RegistryError("INVALID_PARAMETER_VALUE", "missing value for required parameter 'source'")
        run_id = str(args.get("run_id") or "") or None
        files = self._run_files(source, run_id)
        properties = {SOURCE_PROPERTY: source}
        if args.get("model_id"):
            properties["mlflow.modelId"] = str(args["model_id"])
        if files is None:
            raise RegistryError(
                "INVALID_PARAMETER_VALUE",
                f"expboard copies a model version's files from its run: give a source of the form "
                f"runs:/<run id>/<path> (or the run's mlflow-artifacts URI, or models:/<logged model id>), got "
                f"{source!r}",
            )
        run, path = files
        if not path:
            raise RegistryError("INVALID_PARAMETER_VALUE", f"source {source!r} names a whole run: add the model's path")
        try:
            m = self.store.create_model_version(
                name,
                run_id=run,
                run_path=path,
                description=str(args.get("description") or ""),
                tags=_tags(args.get("tags")),
                properties=properties,
            )
        except NotFoundError as exc:
            raise RegistryError("RESOURCE_DOES_NOT_EXIST", str(exc)) from None
        return {"model_version": self._version_json(m)}

    def get_model_version(self, args: dict[str, Any]) -> dict[str, Any]:
        m = self._version(_name(args.get("name")), args.get("version"))
        return {"model_version": self._version_json(m)}

    def update_model_version(self, args: dict[str, Any]) -> dict[str, Any]:
        m = self._version(_name(args.get("name")), args.get("version"))
        if "description" in args:
            m = self.store.update_model_version(m.name, m.version, description=str(args.get("description") or ""))
        return {"model_version": self._version_json(m)}

    def set_model_version_tag(self, args: dict[str, Any]) -> dict[str, Any]:
        m = self._version(_name(args.get("name")), args.get("version"))
        self.store.update_model_version(m.name, m.version, tags={_key(args): str(args.get("value") or "")})
        return {}

    def delete_model_version_tag(self, args: dict[str, Any]) -> dict[str, Any]:
        m = self._version(_name(args.get("name")), args.get("version"))
        self.store.update_model_version(m.name, m.version, tags={_key(args): None})
        return {}

    def get_download_uri(self, args: dict[str, Any]) -> dict[str, Any]:
        m = self._version(_name(args.get("name")), args.get("version"))
        if not (m.run_id and m.run_path and m.experiment):
            raise RegistryError(
                "INVALID_PARAMETER_VALUE",
                f"model {m.name!r} version {m.version} was uploaded without a run, so MLflow cannot download it "
                f"from a run's artifacts; use `expboard models download {m.name} --version {m.version}`",
            )
        return {
            "artifact_uri": f"mlflow-artifacts:/{self.experiment_id(m.experiment)}/{m.run_id}/artifacts/{m.run_path}"
        }

    def search_model_versions(self, args: dict[str, Any]) -> dict[str, Any]:
        conditions = _conditions(args.get("filter"), ("name", "run_id", "version_number", "source_path"))
        names = [c[2] for c in conditions if c[0] == "name" and c[1] == "="]
        records = self.store.list_model_versions(str(names[0])) if len(names) == 1 else self.store.list_model_versions()
        found = []
        for m in records:
            fields = {
                "name": m.name,
                "run_id": m.run_id or "",
                "version_number": m.version,
                "source_path": self._source(m),
            }
            if all(_holds(c, fields, m.tags) for c in conditions):
                found.append(m)
        found = _ordered(
            found,
            args.get("order_by"),
            {
                "name": lambda m: m.name,
                "version_number": lambda m: m.version,
                "creation_timestamp": lambda m: m.created,
                "last_updated_timestamp": lambda m: m.updated,
            },
            default="",
        )
        page, token = _page(found, args)
        aliases: dict[str, dict[str, int]] = {}
        out_versions = []
        for m in page:
            if m.name not in aliases:
                aliases[m.name] = self.store.get_registered_model(m.name).aliases
            out_versions.append(self._version_json(m, aliases[m.name]))
        out: dict[str, Any] = {"model_versions": out_versions}
        if token:
            out["next_page_token"] = token
        return out


# --- helpers --------------------------------------------------------------------------------------
def _name(value: Any) -> str:
    if not value or not isinstance(value, str):
        raise RegistryError("INVALID_PARAMETER_VALUE", "missing value for required parameter 'name'")
    return value


def _key(args: dict[str, Any]) -> str:
    key = args.get("key")
    if not key or not isinstance(key, str):
        raise RegistryError("INVALID_PARAMETER_VALUE", "missing value for required parameter 'key'")
    return key


def _alias(args: dict[str, Any]) -> str:
    alias = args.get("alias")
    if not alias or not isinstance(alias, str):
        raise RegistryError("INVALID_PARAMETER_VALUE", "missing value for required parameter 'alias'")
    if re.fullmatch(r"[vV]\d+|latest", alias, flags=re.IGNORECASE):
        raise RegistryError("INVALID_PARAMETER_VALUE", f"alias {alias!r} is reserved by MLflow: choose another")
    return alias


def _tags(value: Any) -> dict[str, str]:
    if not value:
        return {}
    if not isinstance(value, list):
        raise RegistryError("INVALID_PARAMETER_VALUE", "tags must be a list of {key, value}")
    out = {}
    for tag in value:
        if not isinstance(tag, dict) or not isinstance(tag.get("key"), str):
            raise RegistryError("INVALID_PARAMETER_VALUE", f"a tag is {{key, value}}, got {tag!r}")
        out[tag["key"]] = str(tag.get("value") or "")
    return out


_CLAUSE = re.compile(
    r"""\s*(?P<key>tags?\.(?:`[^`]+`|"[^"]+"|[\w.]+)|[\w.]+)\s*(?P<op>=|!=|<=|>=|<|>|ILIKE|LIKE|IN)\s*"""
    r"""(?P<value>'(?:[^']|'')*'|"[^"]*"|\((?:[^()]*)\)|-?\d+)\s*""",
    re.IGNORECASE,
)


def _unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"`":
        return text[1:-1].replace("''", "'") if text[0] == "'" else text[1:-1]
    return text


def _conditions(text: Any, fields: Sequence[str]) -> list[tuple[str, str, Any]]:
    """MLflow's registry filters: ``field op value`` clauses joined by AND; fields ``fields`` or ``tags.<key>``."""
    out: list[tuple[str, str, Any]] = []
    text = str(text or "").strip()
    if not text:
        return out
    for clause in re.split(r"\s+AND\s+", text, flags=re.IGNORECASE):
        m = _CLAUSE.fullmatch(clause)
        if m is None:
            raise RegistryError("INVALID_PARAMETER_VALUE", f"unsupported filter {clause!r}: use e.g. name = 'my-model'")
        key, op, raw = m.group("key"), m.group("op").upper(), m.group("value")
        if key.lower().startswith(("tags.", "tag.")):
            key = "tags." + _unquote(key.partition(".")[2])
        elif key not in fields:
            raise RegistryError(
                "INVALID_PARAMETER_VALUE",
                f"unsupported filter key {key!r}: use {', '.join(fields)} or tags.<key>",
            )
        value: Any
        if op == "IN":
            value = [_unquote(v) for v in raw.strip()[1:-1].split(",") if v.strip()]
        elif raw.startswith(("'", '"')):
            value = _unquote(raw)
        else:
            value = int(raw)
        out.append((key, op, value))
    return out


def _like(pattern: str, text: str, fold: bool) -> bool:
    regex = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, text, flags=re.IGNORECASE | re.DOTALL if fold else re.DOTALL) is not None


def _holds(condition: tuple[str, str, Any], fields: dict[str, Any], tags: dict[str, str]) -> bool:
    key, op, value = condition
    if key.startswith("tags."):
        if key[5:] not in tags:
            return op == "!="  # MLflow: a model without the tag is not equal to any value
        actual: Any = tags[key[5:]]
    else:
        actual = fields[key]
    if isinstance(actual, int) and isinstance(value, str) and value.lstrip("-").isdigit():
        value = int(value)
    if op == "=":
        return bool(actual == value)
    if op == "!=":
        return bool(actual != value)
    if op in ("LIKE", "ILIKE"):
        return _like(str(value), str(actual), op == "ILIKE")
    if op == "IN":
        return str(actual) in [str(v) for v in value]
    try:
        return bool({"<": actual < value, "<=": actual <= value, ">": actual > value, ">=": actual >= value}[op])
    except TypeError:
        return False


def _ordered(items: list[Any], order_by: Any, keys: dict[str, Callable[[Any], Any]], default: str) -> list[Any]:
    clauses = [order_by] if isinstance(order_by, str) else list(order_by or [])
    if not clauses:
        return sorted(items, key=keys[default]) if default else items
    for clause in reversed(clauses):
        parts = str(clause).split()
        field = parts[0] if parts else ""
        if field not in keys:
            raise RegistryError(
                "INVALID_PARAMETER_VALUE", f"unsupported order_by {clause!r}: use one of {', '.join(sorted(keys))}"
            )
        descending = len(parts) > 1 and parts[1].upper() == "DESC"
        items = sorted(items, key=keys[field], reverse=descending)
    return items


def _page(items: list[Any], args: dict[str, Any]) -> tuple[list[Any], str | None]:
    try:
        limit = int(args.get("max_results") or 100)
    except (TypeError, ValueError):
        raise RegistryError(
            "INVALID_PARAMETER_VALUE", f"max_results must be a number, got {args['max_results']!r}"
        ) from None
    if not 1 <= limit <= _MAX_RESULTS * 200:
        raise RegistryError("INVALID_PARAMETER_VALUE", f"max_results must be from 1 to {_MAX_RESULTS * 200}")
    offset = 0
    token = args.get("page_token")
    if token:
        try:
            offset = int(json.loads(base64.urlsafe_b64decode(str(token).encode()))["offset"])
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise RegistryError("INVALID_PARAMETER_VALUE", f"invalid page_token {token!r}") from None
    page = items[offset : offset + limit]
    more = offset + limit < len(items)
    next_token = base64.urlsafe_b64encode(json.dumps({"offset": offset + limit}).encode()).decode() if more else None
    return page, next_token
