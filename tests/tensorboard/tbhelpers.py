"""Helpers for the TensorBoard tests: the Ridge sweep of Azure ML's TensorBoard how-to, and helpers to read
event files back with TensorBoard's own Python loader."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import polling
from expboard import Experiment, Run, Workspace
from polling import get_json

ALPHAS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]


def ridge_mse() -> dict[float, float]:
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge
    from sklearn.metrics import mean_squared_error
    from sklearn.model_selection import train_test_split

    X, y = load_diabetes(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=0)
    out = {}
    for alpha in ALPHAS:
        reg = Ridge(alpha=alpha).fit(x_train, y_train)
        out[alpha] = float(mean_squared_error(reg.predict(x_test), y_test))
    return out


def make_sweep(ws: Workspace, name: str = "export-to-tensorboard") -> Run:
    """The how-to's export workflow: a root run with one child run per alpha, each logging alpha and mse once."""
    exp = Experiment(ws, name)
    root_run = exp.start_logging()
    for alpha, mse in ridge_mse().items():
        with root_run.child_run("alpha" + str(alpha)) as run:
            run.log("alpha", alpha)
            run.log("mse", mse)
    root_run.complete()
    return root_run


@pytest.fixture(scope="module")
def module_ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    ws = Workspace.init(tmp_path_factory.mktemp("project"))
    yield ws
    ws.close()


def accumulator(run_dir: Path) -> Any:
    """TensorBoard's Python loader (the one behind ``--load_fast=false``) over one run folder."""
    from tensorboard.backend.event_processing import plugin_event_accumulator as pea

    acc = pea.EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "tensors": 0, "images": 0})
    acc.Reload()
    return acc


def tensor_series(acc: Any, tag: str) -> tuple[list[int], list[float], list[Any]]:
    from tensorboard.util import tensor_util

    events = acc.Tensors(tag)
    return (
        [e.step for e in events],
        [e.wall_time for e in events],
        [tensor_util.make_ndarray(e.tensor_proto) for e in events],
    )


def scalar_values(acc: Any, tag: str) -> tuple[list[int], list[float], np.ndarray]:
    steps, walls, arrays = tensor_series(acc, tag)
    return steps, walls, np.array([float(a) for a in arrays])


# --------------------------------------------------------------------------------------------- HTTP
def post_json(url: str, body: dict[str, Any], timeout: float = 10) -> Any:
    import json
    import urllib.request

    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


def scalars(url: str, run: str, tag: str) -> list[tuple[float, int, float]]:
    """``(wall_time, step, value)`` points TensorBoard serves for one run and tag ([] if not (yet) there)."""
    import urllib.error
    import urllib.parse

    query = urllib.parse.urlencode({"run": run, "tag": tag})
    try:
        return [tuple(p) for p in get_json(f"{url}data/plugin/scalars/scalars?{query}")]  # type: ignore[misc]
    except urllib.error.HTTPError:
        return []


def wait_for(predicate: Any, timeout: float = 20.0, interval: float = 0.1) -> Any:
    """:func:`polling.wait_for` with TensorBoard's shorter defaults."""
    return polling.wait_for(predicate, timeout, interval)


def session_groups(url: str) -> Any:
    body = {
        "startIndex": 0,
        "sliceSize": 100,
        "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"],
        "colParams": [],
        "aggregationType": "AGGREGATION_AVG",
    }
    return post_json(f"{url}data/plugin/hparams/session_groups", body)


def event_records(
    tag: str, points: list[tuple[int, float]], wall: float = 1_700_000_000.0, header: bool = False
) -> bytes:
    """Framed event records (optionally starting with the file-version record) for scalar points."""
    from expboard.tfevents import file_version_event, frame_record, scalar_event

    out = [frame_record(file_version_event(wall))] if header else []
    out += [frame_record(scalar_event(tag, v, s, wall + s)) for s, v in points]
    return b"".join(out)
