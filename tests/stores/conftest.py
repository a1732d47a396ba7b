"""Store fixtures: ``store`` runs each test on SQLite, PostgreSQL, and the HTTP store in front of each.

PostgreSQL is a real server started once per session (``local_postgres`` in tests/conftest.py), one fresh
database per SQL test. If it cannot start the tests fail; ``EXPBOARD_TEST_SKIP_POSTGRES=1`` skips them instead
(never set in CI). The tracking servers are real processes on 127.0.0.1, one per backend for the
session, so store tests work in experiments and runs of their own.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from expboard.server.process import ServerProcess
from expboard.stores.base import Store
from expboard.stores.http import HttpStore
from expboard.stores.sql import SqlStore

BACKENDS = ["sqlite", "postgresql", "http-sqlite", "http-postgresql"]


def _session_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, db: str
) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp(f"server-{db}")
    if db == "sqlite":
        uri = f"sqlite:///{root / 'expboard.db'}"
    else:
        uri = request.getfixturevalue("local_postgres").create_database()
    with ServerProcess(uri, _artifacts(request, root)) as server:
        yield server


def _artifacts(request: pytest.FixtureRequest, root: Path) -> Any:
    """A folder under ``root``, or with EXPBOARD_TEST_ARTIFACTS=s3 a fresh prefix on moto's S3 server."""
    if os.environ.get("EXPBOARD_TEST_ARTIFACTS") == "s3":
        from s3_fixtures import BUCKET

        request.getfixturevalue("s3_endpoint")
        return f"s3://{BUCKET}/store-{uuid.uuid4().hex[:12]}"
    return root / "artifacts"


@pytest.fixture(scope="session")
def sqlite_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from _session_server(request, tmp_path_factory, "sqlite")


@pytest.fixture(scope="session")
def postgres_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    yield from _session_server(request, tmp_path_factory, "postgresql")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if backend.startswith("http"):
        fixture = "sqlite_server" if backend == "http-sqlite" else "postgres_server"
        server: ServerProcess = request.getfixturevalue(fixture)
        s: Store = HttpStore(server.url, spool_dir=tmp_path / "spool")
    elif backend == "sqlite":
        s = SqlStore(f"sqlite:///{tmp_path / 'expboard.db'}", _artifacts(request, tmp_path))
    else:
        s = SqlStore(request.getfixturevalue("local_postgres").create_database(), _artifacts(request, tmp_path))
    yield s
    s.close()
