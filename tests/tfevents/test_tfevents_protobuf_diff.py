"""Differential property tests: the reader agrees with protobuf on every input.

Files are built from hypothesis-generated ``Event`` protos serialized by protobuf (TensorBoard's own
classes), runs of canonical scalar records (what the vectorized ``read_scalars`` path reads), and mutated
payloads: bytes replaced, inserted, deleted or duplicated and crafted fields appended, every record framed
with valid CRCs. Whatever protobuf parses must read back exactly as protobuf sees it; the first record
protobuf refuses must be a ``CorruptEventFileError`` naming the file and that record's offset, with every
record before it returned.

The number of examples is bounded for CI; ``CODEC_FUZZ_EXAMPLES=20000`` runs a longer search locally.
"""

from __future__ import annotations

import math
import os
import struct
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from google.protobuf.message import DecodeError as ProtobufDecodeError  # type: ignore[import-untyped]
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2  # type: ignore[import-untyped]

from expboard.errors import ExpboardError
from expboard.tfevents import CorruptEventFileError, EventFileReader, decode_event, frame_record, read_scalars

EXAMPLES = int(os.environ.get("CODEC_FUZZ_EXAMPLES", "120"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)

TAGS = ["loss", "acc", "é/x", "", "t" * 130]
F32 = st.floats(width=32) | st.sampled_from([math.nan, math.inf, -0.0, 0.0])
F64 = st.floats() | st.sampled_from([math.nan, -0.0, 1e300])
STEPS = st.integers(0, 300) | st.integers(-(2**63), 2**63 - 1)
WALLS = st.sampled_from([0.0, 1.7e9, -0.0, math.nan]) | st.floats(0, 2e9)


# ------------------------------------------------------------------------------------------ the reference
def pb_scalar(v: Any) -> tuple[float, bool] | None:
    """Written from TensorBoard's semantics, independently of the reader: a legacy simple_value, or a DT_FLOAT /
    DT_DOUBLE tensor of one element whose value is its tensor_content or the one value of its dtype's field."""
    kind = v.WhichOneof("value")
    if kind == "simple_value":
        return v.simple_value, False
    if kind != "tensor" or v.tensor.dtype not in (1, 2):
        return None
    t = v.tensor
    if any(d.size != 1 for d in t.tensor_shape.dim):
        return None
    fmt, vals = ("<f", t.float_val) if t.dtype == 1 else ("<d", t.double_val)
    if t.tensor_content:
        if len(t.tensor_content) != struct.calcsize(fmt):
            return None
        return struct.unpack(fmt, t.tensor_content)[0], True
    return (vals[0], True) if len(vals) == 1 else None


def reference(payloads: list[bytes]) -> tuple[dict[str, list[tuple[int, float, float]]], int | None]:
    """Scalar points per tag as protobuf reads the payloads, and the index of the first it refuses."""
    points: dict[str, list[tuple[int, int, int, float, float]]] = {}  # tag -> (seq, kind, step, wall, value)
    plugin: dict[str, str] = {}
    tensor_tags: set[str] = set()
    for seq, p in enumerate(payloads):
        try:
            ev = event_pb2.Event.FromString(p)
        except ProtobufDecodeError:
            return {}, seq
        if ev.WhichOneof("what") != "summary":
            continue
        for v in ev.summary.value:
            if v.HasField("metadata"):
                plugin.setdefault(v.tag, v.metadata.plugin_data.plugin_name)
            got = pb_scalar(v)
            if got is not None:
                if got[1]:
                    tensor_tags.add(v.tag)
                # within one record, legacy points of a tag come before its tensor points
                points.setdefault(v.tag, []).append((seq, int(got[1]), ev.step, ev.wall_time, got[0]))
    out = {}
    for tag, pts in points.items():
        keep = [q for q in pts if not q[1] or plugin.get(tag) == "scalars"]
        if keep:
            keep.sort(key=lambda q: (q[0], q[1]))
            out[tag] = [q[2:] for q in keep]
    return out, None


def check_file(payloads: list[bytes]) -> None:
    """Write the payloads as one event file and compare every reader with the reference."""
    want, bad = reference(payloads)
    data = bytearray()
    offsets = []
    for p in payloads:
        offsets.append(len(data))
        data += frame_record(p)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.out.tfevents.1.fuzz"
        path.write_bytes(bytes(data))
        seen = []
        reader = EventFileReader(path)
        if bad is None:
            seen = list(reader.events())
            got = read_scalars(path)
            assert set(got) == set(want)
            for tag, pts in want.items():
                s = got[tag]
                assert s.steps.tolist() == [q[0] for q in pts], tag
                np.testing.assert_array_equal(s.wall_times, np.array([q[1] for q in pts], dtype=np.float64))
                np.testing.assert_array_equal(s.values, np.array([q[2] for q in pts], dtype=np.float64))
        else:
            with pytest.raises(CorruptEventFileError) as info:
                for ev in reader.events():
                    seen.append(ev)
            assert info.value.path == str(path) and info.value.offset == offsets[bad]
            assert isinstance(info.value, ExpboardError)
            with pytest.raises(CorruptEventFileError) as info2:
                read_scalars(path)
            assert info2.value.offset == offsets[bad] and info2.value.path == str(path)
        # every event returned decodes as protobuf decodes it
        assert [e.offset for e in seen] == offsets[: len(seen)]
        for e, p in zip(seen, payloads, strict=False):
            compare_event(e, event_pb2.Event.FromString(p))


def same_float(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def compare_event(e: Any, pb: Any) -> None:
    assert e.step == pb.step and same_float(e.wall_time, pb.wall_time)
    what = pb.WhichOneof("what")
    assert (e.file_version is not None) == (what == "file_version")
    assert (e.summary is not None) == (what == "summary")
    assert (e.source_writer is not None) == pb.HasField("source_metadata")
    if what != "summary":
        return
    assert len(e.summary) == len(pb.summary.value)
    for v, pv in zip(e.summary, pb.summary.value, strict=True):
        kind = pv.WhichOneof("value")
        assert v.tag == pv.tag and v.has_metadata == pv.HasField("metadata")
        assert (v.simple_value is not None) == (kind == "simple_value")
        assert (v.tensor is not None) == (kind == "tensor")
        assert (v.image is not None) == (kind == "image") and (v.histo is not None) == (kind == "histo")
        if v.has_metadata:
            assert v.plugin_name == pv.metadata.plugin_data.plugin_name
        ref = pb_scalar(pv)
        if ref is not None:
            assert v.scalar is not None and same_float(v.scalar, ref[0])
        if v.tensor is not None:
            t = pv.tensor
            assert v.tensor.dtype == t.dtype and v.tensor.shape == tuple(d.size for d in t.tensor_shape.dim)
            assert v.tensor.tensor_content == t.tensor_content and v.tensor.string_val == tuple(t.string_val)
            assert len(v.tensor.float_val) == len(t.float_val) and len(v.tensor.double_val) == len(t.double_val)


# ------------------------------------------------------------------------------------------ generators
@st.composite
def tensors(draw: st.DrawFn) -> Any:
    t = tensor_pb2.TensorProto(dtype=draw(st.sampled_from([1, 1, 2, 2, 3, 7, 19])))
    for d in draw(st.lists(st.sampled_from([1, 1, 1, 2, 0, 2**27, 2**33, -1]), max_size=3)):
        t.tensor_shape.dim.add(size=d)
    n = draw(st.integers(0, 2))
    where = draw(st.sampled_from(["content", "vals", "vals", "both", "none", "other"]))
    if where in ("content", "both"):
        t.tensor_content = draw(st.binary(min_size=0, max_size=12)) if draw(st.booleans()) else b"\0\0\x80?" * n
    if where in ("vals", "both"):
        if t.dtype == 1:
            t.float_val.extend(draw(st.lists(F32, min_size=n, max_size=n)))
        elif t.dtype == 2:
            t.double_val.extend(draw(st.lists(F64, min_size=n, max_size=n)))
        elif t.dtype == 7:
            t.string_val.extend([b"x"] * n)
        else:
            t.int_val.extend(range(n))
    if where == "other":  # the value in a field the dtype does not read
        (t.double_val if t.dtype == 1 else t.float_val).append(1.5)
    return t


@st.composite
def values(draw: st.DrawFn) -> Any:
    v = summary_pb2.Summary.Value(tag=draw(st.sampled_from(TAGS)))
    kind = draw(st.sampled_from(["simple", "simple", "tensor", "tensor", "image", "histo", "none"]))
    if kind == "simple":
        v.simple_value = draw(F32)
    elif kind == "tensor":
        v.tensor.CopyFrom(draw(tensors()))
    elif kind == "image":
        v.image.height, v.image.width, v.image.encoded_image_string = 2, 3, b"\x89PNG"
    elif kind == "histo":
        v.histo.min, v.histo.max, v.histo.num = -1.0, 1.0, 3.0
        v.histo.bucket_limit.extend([0.0, 1.0])
        v.histo.bucket.extend([1.0, 2.0])
    if draw(st.integers(0, 2)) == 0:
        v.metadata.plugin_data.plugin_name = draw(st.sampled_from(["scalars", "scalars", "text", ""]))
        if draw(st.booleans()):
            v.metadata.display_name = "shown"
    return v


@st.composite
def events(draw: st.DrawFn) -> bytes:
    ev = event_pb2.Event(wall_time=draw(WALLS), step=draw(STEPS))
    what = draw(st.sampled_from(["summary"] * 6 + ["file_version", "session_log", "none"]))
    if what == "summary":
        ev.summary.value.extend(draw(st.lists(values(), max_size=3)))
        if not ev.summary.value:
            ev.summary.SetInParent()
    elif what == "file_version":
        ev.file_version = "brain.Event:2"
        ev.source_metadata.writer = "fuzz"
    elif what == "session_log":
        ev.session_log.status = 1
    return bytes(ev.SerializeToString())


def canonical(tag: str, value: float, step: int, wall: float, tensor: bool) -> bytes:
    """A one-scalar Event as writers emit it (protobuf's serialization is the canonical form)."""
    ev = event_pb2.Event(wall_time=wall, step=step)
    v = ev.summary.value.add(tag=tag)
    if tensor:
        v.tensor.dtype = 1
        v.tensor.tensor_shape.SetInParent()
        v.tensor.float_val.append(value)
        v.metadata.plugin_data.plugin_name = "scalars"
    else:
        v.simple_value = value
    return bytes(ev.SerializeToString())


@st.composite
def canonical_runs(draw: st.DrawFn) -> list[bytes]:
    """Enough equal-layout records (tags interleaved step by step) for the vectorized framing to engage."""
    tags = draw(st.lists(st.sampled_from(TAGS[:3]), min_size=1, max_size=3, unique=True))
    n = draw(st.integers(40, 160))
    start = draw(st.sampled_from([0, 100, 16370]))
    tensor = draw(st.booleans())
    return [
        canonical(t, (s + k) * 0.5, s, 1.7e9 + s, tensor) for s in range(start, start + n) for k, t in enumerate(tags)
    ]


def ld(key: int, body: bytes) -> bytes:
    """A length-delimited field with a one-byte key."""
    n, size = len(body), b""
    while n >= 0x80:
        size += bytes([n & 0x7F | 0x80])
        n >>= 7
    return bytes([key]) + size + bytes([n]) + body


F1 = struct.pack("<f", 1.5)
D1 = struct.pack("<d", 2.5)
# hand-encoded fields of a Summary.Value, canonical ones and the crafted kinds of trouble protobuf resolves
VALUE_FIELDS = [
    ld(0x0A, b"loss"),
    ld(0x0A, b"acc"),
    ld(0x0A, b"\xff"),  # not UTF-8
    b"\x15" + F1,  # simple_value
    b"\x10\x05",  # simple_value as a varint: an unknown field to protobuf
    b"\x11" + D1,  # simple_value as a fixed64
    ld(0x42, b"\x08\x01\x12\x00" + ld(0x2A, F1)),  # DT_FLOAT, float_val
    ld(0x42, b"\x08\x01\x12\x00" + ld(0x22, F1)),  # DT_FLOAT, tensor_content
    ld(0x42, b"\x08\x02\x12\x00" + ld(0x22, D1)),  # DT_DOUBLE, tensor_content
    ld(0x42, b"\x08\x02\x12\x00" + ld(0x32, D1)),  # DT_DOUBLE, double_val
    ld(0x42, b"\x08\x02\x12\x00\x35" + F1),  # double_val as a fixed32
    ld(0x42, b"\x08\x01\x12\x00\x28\x05"),  # float_val as a varint
    ld(0x42, b"\x08\x01\x12\x00\x2d" + F1),  # float_val unpacked
    ld(0x42, b"\x08\x01\x12\x00" + ld(0x22, F1) + ld(0x2A, F1)),  # content and float_val
    ld(0x42, b"\x08\x02\x08\x01\x12\x00" + ld(0x2A, F1)),  # dtype twice
    ld(0x42, b"\x08\x02\x12\x00" + ld(0x2A, F1)),  # DT_DOUBLE with a float_val
    ld(0x42, b"\x08\x01" + ld(0x12, ld(0x12, b"\x08\x01")) + ld(0x2A, F1)),  # shape [1]
    ld(0x42, b"\x08\x01" + ld(0x12, ld(0x12, b"\x08\x80\x80\x80\x80\x20")) + ld(0x2A, F1)),  # [2^33]
    ld(0x42, b"\x08\x01" + ld(0x12, ld(0x12, b"\x08\x80\x80\x80\x40")) + ld(0x2A, F1)),  # [2^27]
    ld(0x4A, ld(0x0A, ld(0x0A, b"scalars"))),
    ld(0x4A, ld(0x0A, ld(0x0A, b"text"))),
    ld(0x4A, b""),
    ld(0x4A, ld(0x0A, ld(0x0A, b"scalars")) + ld(0x12, b"shown")),
    ld(0x4A, ld(0x12, b"\xff")),  # display_name not UTF-8
    ld(0x4A, ld(0x0A, ld(0x12, b"c") + ld(0x0A, b"scalars") + ld(0x0A, b""))),  # plugin_name twice
    ld(0x22, b"\x08\x02\x10\x03"),  # an image
    b"\x58\x01",  # field 11: unknown
    b"\x8a\x00\x03acc",  # the tag's key in two bytes
]
EVENT_FIELDS = [
    b"\x09" + D1,
    b"\x10\x07",
    b"\x10\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",  # step -1
    b"\x08\x05",  # wall_time as a varint
    b"\x11" + D1,  # step as a fixed64
    ld(0x1A, b"x"),  # file_version: a later member of the oneof wins over the summary
    b"\x89\x00" + D1,  # wall_time's key in two bytes
    ld(0x52, ld(0x0A, b"w")),  # source_metadata
    b"\x0e",  # wire type 6: invalid
]


@st.composite
def crafted(draw: st.DrawFn) -> bytes:
    """An Event assembled from hand-encoded fields: summaries of values of 1-4 fields, in any order."""
    out = b""
    for _ in range(draw(st.integers(1, 2))):
        summary = b""
        for _ in range(draw(st.integers(1, 2))):
            fields = draw(st.lists(st.sampled_from(VALUE_FIELDS), min_size=1, max_size=4))
            summary += ld(0x0A, b"".join(fields))
        if draw(st.integers(0, 5)) == 0:
            summary += b"\x12\x00"  # an unknown field of Summary
        out += ld(0x2A, summary)
    head = draw(st.lists(st.sampled_from(EVENT_FIELDS[:3]), max_size=2))
    tail = draw(st.lists(st.sampled_from(EVENT_FIELDS), max_size=2)) if draw(st.booleans()) else []
    return b"".join(head) + out + b"".join(tail)


@st.composite
def crafted_runs(draw: st.DrawFn) -> list[bytes]:
    """Crafted records, each repeated with changing wall-time bytes so equal-length runs form."""
    out = []
    for _ in range(draw(st.integers(1, 4))):
        p = draw(crafted())
        reps = draw(st.sampled_from([1, 2, 40]))
        at = p.find(b"\x09" + D1)
        for r in range(reps):
            out.append(p if at < 0 else p[:at] + b"\x09" + struct.pack("<d", 1.7e9 + r) + p[at + 9 :])
    return out


KEYS = st.integers(1, 12).flatmap(lambda f: st.integers(0, 7).map(lambda wt: bytes([f << 3 | wt])))


@st.composite
def mutated(draw: st.DrawFn, payload: bytes) -> bytes:
    p = bytearray(payload)
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["replace", "replace", "insert", "delete", "duplicate", "append"]))
        i = draw(st.integers(0, len(p)))
        if op == "replace" and p:
            p[min(i, len(p) - 1)] = draw(st.integers(0, 255))
        elif op == "insert":
            p[i:i] = draw(st.binary(min_size=1, max_size=6))
        elif op == "delete":
            del p[i : i + draw(st.integers(1, 4))]
        elif op == "duplicate":
            j = draw(st.integers(i, len(p)))
            p[i:i] = p[i:j]
        else:  # a crafted field, often of the wrong wire type for its number
            p += draw(KEYS) + draw(st.binary(min_size=0, max_size=9))
    return bytes(p)


@st.composite
def files(draw: st.DrawFn) -> list[bytes]:
    payloads: list[bytes] = []
    for _ in range(draw(st.integers(1, 3))):
        if draw(st.booleans()):
            payloads += draw(canonical_runs())
        else:
            payloads += draw(st.lists(events(), min_size=1, max_size=12))
    for _ in range(draw(st.integers(0, 3))):
        i = draw(st.integers(0, len(payloads) - 1))
        payloads[i] = draw(mutated(payloads[i]))
    return payloads


# ------------------------------------------------------------------------------------------ the tests
@FUZZ
@given(st.lists(events(), min_size=1, max_size=20))
def test_protobuf_encoded_events_read_back_as_protobuf_reads_them(payloads: list[bytes]) -> None:
    check_file(payloads)


@FUZZ
@given(files())
def test_mutated_files_agree_with_protobuf(payloads: list[bytes]) -> None:
    check_file(payloads)


@FUZZ
@given(canonical_runs(), st.data())
def test_same_length_mutations_in_vectorized_runs(payloads: list[bytes], data: st.DataObject) -> None:
    """Byte replacements keep a record's length, so it stays among the equal-length records the vectorized
    path decodes together: the layout check must send every one protobuf reads differently to protobuf."""
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(payloads) - 1))
        p = bytearray(payloads[i])
        p[data.draw(st.integers(0, len(p) - 1))] = data.draw(st.integers(0, 255))
        payloads[i] = bytes(p)
    check_file(payloads)


@FUZZ
@given(st.lists(crafted_runs() | canonical_runs(), min_size=1, max_size=4))
def test_crafted_fields_agree_with_protobuf(runs: list[list[bytes]]) -> None:
    """Wrong wire types, fields twice, oneof members both set, merged summaries and metadata, long keys:
    each resolved as protobuf resolves it, on both the per-record and the vectorized path."""
    check_file([p for run in runs for p in run])


def test_decode_event_raises_decode_error_with_reason() -> None:
    from expboard.tfevents._proto import DecodeError

    with pytest.raises(DecodeError, match="UTF-8|parse|corrupt"):
        decode_event(b"\x2a\x05\x0a\x03\x0a\x01\xff")  # a tag that is not UTF-8
