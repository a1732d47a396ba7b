"""Compute plugs into the client through expboard.plugins; without it the client says what to import."""

from __future__ import annotations

import pytest

from expboard import ExpboardError, Experiment, Workspace, plugins


def test_without_compute_loaded_the_error_says_what_to_import(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plugins, "_submit", None)
    monkeypatch.setattr(plugins, "_targets", None)
    with pytest.raises(ExpboardError, match="import expboard.compute"):
        Experiment(ws, "p").submit(object())
    with pytest.raises(ExpboardError, match="import expboard.compute"):
        _ = Workspace(tracking_uri=ws.tracking_uri, artifact_root=ws.artifact_root).compute_targets


def test_a_registered_submitter_gets_the_call(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.setattr(plugins, "_submit", lambda exp, config, tags=None: calls.append((exp.name, config, tags)))
    Experiment(ws, "p").submit("cfg", tags={"a": "1"})
    assert calls == [("p", "cfg", {"a": "1"})]
