"""Validation of user-supplied names and file paths. Imports only errors."""

from __future__ import annotations

import re
from pathlib import PurePosixPath

from .errors import ValidationError

__all__ = ["check_experiment_name", "check_file_name", "check_key", "check_metric_name"]

_EXPERIMENT_RE = re.compile(r"[A-Za-z0-9_-]{1,255}")


def check_experiment_name(name: object) -> str:
    """Experiment names: letters, digits, ``_`` and ``-``, 1 to 255 characters."""
    if not isinstance(name, str) or not _EXPERIMENT_RE.fullmatch(name):
        raise ValidationError(
            f"invalid experiment name {name!r}: use 1 to 255 letters, digits, '_' or '-' (for example 'ridge-sweep_2')"
        )
    return name


def check_metric_name(name: object) -> str:
    """Metric names: any non-empty text up to 255 characters without control characters."""
    if not isinstance(name, str) or not name or len(name) > 255 or any(ord(c) < 32 for c in name):
        raise ValidationError(
            f"invalid metric name {name!r}: use a non-empty string of at most 255 characters without control characters"
        )
    return name


def check_key(key: object, what: str = "tag") -> str:
    """Tag and property keys: like metric names."""
    if not isinstance(key, str) or not key or len(key) > 255 or any(ord(c) < 32 for c in key):
        raise ValidationError(f"invalid {what} name {key!r}: use a non-empty string of at most 255 characters")
    return key


def check_file_name(name: object) -> str:
    """A file name inside a run: relative, '/'-separated, no '..', no absolute or drive paths.

    Returns the normalized name (``./a//b`` becomes ``a/b``).
    """
    if not isinstance(name, str) or not name or "\x00" in name or len(name) > 1024:
        raise ValidationError(f"invalid file name {name!r}: use a relative path such as 'outputs/model.pt'")
    if "\\" in name:
        raise ValidationError(f"invalid file name {name!r}: use '/' to separate folders, not '\\'")
    path = PurePosixPath(name)
    if path.is_absolute() or re.match(r"^[A-Za-z]:", name):
        raise ValidationError(
            f"invalid file name {name!r}: absolute paths are not allowed; "
            "give a path relative to the run, such as 'outputs/model.pt'"
        )
    parts = [p for p in path.parts if p not in ("", ".")]
    if not parts or any(p == ".." for p in parts):
        raise ValidationError(
            f"invalid file name {name!r}: '..' may not leave the run's folder; "
            "give a path relative to the run, such as 'outputs/model.pt'"
        )
    return "/".join(parts)
