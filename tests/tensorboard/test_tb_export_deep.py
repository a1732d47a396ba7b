"""Deep run trees export whole: folder paths stay bounded, short ids kept, the same folders on every export."""

from __future__ import annotations

from pathlib import Path

from tbhelpers import accumulator, scalar_values

from expboard import Experiment, Run, Workspace
from expboard.records import RunRecord, RunStatus
from expboard.tensorboard.export import MAX_FOLDER_PATH, export_to_tensorboard, run_folder, run_folder_name

DEPTH = 100


def _event_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and "tfevents" in p.name)


def _chain(ws: Workspace) -> list[Run]:
    """A top-level run and 100 levels of children, each with a 60-character display name."""
    top = Experiment(ws, "deep").start_logging(display_name="top")
    runs, parent = [top], top
    for i in range(DEPTH):
        child = parent.child_run(f"level{i:03d}-" + "x" * 51)
        child.log("depth", i)
        runs.append(child)
        parent = child
    for run in reversed(runs):
        run.complete()
    return runs


def test_deep_tree_exports_with_bounded_folders(ws: Workspace, tmp_path: Path) -> None:
    runs = _chain(ws)
    assert len(runs[1].display_name) == 60
    logdir = tmp_path / "tb"
    first = export_to_tensorboard(runs[0], logdir)
    assert set(first.run_dirs) == {r.id for r in runs} and first.sessions == DEPTH
    top_dir = first.run_dirs[runs[0].id]
    shortened = flattened = 0
    for depth, run in enumerate(runs):
        folder = first.run_dirs[run.id]
        rel = folder.relative_to(logdir)
        assert len(rel.as_posix()) <= MAX_FOLDER_PATH and max(len(p) for p in rel.parts) <= 69
        assert folder.name.endswith("_" + run.id[-8:]) and folder.is_dir()
        if depth:
            parent = first.run_dirs[runs[depth - 1].id]
            nested = folder.parent == parent
            assert nested or folder.parent == top_dir  # too deep: up in the top-level run's folder
            flattened += not nested
            shortened += not folder.name.startswith(run.display_name + "_")
            assert folder.name[:5] == "level"  # the display name's start is kept
            assert len([p for p in folder.iterdir() if p.is_file() and "tfevents" in p.name]) == 1
    assert runs[1].display_name in first.run_dirs[runs[1].id].name  # near the top: names whole
    assert flattened and not shortened  # 70-character levels: whole names until one no longer fits
    # TensorBoard's own loader reads the deepest session
    steps, _walls, values = scalar_values(accumulator(first.run_dirs[runs[-1].id]), "depth")
    assert steps == [0] and values == [DEPTH - 1]
    files = _event_files(logdir)
    assert len(files) == DEPTH + 1  # one per session, and the HParams experiment

    # the same folders on a re-export, nothing duplicated
    second = export_to_tensorboard(runs[0], logdir)
    assert second.run_dirs == first.run_dirs
    assert len(_event_files(logdir)) == DEPTH + 1

    # a renamed run high in the chain moves every folder below it; their old folders are cleaned up
    ws.store.update_run(runs[3].id, display_name="s")
    third = export_to_tensorboard(runs[0], logdir)
    assert third.run_dirs[runs[3].id].name.startswith("s_")
    assert third.run_dirs != first.run_dirs
    assert len(_event_files(logdir)) == DEPTH + 1
    for run in runs[1:]:
        own = [p for p in third.run_dirs[run.id].iterdir() if p.is_file() and "tfevents" in p.name]
        assert len(own) == 1, run.display_name


def test_run_folder_shortens_the_name_then_moves_up(tmp_path: Path) -> None:
    rec = RunRecord("run-1234abcd", "e", RunStatus.COMPLETED, 0.0, display_name="n" * 80)
    assert run_folder_name(rec) == "n" * 60 + "_1234abcd"
    assert run_folder_name(rec, 20) == "n" * 11 + "_1234abcd"
    top = tmp_path / "top_00000000"
    assert run_folder(tmp_path, tmp_path, rec) == tmp_path / ("n" * 60 + "_1234abcd")
    roomy = top / ("p" * (MAX_FOLDER_PATH - len(top.name) - 1 - 40 - 1))  # leaves 40 characters for the child's name
    got = run_folder(tmp_path, roomy, rec)
    assert got.parent == roomy and got.name == "n" * 31 + "_1234abcd"
    assert len(got.relative_to(tmp_path).as_posix()) == MAX_FOLDER_PATH
    tight = top / ("p" * (MAX_FOLDER_PATH - len(top.name) - 1 - 10))
    assert run_folder(tmp_path, tight, rec) == top / ("n" * 60 + "_1234abcd")  # up in the top-level folder
    assert run_folder(tmp_path, tight, rec) == run_folder(tmp_path, tight, rec)
