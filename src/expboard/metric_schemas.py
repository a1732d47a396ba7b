"""Azure ML's JSON metrics for model evaluation: accuracy tables, predictions and residuals.

Each is a JSON object ``{"schema_type": ..., "schema_version": ..., "data": {...}}`` as Azure ML's
``Run.log_accuracy_table``, ``log_predictions`` and ``log_residuals`` take it:

- ``accuracy_table``: ``class_labels`` (C labels), ``probability_thresholds`` and ``percentile_thresholds``
  (N numbers each), ``probability_tables`` and ``percentile_tables`` (C x N x 4 counts: TP, FP, TN, FN
  at each threshold, one class against the rest);
- ``predictions``: ``bin_edges`` (B + 1 increasing numbers), ``bin_averages``, ``bin_errors`` and
  ``bin_counts`` (B numbers each): the mean true value of each bin of predictions, its standard deviation
  and how many predictions fell into it;
- ``residuals``: ``bin_edges`` (B + 1 increasing numbers) and ``bin_counts`` (B numbers): a histogram of
  predicted minus actual values.

:func:`check` validates a value and returns it normalized (lists of floats, labels as text);
:func:`tensorboard_views` is how export and the live view show one: a text table and scalar curves.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from .errors import ValidationError

__all__ = ["SCHEMA_TYPES", "check", "tensorboard_views"]

SCHEMA_VERSIONS = {"accuracy_table": "1.0.1", "predictions": "1.0.0", "residuals": "1.0.0"}
SCHEMA_TYPES = tuple(SCHEMA_VERSIONS)
_ACCURACY_KEYS = ("probability_tables", "percentile_tables", "probability_thresholds", "percentile_thresholds")


def _fail(name: str, schema: str, what: str) -> ValidationError:
    return ValidationError(
        f"metric {name!r}: not a valid {schema} ({what}); expected "
        f'{{"schema_type": "{schema}", "schema_version": "{SCHEMA_VERSIONS[schema]}", "data": {{...}}}} '
        f"as Azure ML's log_{schema} takes it"
    )


def _numbers(name: str, schema: str, key: str, value: Any, dims: int) -> list[Any]:
    """``value`` as nested lists of finite floats, ``dims`` deep (1: a list of numbers)."""
    if isinstance(value, (str, bytes, Mapping)) or not hasattr(value, "__iter__"):
        raise _fail(name, schema, f"data.{key} must be a {'list' if dims == 1 else f'{dims}-D list'} of numbers")
    if hasattr(value, "tolist"):
        value = value.tolist()
    out: list[Any] = []
    for item in value:
        if dims > 1:
            out.append(_numbers(name, schema, key, item, dims - 1))
            continue
        if isinstance(item, bool) or not isinstance(item, (int, float)) or not math.isfinite(float(item)):
            raise _fail(name, schema, f"data.{key} holds {item!r}, not a finite number")
        out.append(float(item))
    return out


def _data(name: str, schema: str, value: Any, keys: tuple[str, ...]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _fail(name, schema, f"got a {type(value).__name__}, not a dict")
    declared = value.get("schema_type", schema)
    if declared != schema:
        raise _fail(name, schema, f"schema_type is {declared!r}")
    data = value.get("data", value)
    if not isinstance(data, Mapping):
        raise _fail(name, schema, "data must be a dict")
    missing = [k for k in keys if k not in data]
    if missing:
        raise _fail(name, schema, f"data lacks {', '.join(missing)}")
    return data


def _edges(name: str, schema: str, data: Mapping[str, Any], bins: int) -> list[float]:
    edges = _numbers(name, schema, "bin_edges", data["bin_edges"], 1)
    if len(edges) != bins + 1:
        raise _fail(name, schema, f"{len(edges)} bin_edges for {bins} bins: there is one edge more than bins")
    if any(b <= a for a, b in zip(edges, edges[1:], strict=False)):
        raise _fail(name, schema, "bin_edges must increase")
    return edges


def check(schema: str, name: str, value: Any) -> dict[str, Any]:
    """Validate an Azure ML evaluation metric of type ``schema`` and return it normalized, with its
    ``schema_type`` and ``schema_version``. Raises :class:`ValidationError` saying what is wrong."""
    if schema == "accuracy_table":
        data = _data(name, schema, value, _ACCURACY_KEYS)
        out: dict[str, Any] = {
            k: _numbers(name, schema, k, data[k], 3 if k.endswith("tables") else 1) for k in _ACCURACY_KEYS
        }
        classes = len(out["probability_tables"])
        labels = data.get("class_labels")
        labels = [str(x) for x in labels] if labels is not None else [str(i) for i in range(classes)]
        for kind in ("probability", "percentile"):
            tables, thresholds = out[f"{kind}_tables"], out[f"{kind}_thresholds"]
            if len(tables) != len(labels):
                raise _fail(name, schema, f"{len(tables)} {kind}_tables for {len(labels)} class_labels")
            for label, table in zip(labels, tables, strict=True):
                if len(table) != len(thresholds) or any(len(row) != 4 for row in table):
                    raise _fail(
                        name,
                        schema,
                        f"the {kind} table of class {label!r} must have one row [TP, FP, TN, FN] per threshold "
                        f"({len(thresholds)})",
                    )
        out["class_labels"] = labels
    elif schema == "predictions":
        data = _data(name, schema, value, ("bin_averages", "bin_errors", "bin_counts", "bin_edges"))
        out = {k: _numbers(name, schema, k, data[k], 1) for k in ("bin_averages", "bin_errors", "bin_counts")}
        bins = len(out["bin_counts"])
        if len(out["bin_averages"]) != bins or len(out["bin_errors"]) != bins:
            raise _fail(name, schema, "bin_averages, bin_errors and bin_counts must have one value per bin each")
        out["bin_edges"] = _edges(name, schema, data, bins)
    elif schema == "residuals":
        data = _data(name, schema, value, ("bin_edges", "bin_counts"))
        out = {"bin_counts": _numbers(name, schema, "bin_counts", data["bin_counts"], 1)}
        out["bin_edges"] = _edges(name, schema, data, len(out["bin_counts"]))
    else:
        raise ValidationError(f"unknown schema {schema!r}; one of {', '.join(SCHEMA_TYPES)}")
    version = value.get("schema_version", SCHEMA_VERSIONS[schema])
    return {"schema_type": schema, "schema_version": str(version), "data": out}


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:.6g}"


def tensorboard_views(value: Any) -> tuple[list[list[str]], dict[str, list[float]]]:
    """How TensorBoard shows a stored value: a table (rows of text, the first the header) and scalar curves
    by tag suffix, point i at step i (the threshold or bin index).

    accuracy_table: rows class, threshold, TP, FP, TN, FN (probability thresholds); curves
    ``<class>/true_positive_rate`` and ``<class>/false_positive_rate`` over the thresholds.
    predictions: rows bin, from, to, average, error, count; curves ``bin_average``, ``bin_error``, ``bin_count``.
    residuals: rows bin, from, to, count; curve ``bin_count``."""
    if not isinstance(value, Mapping):
        return [], {}
    schema, data = value.get("schema_type"), value.get("data") or {}
    rows: list[list[str]] = []
    curves: dict[str, list[float]] = {}
    if schema == "accuracy_table":
        rows.append(["class", "threshold", "TP", "FP", "TN", "FN"])
        thresholds = data.get("probability_thresholds", [])
        for label, table in zip(data.get("class_labels", []), data.get("probability_tables", []), strict=False):
            tpr, fpr = [], []
            for t, (tp, fp, tn, fn) in zip(thresholds, table, strict=False):
                rows.append([str(label), _fmt(t), _fmt(tp), _fmt(fp), _fmt(tn), _fmt(fn)])
                tpr.append(tp / (tp + fn) if tp + fn else 0.0)
                fpr.append(fp / (fp + tn) if fp + tn else 0.0)
            curves[f"{label}/true_positive_rate"] = tpr
            curves[f"{label}/false_positive_rate"] = fpr
    elif schema in ("predictions", "residuals"):
        edges = data.get("bin_edges", [])
        columns = ["bin_average", "bin_error", "bin_count"] if schema == "predictions" else ["bin_count"]
        rows.append(["bin", "from", "to", *(c.removeprefix("bin_") for c in columns)])
        for i, (lo, hi) in enumerate(zip(edges, edges[1:], strict=False)):
            rows.append([str(i), _fmt(lo), _fmt(hi), *(_fmt(data[f"{c}s"][i]) for c in columns)])
        for c in columns:
            curves[c] = list(data.get(f"{c}s", []))
    return rows, curves
