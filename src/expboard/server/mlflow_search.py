"""MLflow's run search syntax, parsed into the store's :class:`~expboard.stores.base.RunCondition` and
:class:`~expboard.stores.base.RunOrder` conditions (which the SQL store evaluates in the database).

Filters are conditions joined by ``AND``: ``metrics.loss < 0.5``, ``params.alpha = '0.1'``,
``tags.`my tag` LIKE 'a%'``, ``attributes.status = 'FINISHED'``, ``run_name ILIKE '%sweep%'``,
``attributes.run_id IN ('a', 'b')``, ``params.lr IS NULL``. Keys with spaces or dots go in backticks or
double quotes. Orders: ``metrics.loss DESC``, ``attributes.start_time``, ``params.alpha ASC``.

MLflow names map to expboard's: params are properties, the run name is the display name, start and end
times are milliseconds, statuses are MLflow's (RUNNING, SCHEDULED, FINISHED, FAILED, KILLED).
"""

from __future__ import annotations

import re
from typing import Any

from ..errors import ValidationError
from ..records import RunStatus
from ..stores.base import RunCondition, RunOrder

__all__ = ["MLFLOW_STATUS", "mlflow_status", "parse_filter", "parse_order_by", "statuses_for"]

# expboard status -> the MLflow status a client sees
MLFLOW_STATUS: dict[RunStatus, str] = {
    RunStatus.NOT_STARTED: "SCHEDULED",
    RunStatus.QUEUED: "SCHEDULED",
    RunStatus.STARTING: "RUNNING",
    RunStatus.RUNNING: "RUNNING",
    RunStatus.FINALIZING: "RUNNING",
    RunStatus.CANCEL_REQUESTED: "RUNNING",
    RunStatus.COMPLETED: "FINISHED",
    RunStatus.FAILED: "FAILED",
    RunStatus.NOT_RESPONDING: "FAILED",
    RunStatus.CANCELED: "KILLED",
}
_MLFLOW_STATUSES = ("RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED")


def mlflow_status(status: RunStatus) -> str:
    return MLFLOW_STATUS[status]


def statuses_for(mlflow_name: str) -> list[str]:
    """The expboard statuses (values) that show as MLflow status ``mlflow_name``."""
    name = mlflow_name.upper()
    if name not in _MLFLOW_STATUSES:
        raise ValidationError(f"unknown run status {mlflow_name!r}: use one of {', '.join(_MLFLOW_STATUSES)}")
    return [s.value for s, m in MLFLOW_STATUS.items() if m == name]


_ENTITY = {
    "metric": "metric",
    "metrics": "metric",
    "param": "property",
    "params": "property",
    "parameter": "property",
    "parameters": "property",
    "tag": "tag",
    "tags": "tag",
    "attribute": "attribute",
    "attributes": "attribute",
    "attr": "attribute",
    "run": "attribute",
}
# MLflow attribute -> (store attribute, kind)
_ATTRIBUTES = {
    "run_id": ("run_id", "id"),
    "run_name": ("display_name", "str"),
    "status": ("status", "status"),
    "start_time": ("created", "ms"),
    "created": ("created", "ms"),
    "Created": ("created", "ms"),
    "end_time": ("end_time", "ms"),
    "user_id": ("mlflow.user", "user"),
}

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<ident>[A-Za-z_][A-Za-z0-9_]*(?:\.(?:`[^`]+`|"[^"]+"|[A-Za-z0-9_.\-:/]+))?)
    | (?P<op>>=|<=|!=|<>|=|<|>)
    | (?P<str>'(?:[^']|'')*'|"(?:[^"]|"")*")
    | (?P<num>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)
    | (?P<lp>\() | (?P<rp>\)) | (?P<comma>,)
    )""",
    re.VERBOSE,
)
_WORDS = {"AND", "OR", "NOT", "IN", "IS", "NULL", "LIKE", "ILIKE", "ASC", "DESC"}


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise ValidationError(f"cannot parse the search filter at {text[pos : pos + 20]!r} (in {text!r})")
        pos = m.end()
        kind = m.lastgroup or ""
        value = m.group(kind)
        if kind == "ident" and value.upper() in _WORDS:
            kind, value = "word", value.upper()
        out.append((kind, value))
    return out


def _unquote(key: str) -> str:
    if len(key) >= 2 and key[0] == key[-1] and key[0] in "`\"'":
        return key[1:-1]
    return key


def _identifier(token: str) -> tuple[str, str]:
    """``metrics.loss`` -> (``metric``, ``loss``); a bare name is an attribute."""
    entity, dot, key = token.partition(".")
    if not dot:
        entity, key = "attribute", entity
    kind = _ENTITY.get(entity.lower())
    if kind is None:
        if entity.lower() in ("dataset", "datasets"):
            raise ValidationError("searching runs by dataset is not supported by expboard's MLflow API")
        raise ValidationError(
            f"invalid search key {token!r}: use metrics.<name>, params.<name>, tags.<name> or attributes.<name>"
        )
    key = _unquote(key)
    if kind == "attribute" and key not in _ATTRIBUTES:
        raise ValidationError(
            f"invalid attribute {key!r}: use one of run_id, run_name, status, start_time, end_time, user_id"
        )
    return kind, key


def _literal(kind: str, value: str) -> Any:
    if kind == "str":
        q = value[0]
        return value[1:-1].replace(q + q, q)
    if kind == "num":
        return float(value)
    raise ValidationError(f"expected a value, got {value!r}")


# MLflow tags that expboard keeps as run attributes
_TAG_ATTRIBUTES = {"mlflow.runName": "display_name", "mlflow.parentRunId": "parent_id"}


def _condition(kind: str, key: str, op: str, value: Any) -> RunCondition:
    if kind == "tag" and key in _TAG_ATTRIBUTES:
        if op not in ("=", "!=", "LIKE", "ILIKE", "IS NULL", "IS NOT NULL"):
            raise ValidationError(f"tags.{key}: compare with a quoted string (=, !=, LIKE, ILIKE, IS [NOT] NULL)")
        if op not in ("IS NULL", "IS NOT NULL") and not isinstance(value, str):
            raise ValidationError(f"tags.{key}: compare with a quoted string")
        return RunCondition("attribute", _TAG_ATTRIBUTES[key], op, value)
    if kind == "metric":
        if op not in ("=", "!=", "<", "<=", ">", ">=") or isinstance(value, (str, list)):
            raise ValidationError(f"metrics.{key}: compare a metric with a number (=, !=, <, <=, >, >=)")
        return RunCondition("metric", key, op, float(value))
    if kind in ("property", "tag"):
        if op in ("IS NULL", "IS NOT NULL"):
            return RunCondition(kind, key, op)
        if op not in ("=", "!=", "LIKE", "ILIKE") or not isinstance(value, str):
            what = "params" if kind == "property" else "tags"
            raise ValidationError(f"{what}.{key}: compare with a quoted string (=, !=, LIKE, ILIKE, IS [NOT] NULL)")
        return RunCondition(kind, key, op, value)
    column, akind = _ATTRIBUTES[key]
    if akind == "ms":
        if op not in ("=", "!=", "<", "<=", ">", ">=") or isinstance(value, (str, list)):
            raise ValidationError(f"attributes.{key}: compare with a number of milliseconds since the epoch")
        return RunCondition("attribute", column, op, float(value) / 1000.0)
    if akind == "user":
        if op not in ("=", "!=", "LIKE", "ILIKE") or not isinstance(value, str):
            raise ValidationError("attributes.user_id: compare with a quoted string")
        return RunCondition("tag", column, op, value)
    if akind == "status":
        values = value if isinstance(value, list) else [value]
        if not all(isinstance(v, str) for v in values):
            raise ValidationError("attributes.status: compare with a quoted status such as 'FINISHED'")
        if op in ("LIKE", "ILIKE"):
            pattern = re.escape(str(value)).replace("%", ".*").replace("_", ".")
            flags = re.IGNORECASE if op == "ILIKE" else 0
            names = [n for n in _MLFLOW_STATUSES if re.fullmatch(pattern, n, flags)]
            return RunCondition("attribute", "status", "IN", [s for n in names for s in statuses_for(n)])
        if op not in ("=", "!=", "IN", "NOT IN"):
            raise ValidationError("attributes.status: use =, !=, IN, NOT IN, LIKE or ILIKE")
        expanded = [s for v in values for s in statuses_for(v)]
        return RunCondition("attribute", "status", "IN" if op in ("=", "IN") else "NOT IN", expanded)
    if op in ("IN", "NOT IN"):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValidationError(f"attributes.{key} {op}: give a list of quoted strings, such as ('a', 'b')")
        return RunCondition("attribute", column, op, value)
    if op not in ("=", "!=", "LIKE", "ILIKE") or not isinstance(value, str):
        raise ValidationError(f"attributes.{key}: compare with a quoted string (=, !=, LIKE, ILIKE, IN, NOT IN)")
    return RunCondition("attribute", column, op, value)


def parse_filter(text: str | None) -> list[RunCondition]:
    """An MLflow search-runs filter as store conditions (all of which must hold)."""
    if not text or not text.strip():
        return []
    toks = _tokens(text)
    out: list[RunCondition] = []
    i = 0

    def take() -> tuple[str, str]:
        nonlocal i
        if i >= len(toks):
            raise ValidationError(f"the search filter {text!r} ends too early")
        i += 1
        return toks[i - 1]

    while True:
        kind, tok = take()
        if kind != "ident":
            raise ValidationError(f"expected a key such as metrics.loss in the search filter, got {tok!r}")
        entity, key = _identifier(tok)
        kind, tok = take()
        value: Any = None
        if kind == "op":
            op = "!=" if tok == "<>" else tok
        elif kind == "word" and tok in ("LIKE", "ILIKE", "IN"):
            op = tok
        elif kind == "word" and tok == "NOT":
            _, nxt = take()
            if nxt not in ("IN", "LIKE", "ILIKE"):
                raise ValidationError(f"unsupported comparison 'NOT {nxt}' in the search filter")
            if nxt != "IN":
                raise ValidationError("NOT LIKE is not supported by MLflow's search syntax; use != or LIKE")
            op = "NOT IN"
        elif kind == "word" and tok == "IS":
            _, nxt = take()
            if nxt == "NOT":
                take()
                op = "IS NOT NULL"
            else:
                op = "IS NULL"
            if toks[i - 1][1] != "NULL":
                raise ValidationError("expected IS NULL or IS NOT NULL in the search filter")
        else:
            raise ValidationError(f"expected a comparison after {key!r} in the search filter, got {tok!r}")
        if op in ("IN", "NOT IN"):
            if take()[0] != "lp":
                raise ValidationError(f"{op} needs a parenthesized list, such as ('a', 'b')")
            items: list[Any] = []
            while True:
                k, t = take()
                items.append(_literal(k, t))
                k, t = take()
                if k == "rp":
                    break
                if k != "comma":
                    raise ValidationError(f"expected ',' or ')' in the list, got {t!r}")
            value = items
        elif op not in ("IS NULL", "IS NOT NULL"):
            value = _literal(*take())
        out.append(_condition(entity, key, op, value))
        if i == len(toks):
            return out
        kind, tok = take()
        if tok == "OR":
            raise ValidationError("OR is not supported in run searches (MLflow's syntax joins conditions with AND)")
        if tok != "AND":
            raise ValidationError(f"expected AND between conditions of the search filter, got {tok!r}")


def parse_order_by(clauses: list[str] | None) -> list[RunOrder]:
    """MLflow order_by clauses (``metrics.loss DESC``) as store orders."""
    out: list[RunOrder] = []
    for clause in clauses or []:
        toks = _tokens(clause)
        if not toks or toks[0][0] != "ident" or len(toks) > 2:
            raise ValidationError(f"invalid order_by {clause!r}: use such as 'metrics.loss DESC' or 'start_time'")
        descending = False
        if len(toks) == 2:
            if toks[1][1] not in ("ASC", "DESC"):
                raise ValidationError(f"invalid order_by {clause!r}: end it with ASC or DESC")
            descending = toks[1][1] == "DESC"
        entity, key = _identifier(toks[0][1])
        if entity == "tag" and key in _TAG_ATTRIBUTES:
            entity, key = "attribute", _TAG_ATTRIBUTES[key]
        elif entity == "attribute":
            column, akind = _ATTRIBUTES[key]
            entity = "tag" if akind == "user" else "attribute"
            key = column
        out.append(RunOrder(entity, key, descending))
    return out
