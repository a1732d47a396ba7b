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
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple, overload

import numpy as np

from ..errors import CorruptEventFileError
from ._crc import _byte_table, crc32c, length_header, mask_array, masked_crc32c
from ._proto import DecodeError, read_varint
from .events import Event, decode_event, parse_event, proto_value_scalar

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
                        payload = buf[pos + 12 : pos + 12 + n]
                        if _U32.unpack_from(buf, pos + 12 + n)[0] != masked_crc32c(payload):
                            raise CorruptEventFileError(self.path, base + pos, "payload CRC mismatch")
                        rec_offset = base + pos
                        pos = end
                        self.offset = base + pos
                        yield rec_offset, payload
                        continue
                left = os.fstat(f.fileno()).st_size - f.tell()  # never ask for more than the file holds
                more = f.read(min(_CHUNK, left)) if left > 0 else b""
                if not more:
                    return  # clean end, or a truncated last record still being written: resume there later
                buf = buf[pos:] + more
                base += pos
                pos = 0
        finally:
            f.close()

    def _check_header(self, buf: bytes, pos: int, base: int) -> None:
        if buf[pos + 8 : pos + 12] != length_header(_U64.unpack_from(buf, pos)[0])[8:]:
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


class _NotFast(Exception):
    """The payload is not in the canonical single-scalar form the vectorized path reads (protobuf decides)."""


def _key(p: bytes, pos: int, end: int) -> tuple[int, int]:
    """A one-byte field key (every key the fast path knows is one byte; longer ones go to protobuf)."""
    if pos >= end or p[pos] >= 0x80:
        raise _NotFast
    return p[pos], pos + 1


def _length(p: bytes, pos: int, end: int) -> tuple[int, int]:
    """A minimally encoded length of at most 4 bytes whose content lies within ``end``."""
    ln, q = read_varint(p, pos, end)
    if q - pos > 4 or (q - pos > 1 and p[q - 1] == 0) or q + ln > end:
        raise _NotFast
    return ln, q


def _scalar_layout(p: bytes) -> _Layout | None:
    """Layout of an Event with exactly one scalar Summary.Value in canonical form, else None.

    Any doubt gives None, and the record is decoded by protobuf instead: a field that appears twice (protobuf
    merges messages, concatenates repeated fields and lets the last oneof member win), a key or length
    encoded in more bytes than needed, a field the layout does not know, or a string that is not UTF-8.
    """
    try:
        n = len(p)
        pos, wall, step, step_len, summ = 0, -1, -1, 0, None
        while pos < n:
            k, pos = _key(p, pos, n)
            if k == 0x09 and pos + 8 <= n:
                wall, pos = pos, pos + 8
            elif k == 0x10:
                start = pos
                _, pos = read_varint(p, pos, n)
                step, step_len = start, pos - start
            elif k == 0x2A and summ is None:
                ln, pos = _length(p, pos, n)
                summ, pos = (pos, pos + ln), pos + ln
            else:
                return None
        if summ is None:
            return None
        a, b = summ
        k, va = _key(p, a, b)
        if k != 0x0A:
            return None
        vl, va = _length(p, va, b)
        if va + vl != b:  # more than one value
            return None
        tag_span, value, size, tensor, plugin = (va, va), -1, 0, False, None
        pos, end, seen = va, b, set()
        while pos < end:
            k, pos = _key(p, pos, end)
            if k in seen:
                return None
            seen.add(k)
            if k == 0x15 and pos + 4 <= end:
                value, size, pos = pos, 4, pos + 4
            elif k in (0x0A, 0x42, 0x4A):
                ln, pos = _length(p, pos, end)
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
        if value < 0 or {0x15, 0x42} <= seen:  # no value, or both members of the oneof
            return None
        tag = p[tag_span[0] : tag_span[1]].decode("utf-8")
        return _Layout(wall, step, step_len, tag, tag_span, value, size, tensor, plugin)
    except (_NotFast, DecodeError, UnicodeDecodeError):
        return None


def _plugin_name(p: bytes, a: int, b: int) -> str:
    """The plugin name of a canonical SummaryMetadata (each field at most once, strings UTF-8)."""
    pos, name, seen = a, "", set()
    while pos < b:
        k, pos = _key(p, pos, b)
        if k in seen:
            raise _NotFast
        seen.add(k)
        if k == 0x20:  # data_class
            _, pos = read_varint(p, pos, b)
            continue
        if k not in (0x0A, 0x12, 0x1A):
            raise _NotFast
        ln, pos = _length(p, pos, b)
        if k == 0x0A:  # plugin_data {plugin_name = 1, content = 2}
            q, qe, inner = pos, pos + ln, set()
            while q < qe:
                k2, q = _key(p, q, qe)
                if k2 in inner or k2 not in (0x0A, 0x12):
                    raise _NotFast
                inner.add(k2)
                l2, q = _length(p, q, qe)
                if k2 == 0x0A:
                    name = p[q : q + l2].decode("utf-8")
                q += l2
        else:  # display_name, summary_description: strings protobuf checks
            p[pos : pos + ln].decode("utf-8")
        pos += ln
    return name


def _tensor_scalar(p: bytes, a: int, b: int) -> tuple[int, int] | None:
    """(offset, size) of the single value of a one-element DT_FLOAT/DT_DOUBLE tensor in canonical form: the
    value in ``tensor_content`` or in the dtype's own packed field (float_val / double_val), nothing else."""
    pos, dtype, value, size, where, seen = a, 0, -1, 0, 0, set()
    while pos < b:
        k, pos = _key(p, pos, b)
        if k in seen:
            return None
        seen.add(k)
        if k == 0x08:
            dtype, pos = read_varint(p, pos, b)
        elif k in (0x12, 0x22, 0x2A, 0x32):
            ln, pos = _length(p, pos, b)
            if k == 0x12:
                q = pos
                while q < pos + ln:  # every dim must have size 1
                    k2, q = _key(p, q, pos + ln)
                    l2, q = _length(p, q, pos + ln)
                    if k2 != 0x12 or p[q : q + l2] not in (b"\x08\x01", b"\x08\x01\x12\x00"):
                        return None
                    q += l2
            elif value >= 0:
                return None
            else:
                value, size, where = pos, ln, k
            pos += ln
        else:
            return None
    if where == 0x22 and (dtype == 1 and size == 4 or dtype == 2 and size == 8):
        return value, size
    if where == 0x2A and dtype == 1 and size == 4 or where == 0x32 and dtype == 2 and size == 8:
        return value, size
    return None


_BLOCK = 1 << 17  # rows decoded per vectorized pass (fewer passes, fewer per-tag groups when tags interleave)
_MIN_CYCLES = 32  # a repeating pattern of record lengths becomes strided views once it repeats this often
_GATHER_RUN = 4096  # shorter runs of one length are copied together with others of their length
_MAX_SLOW = 64  # rows of one block decoded one at a time before the rest of the block is, too
_UINT = {8: "<u8", 4: "<u4", 2: "<u2", 1: "u1"}


class _Collector:
    """Per-tag arrays with the record sequence number of each point, merged in file order at the end.

    Damage found while reading a file goes to ``errors`` as ``(offset, reason)``; the earliest one is raised.
    """

    def __init__(self, only_tag: str | None) -> None:
        self.only = only_tag
        # (sequence numbers, steps, wall times, values) per tag; sequence numbers may be a _Progression
        self.parts: dict[str, list[tuple[Any, ...]]] = {}
        self.tensor_parts: dict[str, list[tuple[Any, ...]]] = {}
        self.plugin: dict[str, tuple[int, str]] = {}  # tag -> (first seq with metadata, plugin name)
        self.names: dict[bytes, str] = {}  # tag bytes -> decoded tag, decoded once
        self.errors: list[tuple[int, str]] = []

    def tag_name(self, raw: bytes) -> str | None:
        name = self.names.get(raw)
        if name is None:
            try:
                name = self.names[raw] = raw.decode("utf-8")
            except UnicodeDecodeError:
                return None
        return name

    def add(
        self,
        tag: str,
        tensor: bool,
        seq: np.ndarray | _Progression,
        steps: np.ndarray,
        walls: np.ndarray,
        vals: np.ndarray,
    ) -> None:
        if self.only is not None and tag != self.only or not len(seq):
            return
        (self.tensor_parts if tensor else self.parts).setdefault(tag, []).append((seq, steps, walls, vals))

    def metadata(self, tag: str, seq: int, plugin: str) -> None:
        cur = self.plugin.get(tag)
        if cur is None or seq < cur[0]:
            self.plugin[tag] = (seq, plugin)

    def checkpoint(self) -> tuple[dict[str, list[tuple[Any, ...]]], dict[str, list[tuple[Any, ...]]], dict[str, Any]]:
        """What has been collected so far, to :meth:`restore` it after a damaged file."""
        return (
            {k: list(v) for k, v in self.parts.items()},
            {k: list(v) for k, v in self.tensor_parts.items()},
            dict(self.plugin),
        )

    def restore(
        self, saved: tuple[dict[str, list[tuple[Any, ...]]], dict[str, list[tuple[Any, ...]]], dict[str, Any]]
    ) -> None:
        self.parts, self.tensor_parts, self.plugin = saved[0], saved[1], saved[2]

    def raise_first_error(self, path: Path) -> None:
        if self.errors:
            offset, reason = min(self.errors)
            raise CorruptEventFileError(path, offset, reason)

    def result(self) -> dict[str, ScalarSeries]:
        for tag, parts in self.tensor_parts.items():
            if self.plugin.get(tag, (0, ""))[1] == "scalars":
                self.parts.setdefault(tag, []).extend(parts)
        out = {}
        for tag, parts in self.parts.items():
            # each part is in file order already; parts that follow each other need no sort
            parts.sort(key=lambda q: int(q[0][0]))
            if all(a[0][-1] < b[0][0] for a, b in zip(parts, parts[1:], strict=False)):
                steps, walls, vals = (
                    np.concatenate(x) if len(parts) > 1 else np.ascontiguousarray(x[0])
                    for x in list(zip(*parts, strict=True))[1:]
                )
            else:
                seq, steps, walls, vals = (np.concatenate([np.asarray(a) for a in x]) for x in zip(*parts, strict=True))
                order = np.argsort(seq, kind="stable")
                steps, walls, vals = steps[order], walls[order], vals[order]
            out[tag] = ScalarSeries(
                steps.astype(np.int64, copy=False),
                walls.astype(np.float64, copy=False),
                vals.astype(np.float64, copy=False),
            )
        return out


class _Progression:
    """``start + step * i`` for ``i < n``: indexed like the int64 array it stands for, without building it."""

    __slots__ = ("n", "start", "step")

    def __init__(self, start: int, step: int, n: int) -> None:
        self.start, self.step, self.n = start, step, n

    def __len__(self) -> int:
        return self.n

    @overload
    def __getitem__(self, i: int | np.integer[Any]) -> int: ...
    @overload
    def __getitem__(self, i: slice) -> _Progression: ...
    @overload
    def __getitem__(self, i: np.ndarray) -> np.ndarray: ...
    @overload
    def __getitem__(self, i: slice | np.ndarray) -> _Progression | np.ndarray: ...
    def __getitem__(self, i: int | np.integer[Any] | slice | np.ndarray) -> int | np.ndarray | _Progression:
        if isinstance(i, slice):
            lo, hi, st = i.indices(self.n)
            return _Progression(self.start + lo * self.step, self.step * st, len(range(lo, hi, st)))
        if isinstance(i, np.ndarray):
            return self.start + self.step * i.astype(np.int64)
        return self.start + self.step * (int(i) if i >= 0 else self.n + int(i))

    def __array__(self, dtype: object = None, copy: object = None) -> np.ndarray:
        return self.start + self.step * np.arange(self.n, dtype=np.int64)


class _Chunk(NamedTuple):
    """``k`` records of one payload length, ``stride`` bytes apart in ``buf`` (the file, or a copy)."""

    buf: bytes
    base: int  # where row 0 starts in buf
    stride: int
    k: int
    ln: int  # payload length
    seq: np.ndarray | _Progression  # record sequence numbers (file order)
    off: np.ndarray | _Progression  # file offsets

    def rows(self, lo: int, hi: int, step: int = 1) -> _Chunk:
        return _Chunk(
            self.buf,
            self.base + lo * self.stride,
            self.stride * step,
            len(range(lo, hi, step)),
            self.ln,
            self.seq[lo:hi:step],
            self.off[lo:hi:step],
        )

    def column(self, dtype: str, col: int, m: int | None = None) -> np.ndarray:
        """One field of every row (``col`` counts from the record start) as a strided view, no copy."""
        view: np.ndarray = np.ndarray(
            (self.k if m is None else m,), dtype=dtype, buffer=self.buf, offset=self.base + col, strides=(self.stride,)
        )
        return view

    def payload(self, r: int) -> bytes:
        at = self.base + r * self.stride + 12
        return self.buf[at : at + self.ln]


def _repeats(buf: bytes, pos: int, cycle: int, pattern: list[int]) -> int:
    """How many whole cycles of ``cycle`` bytes from ``pos`` on hold records of the lengths in ``pattern``."""
    n, p = len(buf), len(pattern)
    offs = np.cumsum([0] + [ln + 16 for ln in pattern[:-1]])
    want = np.array(pattern, dtype=np.uint64)
    total, window = 0, max(4, 256 // p)
    while (m := min((n - pos) // cycle, window)) > 0:
        # row r, column c: the 8 bytes at pos + r * cycle + c (each record is >= 16 bytes, so c + 8 <= cycle)
        lens = np.ndarray((m, cycle - 7), dtype="<u8", buffer=buf, offset=pos, strides=(cycle, 1))
        eq = (lens[:, offs] == want).all(axis=1)
        if not eq.all():
            return total + int(np.argmin(eq))
        total, pos, window = total + m, pos + m * cycle, min(window * 4, max(1, (1 << 20) // p))
    return total


def _frame(buf: bytes, seq0: int, errors: list[tuple[int, str]]) -> tuple[list[_Chunk], int]:
    """Split a file into chunks of equal-length records; returns them and the number of records.

    Records are walked one by one until the lengths of the last records repeat with some period (one tag:
    every record has the same length; many tags written step by step: the step's records). The repeats
    ahead are then confirmed with one vectorized comparison per window, and each position in the cycle
    becomes a strided chunk. Reading stops before a truncated last record (its length CRC must be right).
    """
    n = len(buf)
    unpack = _U64.unpack_from
    chunks: list[_Chunk] = []
    # records copied together later, by payload length: (offset, count, seq) of single records and short runs
    gather: dict[int, list[tuple[int, int, int]]] = {}
    hist_pos: list[int] = []  # records walked since the last chunked stretch
    hist_len: list[int] = []
    hist_prev: list[int] = []  # index in hist of the previous record with the same (previous length, length)
    last: dict[tuple[int, int], int] = {}  # (previous length, length) -> latest index in hist
    seq, pos, cool = seq0, 0, 0  # seq: sequence number of hist[0]
    while pos + 12 <= n:
        ln = unpack(buf, pos)[0]
        if pos + ln + 16 > n:
            if buf[pos + 8 : pos + 12] != length_header(ln)[8:]:
                errors.append((pos, "length CRC mismatch"))
            break  # truncated last record: not yet written
        i = len(hist_len)
        hist_pos.append(pos)
        hist_len.append(ln)
        pos += ln + 16
        key = (hist_len[i - 1], ln) if i else (-1, ln)
        j = last.get(key, -1)
        last[key] = i
        hist_prev.append(j)
        if j < 0 or i < cool:
            continue
        # candidate periods: distances back to the last few records that followed the same length
        h, cycles, tries, hops = i + 1, 0, 0, 0
        while j >= 0 and hops < 8:
            p, hops = i - j, hops + 1
            r = max(2 * p, 16)
            if h < r + p:
                break
            if hist_len[h - r :] == hist_len[h - r - p : h - p]:
                pattern = hist_len[h - p :]
                cycle = sum(pattern) + 16 * p
                have = (r + p) // p
                cycles = have + _repeats(buf, pos, cycle, pattern)
                if cycles >= _MIN_CYCLES:
                    break
                tries += 1
            j = hist_prev[j]
        if cycles < _MIN_CYCLES:
            if tries or hops >= 8:  # no pattern, or one that did not last: walk on a while before looking again
                cool = i + 32
            continue
        first = h - have * p
        for q, ql in zip(hist_pos[:first], hist_len[:first], strict=True):
            gather.setdefault(ql, []).append((q, 1, seq))
            seq += 1
        start = hist_pos[first]
        at = start
        if p == 1 and cycles < _GATHER_RUN:  # a short run of one length (a tag's steps between varint sizes)
            gather.setdefault(pattern[0], []).append((start, cycles, seq))
            pattern = []
        for j, ql in enumerate(pattern):
            chunks.append(
                _Chunk(
                    buf,
                    at,
                    cycle,
                    cycles,
                    ql,
                    _Progression(seq + j, p, cycles),
                    _Progression(at, cycle, cycles),
                )
            )
            at += ql + 16
        pos = start + cycles * cycle
        seq += cycles * p
        hist_pos, hist_len, hist_prev, last, cool = [], [], [], {}, 0
    for q, ql in zip(hist_pos, hist_len, strict=True):
        gather.setdefault(ql, []).append((q, 1, seq))
        seq += 1
    view = memoryview(buf)
    for ln, runs in gather.items():
        size = ln + 16
        rows = b"".join([view[q : q + c * size] for q, c, _ in runs])
        q0, counts, s0 = (np.array(x, dtype=np.int64) for x in zip(*runs, strict=True))
        k = int(counts.sum())
        within = np.arange(k, dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
        offs, seqs = np.repeat(q0, counts) + size * within, np.repeat(s0, counts) + within
        chunks.append(_Chunk(rows, 0, size, k, ln, seqs, offs))
    return chunks, seq - seq0


def _cover(a: int, b: int) -> list[tuple[str, int]]:
    """Unsigned-integer fields (dtype, offset) of one width that together cover bytes [a, b), maybe overlapping."""
    if b <= a:
        return []
    w = 8 if b - a >= 8 else 4 if b - a >= 4 else 2 if b - a >= 2 else 1
    cols = list(range(a, b - w + 1, w))
    if cols[-1] != b - w:
        cols.append(b - w)
    return [(_UINT[w], c) for c in cols]


def _all_equal(fields: list[np.ndarray], other: list[np.ndarray] | list[int]) -> np.ndarray:
    eq: np.ndarray = fields[0] == other[0]
    for f, o in zip(fields[1:], other[1:], strict=True):
        eq &= f == o
    return eq


def _tag_groups(fields: list[np.ndarray], m: int) -> tuple[list[tuple[int, slice | np.ndarray]], bool]:
    """Rows grouped by tag as ``(first row, rows)``: one tag, runs of tags, a repeating cycle (then the flag
    is true and group j holds rows j, j + P, ...) or any order."""
    if not fields:
        return [(0, slice(None))], False
    same = _all_equal(fields, [f[0] for f in fields])
    if same.all():
        return [(0, slice(None))], False
    change = _all_equal([f[1:] for f in fields], [f[:-1] for f in fields])
    bounds = np.flatnonzero(~change) + 1
    if len(bounds) < m // 16:
        edges = [0, *bounds.tolist(), m]
        return [(lo, slice(lo, hi)) for lo, hi in zip(edges[:-1], edges[1:], strict=True)], False
    cand = np.flatnonzero(same)
    if len(cand) > 1 and 2 * cand[1] <= m:
        p = int(cand[1])
        if _all_equal([f[p:] for f in fields], [f[:-p] for f in fields]).all():
            return [(j, slice(j, None, p)) for j in range(p)], True
    keys = np.ascontiguousarray(np.stack(fields, axis=1))
    keys = keys.view(f"V{keys.shape[1] * keys.itemsize}").reshape(-1)
    _, first, inv = np.unique(keys, return_index=True, return_inverse=True)
    order = np.argsort(inv, kind="stable")
    splits = np.split(order, np.cumsum(np.bincount(inv))[:-1])
    return [(int(f), idx) for f, idx in zip(first, splits, strict=True)], False


@lru_cache(maxsize=256)  # 256 KiB each: at most 64 MiB kept between calls
def _pair_table(distance: int) -> np.ndarray:
    """CRC32C contribution of a little-endian uint16 whose first byte is followed by ``distance`` bytes."""
    lo, hi = _byte_table(distance), _byte_table(distance - 1)
    out: np.ndarray = (hi[:, None] ^ lo[None, :]).reshape(-1)
    out.setflags(write=False)
    return out


@lru_cache(maxsize=65536)
def _tag_crc(raw: bytes, after: int) -> int:
    """Linear CRC32C contribution of ``raw`` followed by ``after`` more bytes."""
    return crc32c(raw + bytes(after)) ^ crc32c(bytes(len(raw) + after))


def _zeroed(p0: bytes, varying: tuple[tuple[int, int], ...]) -> bytes:
    tmpl = bytearray(p0)
    for a, n in varying:
        tmpl[a : a + n] = bytes(n)
    return bytes(tmpl)


@lru_cache(maxsize=1024)
def _template(
    tmpl: bytes, varying: tuple[tuple[int, int], ...], skip: tuple[int, int]
) -> tuple[int, list[tuple[str, int, Any]]]:
    """CRC32C of a payload whose varying spans are zeroed, and the fields every row must share with it
    (outside the varying spans and ``skip``, the tag) as ``(dtype, offset, value)``."""
    fixed = [True] * len(tmpl)
    for a, n in (*varying, (skip[0], skip[1] - skip[0])):
        fixed[a : a + n] = [False] * n
    pieces, c = [], 0
    while c < len(tmpl):
        if not fixed[c]:
            c += 1
            continue
        e = c
        while e < len(tmpl) and fixed[e]:
            e += 1
        pieces += [(dt, o, np.frombuffer(tmpl, dtype=dt, count=1, offset=o)[0]) for dt, o in _cover(c, e)]
        c = e
    return crc32c(tmpl), pieces


def _process(ch: _Chunk, path: Path, col: _Collector) -> None:
    for lo in range(0, ch.k, _BLOCK):
        _decode_block(ch if ch.k <= _BLOCK else ch.rows(lo, min(ch.k, lo + _BLOCK)), path, col)


def _decode_block(ch: _Chunk, path: Path, col: _Collector) -> None:
    """Check and decode a block of equal-length records, vectorized per shared layout."""
    hdr_bad = ch.column("<u4", 8) != np.uint32(_U32.unpack_from(length_header(ch.ln), 8)[0])
    if hdr_bad.any():
        col.errors.append((int(ch.off[np.argmax(hdr_bad)]), "length CRC mismatch"))
    stored = ch.column("<u4", 12 + ch.ln)
    rem: np.ndarray | None = None  # rows still to decode; None: all
    slow = 0
    while rem is None or len(rem):
        r0 = 0 if rem is None else int(rem[0])
        lay = _scalar_layout(ch.payload(r0)) if slow < _MAX_SLOW else None
        if lay is None:  # not a single-scalar event (or too many of those here): decode in Python
            rows = [r0] if slow < _MAX_SLOW else (range(ch.k) if rem is None else rem.tolist())
            for r in rows:
                _collect_slow(path, ch.payload(r), int(ch.seq[r]), int(ch.off[r]), int(stored[r]), col)
            slow += len(rows)
            rem = np.zeros(0, np.int64) if len(rows) > 1 else np.arange(1, ch.k) if rem is None else rem[1:]
            continue
        rem = _decode_layout(ch, lay, rem, stored, col)


def _decode_layout(ch: _Chunk, lay: _Layout, rem: np.ndarray | None, stored: np.ndarray, col: _Collector) -> np.ndarray:
    """Decode the rows (of ``rem``) laid out like their first; returns the rows that are not."""
    p0 = ch.payload(0 if rem is None else int(rem[0]))

    def field(dtype: str, c: int, rows: np.ndarray | None) -> np.ndarray:
        v = ch.column(dtype, 12 + c)
        return v if rows is None else v[rows]

    varying = (
        (lay.wall, 8) if lay.wall >= 0 else (0, 0),
        (lay.step, lay.step_len) if lay.step >= 0 else (0, 0),
        (lay.value, lay.value_size),
    )
    tmpl = _zeroed(p0, varying)
    # templates of long payloads (long tags) are not kept between calls: memory stays bounded
    template = _template if len(tmpl) <= 4096 else _template.__wrapped__
    tmpl_crc, pieces = template(tmpl, varying, lay.tag_span)
    ok = np.ones(ch.k if rem is None else len(rem), dtype=bool)
    for dt, c, want in pieces:
        ok &= field(dt, c, rem) == want
    for j in range(lay.step_len if lay.step >= 0 else 0):
        cont = field("u1", lay.step + j, rem) >= 0x80
        ok &= cont if j < lay.step_len - 1 else ~cont
    if ok.all():
        rows, rest = rem, np.zeros(0, np.int64)
    else:
        every = np.arange(ch.k) if rem is None else rem
        rows, rest = every[ok], every[~ok]
    m = ch.k if rows is None else len(rows)
    seqs = ch.seq if rows is None else ch.seq[rows]
    offs = ch.off if rows is None else ch.off[rows]
    # CRC of each payload: the template's, xor the contribution of each varying byte (pairs via 64K tables)
    crc = np.full(m, tmpl_crc, dtype=np.uint32)
    for a, n in varying:
        for c in range(a, a + n - 1, 2):
            crc ^= _pair_table(ch.ln - 1 - c)[field("<u2", c, rows)]
        if n % 2:
            crc ^= _byte_table(ch.ln - a - n)[field("u1", a + n - 1, rows)]
    ta, tb = lay.tag_span
    groups, cyclic = _tag_groups([field(dt, c, rows) for dt, c in _cover(ta, tb)], m)
    base_raw = p0[ta:tb]
    raws = [ch.payload(first if rows is None else int(rows[first]))[ta:tb] for first, _ in groups]
    if len(groups) > 1:  # tags other than the template's: xor their bytes' contribution in
        tag_crc = _tag_crc if tb - ta <= 256 else _tag_crc.__wrapped__
        deltas = [tag_crc(raw, ch.ln - tb) ^ tag_crc(base_raw, ch.ln - tb) for raw in raws]
        if cyclic:
            crc ^= np.resize(np.array(deltas, dtype=np.uint32), m)
        else:
            for (_, sel), d in zip(groups, deltas, strict=True):
                if d:
                    crc[sel] ^= np.uint32(d)
    bad = mask_array(crc) != (stored if rows is None else stored[rows])
    if bad.any():
        col.errors.append((int(offs[np.argmax(bad)]), "payload CRC mismatch"))
    if lay.step < 0:
        steps = np.zeros(m, dtype=np.int64)
    elif lay.step_len == 1:
        steps = field("u1", lay.step, rows).astype(np.int64)
    elif lay.step_len == 2:
        u = field("<u2", lay.step, rows).astype(np.int64)
        steps = (u & 0x7F) | ((u >> 8) << 7)
    else:
        u = np.zeros(m, dtype=np.uint64)
        for j in range(lay.step_len):
            u |= (field("u1", lay.step + j, rows) & np.uint8(0x7F)).astype(np.uint64) << np.uint64(7 * j)
        steps = u.view(np.int64)
    walls = field("<f8", lay.wall, rows).astype(np.float64) if lay.wall >= 0 else np.zeros(m)
    with np.errstate(invalid="ignore"):  # a signalling NaN stays a NaN, without a warning
        vals = field("<f4" if lay.value_size == 4 else "<f8", lay.value, rows).astype(np.float64)
    for (first, sel), raw in zip(groups, raws, strict=True):
        tag = col.tag_name(raw)
        if tag is None:
            col.errors.append((int(offs[first]), "invalid UTF-8 in a tag"))
            continue
        s = seqs[sel]
        if lay.plugin is not None:
            col.metadata(tag, int(s[0]), lay.plugin)
        col.add(tag, lay.tensor, s, steps[sel], walls[sel], vals[sel])
    return rest


def _collect_slow(path: Path, payload: bytes, seq: int, offset: int, stored: int, col: _Collector) -> None:
    """One record the vectorized path does not read, decoded by protobuf."""
    if masked_crc32c(payload) != stored:
        col.errors.append((offset, "payload CRC mismatch"))
        return
    try:
        ev = parse_event(payload)
    except DecodeError as exc:
        col.errors.append((offset, f"invalid Event proto: {exc}"))
        return
    if ev.WhichOneof("what") != "summary":
        return
    for v in ev.summary.value:
        if v.HasField("metadata"):
            col.metadata(v.tag, seq, v.metadata.plugin_data.plugin_name)
        got = proto_value_scalar(v)
        if got is None:
            continue
        one = np.array([seq], dtype=np.int64)
        col.add(
            v.tag,
            got[1],
            one,
            np.array([ev.step], dtype=np.int64),
            np.array([ev.wall_time]),
            np.array([got[0]]),
        )


def _read_file_scalars(path: Path, col: _Collector, seq0: int, damaged: list[CorruptEventFileError] | None) -> int:
    """Collect the scalars of one file; returns the number of records read. A damaged file raises, or with
    ``damaged`` given, contributes the records before its first damaged one and its error to ``damaged``."""
    with open(path, "rb") as f:
        buf = f.read()
    saved = col.checkpoint() if damaged is not None else None
    count = _collect_file(buf, path, col, seq0)
    if not col.errors:
        return count
    offset, reason = min(col.errors)
    error = CorruptEventFileError(path, offset, reason)
    if damaged is None or saved is None:
        raise error
    col.restore(saved)
    count = _collect_file(buf[:offset], path, col, seq0)  # the intact records before the damage
    col.raise_first_error(path)  # none: every record before the first damaged one is intact
    damaged.append(error)
    return count


def _collect_file(buf: bytes, path: Path, col: _Collector, seq0: int) -> int:
    col.errors = []
    chunks, count = _frame(buf, seq0, col.errors)
    for ch in chunks:
        _process(ch, path, col)
    return count


def read_scalars(
    path: str | os.PathLike[str],
    tag: str | None = None,
    *,
    damaged: list[CorruptEventFileError] | None = None,
) -> dict[str, ScalarSeries]:
    """All scalar points of an event file, or of every event file directly in a run directory.

    Returns ``{tag: ScalarSeries(steps int64, wall_times float64, values float64)}`` in file order (files in
    name order). Both forms are read: legacy ``simple_value`` and tensors (DT_FLOAT / DT_DOUBLE, in
    ``tensor_content`` or ``float_val``/``double_val``) of tags whose metadata names the "scalars" plugin.
    Every record's length and payload CRCs are checked, and every record is read as protobuf reads it. A
    truncated last record is ignored (a file still being written). A damaged record (a CRC mismatch, or a
    payload protobuf refuses) raises :class:`CorruptEventFileError` naming the file and the first damaged
    record's offset; or, when a ``damaged`` list is given, that file contributes the records before it, its
    error is appended to ``damaged``, and reading goes on with the next file.
    """
    p = Path(path)
    files = event_files(p) if p.is_dir() else [p]
    col = _Collector(tag)
    seq = 0
    for f in files:
        seq += _read_file_scalars(f, col, seq, damaged)
    return col.result()
