"""Validation of user-supplied names, run ids, times and file paths. Imports only errors.

Every store and every server route checks its input with these functions, so a value is refused with the
same message wherever it enters.
"""

from __future__ import annotations

import math
import re
from pathlib import PurePosixPath

from .errors import ValidationError

__all__ = [
    "MAX_NAME_PART_BYTES",
    "MAX_RUN_ID_LENGTH",
    "MAX_TIME",
    "check_experiment_name",
    "check_file_name",
    "check_key",
    "check_metric_name",
    "check_model_name",
    "check_run_id",
    "check_text",
    "check_time",
]

MAX_RUN_ID_LENGTH = 255  # a run id is a folder name: at most NAME_MAX bytes
MAX_NAME_PART_BYTES = 255  # each '/'-separated part of a file name, in UTF-8 bytes (NAME_MAX)
MAX_TIME = 32503680000.0  # 3000-01-01T00:00:00Z: later "times" are mistakes (1e300, Infinity)

_EXPERIMENT_RE = re.compile(r"[A-Za-z0-9_-]{1,255}")
_RUN_ID_RE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,254}")


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate such as "\ud800"
        return False
    return True


def check_experiment_name(name: object) -> str:
    """Experiment names: letters, digits, ``_`` and ``-``, 1 to 255 characters."""
    if not isinstance(name, str) or not _EXPERIMENT_RE.fullmatch(name):
        raise ValidationError(
            f"invalid experiment name {name!r}: use 1 to 255 letters, digits, '_' or '-' (for example 'ridge-sweep_2')"
        )
    return name


def check_run_id(run_id: object) -> str:
    """Run ids: letters, digits, ``_``, ``-`` and ``.``, 1 to 255 characters, not starting with ``.``
    (so never ``.`` or ``..``): a run id is also the name of the run's folder."""
    if not isinstance(run_id, str) or not _RUN_ID_RE.fullmatch(run_id):
        shown = repr(run_id) if not isinstance(run_id, str) or len(run_id) <= 80 else repr(run_id[:80]) + "..."
        raise ValidationError(
            f"invalid run id {shown}: use 1 to {MAX_RUN_ID_LENGTH} letters, digits, '_', '-' or '.', "
            "not starting with '.' (for example 'ridge-sweep_1733050000_9f3a1c2e')"
        )
    return run_id


def check_model_name(name: object) -> str:
    """Registered model names: 1 to 200 characters of text without control characters, '/', '\\' or ':' (a
    model's id is ``name:version``), not starting with '.' or a space."""
    if (
        not isinstance(name, str)
        or not name
        or len(name) > 200
        or name[0] in ". "
        or any(ord(c) < 32 or c in "/\\:" for c in name)
        or not _utf8(name)
    ):
        raise ValidationError(
            f"invalid model name {name!r}: use 1 to 200 characters without '/', '\\', ':' or control characters, "
            "not starting with '.' or a space (for example 'sklearn-ridge')"
        )
    return name


def check_metric_name(name: object) -> str:
    """Metric names: any non-empty text up to 255 characters without control characters, valid as UTF-8."""
    if not isinstance(name, str) or not name or len(name) > 255 or any(ord(c) < 32 for c in name) or not _utf8(name):
        raise ValidationError(
            f"invalid metric name {name!r}: use a non-empty string of at most 255 characters without control "
            "characters or lone surrogates (it must be valid UTF-8)"
        )
    return name


def check_key(key: object, what: str = "tag") -> str:
    """Tag and property keys: like metric names."""
    if not isinstance(key, str) or not key or len(key) > 255 or any(ord(c) < 32 for c in key) or not _utf8(key):
        raise ValidationError(
            f"invalid {what} name {key!r}: use a non-empty string of at most 255 characters without control "
            "characters, valid as UTF-8"
        )
    return key


def check_text(value: object, what: str) -> str:
    """Free text (tag and property values, display names): a string that can be stored as UTF-8."""
    if not isinstance(value, str) or not _utf8(value):
        raise ValidationError(f"invalid {what} {value!r}: use a string that is valid UTF-8 (no lone surrogates)")
    return value


def check_time(value: object, what: str) -> float:
    """A time in seconds since 1970 (UTC): finite, from 1970 to the year 3000. Returns it as a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValidationError(f"{what} must be a number of seconds since 1970 (UTC), got {value!r}")
    t = float(value)
    if not math.isfinite(t) or not 0.0 <= t <= MAX_TIME:
        raise ValidationError(
            f"{what} must be a time in seconds since 1970 (UTC) between 1970 and the year 3000, got {value!r} "
            "(pass time.time(), not milliseconds or a placeholder)"
        )
    return t


def check_file_name(name: object, *, may_be_folder: bool = True) -> str:
    """A file name inside a run: relative, '/'-separated, no '..', no absolute or drive paths, each part at
    most 255 bytes of UTF-8. With ``may_be_folder=False`` (what stores and routes use) a name ending in
    '/' is refused, since it names a folder, not a file.

    Returns the normalized name (``./a//b`` becomes ``a/b``).
    """
    if not isinstance(name, str) or not name or "\x00" in name or len(name) > 1024 or not _utf8(name):
        raise ValidationError(
            f"invalid file name {name!r}: use a relative path of at most 1024 characters, valid as UTF-8, "
            "such as 'outputs/model.pt'"
        )
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
    long = next((p for p in parts if len(p.encode("utf-8")) > MAX_NAME_PART_BYTES), None)
    if long is not None:
        raise ValidationError(
            f"invalid file name {name[:80]!r}...: the part {long[:40]!r}... is longer than "
            f"{MAX_NAME_PART_BYTES} bytes, more than a file system allows; shorten it"
        )
    if not may_be_folder and (name.endswith("/") or name.endswith("/.")):
        raise ValidationError(
            f"invalid file name {name!r}: it ends with '/', so it names a folder; name a file inside it, "
            "such as 'outputs/model.pt'"
        )
    return "/".join(parts)
