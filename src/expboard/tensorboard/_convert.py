"""Metric series -> TensorBoard events: the one mapping shared by ``export_to_tensorboard`` and the live sync.

| metric kind          | TensorBoard                                                                       |
|----------------------|-----------------------------------------------------------------------------------|
| scalar (``log``)     | numbers and bools: scalar ``name``; strings: text ``name``; None: skipped           |
| list (``log_list``)  | scalar ``name`` (element i at step i), strings as text                             |
| row (``log_row``)    | per column: scalar ``name/column`` at the row's step (text for non-numbers)         |
| table (``log_table``)| per column: scalar ``name/column``, step = row index over every table of the name   |
| image (``log_image``)| image ``name`` (the stored PNG/JPEG as is; width/height read from its header)       |
| confusion matrix     | text ``name`` holding a 2-D table (rendered as an HTML table by the text plugin)    |

Steps and wall times are the stored ones. Here lives the only protobuf encoding this package does itself:
an image value from already-encoded bytes and a rank-2 text tensor (``expboard.tfevents`` builds images from
arrays and text of rank 0/1 only).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..records import MetricKind, MetricSeries
from ..tfevents import EventFileWriter, encoded_image_value, summary_event, text_table_value, text_value

__all__ = ["SeriesConverter"]


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
    steps: list[np.ndarray] = field(default_factory=list)  # written steps, for step-filtered re-reads
    max_step: int | None = None
    last_update: int = 0  # poll number of the last new point


class SeriesConverter:
    """Writes metric series to an :class:`EventFileWriter`, remembering per series how much was written.

    ``read_file(name) -> bytes`` reads a run file (images logged with ``log_image``).
    """

    def __init__(self, writer: EventFileWriter, read_file: Callable[[str], bytes], *, sort_steps: bool = False) -> None:
        self.writer = writer
        self.read_file = read_file
        self.sort_steps = sort_steps
        self.states: dict[str, _SeriesState] = {}
        self.points = 0
        self._tag_plugins: dict[str, str] = {}

    def _tag(self, tag: str, plugin: str) -> str:
        """TensorBoard keeps the first plugin seen per tag: a series mixing numbers and strings keeps the
        plugin it started with on ``tag``; the other kind goes to ``tag/text`` (or ``tag/value``)."""
        first = self._tag_plugins.setdefault(tag, plugin)
        if first == plugin:
            return tag
        other = f"{tag}/{'text' if plugin == 'text' else 'value'}"
        self._tag_plugins.setdefault(other, plugin)
        return other

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
        values = series.values[start:]
        st = self.state(series.name)
        kind = series.kind
        if kind in (MetricKind.SCALAR, MetricKind.LIST):
            self._scalars(series.name, steps, walls, values)
        elif kind is MetricKind.ROW:
            self._rows(series.name, steps, walls, values)
        elif kind is MetricKind.TABLE:
            self._tables(series.name, walls, values, st)
        elif kind is MetricKind.IMAGE:
            self._images(series.name, steps, walls, values)
        elif kind is MetricKind.CONFUSION_MATRIX:
            self._confusion(series.name, steps, walls, values)
        st.count += n
        st.steps.append(steps)
        top = int(steps.max())
        st.max_step = top if st.max_step is None else max(st.max_step, top)
        st.last_update = poll
        self.points += n
        return n

    # --- per kind ---------------------------------------------------------------------------------
    def _scalar_array(self, tag: str, steps: np.ndarray, walls: np.ndarray, values: np.ndarray) -> None:
        if not len(steps):
            return
        if self.sort_steps and len(steps) > 1 and np.any(np.diff(steps) < 0):
            # TensorBoard's Rust loader drops stored points with step >= s when step s arrives
            order = np.argsort(steps, kind="stable")
            steps, walls, values = steps[order], walls[order], values[order]
        self.writer.add_scalars_array(
            self._tag(tag, "scalars"), steps, np.asarray(values, dtype=np.float64), wall_times=walls
        )

    def _scalars(self, tag: str, steps: np.ndarray, walls: np.ndarray, values: Any) -> None:
        if isinstance(values, np.ndarray) and values.dtype.kind in "fiub":
            self._scalar_array(tag, steps, walls, values)
            return
        values = list(values)
        numeric = np.array([_is_number(v) for v in values], dtype=bool)
        if numeric.any():
            nums = np.array([float(v) for v, ok in zip(values, numeric, strict=True) if ok], dtype=np.float64)
            self._scalar_array(tag, steps[numeric], walls[numeric], nums)
        for i in np.flatnonzero(~numeric):
            v = values[i]
            if v is not None:
                text_tag = self._tag(tag, "text")
                self.writer.add_summary_value(text_value(text_tag, _text(v)), int(steps[i]), float(walls[i]))

    def _column(self, tag: str, steps: np.ndarray, walls: np.ndarray, column: list[Any]) -> None:
        self._scalars(tag, steps, walls, column)

    def _rows(self, name: str, steps: np.ndarray, walls: np.ndarray, rows: Sequence[dict[str, Any]]) -> None:
        columns: dict[str, list[int]] = {}
        for i, row in enumerate(rows):
            for col in row:
                columns.setdefault(col, []).append(i)
        for col, idx in columns.items():
            ix = np.asarray(idx, dtype=np.int64)
            self._column(f"{name}/{col}", steps[ix], walls[ix], [rows[i][col] for i in idx])

    def _tables(self, name: str, walls: np.ndarray, tables: Sequence[dict[str, list[Any]]], st: _SeriesState) -> None:
        per_col: dict[str, tuple[list[int], list[float], list[Any]]] = {}
        row = st.table_rows
        for wall, table in zip(walls.tolist(), tables, strict=True):
            length = max((len(c) for c in table.values()), default=0)
            for col, items in table.items():
                s, w, v = per_col.setdefault(col, ([], [], []))
                s.extend(range(row, row + len(items)))
                w.extend([wall] * len(items))
                v.extend(items)
            row += length
        st.table_rows = row
        for col, (s, w, v) in per_col.items():
            self._column(f"{name}/{col}", np.asarray(s, dtype=np.int64), np.asarray(w, dtype=np.float64), v)

    def _images(self, tag: str, steps: np.ndarray, walls: np.ndarray, names: Sequence[str]) -> None:
        for step, wall, file_name in zip(steps.tolist(), walls.tolist(), names, strict=True):
            data = self.read_file(str(file_name))
            value = encoded_image_value(self._tag(tag, "images"), data)
            self.writer.write_event(summary_event([value], step, wall))

    def _confusion(self, tag: str, steps: np.ndarray, walls: np.ndarray, matrices: Sequence[Any]) -> None:
        for step, wall, cm in zip(steps.tolist(), walls.tolist(), matrices, strict=True):
            data = cm.get("data", cm) if isinstance(cm, dict) else {"matrix": cm}
            matrix = data.get("matrix") or []
            labels = data.get("class_labels") or [str(i) for i in range(len(matrix))]
            rows = [["true \\ predicted", *map(str, labels)]]
            rows += [[str(label), *(_fmt(x) for x in r)] for label, r in zip(labels, matrix, strict=False)]
            self.writer.write_event(summary_event([text_table_value(self._tag(tag, "text"), rows)], step, wall))


def _fmt(x: Any) -> str:
    if isinstance(x, float) and x.is_integer():
        return str(int(x))
    return str(x)
