"""Reading event files: resumable record/event readers and the vectorized :func:`read_scalars`.

Damage is handled like TensorBoard does, but loudly: a record cut short at the end of a file is a record
still being written, so reading stops before it and a later call resumes there; a CRC mismatch or a record
that does not parse raises :class:`CorruptEventFileError` naming the file and byte offset. Nothing is
skipped silently.

>>> reader = RunReader("runs/exp1")                    # doctest: +SKIP
>>> for event in reader.events(): ...                  # everything so far   # doctest: +SKIP
>>> for event in reader.events(): ...                  # later: only what was appended since  # doctest: +SKIP
>>> read_scalars("runs/exp1")["loss"].values           # doctest: +SKIP
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ._crc import crc32c_rows, length_header, mask_array, masked_crc32c
from ._proto import DecodeError, read_varint
from .events import Event, decode_event

__all__ = [
    "CorruptEventFileError",
    "EventFileReader",
    "RunReader",
    "ScalarSeries",
    "event_files",
    "is_event_file",
    "read_scalars",
]

_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")
_CHUNK = 1 << 24


class CorruptEventFileError(Exception):
    """A record whose CRC does not match, or whose payload is not a valid Event."""

    def __init__(self, path: str | os.PathLike[str], offset: int, reason: str) -> None:
        self.path = str(path)
        self.offset = offset
        self.reason = reason
        super().__init__(f"corrupt event file {self.path} at byte offset {offset}: {reason}")


def is_event_file(name: str) -> bool:
    """TensorBoard's rule: the basename contains "tfevents" (and is not a profiler placeholder)."""
    base = os.path.basename(name)
    return "tfevents" in base and not base.endswith(".profile-empty")


def event_files(run_dir: str | os.PathLike[str]) -> list[Path]:
    """Event files directly in ``run_dir``, in name order (the order TensorBoard reads them)."""
    d = Path(run_dir)
    return sorted((p for p in d.iterdir() if is_event_file(p.name) and p.is_file()), key=lambda p: p.name)


class EventFileReader:
    """Resumable reader of one event file: each call to :meth:`records` / :meth:`events` yields only the
    records completed since the previous call. ``offset`` is where the next record starts."""

    def __init__(self, path: str | os.PathLike[str], offset: int = 0) -> None:
        self.path = Path(path)
        self.offset = offset

    def records(self) -> Iterator[tuple[int, bytes]]:
        """Yield ``(offset, payload)`` of every new complete record, checking both CRCs."""
        try:
            f = open(self.path, "rb")  # noqa: SIM115 - closed in finally, across yields
        except FileNotFoundError:
            return
        try:
            f.seek(self.offset)
            buf, base, pos = b"", self.offset, 0  # base: file offset of buf[0]
            while True:
                if len(buf) - pos >= 12:
                    # header CRC first: a damaged length must not make us wait for bytes forever
                    self._check_header(buf, pos, base)
                    n = _U64.unpack_from(buf, pos)[0]
                    end = pos + 12 + n + 4
                    if end <= len(buf):
                        payload = buf[pos + 12: pos + 12 + n]
                        if _U32.unpack_from(buf, pos + 12 + n)[0] != masked_crc32c(payload):
                            raise CorruptEventFileError(self.path, base + pos, "payload CRC mismatch")
                        rec_offset = base + pos
                        pos = end
                        self.offset = base + pos
                        yield rec_offset, payload
                        continue
                more = f.read(_CHUNK)
                if not more:
                    return  # clean end, or a truncated last record still being written: resume there later
                buf = buf[pos:] + more
                base += pos
                pos = 0
        finally:
            f.close()

    def _check_header(self, buf: bytes, pos: int, base: int) -> None:
        if buf[pos + 8: pos + 12] != length_header(_U64.unpack_from(buf, pos)[0])[8:]:
            raise CorruptEventFileError(self.path, base + pos, "length CRC mismatch")

    def events(self) -> Iterator[Event]:
        """Yield the new records decoded as :class:`Event`."""
        for off, payload in self.records():
            try:
                yield decode_event(payload, off)
            except DecodeError as exc:
                raise CorruptEventFileError(self.path, off, f"invalid Event proto: {exc}") from exc


class RunReader:
    """Resumable reader of every event file directly in a run directory, in name order; new files are
    picked up on each call, and each file continues from its own offset (like TensorBoard's Rust loader)."""

    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        self.run_dir = Path(run_dir)
        self.readers: dict[str, EventFileReader] = {}

    def _files(self) -> list[EventFileReader]:
        if not self.run_dir.is_dir():
            return []
        for p in event_files(self.run_dir):
            if p.name not in self.readers:
                self.readers[p.name] = EventFileReader(p)
        return [self.readers[k] for k in sorted(self.readers)]

    def records(self) -> Iterator[tuple[Path, int, bytes]]:
        """Yield ``(path, offset, payload)`` of every new complete record."""
        for r in self._files():
            for off, payload in r.records():
                yield r.path, off, payload

    def events(self) -> Iterator[Event]:
        for r in self._files():
            yield from r.events()


# --------------------------------------------------------------------------------------------- fast scalars


class ScalarSeries(NamedTuple):
    """The points of one scalar tag, in file order."""

    steps: np.ndarray  # int64
    wall_times: np.ndarray  # float64
    values: np.ndarray  # float64


@dataclass
class _Layout:
    """Byte positions of the varying parts of a one-scalar Event payload."""

    wall: int  # offset of the 8 wall-time bytes, -1 if absent
    step: int  # offset of the step varint, -1 if absent
    step_len: int
    tag: str
    tag_span: tuple[int, int]
    value: int
    value_size: int  # 4 (float32) or 8 (float64)
    tensor: bool  # a tensor value (counts only if the tag's plugin is "scalars")
    plugin: str | None  # plugin_name when the value has metadata


def _scalar_layout(p: bytes) -> _Layout | None:
    """Layout of an Event with exactly one scalar Summary.Value, else None. Any doubt gives None."""
    try:
        n = len(p)
        pos, wall, step, step_len, summ = 0, -1, -1, 0, None
        while pos < n:
            k, pos = read_varint(p, pos, n)
            if k == 0x09 and pos + 8 <= n:
                wall, pos = pos, pos + 8
            elif k == 0x10:
                start = pos
                _, pos = read_varint(p, pos, n)
                step, step_len = start, pos - start
            elif k == 0x2A:
                ln, pos = read_varint(p, pos, n)
                summ, pos = (pos, pos + ln), pos + ln
            else:
                return None
        if summ is None or pos != n:
            return None
        a, b = summ
        if a >= b or p[a] != 0x0A:
            return None
        vl, va = read_varint(p, a + 1, b)
        if va + vl != b:  # more than one value
            return None
        tag_span, value, size, tensor, plugin = (va, va), -1, 0, False, None
        pos, end = va, b
        while pos < end:
            k, pos = read_varint(p, pos, end)
            if k == 0x15 and pos + 4 <= end:
                value, size, pos = pos, 4, pos + 4
            elif k in (0x0A, 0x42, 0x4A):
                ln, pos = read_varint(p, pos, end)
                if pos + ln > end:
                    return None
                if k == 0x0A:
                    tag_span = (pos, pos + ln)
                elif k == 0x4A:
                    plugin = _plugin_name(p, pos, pos + ln)
                else:
                    t = _tensor_scalar(p, pos, pos + ln)
                    if t is None:
                        return None
                    value, size, tensor = t[0], t[1], True
                pos += ln
            else:
                return None
        if value < 0 or pos != end:
            return None
        tag = p[tag_span[0]: tag_span[1]].decode("utf-8")
        return _Layout(wall, step, step_len, tag, tag_span, value, size, tensor, plugin)
    except (DecodeError, UnicodeDecodeError):
        return None


def _plugin_name(p: bytes, a: int, b: int) -> str:
    pos, name = a, ""
    while pos < b:
        k, pos = read_varint(p, pos, b)
        ln, pos = read_varint(p, pos, b) if k & 7 == 2 else (0, pos)
        if k & 7 != 2:
            _, pos = read_varint(p, pos, b) if k & 7 == 0 else (0, pos + (8 if k & 7 == 1 else 4))
            continue
        if k == 0x0A:  # plugin_data
            q, qe = pos, pos + ln
            while q < qe:
                k2, q = read_varint(p, q, qe)
                l2, q = read_varint(p, q, qe)
                if k2 == 0x0A:
                    name = p[q: q + l2].decode("utf-8")
                q += l2
        pos += ln
    return name


def _tensor_scalar(p: bytes, a: int, b: int) -> tuple[int, int] | None:
    """(offset, size) of the single float/double of a rank-0 (or one-element) DT_FLOAT/DT_DOUBLE tensor."""
    pos, dtype, value, size = a, 0, -1, 0
    while pos < b:
        k, pos = read_varint(p, pos, b)
        if k == 0x08:
            dtype, pos = read_varint(p, pos, b)
        elif k in (0x12, 0x22, 0x2A, 0x32):
            ln, pos = read_varint(p, pos, b)
            if k == 0x12:
                q = pos
                while q < pos + ln:  # every dim must have size 1
                    k2, q = read_varint(p, q, pos + ln)
                    l2, q = read_varint(p, q, pos + ln)
                    if k2 != 0x12 or p[q: q + l2] not in (b"\x08\x01", b"\x08\x01\x12\x00"):
                        return None
                    q += l2
            elif value >= 0:
                return None
            else:
                value, size = pos, ln
            pos += ln
        else:
            return None
    if dtype == 1 and size == 4 or dtype == 2 and size == 8:
        return value, size
    return None


class _Collector:
    """Per-tag arrays with the record sequence number of each point, merged in file order at the end."""

    def __init__(self, only_tag: str | None) -> None:
        self.only = only_tag
        self.parts: dict[str, list[tuple[np.ndarray, ...]]] = {}
        self.tensor_parts: dict[str, list[tuple[np.ndarray, ...]]] = {}
        self.plugin: dict[str, tuple[int, str]] = {}  # tag -> (first seq with metadata, plugin name)

    def add(self, tag: str, tensor: bool, seq: np.ndarray, steps: np.ndarray, walls: np.ndarray,
            vals: np.ndarray) -> None:
        if self.only is not None and tag != self.only:
            return
        (self.tensor_parts if tensor else self.parts).setdefault(tag, []).append((seq, steps, walls, vals))

    def metadata(self, tag: str, seq: int, plugin: str) -> None:
        cur = self.plugin.get(tag)
        if cur is None or seq < cur[0]:
            self.plugin[tag] = (seq, plugin)

    def result(self) -> dict[str, ScalarSeries]:
        for tag, parts in self.tensor_parts.items():
            if self.plugin.get(tag, (0, ""))[1] == "scalars":
                self.parts.setdefault(tag, []).extend(parts)
        out = {}
        for tag, parts in self.parts.items():
            seq, steps, walls, vals = (np.concatenate(x) for x in zip(*parts, strict=True))
            if len(seq) > 1 and not (seq[1:] >= seq[:-1]).all():
                order = np.argsort(seq, kind="stable")
                steps, walls, vals = steps[order], walls[order], vals[order]
            out[tag] = ScalarSeries(steps.astype(np.int64, copy=False), walls.astype(np.float64, copy=False),
                                    vals.astype(np.float64, copy=False))
        return out


def _scan(buf: bytes, path: Path) -> list[tuple[int, int, int]]:
    """Split a file into runs ``(start, payload_len, count)`` of consecutive equal-length records.

    Stops before a truncated last record. Runs of equal lengths are found with a strided numpy view.
    """
    n = len(buf)
    segs: list[tuple[int, int, int]] = []
    pos, prev, same, window = 0, -1, 0, 64
    unpack = _U64.unpack_from
    while pos + 12 <= n:
        ln = unpack(buf, pos)[0]
        size = ln + 16
        if pos + size > n:
            if buf[pos + 8: pos + 12] != length_header(ln)[8:]:
                raise CorruptEventFileError(path, pos, "length CRC mismatch")
            break  # truncated last record
        if ln == prev:
            same += 1
            if same >= 3:
                m = min((n - pos) // size, window)
                lens = np.ndarray((m,), dtype="<u8", buffer=buf, offset=pos, strides=(size,))
                eq = lens == ln
                k = m if eq.all() else int(np.argmin(eq))
                segs.append((pos, ln, k))
                pos += k * size
                window = min(window * 4, 1 << 20) if k == m else 64
                same = 0
                prev = ln
                continue
        else:
            same = 0
            window = 64
        segs.append((pos, ln, 1))
        prev = ln
        pos += size
    return segs


def _read_file_scalars(path: Path, col: _Collector, seq0: int) -> int:
    """Collect the scalars of one file; returns the number of records read."""
    with open(path, "rb") as f:
        buf = f.read()
    segs = _scan(buf, path)
    if not segs:
        return 0
    # group rows by payload length; each group is one (m, len + 16) uint8 matrix
    groups: dict[int, list[tuple[int, int, int]]] = {}
    seq = seq0
    for start, ln, k in segs:
        groups.setdefault(ln, []).append((start, k, seq))
        seq += k
    first_bad: tuple[int, str] | None = None
    decoded: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []  # (len, rows, seqs, offsets)
    for ln, runs in groups.items():
        size = ln + 16
        mats = [np.ndarray((k, size), dtype=np.uint8, buffer=buf, offset=start, strides=(size, 1))
                for start, k, _ in runs]
        mat = mats[0] if len(mats) == 1 else np.concatenate(mats)
        seqs = np.concatenate([np.arange(s, s + k, dtype=np.int64) for _, k, s in runs])
        starts = np.concatenate([start + size * np.arange(k, dtype=np.int64) for start, k, _ in runs])
        bad_hdr = (mat[:, 8:12] != np.frombuffer(length_header(ln)[8:], dtype=np.uint8)).any(axis=1)
        crc = mask_array(crc32c_rows(mat[:, 12: 12 + ln]))
        stored = np.ascontiguousarray(mat[:, 12 + ln:]).view("<u4").reshape(-1)
        bad = np.flatnonzero(bad_hdr | (crc != stored))
        if len(bad):
            i = bad[np.argmin(starts[bad])]
            cand = (int(starts[i]), "length CRC mismatch" if bad_hdr[i] else "payload CRC mismatch")
            if first_bad is None or cand[0] < first_bad[0]:
                first_bad = cand
        decoded.append((ln, mat, seqs, starts))
    if first_bad is not None:
        raise CorruptEventFileError(path, first_bad[0], first_bad[1])
    for ln, mat, seqs, starts in decoded:
        _collect_group(path, mat[:, 12: 12 + ln], seqs, starts, col)
    return seq - seq0


def _varint_cols(mat: np.ndarray, off: int, k: int) -> np.ndarray:
    u = np.zeros(len(mat), dtype=np.uint64)
    for j in range(k):
        u |= (mat[:, off + j] & np.uint8(0x7F)).astype(np.uint64) << np.uint64(7 * j)
    return u.view(np.int64)


def _collect_group(path: Path, mat: np.ndarray, seqs: np.ndarray, starts: np.ndarray, col: _Collector) -> None:
    """Decode a group of equal-length payloads, vectorized per shared layout."""
    remaining = np.arange(len(mat))
    slow = 0
    while len(remaining):
        r0 = mat[remaining[0]]
        p0 = r0.tobytes()
        lay = _scalar_layout(p0) if slow < 64 else None
        if lay is None:
            # not a single-scalar event (or too many of those here): decode in Python
            rows = remaining[:1] if slow < 64 else remaining
            for i in rows.tolist():
                _collect_slow(path, mat[i].tobytes(), int(seqs[i]), int(starts[i]), col)
            slow += len(rows)
            remaining = remaining[len(rows):]
            continue
        whole = len(remaining) == len(mat)
        sub = mat if whole else mat[remaining]
        variable = np.zeros(mat.shape[1], dtype=bool)
        if lay.wall >= 0:
            variable[lay.wall: lay.wall + 8] = True
        if lay.step >= 0:
            variable[lay.step: lay.step + lay.step_len] = True
        variable[lay.value: lay.value + lay.value_size] = True
        variable[lay.tag_span[0]: lay.tag_span[1]] = True
        fixed = np.flatnonzero(~variable)
        ok = (sub[:, fixed] == r0[fixed]).all(axis=1)
        for j in range(lay.step_len):
            cont = (sub[:, lay.step + j] & 0x80) != 0
            ok &= cont if j < lay.step_len - 1 else ~cont
        rows = remaining[ok]
        m = sub if whole and len(rows) == len(mat) else mat[rows]
        s = seqs[rows]
        steps = _varint_cols(m, lay.step, lay.step_len) if lay.step >= 0 else np.zeros(len(m), np.int64)
        walls = (np.ascontiguousarray(m[:, lay.wall: lay.wall + 8]).view("<f8").reshape(-1) if lay.wall >= 0
                 else np.zeros(len(m)))
        vals = np.ascontiguousarray(m[:, lay.value: lay.value + lay.value_size]).view(
            "<f4" if lay.value_size == 4 else "<f8").reshape(-1).astype(np.float64)
        a, b = lay.tag_span
        tags = m[:, a:b]
        if b == a or (tags == r0[a:b]).all():
            _add(col, lay, lay.tag, s, steps, walls, vals)
        else:
            for tag_bytes, sel in _split_by_tag(tags):
                try:
                    tag = tag_bytes.decode("utf-8")
                except UnicodeDecodeError:
                    bad_row = rows[sel[0] if isinstance(sel, np.ndarray) else sel.start]
                    raise CorruptEventFileError(path, int(starts[bad_row]), "invalid UTF-8 in a tag") from None
                _add(col, lay, tag, s[sel], steps[sel], walls[sel], vals[sel])
        remaining = remaining[~ok]


def _split_by_tag(tags: np.ndarray) -> list[tuple[bytes, np.ndarray | slice]]:
    """Group rows by their tag bytes, keeping row order within each tag."""
    change = np.flatnonzero((tags[1:] != tags[:-1]).any(axis=1)) + 1
    if len(change) < len(tags) // 8:  # tags come in long runs (bulk-written files): slice the runs
        bounds = [0, *change.tolist(), len(tags)]
        by_tag: dict[bytes, list[tuple[int, int]]] = {}
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
            by_tag.setdefault(tags[lo].tobytes(), []).append((lo, hi))
        return [(k, slice(*v[0]) if len(v) == 1 else np.concatenate([np.arange(lo, hi) for lo, hi in v]))
                for k, v in by_tag.items()]
    keys = np.ascontiguousarray(tags).view(f"V{tags.shape[1]}").reshape(-1)
    uniq, inv = np.unique(keys, return_inverse=True)
    order = np.argsort(inv, kind="stable")
    splits = np.split(order, np.cumsum(np.bincount(inv, minlength=len(uniq)))[:-1])
    return [(bytes(u), idx) for u, idx in zip(uniq, splits, strict=True)]


def _add(col: _Collector, lay: _Layout, tag: str, s: np.ndarray, steps: np.ndarray, walls: np.ndarray,
         vals: np.ndarray) -> None:
    if lay.plugin is not None:
        col.metadata(tag, int(s[0]), lay.plugin)
    col.add(tag, lay.tensor, s, steps, walls, vals)


def _collect_slow(path: Path, payload: bytes, seq: int, offset: int, col: _Collector) -> None:
    try:
        ev = decode_event(payload)
    except DecodeError as exc:
        raise CorruptEventFileError(path, offset, f"invalid Event proto: {exc}") from exc
    for v in ev.summary or ():
        if v.has_metadata:
            col.metadata(v.tag, seq, v.plugin_name)
        x = v.scalar
        if x is None or (v.simple_value is None and v.tensor is not None and v.tensor.dtype not in (1, 2)):
            continue
        one = np.array([seq], dtype=np.int64)
        col.add(v.tag, v.simple_value is None, one, np.array([ev.step], dtype=np.int64),
                np.array([ev.wall_time]), np.array([x]))


def read_scalars(path: str | os.PathLike[str], tag: str | None = None) -> dict[str, ScalarSeries]:
    """All scalar points of an event file, or of every event file directly in a run directory.

    Returns ``{tag: ScalarSeries(steps int64, wall_times float64, values float64)}`` in file order (files in
    name order). Both forms are read: legacy ``simple_value`` and tensors (DT_FLOAT / DT_DOUBLE, in
    ``tensor_content`` or ``float_val``/``double_val``) of tags whose metadata names the "scalars" plugin.
    A truncated last record is ignored; a damaged record raises :class:`CorruptEventFileError`.
    """
    p = Path(path)
    files = event_files(p) if p.is_dir() else [p]
    col = _Collector(tag)
    seq = 0
    for f in files:
        seq += _read_file_scalars(f, col, seq)
    return col.result()
