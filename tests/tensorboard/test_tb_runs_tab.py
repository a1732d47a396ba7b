"""The "Runs" tab: its routes over HTTP, and rendered by real headless Chromium (DOM and a screenshot)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tbhelpers import get_json

from expboard import Experiment, Workspace
from expboard.tensorboard import Tensorboard

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None and os.environ.get("CI") != "true",
    reason="Chromium is not installed (apt-get install chromium); CI=true makes this a failure instead",
)
GREEN, RED = (46, 125, 50), (198, 40, 40)  # the Completed and Failed badges


@pytest.fixture(scope="module")
def tab(module_ws: Workspace) -> Iterator[dict[str, Any]]:
    exp = Experiment(module_ws, "runs-tab")
    root = exp.start_logging(display_name="sweep")
    for i, alpha in enumerate([0.1, 0.2, 0.3]):
        child = root.child_run(f"alpha{alpha}")
        child.log("alpha", alpha)
        child.log("mse", 3000 * (1 - alpha))
        child.set_tags({"team": "vision"})
        child.fail() if i == 2 else child.complete()
    root.complete()
    with Tensorboard(exp, port=0) as tb:
        yield {"url": tb.start(), "exp": exp}


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None, "Chromium is needed here: apt-get install chromium"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
             "--virtual-time-budget=20000"]  # fmt: skip
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=180)


def test_routes_over_http(tab: dict[str, Any]) -> None:
    url = tab["url"]
    listing = get_json(f"{url}data/plugins_listing")["expboard_runs"]
    assert listing["enabled"] and listing["tab_name"] == "Runs"
    with urllib.request.urlopen(f"{url}data/plugin/expboard_runs/index.js", timeout=10) as resp:
        assert resp.headers["Content-Type"].startswith("application/javascript")
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert b"export async function render" in resp.read()
    table = get_json(f"{url}data/plugin/expboard_runs/runs")
    by_name = {r["display_name"]: r for r in table["runs"]}
    assert set(by_name) == {"sweep", "alpha0.1", "alpha0.2", "alpha0.3"}
    assert by_name["alpha0.3"]["status"] == "Failed" and by_name["alpha0.1"]["metrics"] == {"alpha": 0.1, "mse": 2700.0}
    assert by_name["alpha0.2"]["tags"] == {"team": "vision"}
    same = get_json(f"{url}experiment/runs-tab/data/plugin/expboard_runs/runs")
    assert sorted(r["run_id"] for r in same["runs"]) == sorted(r["run_id"] for r in table["runs"])
    # TensorBoard's page asks for its root URL's runs as /experiment/defaultExperimentId/...
    assert get_json(f"{url}experiment/defaultExperimentId/data/runs") == get_json(f"{url}data/runs")


@needs_chromium
def test_rendered_table_filters_and_sorts(tab: dict[str, Any], tmp_path: Path) -> None:
    frame = f"{tab['url']}data/plugin_entry.html?name=expboard_runs"
    dom = _chromium(tmp_path, "--dump-dom", frame).stdout
    rows = re.findall(r'<tr data-run="([^"]+)">', dom)
    assert len(rows) == 4, dom[-2000:]
    assert "4 of 4 runs" in dom and ">Failed<" in dom and ">Completed<" in dom and "team=vision" in dom
    failed = _chromium(tmp_path, "--dump-dom", f"{frame}&filter=failed").stdout
    assert re.findall(r'<tr data-run="[^"]*(alpha0\.\d)_', failed) == ["alpha0.3"] and "1 of 4 runs" in failed
    by_mse = _chromium(tmp_path, "--dump-dom", f"{frame}&sort=metric:mse").stdout
    assert re.findall(r'<tr data-run="[^"]*(alpha0\.\d)_', by_mse) == ["alpha0.3", "alpha0.2", "alpha0.1"]
    assert '<th data-key="metric:mse">mse \u25b2</th>' in by_mse


@needs_chromium
def test_screenshot_of_the_tab_in_tensorboard(tab: dict[str, Any], tmp_path: Path) -> None:
    from PIL import Image

    shot = tmp_path / "runs-tab.png"
    _chromium(tmp_path, "--window-size=1400,700", f"--screenshot={shot}", f"{tab['url']}#expboard_runs")
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert pixels.shape[:2] == (700, 1400)

    def count(color: tuple[int, int, int]) -> int:
        return int((np.abs(pixels - np.array(color)).sum(axis=2) < 12).sum())

    assert count((245, 124, 0)) > 20_000  # TensorBoard's orange header: the tab is inside TensorBoard
    green, red = count(GREEN), count(RED)
    assert green > 3 * 150 and red > 150  # three Completed badges, one Failed
    assert 2 * red < green  # more completed than failed, as in the table
    text = pixels.sum(axis=2) < 450  # dark (text) pixels on white
    assert text[150:330].sum() > 4_000  # the four rows are there (about 8,000 dark pixels measured)
    assert text[330:].sum() < 200  # and nothing below them: no error notice (TensorBoard's snackbar, bottom left)
    page = _chromium(tmp_path, "--dump-dom", f"{tab['url']}#expboard_runs").stdout
    assert "<alert-display-snackbar" not in page and "Failed to fetch" not in page, page[-3000:]
    if os.environ.get("EXPBOARD_KEEP_SCREENSHOTS"):
        shutil.copy(shot, os.environ["EXPBOARD_KEEP_SCREENSHOTS"])


@needs_chromium
def test_root_of_a_tensorboard_over_everything(tab: dict[str, Any], module_ws: Workspace, tmp_path: Path) -> None:
    """The team TensorBoard's root: the newest runs of all experiments, and a link to each experiment."""
    from expboard.tensorboard.provider import DataProviderServer

    with (
        DataProviderServer(module_ws.store) as server,
        Tensorboard([], port=0, grpc_data_provider=server.address) as tb,
    ):
        url = tb.start()
        sweep = [r for r in get_json(f"{url}data/runs") if r.startswith("runs-tab/sweep_")]
        assert len(sweep) == 1  # <experiment>/<run>, top-level runs only
        dom = _chromium(tmp_path, "--dump-dom", f"{url}data/plugin_entry.html?name=expboard_runs").stdout
    assert "The newest 100 runs of all experiments" in dom and 'data-experiment="runs-tab"' in dom, dom[-2000:]
    assert re.findall(r'<tr data-run="([^"]+)">', dom) == sweep
