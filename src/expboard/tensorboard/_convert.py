"""Metric series -> TensorBoard events: the one mapping shared by ``export_to_tensorboard`` and the live sync.

| metric kind          | TensorBoard                                                                       |
|----------------------|-----------------------------------------------------------------------------------|
| scalar (``log``)     | numbers and bools: scalar ``name``; strings: text ``name``; None: skipped           |
| list (``log_list``)  | scalar ``name`` (element i at step i), strings as text                             |
| row (``log_row``)    | per column: scalar ``name/column`` at the row's step (text for non-numbers)         |
| table (``log_table``)| per column: scalar ``name/column``, step = row index over every table of the name   |
| image (``log_image``)| image ``name`` (the stored PNG/JPEG as is; width/height read from its header)       |
| confusion matrix     | text ``name`` holding a 2-D table (rendered as an HTML table by the text plugin)    |
| accuracy table,      | text ``name`` holding a table, and scalar curves ``name/<curve>`` over the           |
| predictions,         | threshold or bin index (true/false positive rates per class; bin averages,          |
| residuals            | errors and counts)                                                                  |

Steps and wall times are the stored ones. :func:`split_series` is the mapping itself (a series -> points per
TensorBoard tag and plugin, with :class:`TagNamer` for tags claimed by two plugins); :class:`SeriesConverter`
writes its output as events (export, file mirror) and the data provider serves it directly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ..metric_schemas import tensorboard_views
from ..records import MetricKind, MetricSeries
from ..tfevents import encoded_image_value, summary_event, text_table_value, text_value

__all__ = ["EventSink", "SeriesConverter", "TagNamer", "TagPoints", "split_series"]


# --------------------------------------------------------------------------------------------- conversion
def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, bool)) and v is not None


def _text(v: Any) -> str:
    return v if isinstance(v, str) else str(v)


@dataclass
class _SeriesState:
    """What was already written of one series (for incremental writes)."""

    count: int = 0  # points written
    table_rows: int = 0  # rows written over every table of this name
    max_step: int | None = None
    last_update: int = 0  # poll number of the last new point


@dataclass(frozen=True)
class TagPoints:
    """Points of one TensorBoard tag from a metric series, in logging order.

    ``plugin``: ``scalars`` (values: float64 array), ``text`` (values: strings), ``text_table`` (values:
    rank-2 tables of strings, shown by the text plugin) or ``images`` (values: the run files' names).
    ``tag`` is the tag before :class:`TagNamer` settles a clash between plugins.
    """

    tag: str
    plugin: str
    steps: np.ndarray
    wall_times: np.ndarray
    values: Any


class TagNamer:
    """TensorBoard keeps the first plugin seen per tag: a series mixing numbers and strings keeps the
    plugin it started with on ``tag``; the other kind goes to ``tag/text`` (or ``tag/value``)."""

    def __init__(self) -> None:
        self._plugins: dict[str, str] = {}

    def __call__(self, tag: str, plugin: str) -> str:
        plugin = "text" if plugin == "text_table" else plugin
        first = self._plugins.setdefault(tag, plugin)
        if first == plugin:
            return tag
        other = f"{tag}/{'text' if plugin == 'text' else 'value'}"
        self._plugins.setdefault(other, plugin)
        return other


def _split_scalars(tag: str, steps: np.ndarray, walls: np.ndarray, values: Any) -> list[TagPoints]:
    if isinstance(values, np.ndarray) and values.dtype.kind in "fiub":
        if not len(steps):
            return []
        return [TagPoints(tag, "scalars", steps, walls, np.asarray(values, dtype=np.float64))]
    values = list(values)
    numeric = np.array([_is_number(v) for v in values], dtype=bool)
    out = []
    if numeric.any():
        nums = np.array([float(v) for v, ok in zip(values, numeric, strict=True) if ok], dtype=np.float64)
        out.append(TagPoints(tag, "scalars", steps[numeric], walls[numeric], nums))
    text = np.array([not ok and v is not None for v, ok in zip(values, numeric, strict=True)], dtype=bool)
    if text.any():
        out.append(TagPoints(tag, "text", steps[text], walls[text], [_text(values[i]) for i in np.flatnonzero(text)]))
    return out


def _confusion_rows(cm: Any) -> list[list[str]]:
    data = cm.get("data", cm) if isinstance(cm, dict) else {"matrix": cm}
    matrix = data.get("matrix") or []
    labels = data.get("class_labels") or [str(i) for i in range(len(matrix))]
    rows = [["true \\ predicted", *map(str, labels)]]
    rows += [[str(label), *(_fmt(x) for x in r)] for label, r in zip(labels, matrix, strict=False)]
    return rows


def split_series(
    kind: MetricKind, name: str, steps: Any, wall_times: Any, values: Any, table_rows: int = 0
) -> tuple[list[TagPoints], int]:
    """The TensorBoard tags of (part of) a metric series. ``table_rows``: rows already seen over every
    table of this name (tables are stepped by row index); returns the parts and the new row count."""
    steps = np.asarray(steps, dtype=np.int64)
    walls = np.asarray(wall_times, dtype=np.float64)
    if kind in (MetricKind.SCALAR, MetricKind.LIST):
        return _split_scalars(name, steps, walls, values), table_rows
    if kind is MetricKind.ROW:
        columns: dict[str, list[int]] = {}
        for i, row in enumerate(values):
            for col in row:
                columns.setdefault(col, []).append(i)
        out: list[TagPoints] = []
        for col, idx in columns.items():
            ix = np.asarray(idx, dtype=np.int64)
            out += _split_scalars(f"{name}/{col}", steps[ix], walls[ix], [values[i][col] for i in idx])
        return out, table_rows
    if kind is MetricKind.TABLE:
        per_col: dict[str, tuple[list[int], list[float], list[Any]]] = {}
        row = table_rows
        for wall, table in zip(walls.tolist(), values, strict=True):
            length = max((len(c) for c in table.values()), default=0)
            for col, items in table.items():
                s, w, v = per_col.setdefault(col, ([], [], []))
                s.extend(range(row, row + len(items)))
                w.extend([wall] * len(items))
                v.extend(items)
            row += length
        out = []
        for col, (s, w, v) in per_col.items():
            out += _split_scalars(f"{name}/{col}", np.asarray(s, dtype=np.int64), np.asarray(w, dtype=np.float64), v)
        return out, row
    if kind is MetricKind.IMAGE:
        return [TagPoints(name, "images", steps, walls, [str(v) for v in values])] if len(steps) else [], table_rows
    if kind is MetricKind.CONFUSION_MATRIX:
        rows = [_confusion_rows(cm) for cm in values]
        return [TagPoints(name, "text_table", steps, walls, rows)] if len(steps) else [], table_rows
    if kind in _EVALUATION_KINDS:
        return _evaluation_points(name, steps, walls, values), table_rows
    return [], table_rows


_SCALAR_KINDS = (MetricKind.SCALAR, MetricKind.LIST)
_EVALUATION_KINDS = (MetricKind.ACCURACY_TABLE, MetricKind.PREDICTIONS, MetricKind.RESIDUALS)


def _evaluation_points(name: str, steps: np.ndarray, walls: np.ndarray, values: Any) -> list[TagPoints]:
    """Azure ML's accuracy tables, predictions and residuals: a text table ``name`` at the logged step, and
    scalar curves ``name/<curve>`` over the threshold or bin index, the latest logged value's
    (see :func:`expboard.metric_schemas.tensorboard_views`)."""
    out: list[TagPoints] = []
    tables = [tensorboard_views(v)[0] for v in values]
    if len(steps):
        out.append(TagPoints(name, "text_table", steps, walls, tables))
        _, curves = tensorboard_views(values[-1])
        for suffix, points in curves.items():
            idx = np.arange(len(points), dtype=np.int64)
            wall = np.full(len(points), walls[-1], dtype=np.float64)
            out.append(TagPoints(f"{name}/{suffix}", "scalars", idx, wall, np.asarray(points, dtype=np.float64)))
    return out


class EventSink(Protocol):
    """Where :class:`SeriesConverter` writes: an :class:`EventFileWriter`, or anything taking events the same way."""

    def add_scalars_array(self, tag: str, steps: Any, values: Any, wall_times: Any = None) -> None: ...

    def add_summary_value(self, value: bytes, step: int = 0, wall_time: float | None = None) -> None: ...

    def write_event(self, payload: bytes) -> None: ...


class SeriesConverter:
    """Writes metric series to an :class:`EventFileWriter` (or another :class:`EventSink`), remembering per
    series how much was written.

    ``read_file(name) -> bytes`` reads a run file (images logged with ``log_image``).
    """

    def __init__(self, writer: EventSink, read_file: Callable[[str], bytes], *, sort_steps: bool = False) -> None:
        self.writer = writer
        self.read_file = read_file
        self.sort_steps = sort_steps
        self.states: dict[str, _SeriesState] = {}
        self.points = 0
        self._tag = TagNamer()

    def state(self, name: str) -> _SeriesState:
        st = self.states.get(name)
        if st is None:
            st = self.states[name] = _SeriesState()
        return st

    def write(self, series: MetricSeries, start: int = 0, poll: int = 0) -> int:
        """Write points ``start:`` of ``series``; returns how many points were written."""
        n = len(series) - start
        if n <= 0:
            return 0
        steps = np.asarray(series.steps[start:], dtype=np.int64)
        walls = np.asarray(series.wall_times[start:], dtype=np.float64)
        st = self.state(series.name)
        values = series.values[start:]
        if series.kind in _SCALAR_KINDS and isinstance(values, np.ndarray) and values.dtype.kind in "fiub":
            # numbers only (the usual case): one tag, no per-point look at the values
            self._write_scalars(self._tag(series.name, "scalars"), steps, walls, values.astype(np.float64, copy=False))
        else:
            parts, st.table_rows = split_series(series.kind, series.name, steps, walls, values, st.table_rows)
            for part in parts:
                self._write_part(part)
        st.count += n
        top = int(steps.max())
        st.max_step = top if st.max_step is None else max(st.max_step, top)
        st.last_update = poll
        self.points += n
        return n

    def _write_scalars(self, tag: str, steps: np.ndarray, walls: np.ndarray, values: np.ndarray) -> None:
        if self.sort_steps and len(steps) > 1 and (steps[1:] < steps[:-1]).any():
            # TensorBoard's Rust loader drops stored points with step >= s when step s arrives
            order = np.argsort(steps, kind="stable")
            steps, walls, values = steps[order], walls[order], values[order]
        self.writer.add_scalars_array(tag, steps, values, wall_times=walls)

    def _write_part(self, part: TagPoints) -> None:
        tag = self._tag(part.tag, part.plugin)
        steps, walls = part.steps, part.wall_times
        if part.plugin == "scalars":
            self._write_scalars(tag, steps, walls, part.values)
        elif part.plugin == "text":
            for step, wall, text in zip(steps.tolist(), walls.tolist(), part.values, strict=True):
                self.writer.add_summary_value(text_value(tag, text), step, wall)
        elif part.plugin == "text_table":
            for step, wall, rows in zip(steps.tolist(), walls.tolist(), part.values, strict=True):
                self.writer.write_event(summary_event([text_table_value(tag, rows)], step, wall))
        elif part.plugin == "images":
            for step, wall, file_name in zip(steps.tolist(), walls.tolist(), part.values, strict=True):
                value = encoded_image_value(tag, self.read_file(file_name))
                self.writer.write_event(summary_event([value], step, wall))


def _fmt(x: Any) -> str:
    if isinstance(x, float) and x.is_integer():
        return str(int(x))
    return str(x)
