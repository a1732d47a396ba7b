"""``expboard.tfevents.summary`` builders against ``torch.utils.tensorboard.summary``: same names, same
arguments, equal ``Summary`` messages (images compared by pixels: the PNG compression differs)."""

from __future__ import annotations

import io
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from expboard.tfevents import summary as S

torch = pytest.importorskip("torch")
from torch.utils.tensorboard import summary as T  # noqa: E402

BUILDERS = ("scalar", "histogram", "image", "text", "audio", "video", "hparams", "pr_curve", "custom_scalars", "mesh")


def tensor_n(shape: tuple[int, ...], dtype: type = float) -> np.ndarray:
    return np.arange(int(np.prod(shape)), dtype=dtype).reshape(shape)


def test_torch_builder_names_and_arguments() -> None:
    import inspect

    for name in (*BUILDERS, "histogram_raw", "image_boxes", "pr_curve_raw", "tensor_proto", "make_histogram"):
        ours, theirs = getattr(S, name), getattr(T, name)
        assert list(inspect.signature(ours).parameters) == list(inspect.signature(theirs).parameters), name
        # every default torch has, with its value (ours may add defaults where torch has none: mesh)
        ours_defaults = {k: p.default for k, p in inspect.signature(ours).parameters.items()}
        for k, p in inspect.signature(theirs).parameters.items():
            if p.default is not inspect.Parameter.empty:
                assert ours_defaults[k] == p.default, (name, k)


def test_numpy_and_python_inputs_never_import_torch(tmp_path: object) -> None:
    import subprocess

    code = f"""
import sys
import numpy as np
from expboard import SummaryWriter
from expboard.tfevents import summary
with SummaryWriter({str(tmp_path)!r}) as w:
    w.add_scalar("a", np.float32(1.5), np.int64(2))
    w.add_scalar("b", np.array([2.5]), 3)
    w.add_histogram("h", np.arange(10.0), 1)
    w.add_images("i", np.zeros((2, 3, 4, 4)), 1)
    w.add_tensor("t", np.arange(3), 1)
    w.add_hparams({{"lr": 0.1}}, {{"m": 1.0}}, run_name="hp")
    summary.scalar("s", 1.0)
assert "torch" not in sys.modules, "torch was imported"
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


V = np.array([[[1, 1, 1], [-1, -1, 1], [1, -1, -1], [-1, 1, -1]]], dtype=float)
C = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 0, 255]]], dtype=int)
F = np.array([[[0, 2, 3], [0, 3, 1], [0, 1, 2], [1, 3, 2]]], dtype=int)
LAYOUT = {
    "Taiwan": {"twse": ["Multiline", ["twse/0050", "twse/2330"]]},
    "USA": {"dow": ["Margin", ["dow/aaa", "dow/bbb", "dow/ccc"]]},
}
PR = ([75, 64, 21, 5, 0], [150, 105, 18, 0, 0], [0, 45, 132, 150, 150], [0, 11, 54, 70, 75])
CASES = {
    "scalar": lambda m: m.scalar("s", 1.5),
    "scalar_np1": lambda m: m.scalar("s", np.array([2.5])),
    "scalar_new": lambda m: m.scalar("s", 1.0, new_style=True),
    "scalar_double": lambda m: m.scalar("s", 1 / 3, new_style=True, double_precision=True),
    "scalar_bf16": lambda m: m.scalar("s", torch.tensor(0.5, dtype=torch.bfloat16)),
    "text": lambda m: m.text("d", "text 123"),
    "audio": lambda m: m.audio("d", tensor_n((42,)) / 42),
    "histogram_auto": lambda m: m.histogram("d", tensor_n((1024,)), bins="auto", max_bins=5),
    "histogram_fd": lambda m: m.histogram("d", tensor_n((1024,)), bins="fd", max_bins=5),
    "histogram_doane": lambda m: m.histogram("d", tensor_n((1024,)), bins="doane", max_bins=5),
    "histogram_raw": lambda m: m.histogram_raw("d", 0, 1, 4, 2, 1.5, [0.5, 1.0], [2, 2]),
    "custom_scalars": lambda m: m.custom_scalars(LAYOUT),
    "mesh": lambda m: m.mesh("my_mesh", vertices=V, colors=C, faces=F, config_dict=None),
    "mesh_config": lambda m: m.mesh("m", V, None, F, {"camera": {"fov": 75}}, display_name="x", description="y"),
    "pr_curve": lambda m: m.pr_curve("p", np.array([0, 1, 1, 0, 1]), np.array([0.1, 0.9, 0.4, 0.3, 0.8])),
    "pr_curve_w": lambda m: m.pr_curve("p", np.array([0, 1, 1]), np.array([0.1, 0.9, 0.4]), 10, np.array([1, 2, 3])),
    "pr_curve_raw": lambda m: m.pr_curve_raw("p", *PR, [0.33, 0.37, 0.53, 1.0, 0.0], [1.0, 0.85, 0.28, 0.06, 0.0]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_builder_equals_torchs(case: str) -> None:
    assert CASES[case](S) == CASES[case](T)


@pytest.mark.parametrize(
    "hp",
    [
        ({"lr": 0.1, "bsize": 1}, {"hparam/accuracy": 10}, None),
        ({"use_magic": True, "n": None}, {"accuracy": 24}, {"use_magic": [True, False]}),
        ({"opt": "adam", "lr": 0.2}, {"m": 1}, {"opt": ["adam", "sgd"], "lr": [0.1, 0.2]}),
        ({"t": torch.tensor([0.5])}, {"m": 1}, None),  # torch fails on a 0-d tensor; ours takes both
    ],
)
def test_hparams_equal_torchs(hp: tuple) -> None:  # type: ignore[type-arg]
    assert S.hparams(*hp) == T.hparams(*hp)


def test_lists_refused_like_torch() -> None:
    for mod in (S, T):
        with pytest.raises((TypeError, NotImplementedError)):
            mod.histogram("dummy", [1, 3, 4, 5, 6], "tensorflow")
    assert S.histogram_raw("h", 0, 1, 2, 1, 1, [0.5, 1.0], [1, 1]) == T.histogram_raw(
        "h", 0, 1, 2, 1, 1, [0.5, 1.0], [1, 1]
    )


def test_hparams_errors_like_torchs() -> None:
    for args in (([1], {}), ({}, [1]), ({"a": 1}, {}, {"a": ["x"]}), ({"a": 1}, {}, {"b": [1]})):
        with pytest.raises(TypeError):
            T.hparams(*args)
        with pytest.raises(TypeError):
            S.hparams(*args)
    with pytest.raises(ValueError, match="hparam 'x'"):
        S.hparams({"x": object()}, {})


DTYPES = [
    torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.int8, torch.uint8, torch.int16, torch.int32,
    torch.int64, torch.bool, torch.complex64, torch.complex128,
]  # fmt: skip


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", [(), (1,), (2, 3)], ids=str)
def test_tensor_proto_every_dtype(dtype: object, shape: tuple[int, ...]) -> None:
    t = (torch.arange(int(np.prod(shape))) % 2 + 1).reshape(shape).to(dtype)
    assert S.tensor_proto("t", t) == T.tensor_proto("t", t)


def test_tensor_proto_numpy_and_empty() -> None:
    assert S.tensor_proto("t", np.array([1.0, 2.0], dtype=np.float32)) == T.tensor_proto("t", torch.tensor([1.0, 2.0]))
    assert S.tensor_proto("t", torch.empty(0)) == T.tensor_proto("t", torch.empty(0))
    assert S.int_to_half(S.half_to_int(1.5)) == 1.5


def pixels(summary: object) -> tuple[int, int, int, list]:  # type: ignore[type-arg]
    img = summary.value[0].image  # type: ignore[attr-defined]
    return img.height, img.width, img.colorspace, np.asarray(Image.open(io.BytesIO(img.encoded_image_string))).tolist()


@pytest.mark.parametrize(
    ("shape", "fmt"),
    [((3, 32, 32), "CHW"), ((1, 8, 8), "CHW"), ((2, 1, 8, 8), "NCHW"), ((2, 3, 8, 8), "NCHW"), ((8, 8), "HW"),
     ((8, 8, 4), "HWC"), ((9, 4, 6, 3), "NHWC"), ((4, 5, 3), "WHC")],
)  # fmt: skip
def test_image_pixels_equal_torchs(shape: tuple[int, ...], fmt: str) -> None:
    for arr in (tensor_n(shape) / np.prod(shape), (tensor_n(shape) % 256).astype(np.uint8)):
        assert pixels(S.image("d", arr, dataformats=fmt)) == pixels(T.image("d", arr, dataformats=fmt))


def test_image_boxes_and_rescale_equal_torchs() -> None:
    img = tensor_n((3, 32, 32)) / (3 * 32 * 32)
    boxes = np.array([[10, 10, 40, 40], [2, 3, 12, 20]])
    for kw in ({}, {"labels": ["cat", "dog"]}, {"rescale": 2}):
        assert pixels(S.image_boxes("d", img, boxes, **kw)) == pixels(T.image_boxes("d", img, boxes, **kw))
    assert pixels(S.image("d", img, rescale=0.5, dataformats="CHW")) == pixels(
        T.image("d", img, rescale=0.5, dataformats="CHW")
    )


def test_video_is_a_gif_of_the_frames() -> None:
    vid = np.random.default_rng(0).random((4, 3, 1, 8, 8))  # 4 videos of 3 frames: a 2x2 grid
    v = S.video("d", vid, fps=5).value[0]
    assert (v.image.height, v.image.width, v.image.colorspace) == (16, 16, 1)
    gif = Image.open(io.BytesIO(v.image.encoded_image_string))
    assert gif.format == "GIF" and gif.n_frames == 3


finite = st.floats(min_value=-1e25, max_value=1e25, allow_nan=False, allow_subnormal=False)
specials = st.sampled_from([0.0, -0.0, 1e-12, -1e-12, 1e-13, 1e20, -1e20, 1.0, float("nan"), float("inf")])


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(finite, specials), min_size=1, max_size=300), st.sampled_from([None, 3, 30]))
def test_default_histogram_buckets_equal_torchs(values: list[float], max_bins: int | None) -> None:
    arr = np.array(values)
    try:
        theirs = T.make_histogram(arr, T_default_bins(), max_bins)
    except ValueError:
        with pytest.raises(ValueError):
            S.make_histogram(arr, "tensorflow", max_bins)
        return
    ours = S.make_histogram(arr, "tensorflow", max_bins)
    assert list(ours.bucket_limit) == list(theirs.bucket_limit)
    assert list(ours.bucket) == list(theirs.bucket)
    assert (ours.num, ours.sum_squares == ours.sum_squares) == (theirs.num, theirs.sum_squares == theirs.sum_squares)
    assert np.array_equal([ours.min, ours.max], [theirs.min, theirs.max], equal_nan=True)


def T_default_bins() -> list[float]:
    """The edges torch's SummaryWriter passes for bins="tensorflow"."""
    v, pos = 1e-12, []
    while v < 1e20:
        pos.append(v)
        v *= 1.1
    return [-x for x in pos[::-1]] + [0] + pos
