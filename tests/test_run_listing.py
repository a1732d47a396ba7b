"""Paged, filtered run listing: the store evaluates the filter, pages go newest first."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from expboard import Experiment, RunStatus, Workspace
from expboard.cli import main
from expboard.stores.query import RunFilter


def _sweep(ws: Workspace) -> list[Any]:
    exp = Experiment(ws, "grid")
    runs = []
    for i in range(7):
        run = exp.start_logging(display_name=f"Alpha_{i}" if i % 2 else f"beta{i}")
        run.log("mse", 0.1 * i)
        run.log("mse", 0.05 * i)  # the last value counts
        run.set_tags({"team": "vision" if i < 4 else "nlp"})
        run.add_properties({"seed": str(i)})
        if i == 3:
            run.fail(RuntimeError("boom"))
        else:
            run.complete()
        runs.append(run)
    return runs


def test_pages_are_newest_first_and_lazy(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    runs = _sweep(ws)
    exp = Experiment(ws, "grid")
    calls: list[Any] = []
    real = ws.store.query_runs

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs.get("limit"))
        return real(*args, **kwargs)

    monkeypatch.setattr(ws.store, "query_runs", counting)
    it = iter(exp.get_runs())
    first = next(it)
    assert first.id == runs[-1].id and len(calls) == 1
    listed = [r.run_id for r in ws.store.query_runs(experiment="grid", limit=3).runs]
    assert listed == [r.id for r in reversed(runs)][:3]
    page = ws.store.query_runs(experiment="grid", limit=3)
    ids: list[str] = []
    while True:
        ids += [r.run_id for r in page.runs]
        if page.next_page_token is None:
            break
        page = ws.store.query_runs(experiment="grid", limit=3, page_token=page.next_page_token)
    assert ids == [r.id for r in reversed(runs)]


def test_filters_are_evaluated_by_the_store(ws: Workspace) -> None:
    runs = _sweep(ws)
    exp = Experiment(ws, "grid")

    def ids(**kw: Any) -> set[str]:
        return {r.id for r in exp.get_runs(filter=kw)}

    assert ids(metrics=["mse<0.1"]) == {runs[0].id, runs[1].id}  # last values 0, 0.05
    assert ids(metrics=["mse>=0.25"]) == {runs[5].id, runs[6].id}
    assert ids(tags=["team=nlp"], metrics=["mse!=0.2"]) == {runs[5].id, runs[6].id}
    assert ids(properties=["seed=2"]) == {runs[2].id}
    assert ids(status=["Failed"]) == {runs[3].id}
    assert ids(text="alpha") == {runs[1].id, runs[3].id, runs[5].id}
    assert ids(text="%") == set() and ids(text="_") == {runs[1].id, runs[3].id, runs[5].id}
    assert {r.id for r in exp.get_runs(status=RunStatus.COMPLETED, filter={"tags": {"team": "vision"}})} == {
        runs[0].id,
        runs[1].id,
        runs[2].id,
    }
    assert RunFilter.parse(metrics="loss <= 2").metrics == (("loss", "<=", 2.0),)
    with pytest.raises(Exception, match="mse<0.3"):
        RunFilter.parse(metrics=["mse"])


def test_cli_pages_and_filters(
    ws: Workspace, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = _sweep(ws)
    assert ws.path is not None
    monkeypatch.chdir(ws.path)
    assert main(["runs", "list", "--json", "--limit", "4"]) == 0
    out = capsys.readouterr()
    first = json.loads(out.out)
    assert [r["run_id"] for r in first] == [r.id for r in reversed(runs)][:4]
    token = out.err.split("--page-token ")[1].strip()
    assert main(["runs", "list", "--json", "--limit", "4", "--page-token", token]) == 0
    second = json.loads(capsys.readouterr().out)
    assert [r["run_id"] for r in second] == [r.id for r in reversed(runs)][4:]
    assert main(["runs", "list", "--json", "--tag", "team=nlp", "--metric", "mse<0.26", "--search", "ALPHA"]) == 0
    assert [r["run_id"] for r in json.loads(capsys.readouterr().out)] == [runs[5].id]
    assert main(["runs", "list", "--status", "Failed"]) == 0
    assert runs[3].id in capsys.readouterr().out


def test_metric_filter_works_when_an_older_workspace_is_upgraded(tmp_path: Path) -> None:
    import sqlite3

    ws = Workspace.init(tmp_path / "old")
    run = Experiment(ws, "e").start_logging()
    run.log("mse", 0.5)
    run.log("mse", 0.2)
    run.complete()
    db_path = ws.tracking_uri[len("sqlite:///") :]
    ws.close()
    db = sqlite3.connect(db_path)  # back to the second schema
    db.executescript(
        "DROP INDEX runs_by_created; DROP INDEX runs_by_experiment_created; DROP INDEX metric_chunks_by_run_id;"
        "DROP TABLE experiment_tags; ALTER TABLE experiments DROP COLUMN archived;"  # and what came after it
        "DROP INDEX runs_number; ALTER TABLE runs DROP COLUMN description; ALTER TABLE runs DROP COLUMN number;"
        "ALTER TABLE experiments DROP COLUMN run_count;"
        "DROP TABLE workspace_objects;"
        "DROP TABLE model_aliases; DROP TABLE model_properties; DROP TABLE model_tags;"
        "DROP INDEX model_versions_by_run; DROP TABLE model_versions; DROP TABLE models;"
        "DELETE FROM schema_version WHERE version >= 3;"
    )
    db.close()
    ws = Workspace(tmp_path / "old")
    assert [r.id for r in Experiment(ws, "e").get_runs(filter={"metrics": ["mse<0.3"]})] == [run.id]
    assert list(Experiment(ws, "e").get_runs(filter={"metrics": ["mse<0.1"]})) == []
    ws.close()
