"""Azure ML SDK v1 code runs unchanged: tag filters, ignore files, set-up boilerplate, keyword names."""

from __future__ import annotations

import io
import sqlite3
import zipfile
from pathlib import Path

import pytest

from expboard import ConfigError, Experiment, NotFoundError, Run, ValidationError, Workspace
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


# --- set-up boilerplate ---------------------------------------------------------------------------
def test_version_and_workspace_attributes(ws: Workspace, tracking_uri: str | None) -> None:
    import expboard

    assert expboard.__version__ == expboard.VERSION
    assert ws.name == "project"  # the folder's name when the config names none
    assert ws.subscription_id is None
    assert ws.resource_group is None
    assert ws.location == ("local" if tracking_uri is None else "127.0.0.1")


def test_workspace_create_and_get_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="create it with Workspace.create"):
        Workspace.get("team")
    ws = Workspace.create(name="team", subscription_id="sub", resource_group="rg", location="eastus", exist_ok=True)
    assert ws.name == "team"
    assert ws.path == tmp_path / "team"
    Experiment(ws, "e").start_logging().complete()
    ws.close()
    with pytest.raises(ConfigError, match="exist_ok=True"):
        Workspace.create("team")
    again = Workspace.create("team", exist_ok=True)
    assert [e.name for e in Experiment.list(again)] == ["e"]
    again.close()
    got = Workspace.get("team", subscription_id="sub", resource_group="rg")
    assert got.name == "team" and got.path == tmp_path / "team"
    got.close()
    monkeypatch.chdir(tmp_path / "team")  # the workspace found from the current folder, by its name
    inside = Workspace.get("team")
    assert inside.path == tmp_path / "team"
    inside.close()
    with pytest.raises(ConfigError, match="folder name"):
        Workspace.create("../x")


def test_experiment_list_tags_and_archive(ws: Workspace) -> None:
    a, b = Experiment(ws, "a"), Experiment(ws, "b")
    a.tag("team", "vision")
    a.tag("flag")
    assert a.tags == {"team": "vision", "flag": ""}
    assert Experiment.get(ws, "a").tags == {"team": "vision", "flag": ""}
    assert [e.name for e in Experiment.list(ws, tags={"team": "vision"})] == ["a"]
    assert [e.name for e in Experiment.list(ws, tags=["flag"])] == ["a"]
    assert [e.name for e in Experiment.list(ws, tags={"flag": None})] == ["a"]
    assert [e.name for e in Experiment.list(ws, experiment_name="b")] == ["b"]
    assert {e.name for e in Experiment.list(ws)} == {"a", "b"}
    b.archive()
    assert b.archived
    assert [e.name for e in Experiment.list(ws)] == ["a"]
    assert [e.name for e in Experiment.list(ws, view_type="ArchivedOnly")] == ["b"]
    assert {e.name for e in Experiment.list(ws, view_type="All")} == {"a", "b"}
    b.reactivate()
    assert not b.archived
    assert {e.name for e in Experiment.list(ws)} == {"a", "b"}
    a.remove_tags(["flag"])
    assert a.tags == {"team": "vision"}
    with pytest.raises(ValidationError):
        Experiment.list(ws, view_type="Some")
    with pytest.raises(ValidationError, match="keep their names"):
        b.reactivate(new_name="c")
    with pytest.raises(NotFoundError):
        Experiment.get(ws, "never").archive()


def test_a_store_from_before_experiment_tags_is_migrated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from expboard.stores import sql

    uri = f"sqlite:///{tmp_path / 'old.db'}"
    monkeypatch.setattr(sql, "MIGRATIONS", sql.MIGRATIONS[:1])
    sql.SqlStore(uri, tmp_path / "artifacts").close()  # schema version 1 only
    with sqlite3.connect(tmp_path / "old.db") as conn:
        conn.execute("INSERT INTO experiments (name, created) VALUES ('kept', 1.0)")
    conn.close()
    monkeypatch.undo()
    new = sql.SqlStore(uri, tmp_path / "artifacts")
    try:
        record = new.get_experiment("kept")
        assert (record.archived, dict(record.tags)) == (False, {})
        assert new.update_experiment("kept", archived=True, tags={"k": "v"}).tags == {"k": "v"}
    finally:
        new.close()


# --- Azure's keyword names ------------------------------------------------------------------------
def test_export_to_tensorboard_with_logsdir_and_a_run_name(
    ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from expboard.tensorboard.export import export_to_tensorboard

    exp = Experiment(ws, "export-names")
    run = exp.start_logging(display_name="root")
    run.log("mse", 1.5)
    run.complete()
    result = export_to_tensorboard(run, logsdir=tmp_path / "a")
    assert result.logdir == tmp_path / "a"
    assert list((tmp_path / "a").rglob("*tfevents*"))
    with pytest.raises(ValidationError, match="logsdir"):
        export_to_tensorboard(run)
    assert ws.path is not None
    monkeypatch.chdir(ws.path)
    by_id = export_to_tensorboard(run.id, tmp_path / "b")
    by_name = export_to_tensorboard("root", logsdir=tmp_path / "c")
    assert by_id.logdir == tmp_path / "b" and list((tmp_path / "b").rglob("*tfevents*"))
    assert list((tmp_path / "c").rglob("*tfevents*"))
    assert list(by_name.run_dirs) == list(by_id.run_dirs) == [run.id]
    twin = Experiment(ws, "other").start_logging(display_name="root")
    twin.complete()
    with pytest.raises(ValidationError, match="2 runs have the display name 'root'") as err:
        export_to_tensorboard("root", tmp_path / "d")
    assert run.id in str(err.value) and twin.id in str(err.value)
    with pytest.raises(NotFoundError):
        export_to_tensorboard("nobody", tmp_path / "e")


def test_get_children_recursive_lists_a_level_at_a_time(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    parent = Experiment(ws, "tree").start_logging()
    kids = [parent.child_run(f"k{i}") for i in range(3)]
    grandkids = [kids[i].child_run(f"g{i}{j}") for i in (0, 2) for j in range(2)]
    calls: list[int] = []
    real = ws.store.list_children
    monkeypatch.setattr(ws.store, "list_children", lambda ids: calls.append(len(ids)) or real(ids))
    got = parent.get_children(recursive=True)
    # newest first within each parent, parents in the order they were listed, a level after the other
    expected = [*reversed(kids), *reversed(grandkids[2:]), *reversed(grandkids[:2])]
    assert [r.id for r in got] == [r.id for r in expected]
    assert calls == [1, 3, 4]  # the root, its 3 children, their 4 children (each level in one call)
    assert [r.id for r in parent.get_children()] == [r.id for r in reversed(kids)]


def test_get_runs_and_get_children_filters(ws: Workspace) -> None:
    exp = Experiment(ws, "filters")
    parent = exp.start_logging()
    a = parent.child_run("a")
    a.tag("k", "1")
    a.complete()
    b = parent.child_run("b")
    b.add_properties({"p": "x"})
    b.fail("boom")
    parent.complete()
    assert [r.id for r in exp.get_runs(type="interactive")] == [parent.id]
    assert {r.id for r in exp.get_runs(type="child", include_children=True)} == {a.id, b.id}
    assert list(exp.get_runs(type="script")) == []
    assert [r.id for r in parent.get_children(tags={"k": None})] == [a.id]
    assert [r.id for r in parent.get_children(properties=["p"])] == [b.id]
    assert [r.id for r in parent.get_children(status="Failed")] == [b.id]
    assert {r.id for r in parent.get_children(type="child")} == {a.id, b.id}
    assert parent.get_children(type="interactive") == []


def test_download_files_with_azure_options(ws: Workspace, tmp_path: Path) -> None:
    run = Experiment(ws, "files").start_logging()
    run.upload_file("outputs/a.txt", io.BytesIO(b"a"))
    run.upload_file("outputs/sub/b.txt", io.BytesIO(b"b"))
    run.upload_file("other.txt", io.BytesIO(b"o"))
    kept = run.download_files(prefix="outputs", output_directory=tmp_path / "kept")
    assert sorted(p.relative_to(tmp_path / "kept").as_posix() for p in kept) == ["outputs/a.txt", "outputs/sub/b.txt"]
    dropped = run.download_files(prefix="outputs/", output_directory=tmp_path / "dropped", append_prefix=False)
    assert sorted(p.relative_to(tmp_path / "dropped").as_posix() for p in dropped) == ["a.txt", "sub/b.txt"]
    targets = [tmp_path / "x1", tmp_path / "x2"]
    got = run.download_files(prefix="outputs", output_paths=targets)
    assert got == targets and {p.read_bytes() for p in targets} == {b"a", b"b"}
    with pytest.raises(ValidationError, match="one path per file"):
        run.download_files(prefix="outputs", output_paths=[tmp_path / "only-one"])
    run.complete()


def test_start_logging_with_snapshot_outputs_and_display_name(ws: Workspace, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "data").mkdir(parents=True)
    (src / "train.py").write_text("print(1)\n")
    (src / "data" / "big.bin").write_text("x")
    (src / ".amlignore").write_text("data/\n")
    out = tmp_path / "outs"
    out.mkdir()
    (out / "model.pkl").write_bytes(b"model")
    run = Experiment(ws, "start").start_logging(snapshot_directory=src, outputs=out, display_name="first")
    assert run.display_name == "first"
    snap = Path(run.download_file("snapshot.zip", tmp_path / "snap.zip"))
    assert _names(snap.read_bytes()) == {".amlignore", "train.py"}
    assert "outputs/model.pkl" not in run.get_file_names()
    run.complete()
    assert "outputs/model.pkl" in run.get_file_names()


# --- run methods ----------------------------------------------------------------------------------
def test_run_names_number_type_and_display_name(ws: Workspace) -> None:
    exp = Experiment(ws, "numbers")
    first = exp.start_logging(display_name="one")
    child = first.child_run("kid")
    second = exp.start_logging()
    assert (first.number, child.number, second.number) == (1, 2, 3)
    assert Experiment(ws, "elsewhere").start_logging().number == 1
    assert (first.type, child.type) == ("interactive", "child")
    assert first.name == "one"
    first.display_name = "renamed"
    assert first.display_name == "renamed" and first.name == "renamed"
    assert Run.get(ws, first.id).display_name == "renamed"
    for r in (child, first, second):
        r.complete()


def test_create_children_upload_files_and_get_all_logs(ws: Workspace, tmp_path: Path) -> None:
    parent = Experiment(ws, "children").start_logging()
    kids = parent.create_children(tag_key="alpha", tag_values=["0.1", "0.2"])
    assert [k.get_tags() for k in kids] == [{"alpha": "0.1"}, {"alpha": "0.2"}]
    assert {k.id for k in parent.get_children()} == {k.id for k in kids}
    assert len(parent.create_children(count=2)) == 2
    with pytest.raises(ValidationError):
        parent.create_children()
    with pytest.raises(ValidationError):
        parent.create_children(count=3, tag_key="a", tag_values=["x"])
    (tmp_path / "f1").write_text("1")
    (tmp_path / "f2").write_text("2")
    parent.upload_files(["logs/a.txt", "system_logs/driver.log"], [tmp_path / "f1", tmp_path / "f2"])
    parent.upload_file("outputs/m.pkl", tmp_path / "f1")
    with pytest.raises(ValidationError, match="one name per path"):
        parent.upload_files(["x"], [])
    got = parent.get_all_logs(tmp_path / "logs-here")
    assert sorted(p.relative_to(tmp_path / "logs-here").as_posix() for p in got) == [
        "logs/a.txt",
        "system_logs/driver.log",
    ]
    for k in parent.get_children():
        k.complete()
    parent.complete()


def test_html_reprs_and_portal_url(ws: Workspace, tmp_path: Path) -> None:
    from expboard.tensorboard import Tensorboard

    exp = Experiment(ws, "html")
    run = exp.start_logging(display_name="a<b")
    assert run.get_portal_url() is None
    page = run._repr_html_()
    assert "a&lt;b" in page and "Running" in page and run.id in page and "<a href" not in page
    assert "<td>html</td>" in exp._repr_html_() and "<td>project</td>" in exp._repr_html_()
    run.log("x", 1.0)
    run.complete()
    tb = Tensorboard([run], port=0)
    try:
        url = tb.start()
        assert run.get_portal_url() == url
        assert f'<a href="{url}"' in run._repr_html_()
    finally:
        tb.stop()
    assert run.get_portal_url() is None
