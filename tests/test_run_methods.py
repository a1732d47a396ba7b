"""Azure ML's Run methods: description, number, submit_child, get_details_with_logs, snapshots, the evaluation
metrics (accuracy table, predictions, residuals) in the run history and in TensorBoard, and get_portal_url."""

from __future__ import annotations

import os
import signal
import urllib.parse
import urllib.request
import uuid
import zipfile
from pathlib import Path
from typing import Any

import pytest

from expboard import Experiment, Run, ScriptRunConfig, Workspace
from expboard.errors import NotFoundError, ValidationError
from polling import get_json, wait_for

ACCURACY = {
    "schema_type": "accuracy_table",
    "schema_version": "1.0.1",
    "data": {
        "class_labels": ["cat", "dog"],
        "probability_thresholds": [0.0, 0.5, 1.0],
        "percentile_thresholds": [0.0, 0.5, 1.0],
        "probability_tables": [
            [[6, 4, 0, 0], [5, 1, 3, 1], [0, 0, 4, 6]],
            [[4, 6, 0, 0], [3, 2, 4, 1], [0, 0, 6, 4]],
        ],
        "percentile_tables": [
            [[6, 4, 0, 0], [4, 1, 3, 2], [0, 0, 4, 6]],
            [[4, 6, 0, 0], [2, 3, 3, 2], [0, 0, 6, 4]],
        ],
    },
}
PREDICTIONS = {
    "schema_type": "predictions",
    "schema_version": "v1",
    "data": {
        "bin_averages": [0.25, 0.75],
        "bin_errors": [0.013, 0.042],
        "bin_counts": [56, 34],
        "bin_edges": [0, 0.5, 1],
    },
}
RESIDUALS = {
    "schema_type": "residuals",
    "schema_version": "v1",
    "data": {"bin_edges": [50, 100, 200, 300, 350], "bin_counts": [0.88, 20, 30, 50.99]},
}


def test_description_and_number(ws: Workspace) -> None:
    exp = Experiment(ws, "numbers")
    first = exp.start_logging()
    child = first.child_run()
    second = exp.start_logging()
    assert [first.number, child.number, second.number] == [1, 2, 3]
    assert Run.get(ws, second.id).number == 3 and Experiment(ws, "other").start_logging().number == 1
    assert first.description == ""
    first.description = "baseline, lr 0.1"
    assert Run.get(ws, first.id).description == "baseline, lr 0.1"
    details = first.get_details()
    assert (details["description"], details["number"]) == ("baseline, lr 0.1", 1)
    assert "<td>1</td>" in first._repr_html_()
    for r in (child, first, second):
        r.complete()


def test_evaluation_metrics_are_validated_stored_and_exported(ws: Workspace, tmp_path: Path) -> None:
    from tensorboard.backend.event_processing import plugin_event_accumulator as pea
    from tensorboard.util import tensor_util

    from expboard.tensorboard.export import export_to_tensorboard

    run = Experiment(ws, "evaluation").start_logging()
    run.log("mse", 0.5)
    run.log_accuracy_table("accuracy", ACCURACY, description="one vs rest")
    run.log_predictions("predictions", PREDICTIONS)
    run.log_residuals("residuals", RESIDUALS)
    bad: list[tuple[str, Any, str]] = [
        (
            "log_residuals",
            {"schema_type": "residuals", "data": {"bin_edges": [0, 1], "bin_counts": [1, 2]}},
            "one edge",
        ),
        ("log_residuals", {"schema_type": "residuals", "data": {"bin_edges": [2, 1, 3], "bin_counts": [1, 2]}}, "inc"),
        ("log_residuals", {"schema_type": "predictions", "data": RESIDUALS["data"]}, "schema_type"),
        ("log_predictions", {"data": {"bin_averages": [1], "bin_edges": [0, 1]}}, "lacks bin_errors, bin_counts"),
        ("log_predictions", {"data": {**PREDICTIONS["data"], "bin_errors": [0.1]}}, "one value per bin"),
        ("log_predictions", {"data": {**PREDICTIONS["data"], "bin_counts": [1, float("nan")]}}, "finite"),
        ("log_accuracy_table", [1, 2], "not a dict"),
        ("log_accuracy_table", {"data": {**ACCURACY["data"], "class_labels": ["cat"]}}, "2 probability_tables"),
        ("log_accuracy_table", {"data": {**ACCURACY["data"], "probability_thresholds": [0, 1]}}, "TP, FP, TN, FN"),
        ("log_accuracy_table", {"data": {**ACCURACY["data"], "percentile_tables": "x"}}, "3-D list"),
    ]
    for method, value, message in bad:
        with pytest.raises(ValidationError, match=message):
            getattr(run, method)("broken", value)
    metrics = run.get_metrics()
    assert "broken" not in metrics and metrics["mse"] == 0.5  # nothing logged before is touched
    assert metrics["residuals"]["data"] == {
        "bin_counts": [0.88, 20.0, 30.0, 50.99],
        "bin_edges": [50.0, 100.0, 200.0, 300.0, 350.0],
    }
    assert metrics["predictions"]["schema_version"] == "v1"
    assert metrics["accuracy"]["data"]["class_labels"] == ["cat", "dog"]
    run.complete()

    result = export_to_tensorboard(run, tmp_path / "tb")
    acc = pea.EventAccumulator(str(result.run_dirs[run.id]), size_guidance={"tensors": 0})
    acc.Reload()

    def series(tag: str) -> tuple[list[int], list[Any]]:
        events = acc.Tensors(tag)
        return [e.step for e in events], [tensor_util.make_ndarray(e.tensor_proto) for e in events]

    assert acc.SummaryMetadata("predictions/bin_average").plugin_data.plugin_name == "scalars"
    assert series("predictions/bin_average") == ([0, 1], [pytest.approx(0.25), pytest.approx(0.75)])
    assert [float(v) for v in series("residuals/bin_count")[1]] == pytest.approx([0.88, 20, 30, 50.99])
    assert [float(v) for v in series("accuracy/cat/true_positive_rate")[1]] == pytest.approx([1.0, 5 / 6, 0.0])
    assert [float(v) for v in series("accuracy/dog/false_positive_rate")[1]] == pytest.approx([1.0, 2 / 6, 0.0])
    assert acc.SummaryMetadata("residuals").plugin_data.plugin_name == "text"
    (table,) = series("residuals")[1]
    assert table[0].tolist() == [b"bin", b"from", b"to", b"count"] and table[1].tolist() == [
        b"0",
        b"50",
        b"100",
        b"0.88",
    ]
    (table,) = series("accuracy")[1]
    assert table.shape == (7, 6) and table[2].tolist() == [b"cat", b"0.5", b"5", b"1", b"3", b"1"]


def _source(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    (src / "train.py").write_text(
        "from expboard import Run\nrun = Run.get_context()\nrun.log('loss', 0.5)\nprint('trained')\n"
    )
    (src / ".amlignore").write_text("data/\n")
    (src / "data").mkdir()
    (src / "data" / "big.bin").write_bytes(b"x" * 100)
    return src


def test_snapshots_take_and_restore(ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = _source(tmp_path)
    run = Experiment(ws, "snapshots").start_logging()
    with pytest.raises(NotFoundError, match="take one with run.take_snapshot"):
        run.restore_snapshot()
    first = run.take_snapshot(src)
    (src / "train.py").write_text("print('changed')\n")
    second = run.take_snapshot(src)
    single = run.take_snapshot(src / "train.py")
    assert first < second < single  # ids sort by creation time (UUIDs of version 7's layout)
    assert {uuid.UUID(i).version for i in (first, second, single)} == {7}
    monkeypatch.chdir(tmp_path)
    latest = Path(run.restore_snapshot())
    assert latest == tmp_path / f"{single}.zip" and zipfile.ZipFile(latest).namelist() == ["train.py"]
    path = Path(run.restore_snapshot(first, tmp_path / "out" / "first.zip"))
    with zipfile.ZipFile(path) as zf:
        assert sorted(zf.namelist()) == [".amlignore", "train.py"]  # data/ left out, as .amlignore says
        assert b"get_context" in zf.read("train.py")
    in_folder = Path(run.restore_snapshot(second, tmp_path / "out"))
    assert in_folder == tmp_path / "out" / f"{second}.zip" and b"changed" in zipfile.ZipFile(in_folder).read("train.py")
    with pytest.raises(NotFoundError, match=first):
        run.restore_snapshot("no-such-id")
    with pytest.raises(ValidationError, match="no file or folder"):
        run.take_snapshot(tmp_path / "missing")
    assert all(n.startswith("snapshots/") for n in run.get_file_names())  # the snapshots belong to the run
    run.complete()


def test_submit_child_and_details_with_logs(ws: Workspace, tmp_path: Path) -> None:
    src = _source(tmp_path)
    parent = Experiment(ws, "children").start_logging(display_name="parent")
    child = parent.submit_child(ScriptRunConfig(str(src), "train.py", compute_target="local"), tags={"k": "v"})
    assert child.parent == parent and child.type == "script" and child.tags == {"k": "v"}
    child.wait_for_completion(timeout=180)
    assert [c.id for c in parent.get_children()] == [child.id]
    assert child.get_metrics() == {"loss": 0.5}
    details = child.get_details_with_logs()
    assert details["status"] == "Completed" and details["runId"] == child.id
    assert "trained" in details["logFiles"]["system_logs/driver.log"]
    # the submitted run's own snapshot is its snapshot to restore
    with zipfile.ZipFile(child.restore_snapshot(path=tmp_path / "child.zip")) as zf:
        assert "train.py" in zf.namelist() and not any(n.startswith("data/") for n in zf.namelist())
    with pytest.raises(ValidationError, match="unknown: wait"):
        parent.submit_child(ScriptRunConfig(str(src), "train.py"), wait=True)
    parent.complete()


def test_portal_url_and_the_live_view_of_evaluation_metrics(ws: Workspace) -> None:
    from expboard.tensorboard import Tensorboard

    exp = Experiment(ws, "portal")
    parent = exp.start_logging(display_name="parent")
    child = parent.child_run("child")
    other = Experiment(ws, "portal-other").start_logging()
    tb = Tensorboard([parent], port=0)
    try:
        url = tb.start()
        assert parent.get_portal_url() == url and child.get_portal_url() == url  # children are shown nested
        assert other.get_portal_url() is None
        child.log_predictions("predictions", PREDICTIONS)  # while the run is live
        child.flush()

        def served() -> list[Any]:
            tags = get_json(f"{url}data/plugin/scalars/tags")
            runs = [r for r, t in tags.items() if "predictions/bin_count" in t]
            if not runs:
                return []
            q = urllib.parse.urlencode({"run": runs[0], "tag": "predictions/bin_count"})
            return [p[2] for p in get_json(f"{url}data/plugin/scalars/scalars?{q}")]

        assert wait_for(served) == [56.0, 34.0]
        assert tb.process is not None
        os.kill(tb.process.pid, signal.SIGKILL)  # a TensorBoard that died is no portal
        tb.process.wait(timeout=30)
        assert parent.get_portal_url() is None and child.get_portal_url() is None
    finally:
        tb.stop()
    tb2 = Tensorboard(exp, port=0)
    try:
        url2 = tb2.start()
        assert child.get_portal_url() == url2 and other.get_portal_url() is None
        page = exp._repr_html_()  # the experiment's table links its TensorBoard, its runs' rows theirs
        assert page.count(f'<a href="{url2}"') == 2 and "<td>Running</td>" in page and "<td>1</td>" in page
        assert parent.id in page and child.id not in page  # top-level runs only
    finally:
        tb2.stop()
    assert child.get_portal_url() is None and "<a href" not in exp._repr_html_()
    for r in (child, parent, other):
        r.complete()
