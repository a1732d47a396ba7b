"""Embeddings for TensorBoard's Projector: the files torch's ``SummaryWriter.add_embedding`` writes."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._builders import _pb, make_grid
from ._inputs import is_tensor, make_np
from ._png import encode_png

__all__ = ["write_embedding", "write_projector_config"]

_log = logging.getLogger(__name__)


def _cell(x: Any) -> str:
    if is_tensor(x) or isinstance(x, np.ndarray | np.generic):
        x = make_np(x).reshape(-1)[0].item() if np.size(make_np(x)) == 1 else make_np(x).tolist()
    return str(x)


def write_embedding(
    mat: np.ndarray,
    save_path: str,
    subdir: str,
    global_step: int,
    tag: str,
    metadata: Sequence[Any] | None,
    label_img: Any,
    metadata_header: Sequence[str] | None,
) -> Any:
    """Write ``tensors.tsv`` (and ``metadata.tsv``, ``sprite.png``) in ``save_path``; return the
    ``EmbeddingInfo`` for the projector config."""
    EmbeddingInfo = _pb("tensorboard.plugins.projector.projector_config_pb2").EmbeddingInfo

    if mat.ndim != 2:
        raise ValueError(f"mat should be 2D, where mat.size(0) is the number of data points; got {mat.shape}")
    if os.path.exists(save_path):
        if not os.path.isdir(save_path):
            raise NotADirectoryError(f"Path: `{save_path}` exists, but is a file. Cannot proceed.")
        _log.warning("embedding folder %s exists: did you set global_step for add_embedding()?", save_path)
    os.makedirs(save_path, exist_ok=True)
    if metadata is not None:
        if len(metadata) != mat.shape[0]:
            raise ValueError(f"{len(metadata)} metadata rows for {mat.shape[0]} data points")
        if metadata_header:
            rows = [list(metadata_header), *metadata]
            if len(metadata_header) != len(rows[1]):
                raise ValueError("len of header must be equal to the number of columns in metadata")
            lines = ["\t".join(_cell(e) for e in row) for row in rows]
        else:
            lines = [_cell(x) for x in metadata]
        with open(os.path.join(save_path, "metadata.tsv"), "wb") as f:
            f.write(("\n".join(lines) + "\n").encode("utf-8"))
    imgs = None
    if label_img is not None:
        imgs = make_np(label_img)
        if imgs.ndim != 4 or imgs.shape[0] != mat.shape[0]:
            raise ValueError(f"label_img must be N x C x H x W with N = {mat.shape[0]}, got shape {imgs.shape}")
        grid = make_grid(imgs, ncols=math.ceil(imgs.shape[0] ** 0.5))  # CHW
        side = grid.shape[2]
        square = np.zeros((side, side, grid.shape[0]), dtype=np.float64)
        square[: grid.shape[1]] = grid.transpose(1, 2, 0)
        sprite = np.uint8((square[:, :, :3] * 255).clip(0, 255))
        with open(os.path.join(save_path, "sprite.png"), "wb") as f:
            f.write(encode_png(np.ascontiguousarray(sprite)))
    body = "\n".join("\t".join(map(str, row)) for row in mat.tolist())
    with open(os.path.join(save_path, "tensors.tsv"), "wb") as f:
        f.write((body + "\n").encode("ascii") if body else b"")
    info = EmbeddingInfo()
    info.tensor_name = f"{tag}:{str(global_step).zfill(5)}"
    info.tensor_path = os.path.join(subdir, "tensors.tsv")
    if metadata is not None:
        info.metadata_path = os.path.join(subdir, "metadata.tsv")
    if imgs is not None:
        info.sprite.image_path = os.path.join(subdir, "sprite.png")
        info.sprite.single_image_dim.extend([imgs.shape[3], imgs.shape[2]])
    return info


def write_projector_config(logdir: str, embeddings: Sequence[Any]) -> None:
    """``<logdir>/projector_config.pbtxt`` listing every embedding written so far."""
    text_format = _pb("google.protobuf.text_format")
    config = _pb("tensorboard.plugins.projector.projector_config_pb2").ProjectorConfig()
    config.embeddings.extend(embeddings)
    with open(os.path.join(logdir, "projector_config.pbtxt"), "wb") as f:
        f.write(text_format.MessageToString(config).encode("utf-8"))
