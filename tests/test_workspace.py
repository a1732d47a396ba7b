import json
from pathlib import Path

import pytest

from expboard import ConfigError, Experiment, Run, Workspace
from expboard.errors import ValidationError


def test_init_writes_config_and_from_config_walks_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Workspace.init(tmp_path).close()
    config = json.loads((tmp_path / ".expboard" / "config.json").read_text())
    assert config["tracking_uri"].startswith("sqlite:///")
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    ws = Workspace.from_config()
    assert ws.path == tmp_path.resolve()
    assert ws.tracking_uri == f"sqlite:///{tmp_path.resolve() / '.expboard' / 'expboard.db'}"
    Experiment(ws, "walk")
    assert (tmp_path / ".expboard" / "expboard.db").is_file()
    ws.close()


def test_from_config_with_explicit_path(tmp_path: Path) -> None:
    Workspace.init(tmp_path / "p").close()
    ws = Workspace.from_config(tmp_path / "p")
    assert ws.path == (tmp_path / "p").resolve()
    ws.close()


def test_missing_config_says_what_to_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="expboard init"):
        Workspace.from_config()
    with pytest.raises(ConfigError, match="expboard init"):
        Workspace(tmp_path)


def test_broken_config_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / ".expboard").mkdir()
    (tmp_path / ".expboard" / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON.*expboard init"):
        Workspace.from_config(tmp_path)
    (tmp_path / ".expboard" / "config.json").write_text('["a list"]')
    with pytest.raises(ConfigError, match="tracking_uri"):
        Workspace.from_config(tmp_path)


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Workspace.init(tmp_path).close()
    other = tmp_path / "other.db"
    monkeypatch.setenv("EXPBOARD_TRACKING_URI", f"sqlite:///{other}")
    monkeypatch.setenv("EXPBOARD_ARTIFACT_ROOT", str(tmp_path / "files"))
    ws = Workspace.from_config(tmp_path)
    assert ws.tracking_uri == f"sqlite:///{other}"
    assert ws.artifact_root == (tmp_path / "files").resolve()
    Experiment(ws, "env").start_logging().complete()
    assert other.is_file()
    ws.close()


def test_environment_alone_is_enough(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EXPBOARD_TRACKING_URI", f"sqlite:///{tmp_path / 'x.db'}")
    ws = Workspace.from_config()
    assert ws.artifact_root == tmp_path / "artifacts"
    ws.close()


def test_unknown_tracking_uri_scheme(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="unsupported tracking URI"):
        Workspace(tracking_uri="ftp://x")


def test_get_run_and_experiments(ws: Workspace) -> None:
    exp = Experiment(ws, "e1")
    run = exp.start_logging(display_name="first")
    assert Run.get(ws, run.id) == run
    assert Run.get(ws, run.id).display_name == "first"
    assert {e.name for e in Experiment.list(ws)} == {"e1"}
    assert [e.name for e in Experiment.list(ws)] == ["e1"]


def test_run_list_spans_experiments_and_filters(ws: Workspace) -> None:
    a = Experiment(ws, "list-a").start_logging(tags={"sweep": "1"})
    child = a.child_run("c")
    b = Experiment(ws, "list-b").start_logging()
    b.complete()
    assert [r.id for r in Run.list(ws)] == [b.id, a.id]  # newest first, top-level only
    assert {r.id for r in Run.list(ws, include_children=True)} == {a.id, b.id, child.id}
    assert [r.id for r in Run.list(ws, tags="sweep")] == [a.id]
    assert [r.id for r in Run.list(ws, status="Completed")] == [b.id]
    assert [r.experiment.name for r in Run.list(Experiment.get(ws, "list-a"), include_children=True)] == [
        "list-a",
        "list-a",
    ]
    child.complete()
    a.complete()


def test_compute_targets_come_from_the_registered_plugin(ws: Workspace) -> None:
    from expboard.compute import ComputeTargets

    assert isinstance(ws.compute_targets, ComputeTargets)
    assert ws.compute_targets is ws.compute_targets
