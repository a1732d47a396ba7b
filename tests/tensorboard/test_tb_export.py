"""export_to_tensorboard, read back with TensorBoard's own Python loader (plugin_event_accumulator)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tbhelpers import ALPHAS, accumulator, make_sweep, ridge_mse, scalar_values, tensor_series

from expboard import Experiment, Workspace
from expboard.records import RunStatus
from expboard.tensorboard.export import export_to_tensorboard, run_folder_name


def _hparams_data(acc, tag: str):  # type: ignore[no-untyped-def]
    from tensorboard.plugins.hparams import plugin_data_pb2

    content = acc.PluginTagToContent("hparams")[tag]
    return plugin_data_pb2.HParamsPluginData.FromString(content)


def _event_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and "tfevents" in p.name)


def _png(width: int, height: int) -> bytes:
    from expboard.tfevents._png import encode_png

    img = np.zeros((height, width, 3), dtype=np.uint8)
    img[:, :, 0] = 200
    return encode_png(img)


def test_seed_sweep_hparams_alpha_and_metric_mse(ws: Workspace, tmp_path: Path) -> None:
    root_run = make_sweep(ws)
    logdir = tmp_path / "exportedTBlogs"
    result = export_to_tensorboard(root_run, logdir, hparams=["alpha"])
    assert result.sessions == len(ALPHAS)
    root_dir = logdir / run_folder_name(root_run.record)
    assert result.run_dirs[root_run.id] == root_dir
    children = root_run.get_children()
    expected = ridge_mse()
    for child in children:
        folder = result.run_dirs[child.id]
        assert folder.parent == root_dir  # nested in the parent's folder
        assert folder.name.startswith(child.display_name.replace(".", ".") + "_")
        acc = accumulator(folder)
        start = _hparams_data(acc, "_hparams_/session_start_info").session_start_info
        alpha = float(child.display_name[len("alpha") :])
        assert dict(start.hparams)["alpha"].number_value == pytest.approx(alpha)
        assert "mse" not in start.hparams
        end = _hparams_data(acc, "_hparams_/session_end_info").session_end_info
        assert end.status == 1  # STATUS_SUCCESS
        steps, walls, values = scalar_values(acc, "mse")
        assert steps == [0]
        assert values[0] == pytest.approx(expected[alpha], rel=1e-6)
        assert walls[0] == child.get_metric_series("mse")[0].wall_times[0]
    # the experiment lives at the logdir root, the sessions in their own folders
    root_acc = accumulator(logdir)
    exp = _hparams_data(root_acc, "_hparams_/experiment").experiment
    assert [h.name for h in exp.hparam_infos] == ["alpha"]
    assert sorted(v.number_value for v in exp.hparam_infos[0].domain_discrete.values) == ALPHAS
    assert [m.name.tag for m in exp.metric_infos] == ["mse"]


def test_hparams_default_takes_metrics_named_in_the_display_name(ws: Workspace, tmp_path: Path) -> None:
    root_run = make_sweep(ws)
    export_to_tensorboard(root_run, tmp_path / "auto")
    exp = _hparams_data(accumulator(tmp_path / "auto"), "_hparams_/experiment").experiment
    assert [h.name for h in exp.hparam_infos] == ["alpha"]
    assert [m.name.tag for m in exp.metric_infos] == ["mse"]

    export_to_tensorboard(root_run, tmp_path / "none", hparams=[])
    exp = _hparams_data(accumulator(tmp_path / "none"), "_hparams_/experiment").experiment
    assert [h.name for h in exp.hparam_infos] == []
    assert [m.name.tag for m in exp.metric_infos] == ["alpha", "mse"]


def test_tags_and_properties_are_hparams(ws: Workspace, tmp_path: Path) -> None:
    exp = Experiment(ws, "tagged")
    root = exp.start_logging()
    for opt in ("sgd", "adam"):
        with root.child_run(opt) as child:
            child.tag("optimizer", opt)
            child.add_properties({"seed": "1"})
            child.log("loss", 0.5 if opt == "sgd" else 0.25)
    root.complete()
    export_to_tensorboard(root, tmp_path)
    info = _hparams_data(accumulator(tmp_path), "_hparams_/experiment").experiment
    assert sorted(h.name for h in info.hparam_infos) == ["optimizer", "seed"]
    opt = next(h for h in info.hparam_infos if h.name == "optimizer")
    assert sorted(v.string_value for v in opt.domain_discrete.values) == ["adam", "sgd"]


def test_scalars_keep_steps_and_wall_times(ws: Workspace, tmp_path: Path) -> None:
    run = Experiment(ws, "scalars").start_logging(display_name="my run/with:odd chars")
    for step in (5, 10, 20):
        run.log("loss", 1.0 / step, step=step)
    run.log("acc", 0.5)
    run.log("acc", 0.75)
    walls = 1_700_000_000.0 + np.arange(1000) * 0.5
    run.log_array("big", np.linspace(0, 1, 1000), steps=np.arange(1000) * 3, wall_times=walls)
    run.log("flag", True)
    run.complete()
    result = export_to_tensorboard(run, tmp_path)
    folder = result.run_dirs[run.id]
    assert folder.parent == tmp_path and "/" not in folder.name and ":" not in folder.name and " " not in folder.name
    assert result.sessions == 0 and not list(tmp_path.glob("*.expboard-hparams"))
    acc = accumulator(folder)
    stored = {s.name: s for s in run.get_metric_series()}
    steps, w, values = scalar_values(acc, "loss")
    assert steps == [5, 10, 20]
    assert w == stored["loss"].wall_times.tolist()
    assert values == pytest.approx([0.2, 0.1, 0.05])
    steps, _, values = scalar_values(acc, "acc")
    assert steps == [0, 1] and values.tolist() == [0.5, 0.75]
    steps, w, values = scalar_values(acc, "big")
    assert steps == (np.arange(1000) * 3).tolist()
    assert w == walls.tolist()
    np.testing.assert_allclose(values, np.linspace(0, 1, 1000), rtol=1e-6)
    assert scalar_values(acc, "flag")[2].tolist() == [1.0]


def test_strings_lists_rows_tables_become_text_and_scalars(ws: Workspace, tmp_path: Path) -> None:
    run = Experiment(ws, "kinds").start_logging(display_name="kinds")
    run.log("note", "hello *world*")
    run.log("mixed", 1.5)
    run.log("mixed", "n/a")
    run.log_list("accuracies", [0.1, 0.5, 0.9])
    run.log_row("results", alpha=0.1, mse=3.0, solver="svd")
    run.log_row("results", alpha=0.2, mse=2.5, solver="lsqr")
    run.log_table("table", {"x": [1, 2, 3], "name": ["a", "b", "c"]})
    run.log_table("table", {"x": [4, 5], "name": ["d", "e"]})
    run.complete()
    acc = accumulator(export_to_tensorboard(run, tmp_path).run_dirs[run.id])
    assert tensor_series(acc, "note")[2][0].item() == b"hello *world*"
    assert acc.SummaryMetadata("note").plugin_data.plugin_name == "text"
    assert scalar_values(acc, "mixed")[2].tolist() == [1.5]
    assert [t.item() for t in tensor_series(acc, "mixed/text")[2]] == [b"n/a"]
    assert acc.SummaryMetadata("mixed/text").plugin_data.plugin_name == "text"
    steps, _, values = scalar_values(acc, "accuracies")
    assert steps == [0, 1, 2] and values == pytest.approx([0.1, 0.5, 0.9])
    steps, _, values = scalar_values(acc, "results/mse")
    assert steps == [0, 1] and values.tolist() == [3.0, 2.5]
    assert [t.item() for t in tensor_series(acc, "results/solver")[2]] == [b"svd", b"lsqr"]
    steps, _, values = scalar_values(acc, "table/x")
    assert steps == [0, 1, 2, 3, 4] and values.tolist() == [1, 2, 3, 4, 5]
    assert [t.item() for t in tensor_series(acc, "table/name")[2]] == [b"a", b"b", b"c", b"d", b"e"]


def test_images_and_confusion_matrix(ws: Workspace, tmp_path: Path) -> None:
    run = Experiment(ws, "images").start_logging(display_name="img")
    for i, (w, h) in enumerate([(7, 5), (16, 9)]):
        path = tmp_path / f"img{i}.png"
        path.write_bytes(_png(w, h))
        run.log_image("sample", str(path))
    run.log_confusion_matrix(
        "cm", {"schema_type": "confusion_matrix", "data": {"class_labels": ["cat", "dog"], "matrix": [[5, 1], [2, 7]]}}
    )
    run.complete()
    acc = accumulator(export_to_tensorboard(run, tmp_path / "out").run_dirs[run.id])
    assert acc.SummaryMetadata("sample").plugin_data.plugin_name == "images"
    steps, _, tensors = tensor_series(acc, "sample")
    assert steps == [0, 1]
    assert [(t[0], t[1]) for t in tensors] == [(b"7", b"5"), (b"16", b"9")]
    assert tensors[1][2] == _png(16, 9)
    (table,) = tensor_series(acc, "cm")[2]
    assert table.shape == (3, 3)
    assert table[1].tolist() == [b"cat", b"5", b"1"] and table[2].tolist() == [b"dog", b"2", b"7"]


def test_reexport_replaces_and_names_are_stable(ws: Workspace, tmp_path: Path) -> None:
    root_run = make_sweep(ws)
    first = export_to_tensorboard(root_run, tmp_path, hparams=["alpha"])
    files_before = _event_files(tmp_path)
    second = export_to_tensorboard(root_run, tmp_path, hparams=["alpha"])
    assert second.run_dirs == first.run_dirs
    files_after = _event_files(tmp_path)
    assert len(files_after) == len(files_before) == len(ALPHAS) + 1  # children + experiment (root logs nothing)
    child = root_run.get_children()[0]
    assert scalar_values(accumulator(second.run_dirs[child.id]), "mse")[0] == [0]
    # a renamed run: its old folder is cleaned up
    ws.store.update_run(child.id, display_name="renamed")
    third = export_to_tensorboard(root_run, tmp_path, hparams=["alpha"])
    assert third.run_dirs[child.id].name.startswith("renamed_")
    assert not first.run_dirs[child.id].exists()
    assert len(_event_files(tmp_path)) == len(ALPHAS) + 1


def test_experiment_and_list_inputs(ws: Workspace, tmp_path: Path) -> None:
    exp = Experiment(ws, "several")
    runs = []
    for lr in (0.1, 0.01):
        run = exp.start_logging(display_name=f"lr{lr}")
        run.log("lr", lr)
        run.log_array("loss", np.array([1.0, 0.5, 0.25]))
        run.complete()
        runs.append(run)
    result = export_to_tensorboard(exp, tmp_path / "exp")
    assert set(result.run_dirs) == {r.id for r in runs}
    # several top-level runs and no children: the runs themselves are the sessions
    assert result.sessions == 2
    info = _hparams_data(accumulator(tmp_path / "exp"), "_hparams_/experiment").experiment
    assert [h.name for h in info.hparam_infos] == ["lr"]
    assert [m.name.tag for m in info.metric_infos] == ["loss"]
    single = export_to_tensorboard([runs[0]], tmp_path / "one")
    assert list(single.run_dirs) == [runs[0].id] and single.sessions == 0


def test_not_recursive_and_failed_child(ws: Workspace, tmp_path: Path) -> None:
    root = Experiment(ws, "fails").start_logging(display_name="root")
    root.log("x", 1.0)
    with pytest.raises(RuntimeError), root.child_run("bad") as child:
        child.log("loss", 3.0)
        raise RuntimeError("boom")
    with root.child_run("good") as good:
        good.log("loss", 1.0)
    root.complete()
    flat = export_to_tensorboard(root, tmp_path / "flat", recursive=False)
    assert list(flat.run_dirs) == [root.id] and flat.sessions == 0
    full = export_to_tensorboard(root, tmp_path / "full")
    acc = accumulator(full.run_dirs[child.id])
    assert child.get_status() == RunStatus.FAILED
    assert _hparams_data(acc, "_hparams_/session_end_info").session_end_info.status == 2  # STATUS_FAILURE


def test_bad_input_is_a_clear_error(tmp_path: Path) -> None:
    from expboard import ValidationError

    with pytest.raises(ValidationError, match="Run, a list of runs or an Experiment"):
        export_to_tensorboard(42, tmp_path)  # type: ignore[arg-type]
