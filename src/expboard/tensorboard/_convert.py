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

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..records import MetricKind, MetricSeries
from ..tfevents import EventFileWriter, summary_event, text_value

__all__ = ["SeriesConverter", "image_size", "image_value_from_bytes", "text_table_value"]


# --------------------------------------------------------------------------------------------- protobuf bits
def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _f_bytes(field_no: int, data: bytes) -> bytes:
    return _varint(field_no << 3 | 2) + _varint(len(data)) + data


def _f_varint(field_no: int, value: int) -> bytes:
    return _varint(field_no << 3) + _varint(value)


_DT_STRING = 7
_TEXT_METADATA = _f_bytes(1, _f_bytes(1, b"text"))


def image_size(data: bytes) -> tuple[int, int, int]:
    """(height, width, colorspace) from a PNG or JPEG header; (0, 0, 0) when not recognised.

    Colorspace as in ``Summary.Image``: 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA.
    """
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 26 and data[12:16] == b"IHDR":
        width, height = struct.unpack(">II", data[16:24])
        colorspace = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}.get(data[25], 0)
        return height, width, colorspace
    if data[:2] == b"\xff\xd8":  # JPEG: walk the segments up to a start-of-frame marker
        pos = 2
        while pos + 4 <= len(data):
            if data[pos] != 0xFF:
                break
            marker = data[pos + 1]
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
                pos += 2
                continue
            (seg_len,) = struct.unpack(">H", data[pos + 2 : pos + 4])
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC) and pos + 10 <= len(data):
                height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
                components = data[pos + 9]
                return height, width, {1: 1, 3: 3, 4: 4}.get(components, 0)
            pos += 2 + seg_len
    return 0, 0, 0


def image_value_from_bytes(tag: str, data: bytes) -> bytes:
    """A legacy ``Summary.Image`` value holding already-encoded PNG or JPEG bytes."""
    height, width, colorspace = image_size(data)
    img = b""
    if height:
        img += _f_varint(1, height)
    if width:
        img += _f_varint(2, width)
    if colorspace:
        img += _f_varint(3, colorspace)
    img += _f_bytes(4, data)
    return _f_bytes(1, tag.encode()) + _f_bytes(4, img)


def text_table_value(tag: str, rows: Sequence[Sequence[str]]) -> bytes:
    """A text value holding a rank-2 string tensor, which TensorBoard's text plugin renders as a table."""
    n_rows = len(rows)
    n_cols = max((len(r) for r in rows), default=0)
    shape = _f_bytes(2, _f_varint(1, n_rows)) + _f_bytes(2, _f_varint(1, n_cols))
    cells = b"".join(
        _f_bytes(8, (str(r[j]) if j < len(r) else "").encode("utf-8")) for r in rows for j in range(n_cols)
    )
    tensor = _f_varint(1, _DT_STRING) + _f_bytes(2, shape) + cells
    return _f_bytes(1, tag.encode()) + _f_bytes(8, tensor) + _f_bytes(9, _TEXT_METADATA)


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
            value = image_value_from_bytes(self._tag(tag, "images"), data)
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
