"""read_scalars on the layouts its vectorized paths special-case, checked against decoding every Event.

Files interleave many tags record by record (equal and unequal tag lengths, so both the repeating-length
framing and the per-tag split of equal-length records are used), mix legacy and tensor scalars, and are
damaged in the middle: the error must name the first damaged record, as EventFileReader does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from expboard.tfevents import CorruptEventFileError, EventFileReader, EventFileWriter, read_scalars, reader
from expboard.tfevents import summary as S
from expboard.tfevents._crc import frame_record
from expboard.tfevents._proto import f_bytes, f_varint

SCALARS_META = f_bytes(9, f_bytes(1, f_bytes(1, b"scalars")))


def float_val_scalar(tag: str, value: float, metadata: bool = True) -> bytes:
    """A DT_FLOAT rank-0 tensor with the value in float_val (TensorBoard's scalar_pb form)."""
    tensor = f_varint(1, 1) + f_bytes(2, b"") + f_bytes(5, np.float32(value).tobytes())
    return f_bytes(1, tag.encode()) + f_bytes(8, tensor) + (SCALARS_META if metadata else b"")


def write_events(path: Path, payloads: list[bytes]) -> list[int]:
    """Write framed records after a file_version record; returns the offset of each payload's record."""
    data = bytearray(frame_record(S.file_version_event(1.7e9)))
    offsets = []
    for p in payloads:
        offsets.append(len(data))
        data += frame_record(p)
    path.write_bytes(bytes(data))
    return offsets


def reference(path: Path) -> dict[str, list[tuple[int, float, float]]]:
    """Scalar points by decoding every Event: simple_value always, tensors when the tag's first metadata
    names the "scalars" plugin."""
    legacy: dict[str, list[tuple[int, int, float, float]]] = {}
    tensor: dict[str, list[tuple[int, int, float, float]]] = {}
    plugin: dict[str, str] = {}
    for seq, e in enumerate(EventFileReader(path).events()):
        for v in e.summary or ():
            if v.has_metadata:
                plugin.setdefault(v.tag, v.plugin_name)
            if v.scalar is None or v.simple_value is None and v.tensor.dtype not in (1, 2):
                continue
            (legacy if v.simple_value is not None else tensor).setdefault(v.tag, []).append(
                (seq, e.step, e.wall_time, v.scalar)
            )
    for tag, pts in tensor.items():
        if plugin.get(tag) == "scalars":
            legacy[tag] = sorted(legacy.get(tag, []) + pts)
    return {tag: [p[1:] for p in pts] for tag, pts in legacy.items()}


def assert_matches(path: Path) -> dict:
    got, want = read_scalars(path), reference(path)
    assert set(got) == set(want)
    for tag, pts in want.items():
        s = got[tag]
        assert s.steps.dtype == np.int64 and s.wall_times.dtype == np.float64 and s.values.dtype == np.float64
        assert s.steps.tolist() == [p[0] for p in pts], tag
        assert s.wall_times.tolist() == [p[1] for p in pts], tag
        np.testing.assert_array_equal(s.values, np.array([p[2] for p in pts]), err_msg=tag)
    return got


def interleaved(tags: list[str], steps: int, value=S.scalar_value) -> list[bytes]:
    """One record per (step, tag), step by step, as a training loop writes them; steps cross 128 and 16384
    so the step varint (and so the record lengths) change twice."""
    out = []
    for s in [*range(steps // 2), *range(16384 - steps // 4, 16384 + steps // 4)]:
        for k, t in enumerate(tags):
            out.append(S.summary_event([value(t, s * 0.5 + k)], s, 1.7e9 + s * 0.01 + k))
    return out


@pytest.mark.parametrize(
    "tag_names",
    [
        [f"metric/{k:03d}" for k in range(100)],  # equal lengths: split by a repeating tag cycle
        [f"m{'x' * (k % 17)}/{k}" for k in range(100)],  # unequal lengths: a repeating cycle of lengths
        ["loss", "acc", "lr"],
    ],
)
def test_many_tags_interleaved(tmp_path: Path, tag_names: list[str]) -> None:
    path = tmp_path / "events.out.tfevents.1"
    write_events(path, interleaved(tag_names, 400))
    got = assert_matches(path)
    assert set(got) == set(tag_names) and all(len(s.steps) == 400 for s in got.values())
    assert read_scalars(path, tag=tag_names[1]).keys() == {tag_names[1]}


def test_small_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # chunks longer than a block are decoded block by block; a tag cycle may straddle two blocks
    monkeypatch.setattr(reader, "_BLOCK", 777)
    path = tmp_path / "events.out.tfevents.1"
    write_events(path, interleaved([f"metric/{k:03d}" for k in range(10)], 400))
    write_events(tmp_path / "events.out.tfevents.2", interleaved([f"m{'x' * (k % 5)}/{k}" for k in range(7)], 400))
    got = assert_matches(path)
    assert (
        len(got) == 10
        and read_scalars(tmp_path)["m/0"].steps.tolist() == read_scalars(path)["metric/000"].steps.tolist()
    )


def test_tags_in_random_order_and_runs(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    tags = [f"t{k:02d}" for k in range(20)]
    payloads = [S.scalar_event(tags[int(rng.integers(20))], float(i), i, 1.7e9 + i) for i in range(3000)]
    payloads += [S.scalar_event(tags[i // 500], float(i), i, 1.7e9 + i) for i in range(5000)]  # runs of 500
    path = tmp_path / "events.out.tfevents.1"
    write_events(path, payloads)
    assert_matches(path)


def test_mixed_legacy_and_tensor_scalars(tmp_path: Path) -> None:
    def value(tag: str, v: float) -> bytes:
        kind = int(v * 2) % 5
        if tag == "legacy" or kind == 0:
            return S.scalar_value(tag, v)
        if kind == 1:
            return S.scalar_value(tag, v, new_style=True)  # tensor_content, DT_FLOAT, with metadata
        if kind == 2:
            return S.scalar_value(tag, v, new_style=True, metadata=False)
        if kind == 3:
            return float_val_scalar(tag, v, metadata=tag != "fv")
        return S.scalar_value(tag, v, new_style=True, double_precision=True, metadata=False)

    payloads = interleaved(["legacy", "mixed", "fv", "double"], 300, value)
    # a tensor tag whose first metadata is another plugin's is not a scalar series
    payloads.insert(5, S.summary_event([S.text_value("notes", "hi")], 1, 1.7e9))
    payloads += [S.summary_event([S.scalar_value("notes", 1.0, new_style=True)], s, 1.7e9) for s in range(100)]
    payloads += [S.summary_event([S.histogram_value("h", np.arange(10.0))], 3, 1.7e9)]
    # two values in one event, and an empty tag, go the one-record-at-a-time way
    payloads += [S.summary_event([S.scalar_value("legacy", 7.0), S.scalar_value("", 1.0)], 5000, 1.7e9)]
    payloads += [S.scalar_event("", float(i), i, 1.7e9) for i in range(50)]
    path = tmp_path / "events.out.tfevents.1"
    write_events(path, payloads)
    got = assert_matches(path)
    assert {"legacy", "mixed", "fv", "double", ""} <= set(got) and "notes" not in got and "h" not in got
    assert len(got["legacy"].steps) == 301 and len(got["mixed"].steps) == 300  # "mixed" has metadata first
    assert len(got[""].steps) == 51


def test_equal_lengths_different_layouts(tmp_path: Path) -> None:
    # wall_time 0.0 is omitted (9 bytes shorter), so a 9-byte-longer tag gives the same record length
    payloads = []
    for i in range(500):
        payloads.append(S.scalar_event("short", float(i), 200 + i, 1.7e9 + i))
        payloads.append(S.scalar_event("short" + "x" * 9, float(-i), 200 + i, 0.0))
    assert len(set(map(len, payloads))) == 1
    path = tmp_path / "events.out.tfevents.1"
    write_events(path, payloads)
    got = assert_matches(path)
    assert got["shortxxxxxxxxx"].wall_times.tolist() == [0.0] * 500


@pytest.mark.parametrize(
    ("tag_names", "rec", "where", "reason"),
    [
        ([f"metric/{k:03d}" for k in range(100)], 5_123, 20, "payload CRC"),  # in the wall time
        ([f"metric/{k:03d}" for k in range(100)], 20_000, 40, "payload CRC"),  # in the tag
        ([f"metric/{k:03d}" for k in range(100)], 5_123, 0, "length CRC"),  # the length: framing breaks after it
        ([f"metric/{k:03d}" for k in range(100)], 5_123, 9, "length CRC"),
        ([f"metric/{k:03d}" for k in range(100)], 30_001, -2, "payload CRC"),  # the stored payload CRC
        ([f"m{'x' * (k % 17)}/{k}" for k in range(100)], 7_777, 30, "payload CRC"),
        (["a", "bb"], 555, 12, "payload CRC"),
    ],
)
def test_damage_in_the_middle_of_many_tags(
    tmp_path: Path, tag_names: list[str], rec: int, where: int, reason: str
) -> None:
    path = tmp_path / "events.out.tfevents.1"
    offsets = write_events(path, interleaved(tag_names, 400))
    data = bytearray(path.read_bytes())
    at = offsets[rec] + where if where >= 0 else offsets[rec + 1] + where
    data[at] ^= 0x04
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptEventFileError) as info:
        list(EventFileReader(path).records())
    assert info.value.offset == offsets[rec] and reason in info.value.reason
    with pytest.raises(CorruptEventFileError) as info:
        read_scalars(tmp_path)
    assert info.value.offset == offsets[rec] and reason in info.value.reason and info.value.path == str(path)


def test_earliest_of_several_damaged_records_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "events.out.tfevents.1"
    offsets = write_events(path, interleaved([f"metric/{k:03d}" for k in range(10)], 400))
    data = bytearray(path.read_bytes())
    for rec in (3_001, 2_000, 1_999):  # 1,999 and 2,000 are in different per-tag chunks
        data[offsets[rec] + 30] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptEventFileError, match=f"offset {offsets[1_999]}"):
        read_scalars(path)


def test_invalid_utf8_tag_with_valid_crc(tmp_path: Path) -> None:
    payloads = interleaved([f"metric/{k:03d}" for k in range(10)], 200)
    bad = payloads[1234].replace(b"metric/004", b"metric/\xff04")
    assert bad != payloads[1234]
    payloads[1234] = bad
    path = tmp_path / "events.out.tfevents.1"
    offsets = write_events(path, payloads)
    with pytest.raises(CorruptEventFileError) as info:
        read_scalars(path)
    assert info.value.offset == offsets[1234]


@pytest.mark.parametrize("cut", [3, 12, 30, -1])
def test_truncated_tail_of_interleaved_file(tmp_path: Path, cut: int) -> None:
    path = tmp_path / "events.out.tfevents.1"
    offsets = write_events(path, interleaved([f"m{'x' * (k % 5)}/{k}" for k in range(50)], 200))
    data = path.read_bytes()
    last = offsets[-1]
    path.write_bytes(data[: last + cut if cut > 0 else len(data) + cut])
    got = assert_matches(path)
    assert sum(len(s.steps) for s in got.values()) == len(offsets) - 1


def test_runs_written_by_summary_writer_across_files(tmp_path: Path) -> None:
    for f in range(2):
        with EventFileWriter(tmp_path, flush_secs=0, filename_suffix=f".{f}") as w:
            for i in range(3000):
                for t in ("loss", "accuracy", "lr"):
                    w.add_scalar(t, i * 0.5, f * 10_000 + i, wall_time=1.7e9 + i)
                if i % 1000 == 0:
                    w.flush()
    got = read_scalars(tmp_path)
    assert got["lr"].steps.tolist() == [*range(3000), *range(10_000, 13_000)]
    assert got["accuracy"].values.tolist() == [i * 0.5 for i in range(3000)] * 2


def test_records_of_one_chunk_keep_file_order(tmp_path: Path) -> None:
    # the same tag in two forms and two lengths, alternating: points must come back in file order
    payloads = []
    for i in range(2000):
        form = i % 3
        value = (
            S.scalar_value("x", float(i))
            if form == 0
            else S.scalar_value("x", float(i), new_style=True)
            if form == 1
            else float_val_scalar("x", float(i))
        )
        payloads.append(S.summary_event([value], i if i % 5 else 100_000 + i, 1.7e9 + i))
    path = tmp_path / "events.out.tfevents.1"
    write_events(path, payloads)
    got = assert_matches(path)
    assert got["x"].values.tolist() == [float(np.float32(i)) for i in range(2000)]
