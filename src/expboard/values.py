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

__all__ = [
    "MAX_TEXT_BYTES",
    "check_step_range",
    "coerce_step",
    "coerce_value",
    "error_dict",
    "iso_time",
    "json_value",
    "metric_value",
]

_INT64 = 2**63
MAX_TEXT_BYTES = 1 << 20  # one logged string; longer text belongs in a run file
_SCALAR_KINDS = frozenset("biufU")  # numpy dtype kinds that hold a loggable scalar


def _metric_text(what: str, value: str) -> str:
    """``value`` if it can be stored as text: valid Unicode (UTF-8 encodable) and at most MAX_TEXT_BYTES;
    else a ValidationError that starts with ``what`` (such as ``metric 'loss'``)."""
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValidationError(
            f"{what}: the string value is not valid Unicode text (it holds a lone surrogate such as "
            "'\\ud800', often from bytes decoded with errors='surrogateescape'); log text that encodes as UTF-8"
        ) from None
    if size > MAX_TEXT_BYTES:
        raise ValidationError(
            f"{what}: a string value of {size} bytes is over the limit of {MAX_TEXT_BYTES} bytes; "
            "store long text as a file with run.upload_file(name, path)"
        )
    return value


def coerce_value(name: str, value: Any) -> Any:
    """A loggable scalar from ``value``, or a ValidationError that says what to use instead."""
    if value is None or isinstance(value, (bool, int, float)):
        if isinstance(value, int) and not isinstance(value, bool) and not -_INT64 <= value < _INT64:
            return float(value)
        return value
    if isinstance(value, str):
        return _metric_text(f"metric {name!r}", str(value))
    if isinstance(value, np.generic) or (isinstance(value, np.ndarray) and value.ndim == 0):
        if value.dtype.kind not in _SCALAR_KINDS:
            raise ValidationError(
                f"metric {name!r}: cannot log a numpy {value.dtype} value; log an int, float, bool or str "
                "(for a time, log it as a number such as a unix timestamp or as an ISO string)"
            )
        return coerce_value(name, value.item())
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # torch / jax 0-d tensors
        item = value.item()
        if item is not None and not isinstance(item, (bool, int, float)):
            raise ValidationError(
                f"metric {name!r}: cannot log a {type(value).__name__} holding a {type(item).__name__}; "
                "log an int, float, bool or str"
            )
        return coerce_value(name, item)
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
    """An integer step (numpy integers included) within the 64-bit range, or a ValidationError."""
    if isinstance(step, bool):
        raise ValidationError(f"step must be an integer, got {step!r}")
    try:
        value = int(step.__index__())
    except (AttributeError, TypeError):
        raise ValidationError(f"step must be an integer, got {type(step).__name__} {step!r}") from None
    return check_step_range(value)


def check_step_range(step: int) -> int:
    """``step`` if it fits a signed 64-bit integer (as TensorBoard's steps do), else a ValidationError."""
    if not -_INT64 <= step < _INT64:
        raise ValidationError(
            f"step {step} is outside the 64-bit integer range (-2**63 to 2**63 - 1); use a smaller step"
        )
    return step


def json_value(value: Any, what: str) -> Any:
    """``value`` as plain JSON data (numpy values converted), or a ValidationError naming ``what``."""
    try:
        text = json.dumps(value, default=json_default, allow_nan=True, ensure_ascii=False)
        text.encode("utf-8")  # a lone surrogate cannot be stored as text by every database
    except (TypeError, ValueError, RecursionError) as exc:
        raise ValidationError(f"{what}: {exc}; use numbers, strings, booleans, None, lists and dicts") from None
    return json.loads(text)


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
