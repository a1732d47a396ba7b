"""RunDetails in Jupyter with real ipywidgets objects: the widget tree, values updating while a run logs, the
refresh thread stopping when the run ends or the widget closes, the exported widget state rendered by real
Chromium, and the error without ipywidgets."""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from expboard import Experiment, Workspace
from polling import wait_for

ipywidgets = pytest.importorskip("ipywidgets") if os.environ.get("CI") != "true" else __import__("ipywidgets")

from expboard.widgets import RunDetails, format_duration  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
BLUE, GREEN = (21, 101, 192), (46, 125, 50)


def _threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("expboard-run-details")]


def test_format_duration() -> None:
    assert [format_duration(x) for x in (None, 0, 59.9, 61, 3 * 3600 + 62)] == [
        "",
        "0:00:00",
        "0:00:59",
        "0:01:01",
        "3:01:02",
    ]


def test_the_view_follows_a_running_run_and_stops_when_it_ends(ws: Workspace) -> None:
    run = Experiment(ws, "widgets").start_logging(display_name="training")
    details = RunDetails(run, refresh_interval=0.2)
    box = details.widget
    assert isinstance(box, ipywidgets.VBox)
    assert [type(c) for c in box.children] == [ipywidgets.HTML] * 4
    assert "Running" in details.header.value and "no metrics yet" in details.metrics.value
    details.start()
    assert details.refreshing and _threads()
    for step in range(5):
        run.log("loss", 1.0 / (step + 1))
    run.log("note", "warming up")
    run.flush()
    wait_for(lambda: "0.2</td>" in details.metrics.value)  # the last loss, 1/5, shown while the run runs
    assert "warming up" in details.metrics.value and "<polyline" in details.charts.value
    assert details.get_widget_data()["series"]["loss"][0] == [0, 1, 2, 3, 4]
    run.log("loss", 0.125)
    run.flush()
    wait_for(lambda: "0.125</td>" in details.metrics.value)
    run.complete()
    wait_for(lambda: not details.refreshing)  # the thread ends with the run, after a last refresh
    assert not _threads()
    assert "Completed" in details.header.value and re.search(r"0:00:\d\d", details.header.value)
    details.close()
    assert box.comm is None and all(c.comm is None for c in box.children)


def test_child_runs_and_closing_the_widget_stops_the_thread(ws: Workspace) -> None:
    parent = Experiment(ws, "widgets-children").start_logging(display_name="sweep")
    for alpha in (0.1, 0.2):
        with parent.child_run(f"alpha{alpha}") as child:
            child.log("alpha", alpha)
            child.log("mse", 3000 * (1 - alpha))
    details = RunDetails(parent, refresh_interval=0.2)
    table = details.children.value
    assert "Child runs" in table and "alpha0.1" in table and "alpha0.2" in table and "2700</td>" in table
    assert [c["status"] for c in details.get_widget_data()["children"]] == ["Completed", "Completed"]
    details.show()  # outside a kernel IPython prints the widget's text; the refresh starts all the same
    assert details.refreshing
    details.widget.close()  # closing the widget itself (as the front end does) ends the refresh
    assert not details.refreshing and not _threads()
    parent.complete()


def test_the_exported_widget_state_renders_in_chromium(ws: Workspace, tmp_path: Path) -> None:
    if CHROMIUM is None:
        if os.environ.get("CI") == "true":
            pytest.fail("Chromium is needed here: apt-get install chromium")
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    from ipywidgets.embed import embed_data
    from PIL import Image

    run = Experiment(ws, "widgets-chromium").start_logging(display_name="render<me>")
    for step in range(50):
        run.log("loss", float(np.exp(-step / 10)))
    run.complete()
    details = RunDetails(run)
    state = embed_data(views=[details.widget])["manager_state"]["state"]
    assert state[details.widget.model_id]["model_name"] == "VBoxModel"
    box = state[details.widget.model_id]["state"]
    parts = [state[ref.removeprefix("IPY_MODEL_")]["state"].get("value", "") for ref in box["children"]]  # "" dropped
    assert parts == [c.value for c in details.widget.children]  # the state a notebook saves is the view
    page = tmp_path / "details.html"
    page.write_text(f"<!doctype html><html><body style='margin:8px;background:#fff'>{''.join(parts)}</body></html>")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}"]  # fmt: skip
    dom = subprocess.run(
        [CHROMIUM, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=180
    ).stdout
    assert "render&lt;me&gt;" in dom and ">Completed<" in dom and 'class="expboard-chart"' in dom
    assert html.unescape(re.search(r"<polyline[^>]*points=\"([^\"]+)\"", dom)[1]).count(",") == 50  # type: ignore[index]
    shot = tmp_path / "details.png"
    subprocess.run(
        [CHROMIUM, *flags, "--window-size=800,400", f"--screenshot={shot}", page.as_uri()],
        capture_output=True,
        timeout=180,
    )
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)

    def count(color: tuple[int, int, int]) -> int:
        return int((np.abs(pixels - np.array(color)).sum(axis=2) < 40).sum())

    assert count(BLUE) > 300  # the loss curve (a 2-pixel line about 250 pixels wide)
    assert count(GREEN) > 30  # the Completed status
    ys = np.nonzero((np.abs(pixels - np.array(BLUE)).sum(axis=2) < 40).any(axis=1))[0]
    assert ys.max() - ys.min() > 60  # the curve falls across the chart, not a flat line


def test_without_ipywidgets_the_error_says_what_to_install(run_python: Any, tmp_path: Path) -> None:
    code = """
        import sys
        sys.modules["ipywidgets"] = None  # as if it were not installed
        from expboard import Experiment, Workspace
        from expboard.errors import ExpboardError
        from expboard.widgets import RunDetails
        run = Experiment(Workspace.init("."), "no-widgets").start_logging()
        try:
            RunDetails(run)
        except ExpboardError as exc:
            print("ERROR:", exc)
        run.complete()
    """
    out = run_python(code, tmp_path)
    assert out.returncode == 0, out.stderr
    assert "pip install 'expboard[notebook]'" in out.stdout and "ipywidgets" in out.stdout


def test_a_store_that_is_away_is_one_note_in_the_view_and_the_refresh_goes_on(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    from expboard.errors import StoreUnavailableError

    run = Experiment(ws, "widgets-away").start_logging()
    details = RunDetails(run, refresh_interval=0.1)
    real = details.get_widget_data
    healthy = threading.Event()
    calls = []

    def flaky() -> dict[str, Any]:
        calls.append(1)
        if not healthy.is_set():
            raise StoreUnavailableError("the tracking server is away")
        return real()

    monkeypatch.setattr(details, "get_widget_data", flaky)
    details.start()
    wait_for(lambda: len(calls) >= 5)
    assert details.header.value.count("refresh failed") == 1  # one note, however many refreshes failed
    assert "the tracking server is away" in details.header.value and details.refreshing
    healthy.set()
    run.log("loss", 0.5)
    run.flush()
    wait_for(lambda: "0.5</td>" in details.metrics.value)  # back once the store answers
    assert "refresh failed" not in details.header.value
    run.complete()
    wait_for(lambda: not details.refreshing)
    details.close()
