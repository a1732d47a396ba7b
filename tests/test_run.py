import math
import threading
from pathlib import Path

import numpy as np
import pytest

from expboard import ConflictError, Experiment, NotFoundError, Run, RunStatus, ValidationError, Workspace


@pytest.fixture
def exp(ws: Workspace) -> Experiment:
    return Experiment(ws, "unit")


def test_experiment_get_or_create_and_names(ws: Workspace) -> None:
    a = Experiment(ws, "same")
    b = Experiment(ws, "same")
    assert a == b
    assert [e.name for e in Experiment.list(ws)] == ["same"]
    with pytest.raises(ValidationError, match="experiment name"):
        Experiment(ws, "bad name!")


def test_run_ids_are_readable_and_unique(exp: Experiment) -> None:
    ids = {exp.start_logging().id for _ in range(50)}
    assert len(ids) == 50
    for run_id in ids:
        name, secs, suffix = run_id.rsplit("_", 2)
        assert name == "unit" and secs.isdigit() and len(suffix) == 8


def test_log_value_types_roundtrip(exp: Experiment) -> None:
    run = exp.start_logging()
    run.log("int", 3)
    run.log("float", 0.25)
    run.log("bool", True)
    run.log("str", "hello")
    run.log("none", None)
    run.log("np_int64", np.int64(2**62))
    run.log("np_float32", np.float32(0.5))
    run.log("np_bool", np.bool_(False))
    run.log("big_int", 2**70)
    m = run.get_metrics()
    assert m["int"] == 3 and type(m["int"]) is int
    assert m["float"] == 0.25
    assert m["bool"] is True
    assert m["str"] == "hello"
    assert m["none"] is None
    assert m["np_int64"] == 2**62 and type(m["np_int64"]) is int
    assert m["np_float32"] == 0.5
    assert m["np_bool"] is False
    assert m["big_int"] == float(2**70)


def test_nan_and_inf_are_stored_faithfully(exp: Experiment) -> None:
    run = exp.start_logging()
    for v in (float("nan"), float("inf"), float("-inf"), -0.0):
        run.log("x", v)
    run.log("mixed", 1)
    run.log("mixed", float("nan"))
    run.log("mixed", "text")
    m = run.get_metrics()
    x = m["x"]
    assert math.isnan(x[0]) and x[1] == math.inf and x[2] == -math.inf
    assert x[3] == 0.0 and math.copysign(1, x[3]) == -1
    assert m["mixed"][0] == 1 and math.isnan(m["mixed"][1]) and m["mixed"][2] == "text"


def test_series_steps_and_shapes(exp: Experiment) -> None:
    run = exp.start_logging()
    run.log("once", 1.5)
    for i in range(5):
        run.log("many", i * 0.5)
    run.log("stepped", 1.0, step=10)
    run.log("stepped", 2.0, step=20)
    m = run.get_metrics()
    assert m["once"] == 1.5
    assert m["many"] == [0.0, 0.5, 1.0, 1.5, 2.0]
    series = {s.name: s for s in run.get_metric_series()}
    assert series["many"].steps.tolist() == [0, 1, 2, 3, 4]
    assert series["stepped"].steps.tolist() == [10, 20]
    assert np.all(np.diff(series["many"].wall_times) >= 0)
    assert run.get_metrics(name="many") == {"many": [0.0, 0.5, 1.0, 1.5, 2.0]}


def test_lists_are_rejected_by_log_with_a_pointer_to_log_list(exp: Experiment) -> None:
    run = exp.start_logging()
    with pytest.raises(ValidationError, match="log_list"):
        run.log("x", [1, 2])
    with pytest.raises(ValidationError, match="log_list"):
        run.log("x", np.array([1.0, 2.0]))
    with pytest.raises(ValidationError, match="log_row"):
        run.log("x", {"a": 1})
    with pytest.raises(ValidationError, match="int, float"):
        run.log("x", object())
    with pytest.raises(ValidationError, match="step must be an integer"):
        run.log("x", 1.0, step=1.5)
    with pytest.raises(ValidationError, match="metric name"):
        run.log("", 1.0)
    run.log("x", 1.0)  # nothing above was stored, and logging still works
    assert run.get_metrics() == {"x": 1.0}


def test_list_row_table_confusion_matrix(exp: Experiment) -> None:
    run = exp.start_logging()
    run.log_list("accuracies", [0.5, 0.7, 0.9])
    run.log_row("results", alpha=0.1, mse=3000.0)
    run.log_row("results", alpha=0.2, mse=2900.0)
    run.log_table("table", {"x": [1, 2, 3], "y": [4.0, 5.0, 6.0]})
    run.log_confusion_matrix(
        "cm", {"schema_type": "confusion_matrix", "data": {"class_labels": ["a", "b"], "matrix": [[5, 1], [2, 7]]}}
    )
    m = run.get_metrics()
    assert m["accuracies"] == [0.5, 0.7, 0.9]
    assert m["results"] == {"alpha": [0.1, 0.2], "mse": [3000.0, 2900.0]}
    assert m["table"] == {"x": [1, 2, 3], "y": [4.0, 5.0, 6.0]}
    assert m["cm"]["data"] == {"class_labels": ["a", "b"], "matrix": [[5, 1], [2, 7]]}
    with pytest.raises(ValidationError, match="differ in length"):
        run.log_table("bad", {"x": [1], "y": [1, 2]})
    with pytest.raises(ValidationError, match="square"):
        run.log_confusion_matrix("bad", [[1, 2, 3]])


def test_log_image_from_file_and_figure(exp: Experiment, tmp_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = exp.start_logging()
    fig, ax = plt.subplots()
    ax.plot([1, 2, 3])
    run.log_image("curve", plot=fig)
    plt.close(fig)
    png = tmp_path / "x.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\nfake")
    run.log_image("file", path=png)
    m = run.get_metrics()
    assert m["curve"].startswith("logged_images/curve/") and m["curve"] in run.get_file_names()
    stored = run.download_file(m["curve"], tmp_path / "out.png")
    assert stored.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert run.download_file(m["file"], tmp_path / "f.png").read_bytes() == png.read_bytes()
    with pytest.raises(ValidationError, match="exactly one"):
        run.log_image("x")


def test_log_array_fast_path_keeps_order(exp: Experiment) -> None:
    run = exp.start_logging()
    run.log("loss", 9.0)
    run.log_array("loss", np.array([1.0, 2.0, 3.0]))
    run.log("loss", 4.0)
    run.log_array("acc", np.arange(5), steps=np.arange(100, 105))
    series = {s.name: s for s in run.get_metric_series()}
    assert series["loss"].values.tolist() == [9.0, 1.0, 2.0, 3.0, 4.0]
    assert series["loss"].steps.tolist() == [0, 1, 2, 3, 4]
    assert series["acc"].steps.tolist() == [100, 101, 102, 103, 104]
    with pytest.raises(ValidationError, match="1-D"):
        run.log_array("x", np.zeros((2, 2)))


def test_child_runs_complete_and_fail(exp: Experiment) -> None:
    root = exp.start_logging()
    with root.child_run("ok") as child:
        child.log("mse", 1.0)
    assert child.get_status() == RunStatus.COMPLETED
    with pytest.raises(RuntimeError, match="boom"), root.child_run("bad") as bad:
        raise RuntimeError("boom")
    assert bad.get_status() == RunStatus.FAILED
    details = bad.get_details()
    assert details["error"]["code"] == "RuntimeError"
    assert details["error"]["message"] == "boom"
    assert "Traceback" in details["error"]["traceback"]
    root.complete()
    assert root.get_status() == RunStatus.COMPLETED
    children = root.get_children()
    assert {c.display_name for c in children} == {"ok", "bad"}
    assert all(c.parent == root for c in children)
    with children[0].child_run("grandchild") as g:
        g.log("x", 1)
    assert len(root.get_children(recursive=True)) == 3
    assert list(exp.get_runs()) == [root]
    assert len(list(exp.get_runs(include_children=True))) == 4


def test_status_transitions(exp: Experiment) -> None:
    run = exp.start_logging()
    assert run.get_status() == RunStatus.RUNNING
    run.fail("bad data")
    assert run.get_status() == RunStatus.FAILED
    assert run.get_details()["error"]["message"] == "bad data"
    run.complete()  # a finished run stays finished
    assert run.get_status() == RunStatus.FAILED
    other = exp.start_logging()
    other.cancel()
    assert other.get_status() == RunStatus.CANCELED
    d = other.get_details()
    assert d["status"] == "Canceled" and d["endTimeUtc"].endswith("Z") and d["runId"] == other.id


def test_fetch_existing_run(exp: Experiment, ws: Workspace) -> None:
    run = exp.start_logging()
    run.log("a", 1)
    run.flush()
    again = Run(exp, run.id)
    assert again.get_metrics() == {"a": 1}
    assert Run.get(ws, run.id).get_metrics() == {"a": 1}
    with pytest.raises(NotFoundError, match="no run"):
        Run(exp, "nope")


def test_tags_are_mutable_properties_add_only(exp: Experiment) -> None:
    run = exp.start_logging(tags={"team": "a"})
    run.tag("team", "b")
    run.tag("flag")
    run.set_tags({"x": 1})
    assert run.get_tags() == {"flag": "", "team": "b", "x": "1"}
    run.remove_tags(["x"])
    assert "x" not in run.get_tags()
    run.add_properties({"git": "abc"})
    run.add_properties({"git": "abc"})  # same value: fine
    with pytest.raises(ConflictError, match="cannot be changed|not changed"):
        run.add_properties({"git": "def"})
    assert run.get_properties() == {"git": "abc"}
    assert [r.id for r in exp.get_runs(tags={"team": "b"})] == [run.id]
    assert list(exp.get_runs(tags={"team": "zzz"})) == []


def test_files_upload_download_and_traversal(exp: Experiment, tmp_path: Path) -> None:
    run = exp.start_logging()
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("A")
    (src / "sub" / "b.txt").write_text("B")
    run.upload_file("outputs/model.bin", src / "a.txt")
    run.upload_folder("data", src)
    assert run.get_file_names() == ["data/a.txt", "data/sub/b.txt", "outputs/model.bin"]
    out = run.download_files(prefix="data", output_directory=tmp_path / "dl")
    assert sorted(p.read_text() for p in out) == ["A", "B"]
    assert (tmp_path / "dl" / "data" / "sub" / "b.txt").read_text() == "B"
    assert run.download_file("outputs/model.bin", tmp_path).read_text() == "A"
    for bad in ("../escape.txt", "/etc/passwd", "a/../../x"):
        with pytest.raises(ValidationError):
            run.upload_file(bad, src / "a.txt")
    assert not (tmp_path / "escape.txt").exists()
    with pytest.raises(NotFoundError):
        run.download_file("missing.txt", tmp_path)


def test_get_metrics_recursive_returns_every_run(exp: Experiment) -> None:
    root = exp.start_logging()
    root.log("root_metric", 1)
    for alpha in (0.1, 0.2):
        with root.child_run(f"alpha{alpha}") as child:
            child.log("alpha", alpha)
            child.log("mse", alpha * 10)
    everything = root.get_metrics(recursive=True)
    assert everything[root.id] == {"root_metric": 1}
    children = {v["alpha"]: v["mse"] for k, v in everything.items() if k != root.id}
    assert children == {0.1: 1.0, 0.2: 2.0}


def test_offline_context_never_fails() -> None:
    run = Run.get_context()
    run.log("x", 1.0)
    run.log_list("l", [1, 2])
    assert run.get_metrics()["x"] == 1.0
    assert Run.get_context() is run


def test_concurrent_threads_lose_nothing(exp: Experiment) -> None:
    run = exp.start_logging()

    def worker(k: int) -> None:
        for i in range(20_000):
            run.log(f"t{k}", float(i))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    m = run.get_metrics()
    for k in range(4):
        assert m[f"t{k}"] == [float(i) for i in range(20_000)]


def test_large_files_travel_in_pieces(exp: Experiment, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    monkeypatch.setattr("expboard.transfer.PIECE_BYTES", 1000)
    run = exp.start_logging()
    data = bytes(range(256)) * 40  # 10,240 bytes: 11 pieces
    (tmp_path / "big.bin").write_bytes(data)
    run.upload_file("outputs/big.bin", tmp_path / "big.bin")
    run.upload_file("outputs/stream.bin", io.BytesIO(data[:3000]))  # exactly 3 pieces
    run.upload_file("outputs/text.txt", io.StringIO("héllo"))
    assert run.download_file("outputs/big.bin", tmp_path / "back.bin").read_bytes() == data
    assert run.download_file("outputs/stream.bin", tmp_path / "s.bin").read_bytes() == data[:3000]
    assert run.download_file("outputs/text.txt", tmp_path / "t.txt").read_text() == "héllo"
    assert not list(tmp_path.glob(".*.part"))


def test_default_steps_continue_across_processes(exp: Experiment, ws: Workspace, run_python) -> None:  # type: ignore[no-untyped-def]
    run = exp.start_logging()
    run.log("loss", 1.0)
    run.log("loss", 2.0)
    run.flush()
    result = run_python(
        f"""
        from expboard import Run, Workspace
        run = Run.get(Workspace.from_config(), {run.id!r})
        run.log("loss", 3.0)
        run.log("other", 9.0)
        run.flush()
        """,
        cwd=ws.path,
        env=ws.env(),
    )
    assert result.returncode == 0, result.stderr
    run.log("loss", 4.0)  # this process's own count goes on from what it logged
    series = {s.name: s for s in run.get_metric_series()}
    assert series["loss"].steps.tolist() == [0, 1, 2, 2]
    assert series["other"].steps.tolist() == [0]


def test_offline_run_leaves_nothing_behind(tmp_path: Path, run_python) -> None:  # type: ignore[no-untyped-def]
    result = run_python(
        """
        from expboard import Run
        run = Run.get_context()
        run.log("x", 1)
        print(run.get_metrics()["x"])
        """,
        cwd=tmp_path,
        env={"TMPDIR": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "1"
    assert not list(tmp_path.glob("expboard-offline-*"))
