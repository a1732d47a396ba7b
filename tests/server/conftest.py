"""Fixtures for the tracking server tests: real server processes on 127.0.0.1, raw HTTP through http.client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from server_http import TOKEN

from expboard.server.process import ServerProcess


@pytest.fixture(params=["sqlite", "postgresql"])
def db_uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'expboard.db'}"
    return str(request.getfixturevalue("local_postgres").create_database())


@pytest.fixture
def sqlite_uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'expboard.db'}"


@pytest.fixture
def pg_uri(local_postgres: Any) -> str:
    return str(local_postgres.create_database())


@pytest.fixture
def secured(sqlite_uri: str, tmp_path: Path) -> Iterator[ServerProcess]:
    """A server on SQLite that wants TOKEN and takes bodies up to 1 MiB."""
    with ServerProcess(sqlite_uri, tmp_path / "artifacts", tokens=[TOKEN], max_request_mb=1) as server:
        yield server
