"""What may be logged and in what shape it comes back: value and step checks, Azure ML's metric shapes.

``coerce_value`` turns what a user logs (numpy and torch scalars included) into a plain value or says what
to call instead; ``metric_value`` is what ``Run.get_metrics`` returns for one stored series.
"""

from __future__ import annotations

import json
import traceback
from datetime import datetime, timezone
from typing import Any

import numpy as np

from .errors import ValidationError
from .records import MetricKind, MetricSeries
from .stores.wire import json_default

__all__ = ["coerce_step", "coerce_value", "error_dict", "iso_time", "json_value", "metric_value"]

_INT64 = 2**63


def coerce_value(name: str, value: Any) -> Any:
    """A loggable scalar from ``value``, or a ValidationError that says what to use instead."""
    if value is None or isinstance(value, (bool, int, float, str)):
        if isinstance(value, int) and not isinstance(value, bool) and not -_INT64 <= value < _INT64:
            return float(value)
        return value
    if isinstance(value, np.generic) or (isinstance(value, np.ndarray) and value.ndim == 0):
        return value.item()
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # torch / jax 0-d tensors
        return value.item()
    if isinstance(value, (list, tuple, np.ndarray)):
        raise ValidationError(
            f"metric {name!r}: run.log() takes one value, got a {type(value).__name__}; "
            "use run.log_list(name, values) for a list, or run.log_array(name, values) for many points"
        )
    if isinstance(value, dict):
        raise ValidationError(
            f"metric {name!r}: run.log() takes one value, got a dict; use run.log_row(name, **columns) "
            "or run.log_table(name, {column: values})"
        )
    raise ValidationError(
        f"metric {name!r}: cannot log a value of type {type(value).__name__}; "
        "log an int, float, bool, str, None or numpy scalar"
    )


def coerce_step(step: Any) -> int:
    """An integer step (numpy integers included), or a ValidationError."""
    if isinstance(step, bool):
        raise ValidationError(f"step must be an integer, got {step!r}")
    try:
        return int(step.__index__())
    except (AttributeError, TypeError):
        raise ValidationError(f"step must be an integer, got {type(step).__name__} {step!r}") from None


def json_value(value: Any, what: str) -> Any:
    """``value`` as plain JSON data (numpy values converted), or a ValidationError naming ``what``."""
    try:
        return json.loads(json.dumps(value, default=json_default, allow_nan=True))
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"{what}: {exc}; use numbers, strings, booleans, None, lists and dicts") from None


def metric_value(series: MetricSeries) -> Any:
    """What ``get_metrics`` returns for one series (Azure's shapes)."""
    values = series.values.tolist() if isinstance(series.values, np.ndarray) else list(series.values)
    kind = series.kind
    if kind in (MetricKind.ROW, MetricKind.TABLE):
        columns: dict[str, list[Any]] = {}
        for item in values:
            if kind is MetricKind.ROW:
                item = {k: [v] for k, v in item.items()}
            for col, col_values in item.items():
                columns.setdefault(col, []).extend(col_values)
        return columns
    if kind is MetricKind.LIST:
        return values
    return values[0] if len(values) == 1 else values


def iso_time(ts: float | None) -> str | None:
    """A unix time as Azure's ISO 8601 UTC string (``...Z``)."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat().replace("+00:00", "Z")


def error_dict(error: BaseException | str | None, code: str | None = None) -> dict[str, Any]:
    """A run's ``error`` record from an exception or a message."""
    if error is None:
        return {"code": code or "UserError", "message": ""}
    if isinstance(error, BaseException):
        return {
            "code": code or type(error).__name__,
            "message": str(error) or type(error).__name__,
            "traceback": "".join(traceback.format_exception(type(error), error, error.__traceback__))[-8000:],
        }
    return {"code": code or "UserError", "message": str(error)}
