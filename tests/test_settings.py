"""Settings are data: one table, one reader, and the README's settings table equal to the code's."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import expboard
from expboard import ConfigError, settings

README = Path(__file__).resolve().parents[1] / "README.md"
SRC = Path(expboard.__file__).parent


def test_the_readme_table_is_the_code_table() -> None:
    text = README.read_text()
    match = re.search(r"<!-- settings-table:[^\n]*-->\n(.*?)<!-- end of settings-table -->", text, re.S)
    assert match, "README.md has no settings table between its markers"
    assert match.group(1) == settings.markdown_table(), (
        "README.md's settings table differs from expboard.settings.SETTINGS: paste "
        "`python -c 'import expboard.settings as s; print(s.markdown_table(), end=\"\")'` between the markers"
    )


def test_every_environment_variable_the_code_names_is_in_the_table() -> None:
    known = {s.env for s in settings.SETTINGS} | {a for s in settings.SETTINGS for a in s.aliases}
    named: set[str] = set()
    for path in SRC.rglob("*.py"):
        named |= set(re.findall(r"\bEXPBOARD_[A-Z0-9_]+\b", path.read_text()))
    assert named - known == set()


def test_names_and_variables_are_unique_and_documented() -> None:
    rows = settings.SETTINGS
    assert len({s.name for s in rows}) == len(rows)
    assert len({s.env for s in rows} | {a for s in rows for a in s.aliases}) == len(rows) + sum(
        len(s.aliases) for s in rows
    )
    for s in rows:
        assert s.help and s.env.startswith("EXPBOARD_") and s.kind in ("str", "float", "int", "bool")


def test_argument_beats_environment_beats_config_beats_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EXPBOARD_LOG_SYNC_S", raising=False)
    assert settings.get("log_sync_s") == 1.0
    assert settings.get("log_sync_s", config={"log_sync_s": 3}) == 3
    monkeypatch.setenv("EXPBOARD_LOG_SYNC_S", "2.5")
    assert settings.get("log_sync_s", config={"log_sync_s": 3}) == 2.5
    assert settings.get("log_sync_s", 7.0, config={"log_sync_s": 3}) == 7.0
    monkeypatch.setenv("EXPBOARD_LOG_SYNC_S", "")  # empty counts as unset
    assert settings.get("log_sync_s") == 1.0


def test_an_older_name_still_works(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EXPBOARD_HEARTBEAT_S", raising=False)
    monkeypatch.setenv("EXPBOARD_HEARTBEAT_INTERVAL", "0.5")
    assert settings.get("heartbeat_s") == 0.5
    monkeypatch.setenv("EXPBOARD_HEARTBEAT_S", "2")
    assert settings.get("heartbeat_s") == 2.0  # the current name wins


def test_bad_values_say_which_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXPBOARD_CANCEL_GRACE_S", "soon")
    with pytest.raises(ConfigError, match=r"EXPBOARD_CANCEL_GRACE_S='soon' is not a number of s"):
        settings.get("cancel_grace_s")
    monkeypatch.setenv("EXPBOARD_KEEP_WORKDIR", "maybe")
    with pytest.raises(ConfigError, match="EXPBOARD_KEEP_WORKDIR"):
        settings.get("keep_workdir")
    monkeypatch.setenv("EXPBOARD_KEEP_WORKDIR", "1")
    assert settings.get("keep_workdir") is True
