"""Crafted event files with valid CRCs: huge declared shapes, wrong wire types, merged messages.

Each record decodes as protobuf decodes it, costs memory in proportion to its bytes, and a record protobuf
refuses is a CorruptEventFileError naming the file and the record's offset.
"""

from __future__ import annotations

import pickle
import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from expboard import ExpboardError
from expboard.tfevents import (
    CorruptEventFileError,
    Event,
    EventFileReader,
    SummaryValue,
    TensorValue,
    frame_record,
    read_scalars,
)

F1 = struct.pack("<f", 1.5)


def ld(key: int, body: bytes) -> bytes:
    n, size = len(body), b""
    while n >= 0x80:
        size += bytes([n & 0x7F | 0x80])
        n >>= 7
    return bytes([key]) + size + bytes([n]) + body


def value(tag: bytes, *fields: bytes) -> bytes:
    return ld(0x0A, ld(0x0A, tag) + b"".join(fields))


SCALARS = ld(0x4A, ld(0x0A, ld(0x0A, b"scalars")))


def event(*summaries: bytes, step: int = 1) -> bytes:
    return b"\x09" + struct.pack("<d", 1.7e9) + bytes([0x10, step]) + b"".join(ld(0x2A, s) for s in summaries)


def huge_tensor(dims: list[bytes]) -> bytes:
    """A DT_FLOAT tensor declaring ``dims`` (encoded dim sizes) with one float_val: protobuf's fill form."""
    shape = ld(0x12, b"".join(ld(0x12, b"\x08" + d) for d in dims))
    return ld(0x42, b"\x08\x01" + shape + ld(0x2A, F1))


def values_of(e: Event) -> tuple[SummaryValue, ...]:
    assert e.summary is not None
    return e.summary


def write(tmp_path: Path, payloads: list[bytes]) -> tuple[Path, list[int]]:
    path = tmp_path / "events.out.tfevents.1.crafted"
    data, offsets = b"", []
    for p in payloads:
        offsets.append(len(data))
        data += frame_record(p)
    path.write_bytes(data)
    return path, offsets


def peak_bytes(fn: object) -> int:
    tracemalloc.start()
    try:
        fn()  # type: ignore[operator]
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_declared_shapes_cost_nothing(tmp_path: Path) -> None:
    two33 = b"\x80\x80\x80\x80\x20"  # 2^33 elements: 32 GiB as float32
    two27 = b"\x80\x80\x80\x40"
    recs = [event(value(b"big", huge_tensor([two33]), SCALARS))]
    # ten records of about 680 bytes (a node_name pads them) declaring 2^27 elements each
    recs += [event(value(b"wide", huge_tensor([two27]), ld(0x3A, b"n" * 620), SCALARS), step=i) for i in range(10)]
    path, _ = write(tmp_path, recs)
    assert path.stat().st_size < 7500

    def read_all() -> None:
        events = list(EventFileReader(path).events())
        assert [v.scalar for e in events for v in e.summary or ()] == [None] * 11
        assert read_scalars(path) == {}  # a tensor of 2^33 elements is not a scalar

    assert peak_bytes(read_all) < 2_000_000
    t = values_of(next(iter(EventFileReader(path).events())))[0].tensor
    assert t is not None and t.shape == (2**33,) and t.num_elements == 2**33 and t.float_val == (1.5,)
    with pytest.raises(ValueError, match="refused"):
        t.to_numpy()


def test_wrong_wire_types_are_unknown_fields(tmp_path: Path) -> None:
    recs = [
        event(value(b"d", ld(0x42, b"\x08\x02\x12\x00\x35" + F1), SCALARS)),  # double_val as a FIXED32
        event(value(b"f", ld(0x42, b"\x08\x01\x12\x00\x28\x05"), SCALARS)),  # float_val as a VARINT
        event(value(b"s", b"\x10\x05")),  # simple_value as a VARINT
        b"\x08\x05\x11" + struct.pack("<d", 3.0) + ld(0x2A, value(b"x", b"\x15" + F1)),  # wall, step misencoded
    ]
    path, _ = write(tmp_path, recs)
    events = list(EventFileReader(path).events())
    d, f, s, x = (values_of(e)[0] for e in events)
    assert d.tensor is not None and d.tensor.double_val == () and d.scalar is None
    assert f.tensor is not None and f.tensor.float_val == () and f.scalar is None
    assert s.simple_value is None and s.scalar is None
    assert events[3].wall_time == 0.0 and events[3].step == 0 and x.simple_value == 1.5
    assert events[3].other_fields == (1, 2)  # kept as unknown fields, as protobuf keeps them
    got = read_scalars(path)
    assert set(got) == {"x"} and got["x"].steps.tolist() == [0] and got["x"].wall_times.tolist() == [0.0]


def test_repeated_messages_merge(tmp_path: Path) -> None:
    """Two Summary fields in one Event: protobuf merges them, so both values count."""
    two = event(value(b"a", b"\x15" + F1), value(b"b", b"\x15" + F1))
    path, _ = write(tmp_path, [two] * 50)  # enough equal records for the vectorized path
    (e, *_) = EventFileReader(path).events()
    assert [v.tag for v in values_of(e)] == ["a", "b"]
    got = read_scalars(path)
    assert set(got) == {"a", "b"} and len(got["a"].values) == len(got["b"].values) == 50


def test_undecodable_record_names_file_and_offset(tmp_path: Path) -> None:
    good = event(value(b"loss", b"\x15" + F1))
    bad = event(value(b"\xff", b"\x15" + F1))  # a tag that is not UTF-8
    path, offsets = write(tmp_path, [good] * 40 + [bad] + [good])
    reader = EventFileReader(path)
    seen = []
    with pytest.raises(CorruptEventFileError) as info:
        for e in reader.events():
            seen.append(e)
    assert len(seen) == 40 and info.value.offset == offsets[40] and info.value.path == str(path)
    assert "UTF-8" in info.value.reason
    with pytest.raises(CorruptEventFileError) as info2:
        read_scalars(path)
    assert info2.value.offset == offsets[40]
    err = info.value
    assert isinstance(err, ExpboardError) and err.status_code == 422
    again = pickle.loads(pickle.dumps(err))
    assert (again.path, again.offset, again.reason, str(again)) == (err.path, err.offset, err.reason, str(err))
    assert str(CorruptEventFileError("a message from a server")) == "a message from a server"


def test_to_numpy_follows_tensorboard() -> None:
    assert TensorValue(1, (2, 2), float_val=(1.5,)).to_numpy().tolist() == [[1.5, 1.5], [1.5, 1.5]]
    assert TensorValue(3, (3,), int_val=(1, 2, 3)).to_numpy().dtype == np.int32
    assert TensorValue(1, (), tensor_content=F1).to_numpy().item() == 1.5
    assert TensorValue(1, (), double_val=(2.0,)).scalar is None  # DT_FLOAT reads float_val only
    assert TensorValue(1, (1, 1), float_val=(2.0,)).scalar == 2.0
    assert TensorValue(19, (), half_val=(0x3C00,)).scalar == 1.0
    for bad in (TensorValue(1, (3,), float_val=(1.0, 2.0)), TensorValue(1, (-1,), float_val=(1.0,))):
        with pytest.raises(ValueError):
            bad.to_numpy()
    with pytest.raises(ValueError, match="dtype"):
        TensorValue(1, (), tensor_content=b"\0\0\0").to_numpy()


def test_read_scalars_collects_damage_and_keeps_the_good_prefix(tmp_path: Path) -> None:
    good = [event(value(b"loss", b"\x15" + F1), step=i) for i in range(100)]
    bad = event(value(b"loss", ld(0x42, b"\x08\x01\x12\x00\x2a\x05" + F1)), step=100)  # runs past its message
    first = tmp_path / "events.out.tfevents.1"
    offsets = []
    data = b""
    for p in [*good[:50], bad, *good[50:]]:
        offsets.append(len(data))
        data += frame_record(p)
    first.write_bytes(data)
    (tmp_path / "events.out.tfevents.2").write_bytes(b"".join(frame_record(p) for p in good[:5]))
    with pytest.raises(CorruptEventFileError):
        read_scalars(tmp_path)
    damaged: list[CorruptEventFileError] = []
    got = read_scalars(tmp_path, damaged=damaged)
    assert got["loss"].steps.tolist() == [*range(50), *range(5)]  # the prefix, then the next file whole
    assert [(e.path, e.offset) for e in damaged] == [(str(first), offsets[50])]


def test_signalling_nan_values_read_without_warnings(tmp_path: Path) -> None:
    snan = struct.pack("<I", 0x7F800001)
    path, _ = write(tmp_path, [event(value(b"loss", b"\x15" + snan), step=i) for i in range(60)])
    got = read_scalars(path)  # warnings are errors in the test suite
    assert np.isnan(got["loss"].values).all() and len(got["loss"].values) == 60
