"""Our files read by TensorBoard's EventAccumulator; torch's and tensorboardX's files read by our reader."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator as ea
from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2

from expboard.tfevents import RunReader, SummaryWriter, read_scalars

GUIDANCE = {ea.SCALARS: 0, ea.TENSORS: 0, ea.IMAGES: 0, ea.HISTOGRAMS: 0}


def load(run: Path) -> ea.EventAccumulator:
    acc = ea.EventAccumulator(str(run), size_guidance=GUIDANCE)
    acc.Reload()
    return acc


def test_tensorboard_reads_our_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (3, 8, 6), dtype=np.uint8)
    hist = rng.normal(size=1000)
    with SummaryWriter(tmp_path) as w:
        for i in range(2000):
            w.add_scalar("train/loss", 1.0 / (i + 1), i, walltime=1.7e9 + i)
        w.add_scalar("modern", 2.5, 3, walltime=1.7e9, new_style=True)
        w.add_text("notes", "hello **world**", 5)
        w.add_image("img", img, 6)
        w.add_histogram("weights", hist, 7)
    acc = load(tmp_path)
    events = acc.Scalars("train/loss")
    assert [e.step for e in events] == list(range(2000))
    assert [e.value for e in events] == [float(np.float32(1.0 / (i + 1))) for i in range(2000)]
    assert [e.wall_time for e in events] == [1.7e9 + i for i in range(2000)]
    (t,) = acc.Tensors("modern")
    assert (
        t.step == 3
        and float(
            t.tensor_proto.float_val[0]
            if t.tensor_proto.float_val
            else np.frombuffer(t.tensor_proto.tensor_content, "<f4")[0]
        )
        == 2.5
    )
    (text,) = acc.Tensors("notes/text_summary")  # torch's tag
    assert text.step == 5 and text.tensor_proto.string_val == [b"hello **world**"]
    assert acc.SummaryMetadata("notes/text_summary").plugin_data.plugin_name == "text"
    (im,) = acc.Images("img")
    from PIL import Image

    assert (im.step, im.height, im.width) == (6, 8, 6)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(im.encoded_image_string))), img.transpose(1, 2, 0))
    (h,) = acc.Histograms("weights")
    assert h.step == 7 and h.histogram_value.num == 1000
    assert h.histogram_value.min == hist.min() and h.histogram_value.max == hist.max()
    assert sum(h.histogram_value.bucket) == 1000


def test_tensorboard_reads_our_hparams(tmp_path: Path) -> None:
    with SummaryWriter(tmp_path) as w:
        w.add_hparams(
            {"lr": 0.01, "opt": "adam", "bn": True},
            {"hp/loss": 0.25},
            hparam_domain_discrete={"opt": ["adam", "sgd"]},
            run_name="trial1",
        )
    from tensorboard.backend.event_processing import plugin_event_accumulator as pea

    acc = pea.EventAccumulator(str(tmp_path / "trial1"), size_guidance={"tensors": 0})
    acc.Reload()  # torch writes the hparams summaries as metadata only: the plugin loader lists them
    md = {tag: acc.SummaryMetadata(tag) for tag in acc.Tags()["tensors"] if tag.startswith("_hparams_/")}
    assert set(md) == {"_hparams_/experiment", "_hparams_/session_start_info", "_hparams_/session_end_info"}
    for m in md.values():
        assert m.plugin_data.plugin_name == "hparams"
    start = plugin_data_pb2.HParamsPluginData.FromString(md["_hparams_/session_start_info"].plugin_data.content)
    hp = start.session_start_info.hparams
    # torch types a bool as a number (bool is an int in Python): 1.0, DATA_TYPE_FLOAT64
    assert hp["lr"].number_value == 0.01 and hp["opt"].string_value == "adam" and hp["bn"].number_value == 1.0
    exp = plugin_data_pb2.HParamsPluginData.FromString(md["_hparams_/experiment"].plugin_data.content).experiment
    assert [i.name for i in exp.hparam_infos] == ["lr", "opt", "bn"]
    assert [v.string_value for v in exp.hparam_infos[1].domain_discrete.values] == ["adam", "sgd"]
    float64, string = api_pb2.DATA_TYPE_FLOAT64, api_pb2.DATA_TYPE_STRING
    assert [i.type for i in exp.hparam_infos] == [float64, string, float64]
    assert [m.name.tag for m in exp.metric_infos] == ["hp/loss"]
    end = plugin_data_pb2.HParamsPluginData.FromString(md["_hparams_/session_end_info"].plugin_data.content)
    assert end.session_end_info.status == api_pb2.STATUS_SUCCESS
    assert [e.value for e in load(tmp_path / "trial1").Scalars("hp/loss")] == [0.25]


def test_add_scalars_subruns_like_torch(tmp_path: Path) -> None:
    with SummaryWriter(tmp_path) as w:
        for i in range(3):
            w.add_scalars("run/loss", {"train": i * 1.0, "val": i * 2.0}, i)
    for sub, factor in (("run_loss_train", 1.0), ("run_loss_val", 2.0)):
        assert [e.value for e in load(tmp_path / sub).Scalars("run/loss")] == [i * factor for i in range(3)]


torch_tb = pytest.importorskip("torch.utils.tensorboard")


def _compare_with_peer(run: Path, n: int) -> None:
    got = read_scalars(run)
    assert got["loss"].steps.tolist() == list(range(n))
    np.testing.assert_array_equal(got["loss"].values, np.float32(np.arange(n) * 0.1).astype(np.float64))
    assert got["wide"].values.tolist() == [1e-300 * 0] + [float(np.float32(1.5))] * (n - 1)
    events = [e for e in RunReader(run).events()]
    texts = [v.text for e in events for v in e.summary or () if v.text is not None]
    assert texts == ["some *text*"]
    hists = [v.histo for e in events for v in e.summary or () if v.histo is not None]
    assert len(hists) == 1 and hists[0].num == 100 and sum(hists[0].bucket) == 100
    imgs = [v.image for e in events for v in e.summary or () if v.image is not None]
    assert len(imgs) == 1 and (imgs[0].height, imgs[0].width) == (4, 5)


def _peer_write(cls, run: Path, n: int) -> None:
    w = cls(str(run))
    for i in range(n):
        w.add_scalar("loss", i * 0.1, i)
        w.add_scalar("wide", 0.0 if i == 0 else 1.5, i)
    w.add_text("t", "some *text*", 1)
    w.add_histogram("h", np.linspace(-1, 1, 100), 1)
    w.add_image("i", np.zeros((3, 4, 5), dtype=np.float32), 1)
    w.close()


def test_torch_files_read_by_us(tmp_path: Path) -> None:
    _peer_write(torch_tb.SummaryWriter, tmp_path, 200)
    _compare_with_peer(tmp_path, 200)


def test_tensorboardx_files_read_by_us(tmp_path: Path) -> None:
    tbx = pytest.importorskip("tensorboardX")
    _peer_write(tbx.SummaryWriter, tmp_path, 200)
    _compare_with_peer(tmp_path, 200)


def test_torch_new_style_and_double_scalars(tmp_path: Path) -> None:
    w = torch_tb.SummaryWriter(str(tmp_path))
    for i in range(10):
        w.add_scalar("f", i * 0.25, i, new_style=True)
        w.add_scalar("d", i / 3, i, new_style=True, double_precision=True)
    w.close()
    got = read_scalars(tmp_path)
    assert got["f"].values.tolist() == [i * 0.25 for i in range(10)]
    assert got["d"].values.tolist() == [i / 3 for i in range(10)]
    assert got["d"].steps.tolist() == list(range(10))


def test_text_tables_and_encoded_images_read_by_tensorboard(tmp_path: Path) -> None:
    from PIL import Image

    from expboard.tfevents import EventFileWriter, encoded_image_value, image_size, summary_event, text_table_value

    buf = io.BytesIO()
    Image.new("RGBA", (7, 5), (10, 20, 30, 255)).save(buf, format="PNG")
    png = buf.getvalue()
    assert image_size(png) == (5, 7, 4)
    assert image_size(b"not an image") == (0, 0, 0)
    with EventFileWriter(tmp_path) as w:
        w.write_event(summary_event([text_table_value("cm", [["", "a"], ["a", "5"]])], step=1))
        w.write_event(summary_event([encoded_image_value("img", png)], step=2))
    acc = ea.EventAccumulator(str(tmp_path), size_guidance={ea.TENSORS: 0, ea.IMAGES: 0})
    acc.Reload()
    (table,) = acc.Tensors("cm")
    assert list(table.tensor_proto.tensor_shape.dim[i].size for i in range(2)) == [2, 2]
    assert [s.decode() for s in table.tensor_proto.string_val] == ["", "a", "a", "5"]
    (image,) = acc.Images("img")
    assert (image.height, image.width, image.step) == (5, 7, 2) and image.encoded_image_string == png
