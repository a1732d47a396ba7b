"""Reader behaviour: resume after truncation, clear errors on damage, decoded events, read_scalars."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from expboard.tfevents import (
    CorruptEventFileError,
    EventFileReader,
    EventFileWriter,
    RunReader,
    read_scalars,
)
from expboard.tfevents import summary as S
from expboard.tfevents._crc import frame_record


def write_file(tmp_path: Path, n: int = 50) -> Path:
    with EventFileWriter(tmp_path, flush_secs=0) as w:
        w.add_scalars_array("loss", np.arange(n), np.arange(n) * 0.5, wall_times=1.7e9 + np.arange(n))
        w.add_text("note", "hello", 7, wall_time=1.7e9)
        path = w.path
    return path


def record_offsets(data: bytes) -> list[int]:
    out, pos = [], 0
    while pos < len(data):
        out.append(pos)
        pos += struct.unpack_from("<Q", data, pos)[0] + 16
    return out


def test_events_decoded(tmp_path: Path) -> None:
    path = write_file(tmp_path)
    events = list(EventFileReader(path).events())
    assert events[0].file_version == "brain.Event:2" and events[0].source_writer == "expboard"
    scalars = [e for e in events[1:] if e.summary and e.summary[0].tag == "loss"]
    assert [e.step for e in scalars] == list(range(50))
    assert [e.summary[0].simple_value for e in scalars] == [i * 0.5 for i in range(50)]
    assert [e.wall_time for e in scalars] == [1.7e9 + i for i in range(50)]
    (note,) = [e for e in events if e.summary and e.summary[0].tag == "note"]
    assert note.step == 7 and note.summary[0].text == "hello" and note.summary[0].plugin_name == "text"


@pytest.mark.parametrize("cut", [1, 5, 11, 12, 13, 20, -4, -1])
def test_truncated_tail_then_resume(tmp_path: Path, cut: int) -> None:
    full = write_file(tmp_path).read_bytes()
    offs = record_offsets(full)
    # cut inside record #10: header, length CRC, payload or footer
    rec = offs[10]
    stop = rec + cut if cut > 0 else offs[11] + cut
    path = tmp_path / "live.tfevents"
    path.write_bytes(full[:stop])
    reader = EventFileReader(path)
    first = [off for off, _ in reader.records()]
    assert first == offs[:10]
    assert reader.offset == rec
    assert list(reader.records()) == []  # still incomplete: nothing new, no error
    with open(path, "ab") as f:
        f.write(full[stop:])
    rest = list(reader.records())
    assert [off for off, _ in rest] == offs[10:]
    assert b"".join(frame_record(p) for _, p in rest) == full[rec:]
    assert list(reader.records()) == []


def test_resume_across_writer_flushes(tmp_path: Path) -> None:
    run = RunReader(tmp_path)
    w = EventFileWriter(tmp_path, flush_secs=0)
    assert [e.file_version for e in run.events()] == ["brain.Event:2"]
    w.add_scalar("a", 1.0, 1)
    assert list(run.events()) == []  # buffered, not flushed
    w.flush()
    assert [e.summary[0].simple_value for e in run.events()] == [1.0]
    w.add_scalar("a", 2.0, 2)
    w.close()
    w2 = EventFileWriter(tmp_path, flush_secs=0)  # a second file in the same run is picked up
    w2.add_scalar("a", 3.0, 3)
    w2.close()
    got = [(e.step, e.summary[0].simple_value) for e in run.events() if e.summary]
    assert got == [(2, 2.0), (3, 3.0)]
    assert w.path.name < w2.path.name


@pytest.mark.parametrize(
    ("where", "reason"),
    [(3, "length CRC"), (9, "length CRC"), (12, "payload CRC"), (20, "payload CRC"), (-2, "payload CRC")],
)
def test_bit_flip_raises_with_file_and_offset(tmp_path: Path, where: int, reason: str) -> None:
    full = bytearray(write_file(tmp_path).read_bytes())
    offs = record_offsets(bytes(full))
    pos = offs[5] + where if where >= 0 else offs[6] + where
    full[pos] ^= 0x10
    path = tmp_path / "bad.tfevents"
    path.write_bytes(bytes(full))
    reader = EventFileReader(path)
    got = []
    with pytest.raises(CorruptEventFileError) as info:
        for off, _ in reader.records():
            got.append(off)
    assert got == offs[:5]  # everything before the damage was returned, nothing after
    err = info.value
    assert err.offset == offs[5] and err.path == str(path) and reason in err.reason
    assert str(path) in str(err) and f"offset {offs[5]}" in str(err)
    with pytest.raises(CorruptEventFileError) as info2:  # the fast path agrees
        read_scalars(path)
    assert info2.value.offset == offs[5]


def test_garbage_file(tmp_path: Path) -> None:
    path = tmp_path / "garbage.tfevents"
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(CorruptEventFileError, match="offset 0"):
        list(EventFileReader(path).records())
    with pytest.raises(CorruptEventFileError, match="offset 0"):
        read_scalars(path)
    short = tmp_path / "short.tfevents"
    short.write_bytes(b"\x01\x02\x03")  # shorter than a header: not written yet
    assert list(EventFileReader(short).records()) == []
    assert read_scalars(short) == {}


def test_valid_crc_invalid_proto(tmp_path: Path) -> None:
    path = tmp_path / "x.tfevents"
    good = frame_record(S.scalar_event("a", 1.0, 1, 5.0))
    path.write_bytes(good + frame_record(b"\x2a\x05\x0a\x09"))  # a length past the end of its message
    reader = EventFileReader(path)
    with pytest.raises(CorruptEventFileError, match=f"offset {len(good)}.*invalid Event"):
        list(reader.events())
    with pytest.raises(CorruptEventFileError, match=f"offset {len(good)}"):
        read_scalars(path)


def test_read_scalars_matches_event_decoding(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    with EventFileWriter(tmp_path, flush_secs=0) as w:
        for i in range(300):  # interleaved tags of different lengths, steps going back, odd values
            tag = ["loss", "acc", "a/very/long/tag/" * 10, "é"][i % 4]
            step = int(rng.integers(-(2**62), 2**62)) if i % 7 == 0 else i
            w.add_scalar(
                tag,
                float(rng.choice([np.nan, np.inf, -0.0, rng.normal()])),
                step,
                wall_time=0.0 if i % 11 == 0 else 1.7e9 + i,
            )
            if i % 50 == 0:
                w.add_tensor_scalar("tensor", i * 1.5, i)
                w.add_tensor_scalar("tensor_d", i * 1.5, i, double_precision=True)
                w.add_histogram("h", rng.normal(size=10), i)
        w.add_scalars_array("bulk", np.arange(5000), np.arange(5000.0))
        path = w.path
    expected: dict[str, list[tuple[int, float, float]]] = {}
    for e in EventFileReader(path).events():
        for v in e.summary or ():
            if v.scalar is not None:
                expected.setdefault(v.tag, []).append((e.step, e.wall_time, v.scalar))
    got = read_scalars(path)
    assert set(got) == set(expected) == {"loss", "acc", "a/very/long/tag/" * 10, "é", "tensor", "tensor_d", "bulk"}
    for tag, pts in expected.items():
        s = got[tag]
        assert s.steps.dtype == np.int64 and s.values.dtype == np.float64
        assert s.steps.tolist() == [p[0] for p in pts]
        assert s.wall_times.tolist() == [p[1] for p in pts]
        np.testing.assert_array_equal(s.values, np.array([p[2] for p in pts]))
    assert read_scalars(tmp_path, tag="acc").keys() == {"acc"}


def test_read_scalars_tensor_needs_scalars_plugin(tmp_path: Path) -> None:
    path = tmp_path / "events.out.tfevents.1"
    recs = [
        S.summary_event([S.scalar_value("t", 1.0, new_style=True)], 1, 5.0),
        S.summary_event([S.scalar_value("t", 2.0, new_style=True, metadata=False)], 2, 5.0),
        # a float tensor whose tag has no "scalars" metadata is not a scalar series
        S.summary_event([S.scalar_value("u", 3.0, new_style=True, metadata=False)], 1, 5.0),
    ]
    path.write_bytes(b"".join(frame_record(r) for r in recs))
    got = read_scalars(tmp_path)
    assert set(got) == {"t"} and got["t"].values.tolist() == [1.0, 2.0] and got["t"].steps.tolist() == [1, 2]
