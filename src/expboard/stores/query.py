"""Run queries: a filter every store evaluates itself (in SQL for the SQL store) and pages of runs.

>>> f = RunFilter.parse(status=["Completed"], tags=["team=vision"], metrics=["mse<0.3"], text="alpha")
>>> f.metrics
(('mse', '<', 0.3),)
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import ValidationError
from ..records import RunRecord, RunStatus

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_SIZE",
    "OPERATORS",
    "RunFilter",
    "RunPage",
    "decode_page_token",
    "encode_page_token",
    "page_size",
]

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 10_000
OPERATORS = ("<=", ">=", "!=", "==", "<", ">", "=")
_METRIC_RE = re.compile(r"^\s*([^<>=!\s]+)\s*(<=|>=|!=|==|<|>|=)\s*(\S+)\s*$")


@dataclass(frozen=True)
class RunFilter:
    """Which runs to list. Every given part must hold:

    ``statuses``: the run is in one of them; ``tags`` / ``properties``: ``key -> value`` (a value of None: the
    key is present with any value); ``metrics``: ``(name, operator, number)`` compared with the metric's last
    logged value (numeric scalar metrics); ``text``: contained in the display name (case-insensitive).
    """

    statuses: tuple[RunStatus, ...] = ()
    tags: Mapping[str, str | None] = field(default_factory=dict)
    properties: Mapping[str, str | None] = field(default_factory=dict)
    metrics: tuple[tuple[str, str, float], ...] = ()
    text: str = ""

    @classmethod
    def parse(
        cls,
        status: Iterable[str | RunStatus] | str | None = None,
        tags: Iterable[str] | Mapping[str, Any] | str | None = None,
        properties: Iterable[str] | Mapping[str, Any] | None = None,
        metrics: Iterable[str] | str | None = None,
        text: str | None = None,
    ) -> RunFilter:
        """A filter from the forms the command line and the server take: ``"k=v"`` (or ``"k"``) for tags and
        properties, ``"mse<0.3"`` for metrics (operators ``< <= > >= = == !=``)."""
        if isinstance(status, (str, RunStatus)):
            status = [status]
        statuses = []
        for s in status or ():
            try:
                statuses.append(RunStatus(s))
            except ValueError:
                raise ValidationError(
                    f"unknown run status {s!r}; use one of {', '.join(x.value for x in RunStatus)}"
                ) from None
        if isinstance(metrics, str):
            metrics = [metrics]
        return cls(
            statuses=tuple(statuses),
            tags=_pairs(tags, "tag"),
            properties=_pairs(properties, "property"),
            metrics=tuple(_metric_condition(m) for m in metrics or ()),
            text=text or "",
        )

    def is_empty(self) -> bool:
        return not (self.statuses or self.tags or self.properties or self.metrics or self.text)

    def to_query(self) -> dict[str, Any]:
        """The filter as the query parameters of the server's run listing (and :meth:`parse`'s arguments)."""
        return {
            "status": [s.value for s in self.statuses] or None,
            "tag": [k if v is None else f"{k}={v}" for k, v in self.tags.items()] or None,
            "property": [k if v is None else f"{k}={v}" for k, v in self.properties.items()] or None,
            "metric": [f"{n}{op}{v!r}" for n, op, v in self.metrics] or None,
            "text": self.text or None,
        }

    def matches(self, record: RunRecord) -> bool:
        """Whether ``record`` passes the parts of the filter a record holds (not ``metrics``)."""
        if self.statuses and record.status not in self.statuses:
            return False
        for mapping, wanted in ((record.tags, self.tags), (record.properties, self.properties)):
            for k, v in wanted.items():
                if k not in mapping or (v is not None and mapping[k] != v):
                    return False
        return not self.text or self.text.lower() in record.display_name.lower()


@dataclass(frozen=True)
class RunPage:
    """One page of runs, newest first; ``next_page_token`` fetches the next one (None: this is the last)."""

    runs: list[RunRecord]
    next_page_token: str | None = None


def _pairs(items: Iterable[str] | Mapping[str, Any] | str | None, what: str) -> dict[str, str | None]:
    if items is None:
        return {}
    if isinstance(items, Mapping):
        return {str(k): None if v is None else str(v) for k, v in items.items()}
    if isinstance(items, str):
        items = [items]
    out: dict[str, str | None] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not key:
            raise ValidationError(f"{what} filter {item!r}: write key=value (or key alone for any value)")
        out[key] = value if sep else None
    return out


def _metric_condition(text: str) -> tuple[str, str, float]:
    m = _METRIC_RE.match(text)
    if not m:
        raise ValidationError(f'metric filter {text!r}: write name, operator, number, such as "mse<0.3"')
    name, op, number = m.groups()
    try:
        value = float(number)
    except ValueError:
        raise ValidationError(f"metric filter {text!r}: {number!r} is not a number") from None
    return name, "=" if op == "==" else op, value


def encode_page_token(created: float, run_id: str) -> str:
    """An opaque token naming the last run of a page (pages go on strictly after it)."""
    return base64.urlsafe_b64encode(json.dumps([created, run_id]).encode()).decode().rstrip("=")


def decode_page_token(token: str) -> tuple[float, str]:
    try:
        created, run_id = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        return float(created), str(run_id)
    except (ValueError, TypeError) as exc:
        raise ValidationError(f"invalid page token {token!r}: pass the next_page_token of the previous page") from exc


def page_size(limit: int | None) -> int:
    """``limit`` checked (default :data:`DEFAULT_PAGE_SIZE`)."""
    if limit is None:
        return DEFAULT_PAGE_SIZE
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise ValidationError(f"limit must be between 1 and {MAX_PAGE_SIZE} (got {limit})")
    return int(limit)
