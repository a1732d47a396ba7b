"""The same calls made on torch's SummaryWriter and on ours: what TensorBoard's loaders return must match.

In-process: TensorBoard's Python loader (``plugin_event_accumulator``, behind ``--load_fast=false``) on both
logdirs, every run and tag compared. Over HTTP: a real ``tensorboard`` in both loader modes on one logdir
holding both writers' output, comparing what each plugin serves for ``torch/...`` and ``ours/...``.
"""

from __future__ import annotations

import io
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")
matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

from tensorboard.backend.event_processing import plugin_event_accumulator as pea  # noqa: E402
from tensorboard.util import tensor_util  # noqa: E402
from torch.utils.tensorboard import SummaryWriter as TorchWriter  # noqa: E402

from expboard import SummaryWriter  # noqa: E402

WALL = 1_700_000_000.0
PLUGINS = ("audio", "custom_scalars", "graphs", "mesh", "pr_curves", "projector")


def figure() -> Any:
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(2, 1.5), dpi=50)
    plt.plot([0, 1, 4, 9])
    return fig


class Tiny(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.l1 = torch.nn.Linear(3, 4)
        self.l2 = torch.nn.Linear(4, 2)

    def forward(self, x: Any) -> Any:
        return self.l2(torch.relu(self.l1(x)))


def write_everything(w: Any) -> None:
    """One call of every method (add_video aside: torch writes it only with moviepy installed)."""
    rng = np.random.default_rng(0)
    w.add_scalar("s/legacy", 0.5, 1, WALL)
    w.add_scalar("s/legacy", 0.75, 2, WALL + 1)
    w.add_scalar("s/new", 0.25, 2, WALL, new_style=True)
    w.add_scalar("s/double", 1 / 3, 3, WALL, new_style=True, double_precision=True)
    w.add_scalar("s/bf16_0d", torch.tensor(1.5, dtype=torch.bfloat16), torch.tensor(4), WALL)
    w.add_scalar("s/half_1", torch.tensor([2.5], dtype=torch.half), 5, WALL)
    w.add_scalar("s/np_1", np.array([3.5]), np.int64(6), WALL)
    w.add_scalar("s/int", 7, 7, WALL)
    w.add_scalars("group", {"a": 1.0, "b": torch.tensor(2.0)}, 1, WALL)
    w.add_tensor("tensor/int", torch.tensor([[1, 2], [3, 4]], dtype=torch.int32), 1, WALL)
    w.add_tensor("tensor/f32", torch.tensor([0.5, 1.5]), 1, WALL)
    w.add_histogram("h/tf", rng.normal(size=1000), 1, walltime=WALL)
    w.add_histogram("h/auto", np.arange(1024.0), 1, bins="auto", walltime=WALL, max_bins=5)
    w.add_histogram("h/count", rng.normal(size=200), 1, bins=10, walltime=WALL, max_bins=3)
    w.add_histogram("h/bf16", torch.arange(50, dtype=torch.bfloat16) / 64, 2, walltime=WALL)
    w.add_histogram_raw("h/raw", 0, 1, 4, 2, 1.5, [0.5, 1.0], [2, 2], 1, WALL)
    w.add_image("img/chw", rng.random((3, 8, 6)), 1, WALL)
    w.add_image("img/gray", rng.random((1, 8, 8)), 1, WALL)
    w.add_image("img/hw", rng.integers(0, 256, (5, 7), dtype=np.uint8), 1, WALL, dataformats="HW")
    w.add_image("img/rgba", rng.integers(0, 256, (6, 6, 4), dtype=np.uint8), 1, WALL, dataformats="HWC")
    w.add_image("img/torch_half", torch.tensor(rng.random((3, 4, 4))).half(), 1, WALL)
    w.add_images("img/batch", rng.random((5, 3, 8, 8)), 1, WALL)
    w.add_images("img/batch_gray", rng.random((3, 1, 4, 4)), 1, WALL)
    w.add_image_with_boxes("img/boxes", np.zeros((3, 32, 32)), np.array([[2, 2, 20, 20], [5, 6, 30, 28]]), 1, WALL)
    w.add_figure("fig", figure(), 1, walltime=WALL)
    w.add_figure("figs", [figure(), figure()], 2, walltime=WALL)
    w.add_audio("audio", np.sin(np.linspace(0, 200, 8000)), 1, 16000, WALL)
    w.add_text("text", "**bold** text", 1, WALL)
    w.add_pr_curve("pr", rng.integers(0, 2, 100), rng.random(100), 1, walltime=WALL)
    w.add_pr_curve("pr_w", rng.integers(0, 2, 50), rng.random(50), 1, num_thresholds=20, walltime=WALL)
    w.add_pr_curve_raw(
        "pr_raw", [75, 64, 21, 5, 0], [150, 105, 18, 0, 0], [0, 45, 132, 150, 150], [0, 11, 54, 70, 75],
        [0.3333333, 0.3786982, 0.5384616, 1.0, 0.0], [1.0, 0.8533334, 0.28, 0.0666667, 0.0], 1, 5, walltime=WALL,
    )  # fmt: skip
    w.add_custom_scalars({"losses": {"both": ["Multiline", ["s/legacy", "s/new"]]}})
    w.add_custom_scalars_multilinechart(["s/int"], category="more", title="ints")
    w.add_custom_scalars_marginchart(["s/legacy", "s/new", "s/int"], category="more", title="band")
    v = np.array([[[1, 1, 1], [-1, -1, 1], [1, -1, -1], [-1, 1, -1]]], dtype=float)
    c = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 0, 255]]], dtype=int)
    f = np.array([[[0, 2, 3], [0, 3, 1], [0, 1, 2], [1, 3, 2]]], dtype=int)
    w.add_mesh("mesh", v, colors=c, faces=f, config_dict={"camera": {"fov": 75}}, global_step=1, walltime=WALL)
    w.add_hparams({"lr": 0.1, "bn": True, "opt": "adam", "n": 3}, {"hp/acc": 0.9}, run_name="hp")
    w.add_hparams({"lr": 0.2, "bn": False, "opt": "sgd", "n": 4}, {"hp/acc": 0.8}, {"opt": ["adam", "sgd"]}, "hp2")
    w.add_embedding(
        torch.tensor(rng.random((20, 4)), dtype=torch.float32),
        metadata=[f"p{i}" for i in range(20)],
        label_img=torch.tensor(rng.random((20, 3, 4, 4))),
        global_step=1,
        tag="emb/points",
    )
    w.add_embedding(rng.random((6, 3)), metadata=[[i, i % 2] for i in range(6)], metadata_header=["i", "odd"])
    w.add_graph(Tiny(), torch.zeros(2, 3))
    w.flush()


def run_dirs(logdir: Path) -> list[str]:
    out = []
    for folder, _dirs, files in os.walk(logdir):
        if any("tfevents" in f for f in files):
            out.append(os.path.relpath(folder, logdir))
    return sorted(out)


def normalized(plugin: str, tensor: Any) -> Any:
    arr = tensor_util.make_ndarray(tensor)
    if plugin == "images":  # [width, height, png, png...]: compare pixels, not PNG compression
        return [arr[0], arr[1]] + [np.asarray(Image.open(io.BytesIO(b))).tolist() for b in arr[2:]]
    return arr.tolist()


def load(run: Path) -> dict[str, Any]:
    acc = pea.EventAccumulator(str(run), size_guidance={"tensors": 0, "graph": 0})
    acc.Reload()
    data: dict[str, Any] = {}
    for tag in acc.Tags()["tensors"]:
        md = acc.SummaryMetadata(tag)
        plugin = md.plugin_data.plugin_name
        content = md.plugin_data.content
        events = [(e.step, normalized(plugin, e.tensor_proto)) for e in acc.Tensors(tag)]
        data[tag] = (plugin, content, md.data_class, events)
    if acc.Tags().get("graph"):
        graph = acc.Graph()
        data["<graph>"] = [(n.name, n.op, list(n.input)) for n in graph.node]
    return data


@pytest.fixture(scope="module")
def logdirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("parity")
    with TorchWriter(str(root / "torch")) as tw:
        write_everything(tw)
    with SummaryWriter(root / "ours") as ow:
        write_everything(ow)
    return root / "torch", root / "ours"


def test_same_runs_tags_and_values_in_tensorboards_python_loader(logdirs: tuple[Path, Path]) -> None:
    torch_dir, ours_dir = logdirs
    runs = run_dirs(torch_dir)
    assert runs == run_dirs(ours_dir)
    assert {".", "group_a", "group_b", "hp", "hp2"} <= set(runs)
    for run in runs:
        theirs, mine = load(torch_dir / run), load(ours_dir / run)
        assert sorted(mine) == sorted(theirs), run
        for tag in theirs:
            if tag == "<graph>":
                assert mine[tag] == theirs[tag]
                continue
            t_plugin, t_content, t_class, t_events = theirs[tag]
            m_plugin, m_content, m_class, m_events = mine[tag]
            assert (m_plugin, m_class) == (t_plugin, t_class), (run, tag)
            if t_plugin != "images":  # image metadata says nothing beyond the plugin
                assert m_content == t_content, (run, tag)
            assert m_events == t_events, (run, tag)


def test_text_tag_image_channels_and_hparams_types_as_torch(logdirs: tuple[Path, Path]) -> None:
    _, ours_dir = logdirs
    data = load(ours_dir)
    assert "text/text_summary" in data and "text" not in data
    width, height, *pixels = data["img/gray"][3][0][1]
    assert np.asarray(pixels[0]).shape == (8, 8, 3)  # one channel is written as RGB, as torch does
    from tensorboard.plugins.hparams import plugin_data_pb2

    hp = load(ours_dir / "hp")
    start = plugin_data_pb2.HParamsPluginData.FromString(hp["_hparams_/session_start_info"][1])
    assert start.session_start_info.hparams["bn"].number_value == 1.0  # a bool is a number for torch


def test_embedding_files_as_torch(logdirs: tuple[Path, Path]) -> None:
    torch_dir, ours_dir = logdirs
    assert (ours_dir / "projector_config.pbtxt").read_text() == (torch_dir / "projector_config.pbtxt").read_text()
    for sub in ("00001/emb%2fpoints", "00000/default"):
        for name in ("tensors.tsv", "metadata.tsv"):
            assert (ours_dir / sub / name).read_bytes() == (torch_dir / sub / name).read_bytes(), (sub, name)
    sprites = [np.asarray(Image.open(d / "00001/emb%2fpoints/sprite.png")) for d in (torch_dir, ours_dir)]
    assert np.array_equal(sprites[0], sprites[1])


def test_graph_needs_torch_and_onnx_graph_needs_onnx_clearly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_torch(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "torch" or name.startswith("torch.") or name == "onnx":
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    with SummaryWriter(tmp_path) as w:
        monkeypatch.setattr(builtins, "__import__", no_torch)
        with pytest.raises(ImportError, match="add_graph .* needs torch"):
            w.add_graph(object(), None)
        with pytest.raises(ImportError, match="add_onnx_graph .* needs onnx"):
            w.add_onnx_graph("model.onnx")
        w.add_scalar("still", 1.0, 1)  # nothing else needs torch
        monkeypatch.undo()
    assert load(tmp_path)["still"][3] == [(1, 1.0)]


# --------------------------------------------------------------------------------------------- HTTP


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as resp:
        return json.loads(resp.read())


def wait_for(predicate: Any, timeout: float = 90.0) -> Any:
    import time

    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except (urllib.error.URLError, OSError, ValueError):
            value = None
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"not met within {timeout} s (last value: {value!r})")


@pytest.fixture(scope="module", params=["true", "false"], ids=["rust-loader", "python-loader"])
def board(request: pytest.FixtureRequest, logdirs: tuple[Path, Path]) -> Iterator[str]:
    from expboard.tensorboard.launcher import Tensorboard

    tb = Tensorboard([], local_root=logdirs[0].parent, port=0, load_fast=request.param)
    url = tb.start()
    try:
        yield url
    finally:
        tb.stop()


def by_writer(listing: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split a run -> data mapping into torch's and ours, with the ``torch/`` / ``ours/`` prefix removed."""
    parts: dict[str, dict[str, Any]] = {"torch": {}, "ours": {}}
    for run, data in listing.items():
        writer, _, rest = run.partition("/")
        parts[writer][rest or "."] = data
    return parts["torch"], parts["ours"]


def test_plugins_listing_and_per_plugin_tags_over_http(board: str) -> None:
    listing = wait_for(
        lambda: (d := get_json(board + "data/plugins_listing")) and all(d[p]["enabled"] for p in PLUGINS) and d
    )
    for plugin in (*PLUGINS, "scalars", "histograms", "images", "text", "hparams"):
        assert listing[plugin]["enabled"], plugin
    for plugin in ("scalars", "histograms", "images", "audio", "text", "pr_curves", "mesh"):
        theirs, mine = by_writer(wait_for(lambda plugin=plugin: get_json(f"{board}data/plugin/{plugin}/tags")))
        assert mine == theirs, plugin
        assert mine, plugin
    graphs = wait_for(lambda: get_json(board + "data/plugin/graphs/info"))
    assert {"torch", "ours"} <= set(graphs)
    assert set(wait_for(lambda: get_json(board + "data/plugin/projector/runs"))) >= {"torch", "ours"}
    for tag in ("s/legacy", "s/new", "s/bf16_0d", "s/half_1", "s/np_1", "s/int"):
        series = {}
        for writer in ("torch", "ours"):
            q = urllib.parse.urlencode({"run": writer, "tag": tag})
            series[writer] = [
                (step, value) for _wall, step, value in get_json(f"{board}data/plugin/scalars/scalars?{q}")
            ]
        assert series["ours"] == series["torch"] and series["ours"], tag


def test_hparams_sessions_over_http(board: str) -> None:
    body = {
        "startIndex": 0,
        "sliceSize": 100,
        "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"],
        "colParams": [],
        "aggregationType": "AGGREGATION_AVG",
    }

    def groups() -> Any:
        req = urllib.request.Request(
            board + "data/plugin/hparams/session_groups",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            got = json.loads(resp.read()).get("sessionGroups", [])
        return got if len(got) == 4 else None

    sessions = {g["name"]: (g["hparams"], g["sessions"][0]["status"]) for g in wait_for(groups)}
    for run in ("hp", "hp2"):
        assert sessions[f"ours/{run}"] == sessions[f"torch/{run}"]
    assert sessions["ours/hp"][0] == {"lr": 0.1, "bn": 1.0, "opt": "adam", "n": 3.0}
