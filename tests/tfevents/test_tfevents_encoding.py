"""Encoded bytes compared with protobuf's own serialization of TensorBoard's protos."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_shape_pb2, types_pb2
from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2
from tensorboard.summary.writer.record_writer import masked_crc32c as tb_masked_crc32c

from expboard.tfevents import summary as S
from expboard.tfevents._crc import crc32c, crc32c_rows, frame_record, length_header, masked_crc32c

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
WALL = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, -0.0, 1.7e9, 1.7e9 + 0.5]))
VALUE = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, -0.0, 1e39, -1e39, 3.4e38]))
TAG = st.one_of(st.text(max_size=40), st.text(min_size=120, max_size=300), st.sampled_from(["loss", "é/ü/∑/😀"]))


def pb_frame(payload: bytes) -> bytes:
    header = struct.pack("<Q", len(payload))
    return header + struct.pack("<I", tb_masked_crc32c(header)) + payload + struct.pack("<I", tb_masked_crc32c(payload))


def pb_scalar_event(tag: str, value: float, step: int, wall: float) -> bytes:
    ev = event_pb2.Event(wall_time=wall, step=step)
    ev.summary.value.add(tag=tag, simple_value=value)
    return ev.SerializeToString()


# --------------------------------------------------------------------------------------------- CRC + framing


def test_crc_check_values() -> None:
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(bytes(32)) == 0x8A9136AA
    assert length_header(24)[8:] == struct.pack("<I", 0x224B7FA3)
    assert masked_crc32c(b"\x1a\x11CRC test, one two") == 0x5794D08A


@given(st.binary(max_size=300))
def test_masked_crc_matches_tensorboard(data: bytes) -> None:
    assert masked_crc32c(data) == tb_masked_crc32c(data)
    assert frame_record(data) == pb_frame(data)


@given(st.lists(st.binary(min_size=7, max_size=7), min_size=1, max_size=50))
def test_crc32c_rows_matches_scalar_crc(rows: list[bytes]) -> None:
    mat = np.frombuffer(b"".join(rows), dtype=np.uint8).reshape(len(rows), 7)
    assert crc32c_rows(mat).tolist() == [crc32c(r) for r in rows]


# --------------------------------------------------------------------------------------------- doc test vectors


def test_doc_vector_1() -> None:
    payload = S.scalar_event("loss", 0.25, 42, 1700000000.5)
    assert payload.hex() == "09000020 40fc54d941 102a 2a0d0a0b0a046c6f7373 150000803e".replace(" ", "")
    assert frame_record(payload).hex() == "1a00000000000000129bd82d" + payload.hex() + "8693daf7"


def test_doc_vector_2() -> None:
    payload = S.scalar_event("loss", float("nan"), -1, 1700000000.5)
    assert payload.hex() == ("0900002040fc54d941" + "10ffffffffffffffffff01" + "2a0d0a0b0a046c6f7373150000c07f")
    assert frame_record(payload).hex() == "2300000000000000b09f7743" + payload.hex() + "0e460d98"


def test_doc_vector_3() -> None:
    payload = S.scalar_event("t" * 200, 1.0, 300, 1700000000.5)
    assert payload[9:].hex().startswith("10ac022ad3010ad0010ac801" + "74" * 200)
    assert payload.endswith(bytes.fromhex("150000803f"))
    rec = frame_record(payload)
    assert rec[:12].hex() == "e200000000000000" + "7a659982"
    assert rec[-4:].hex() == "61d88e78"


def test_doc_vector_4_file_version() -> None:
    payload = S.file_version_event(1700000000.0, writer=None)
    assert frame_record(payload).hex() == (
        "1800000000000000a37f4b22" + "09000000 40fc54d941 1a0d627261696e2e4576656e743a32".replace(" ", "") + "eced8f9d"
    )


def test_doc_vectors_modern_scalar_and_text() -> None:
    v = S.scalar_value("loss", 0.25, new_style=True)
    assert v.hex() == "0a046c6f7373" + "420a08011200220400008 03e".replace(" ", "") + "4a0b0a090a077363616c617273"
    assert S.text_value("note", "hello").hex() == (
        "0a046e6f7465420b0807120042056865 6c6c6f4a080a060a0474657874".replace(" ", "")
    )


def test_doc_vectors_hparams() -> None:
    start = S.hparams_session_start({"lr": 0.1}, group_name="g0", start_time=0.0)
    assert bytes.fromhex("1a150a0f0a026c721209119a9999999999b93f22026730") in start
    end = S.hparams_session_end(S.SessionStatus.SUCCESS, 1700000100.0)
    assert bytes.fromhex("220b0801110000005 9fc54d941".replace(" ", "")) in end


# --------------------------------------------------------------------------------------------- scalars


@given(TAG, VALUE, INT64, WALL)
def test_scalar_event_matches_protobuf(tag: str, value: float, step: int, wall: float) -> None:
    assert S.scalar_event(tag, value, step, wall) == pb_scalar_event(tag, value, step, wall)


@given(TAG, VALUE, st.booleans(), st.booleans())
def test_modern_scalar_matches_protobuf(tag: str, value: float, double: bool, metadata: bool) -> None:
    v = summary_pb2.Summary.Value(tag=tag)
    if double:
        v.tensor.dtype = types_pb2.DT_DOUBLE
        v.tensor.tensor_content = struct.pack("<d", value)
    else:
        v.tensor.dtype = types_pb2.DT_FLOAT
        with np.errstate(over="ignore"):
            v.tensor.tensor_content = np.float32(value).tobytes()
    v.tensor.tensor_shape.SetInParent()
    if metadata:
        v.metadata.plugin_data.plugin_name = "scalars"
    ours = S.scalar_value(tag, value, new_style=True, double_precision=double, metadata=metadata)
    assert ours == v.SerializeToString()


POINTS = st.lists(st.tuples(INT64, WALL, VALUE), max_size=60)


@settings(max_examples=150)
@given(TAG, POINTS)
def test_encode_scalars_matches_protobuf(tag: str, points: list[tuple[int, float, float]]) -> None:
    steps = np.array([p[0] for p in points], dtype=np.int64)
    walls = np.array([p[1] for p in points], dtype=np.float64)
    vals = np.array([p[2] for p in points], dtype=np.float64)
    expected = b"".join(pb_frame(pb_scalar_event(tag, v, s, w)) for s, w, v in points)
    assert S.encode_scalars(tag, steps, walls, vals) == expected


@pytest.mark.parametrize("pattern", ["increasing", "alternating", "random"])
def test_encode_scalars_large_batches(pattern: str) -> None:
    rng = np.random.default_rng(1)
    n = 20_000
    if pattern == "increasing":
        steps = np.arange(-5, n - 5, dtype=np.int64) * 7
    elif pattern == "alternating":  # every row changes the step varint length: the scatter path
        steps = np.where(np.arange(n) % 2 == 0, 5, -(2**40)).astype(np.int64)
    else:
        steps = rng.integers(-(2**63), 2**63 - 1, n, dtype=np.int64) >> rng.integers(0, 63, n)
    walls = 1.7e9 + rng.random(n) * 1000
    walls[::97] = 0.0
    vals = rng.normal(size=n) * 10.0 ** rng.integers(-40, 40, n)
    data = S.encode_scalars("metrics/loss", steps, walls, vals)
    sel = range(0, n, 37)
    offset, got = 0, {}
    for i in range(n):
        size = struct.unpack_from("<Q", data, offset)[0] + 16
        if i in sel:
            got[i] = data[offset : offset + size]
        offset += size
    assert offset == len(data)
    for i in sel:
        assert got[i] == pb_frame(pb_scalar_event("metrics/loss", float(vals[i]), int(steps[i]), float(walls[i])))


def test_encode_scalars_scalar_wall_time_and_errors() -> None:
    data = S.encode_scalars("x", [1, 2], 5.0, [0.5, 1.5])
    assert data == pb_frame(pb_scalar_event("x", 0.5, 1, 5.0)) + pb_frame(pb_scalar_event("x", 1.5, 2, 5.0))
    assert S.encode_scalars("x", [], [], []) == b""
    with pytest.raises(ValueError):
        S.encode_scalars("x", [1, 2], 5.0, [1.0])
    with pytest.raises(TypeError):
        S.encode_scalars("x", [1.5], 5.0, [1.0])


@settings(max_examples=100)
@given(TAG, st.lists(POINTS, max_size=8))
def test_encode_scalar_series_gives_each_series_its_own_encoding(
    tag: str, series: list[list[tuple[int, float, float]]]
) -> None:
    points = [p for one in series for p in one]
    steps = np.array([p[0] for p in points], dtype=np.int64)
    walls = np.array([p[1] for p in points], dtype=np.float64)
    vals = np.array([p[2] for p in points], dtype=np.float64)
    data, offsets = S.encode_scalar_series(tag, steps, walls, vals, [len(one) for one in series])
    assert len(offsets) == len(series) + 1 and offsets[0] == 0 and offsets[-1] == len(data)
    for i, one in enumerate(series):
        expected = b"".join(pb_frame(pb_scalar_event(tag, v, s, w)) for s, w, v in one)
        assert bytes(data[offsets[i] : offsets[i + 1]]) == expected


def test_encode_scalar_series_many_short_series_and_errors() -> None:
    # 300 series of steps 0..99 (step 0 has no varint: the layout changes at every series, the scatter path)
    rng = np.random.default_rng(3)
    steps = np.tile(np.arange(100, dtype=np.int64), 300)
    walls = 1.7e9 + rng.random(steps.size)
    vals = rng.random(steps.size)
    data, offsets = S.encode_scalar_series("mse", steps, walls, vals, [100] * 300)
    for i in (0, 1, 150, 299):
        part = slice(100 * i, 100 * (i + 1))
        assert bytes(data[offsets[i] : offsets[i + 1]]) == S.encode_scalars("mse", steps[part], walls[part], vals[part])
    with pytest.raises(ValueError, match="lengths add up to 99 points, but 100"):
        S.encode_scalar_series("x", np.arange(100), 1.0, np.zeros(100), [50, 49])


# --------------------------------------------------------------------------------------------- events, text


@given(st.lists(TAG, max_size=4), INT64, WALL)
def test_summary_event_several_values(tags: list[str], step: int, wall: float) -> None:
    ev = event_pb2.Event(wall_time=wall, step=step)
    ev.summary.SetInParent()
    for i, t in enumerate(tags):
        ev.summary.value.add(tag=t, simple_value=float(i))
    ours = S.summary_event([S.scalar_value(t, float(i)) for i, t in enumerate(tags)], step, wall)
    assert ours == ev.SerializeToString()


@given(WALL, st.text(max_size=20))
def test_file_version_matches_protobuf(wall: float, writer: str) -> None:
    ev = event_pb2.Event(wall_time=wall, file_version="brain.Event:2")
    ev.source_metadata.writer = writer
    assert S.file_version_event(wall, writer) == ev.SerializeToString()


def text_proto(tag: str, items: list[str], rank: int) -> bytes:
    v = summary_pb2.Summary.Value(tag=tag)
    v.metadata.plugin_data.plugin_name = "text"
    v.tensor.dtype = types_pb2.DT_STRING
    v.tensor.tensor_shape.SetInParent()
    if rank == 1:
        v.tensor.tensor_shape.dim.add(size=len(items))
    v.tensor.string_val.extend(s.encode() for s in items)
    return v.SerializeToString()


@given(TAG, st.text(max_size=300), st.lists(st.text(max_size=20), min_size=1, max_size=5))
def test_text_matches_protobuf(tag: str, text: str, rows: list[str]) -> None:
    assert S.text_value(tag, text) == text_proto(tag, [text], 0)
    assert S.text_value(tag, rows) == text_proto(tag, rows, 1)


# --------------------------------------------------------------------------------------------- images, histograms


@pytest.mark.parametrize(
    ("shape", "fmt", "channels"),
    [((5, 7, 3), "HWC", 3), ((4, 5, 7), "CHW", 4), ((5, 7), "HW", 1), ((2, 5, 7), "CHW", 2)],
)
def test_image_value(shape: tuple[int, ...], fmt: str, channels: int) -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, shape, dtype=np.uint8)
    v = summary_pb2.Summary.Value.FromString(S.image_value("im", img, dataformats=fmt))
    assert (v.tag, v.image.height, v.image.width, v.image.colorspace) == ("im", 5, 7, channels)
    import io

    from PIL import Image

    decoded = np.asarray(Image.open(io.BytesIO(v.image.encoded_image_string)))
    hwc = np.moveaxis(img, fmt.index("C"), -1) if "C" in fmt else img
    assert np.array_equal(decoded, hwc if channels > 1 else hwc.reshape(5, 7))
    # re-encoding the parsed message gives our bytes back: our field order and sizes are protobuf's
    assert v.SerializeToString() == S.image_value("im", img, dataformats=fmt)


def test_png_fallback_encoder_decodes_with_pillow() -> None:
    import io

    from PIL import Image

    from expboard.tfevents._png import encode_png_zlib

    rng = np.random.default_rng(0)
    for c in (1, 2, 3, 4):
        img = rng.integers(0, 256, (9, 4, c), dtype=np.uint8)
        got = np.asarray(Image.open(io.BytesIO(encode_png_zlib(img))))
        assert np.array_equal(got.reshape(9, 4, c), img)


def test_float_image_scaled() -> None:
    img = np.array([[0.0, 0.5, 1.0, 2.0]], dtype=np.float32)
    v = summary_pb2.Summary.Value.FromString(S.image_value("im", img, dataformats="HW"))
    import io

    from PIL import Image

    assert np.asarray(Image.open(io.BytesIO(v.image.encoded_image_string))).tolist() == [[0, 127, 255, 255]]


@given(
    st.lists(st.floats(min_value=-1e6, max_value=1e6), min_size=1, max_size=200),
    st.sampled_from(["tensorflow", 5, 30, "auto"]),
)
def test_histogram_matches_protobuf(values: list[float], bins: str | int) -> None:
    ours = S.histogram_value("h", values, bins=bins)
    v = summary_pb2.Summary.Value.FromString(ours)
    assert v.SerializeToString() == ours
    arr = np.asarray(values)
    assert v.histo.num == len(values) and v.histo.min == arr.min() and v.histo.max == arr.max()
    assert v.histo.sum == pytest.approx(arr.sum()) and v.histo.sum_squares == pytest.approx(arr.dot(arr))
    assert sum(v.histo.bucket) == len(values)
    assert list(v.histo.bucket_limit) == sorted(v.histo.bucket_limit)
    assert len(v.histo.bucket) == len(v.histo.bucket_limit)
    # every value lies in its bucket: left edge (previous limit) < x <= right edge (numpy: left-closed bins)
    limits = np.asarray(v.histo.bucket_limit)
    assert arr.max() <= limits[-1] and arr.min() >= limits[0]


def test_histogram_rejects_empty_and_counts_nan_like_torch() -> None:
    with pytest.raises(ValueError):
        S.histogram_value("h", [])
    # torch's SummaryWriter does not stop a training loop on NaN/inf: they are left out of the buckets
    v = summary_pb2.Summary.Value.FromString(S.histogram_value("h", [1.0, float("nan"), float("inf"), 2.0]))
    assert v.histo.num == 4 and sum(v.histo.bucket) == 2 and np.isnan(v.histo.min)


# --------------------------------------------------------------------------------------------- hparams

HP_VALUE = st.one_of(st.booleans(), st.floats(allow_nan=False), st.integers(-(2**40), 2**40), st.text(max_size=10))


def pb_hparams_value(tag: str, plugin_data: plugin_data_pb2.HParamsPluginData) -> bytes:
    v = summary_pb2.Summary.Value(tag=tag)
    v.metadata.plugin_data.plugin_name = "hparams"
    v.metadata.plugin_data.content = plugin_data.SerializeToString(deterministic=True)
    v.tensor.dtype = types_pb2.DT_FLOAT
    v.tensor.tensor_shape.CopyFrom(
        tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=0)])
    )
    return v.SerializeToString()


def set_pb_value(target, v) -> None:
    if isinstance(v, bool):
        target.bool_value = v
    elif isinstance(v, int | float):
        target.number_value = float(v)
    else:
        target.string_value = v


@given(
    st.dictionaries(st.text(min_size=1, max_size=10), HP_VALUE, max_size=6),
    st.text(max_size=10),
    st.one_of(st.just(0.0), st.floats(min_value=0, max_value=2e9)),
)
def test_session_start_matches_protobuf(hparams: dict, group: str, start: float) -> None:
    pd = plugin_data_pb2.HParamsPluginData()
    ssi = pd.session_start_info
    ssi.group_name = group
    ssi.start_time_secs = start
    for k, v in hparams.items():
        set_pb_value(ssi.hparams[k], v)
    ours = S.hparams_session_start(hparams, group, start)
    expected = pb_hparams_value("_hparams_/session_start_info", pd)
    if len(hparams) <= 1:
        assert ours == expected
    else:  # map entry order is free, and upb's "deterministic" order is not plain sorting: compare parsed
        v = summary_pb2.Summary.Value.FromString(ours)
        assert plugin_data_pb2.HParamsPluginData.FromString(v.metadata.plugin_data.content) == pd
        v.metadata.plugin_data.content = pd.SerializeToString(deterministic=True)
        assert v.SerializeToString() == expected


@given(st.sampled_from(list(S.SessionStatus)), st.one_of(st.just(0.0), st.floats(min_value=0, max_value=2e9)))
def test_session_end_matches_protobuf(status: S.SessionStatus, end: float) -> None:
    pd = plugin_data_pb2.HParamsPluginData()
    pd.session_end_info.status = int(status)
    pd.session_end_info.end_time_secs = end
    assert S.hparams_session_end(status, end) == pb_hparams_value("_hparams_/session_end_info", pd)


def test_experiment_matches_protobuf() -> None:
    hps = [
        S.HParam("lr", interval=(1e-4, 0.1), description="learning rate"),
        S.HParam("opt", values=["adam", "sgd"]),
        S.HParam("bn", values=[True, False], display_name="batch norm"),
        S.HParam("layers", values=[1, 2, 4]),
        "free",
    ]
    metrics = [S.MetricSpec("loss", group="validation", dataset_type=S.DatasetType.VALIDATION), "acc"]
    ours = S.hparams_experiment(hps, metrics, name="exp", description="d", user="u", time_created_secs=1.7e9)
    pd = plugin_data_pb2.HParamsPluginData()
    exp = pd.experiment
    exp.name, exp.description, exp.user, exp.time_created_secs = "exp", "d", "u", 1.7e9
    exp.hparam_infos.add(
        name="lr",
        description="learning rate",
        type=api_pb2.DATA_TYPE_FLOAT64,
        domain_interval=api_pb2.Interval(min_value=1e-4, max_value=0.1),
    )
    h = exp.hparam_infos.add(name="opt", type=api_pb2.DATA_TYPE_STRING)
    h.domain_discrete.extend(["adam", "sgd"])
    h = exp.hparam_infos.add(name="bn", display_name="batch norm", type=api_pb2.DATA_TYPE_BOOL)
    h.domain_discrete.extend([True, False])
    h = exp.hparam_infos.add(name="layers", type=api_pb2.DATA_TYPE_FLOAT64)
    h.domain_discrete.extend([1.0, 2.0, 4.0])
    exp.hparam_infos.add(name="free")
    exp.metric_infos.add(
        name=api_pb2.MetricName(group="validation", tag="loss"), dataset_type=api_pb2.DATASET_VALIDATION
    )
    exp.metric_infos.add(name=api_pb2.MetricName(tag="acc"))
    assert ours == pb_hparams_value("_hparams_/experiment", pd)
