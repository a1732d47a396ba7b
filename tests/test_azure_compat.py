"""Azure ML SDK v1 code runs unchanged: tag filters, ignore files, set-up boilerplate, keyword names."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

from expboard import Experiment, Workspace
from expboard.compute.snapshot import build_snapshot


def _names(data: bytes) -> set[str]:
    return set(zipfile.ZipFile(io.BytesIO(data)).namelist())


# --- silent divergences ---------------------------------------------------------------------------
def test_get_runs_with_a_list_of_tag_names(ws: Workspace) -> None:
    exp = Experiment(ws, "tags")
    both = exp.start_logging(tags={"k1": "a", "k2": "b"})
    one = exp.start_logging(tags={"k1": "a"})
    none = exp.start_logging()
    for run in (both, one, none):
        run.complete()
    assert [r.id for r in exp.get_runs(tags=["k1", "k2"])] == [both.id]
    assert {r.id for r in exp.get_runs(tags=["k1"])} == {both.id, one.id}
    assert {r.id for r in exp.get_runs(tags="k1")} == {both.id, one.id}
    assert [r.id for r in exp.get_runs(tags={"k2": "b"})] == [both.id]
    assert list(exp.get_runs(tags={"k2": "other"})) == []
    assert len(list(exp.get_runs())) == 3


def test_tag_without_value_reads_back_empty_and_matches_none(ws: Workspace) -> None:
    exp = Experiment(ws, "bare-tag")
    run = exp.start_logging()
    run.tag("flag")
    other = exp.start_logging(tags={"flag": "yes"})
    plain = exp.start_logging()
    assert run.get_tags() == {"flag": ""}
    assert run.get_details()["tags"] == {"flag": ""}
    assert {r.id for r in exp.get_runs(tags={"flag": None})} == {run.id, other.id}
    assert [r.id for r in exp.get_runs(tags={"flag": ""})] == [run.id]
    assert plain.id not in {r.id for r in exp.get_runs(tags=["flag"])}
    for r in (run, other, plain):
        r.complete()


def test_property_filters_take_the_same_forms(ws: Workspace) -> None:
    exp = Experiment(ws, "props")
    run = exp.start_logging(properties={"p": "1", "q": "2"})
    exp.start_logging(properties={"p": "1"}).complete()
    run.complete()
    assert [r.id for r in exp.get_runs(properties=["p", "q"])] == [run.id]
    assert [r.id for r in exp.get_runs(properties={"q": None})] == [run.id]


def test_amlignore_is_honoured_and_wins_over_gitignore(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for rel in ("train.py", "data.bin", "model.ckpt", "notes.txt"):
        (src / rel).write_text(rel)
    (src / ".gitignore").write_text("*.ckpt\n")
    assert "model.ckpt" not in _names(build_snapshot(src).data)
    (src / ".amlignore").write_text("data.bin\n")
    names = _names(build_snapshot(src).data)
    assert "data.bin" not in names
    assert "model.ckpt" in names  # .gitignore is unused once an .amlignore is there, as in Azure ML
    (src / ".expboardignore").write_text("notes.txt\n")
    names = _names(build_snapshot(src).data)
    assert "notes.txt" not in names
    assert {"data.bin", "model.ckpt"} <= names  # .expboardignore comes first
