"""Shared fixtures: real workspaces on real SQLite files in tmp_path."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from expboard import Workspace

_CLEAN_ENV = (
    "EXPBOARD_TRACKING_URI",
    "EXPBOARD_ARTIFACT_ROOT",
    "EXPBOARD_TOKEN",
    "EXPBOARD_WORKSPACE",
    "EXPBOARD_RUN_ID",
)


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's own workspace settings."""
    for name in _CLEAN_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def ws(request: pytest.FixtureRequest, tmp_path: Path, tracking_uri: str | None) -> Iterator[Workspace]:
    """A fresh workspace in tmp_path: embedded (SQLite + folder), or with EXPBOARD_TEST_TRACKING=http or
    http-postgresql a tracking server started for the test (see the tracking_uri fixture). With
    EXPBOARD_TEST_ARTIFACTS=s3 run files go to S3 (moto's server), the embedded workspace's or the server's."""
    if tracking_uri is None and test_artifacts_mode() == "s3":
        import json

        Workspace.init(tmp_path / "project").close()
        config_file = tmp_path / "project" / ".expboard" / "config.json"
        config = json.loads(config_file.read_text())
        config["artifact_root"] = request.getfixturevalue("s3_root")
        config_file.write_text(json.dumps(config))
    workspace = Workspace.init(tmp_path / "project", tracking_uri=tracking_uri)
    yield workspace
    workspace.close()


# --- S3 fixtures ------------------------------------------------------------------------------------------
# EXPBOARD_TEST_ARTIFACTS=s3 puts run files in S3 (moto's standalone server on 127.0.0.1, one per session)
# for the store suite (tests/stores) and the client suite (the ws fixture, embedded or behind a server).


def test_artifacts_mode() -> str:
    mode = os.environ.get("EXPBOARD_TEST_ARTIFACTS", "")
    if mode not in ("", "folder", "s3"):
        raise ValueError(f"EXPBOARD_TEST_ARTIFACTS={mode!r}: use folder or s3")
    return mode or "folder"


test_artifacts_mode.__test__ = False  # type: ignore[attr-defined]  # not a test


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """The URL of moto's S3 server for the session; AWS_* variables point every process of the test at it
    (credentials are moto's test ones; nothing reaches real AWS)."""
    try:
        import boto3  # noqa: F401
        import moto.server  # noqa: F401
    except ImportError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"S3 tests need moto[server] and boto3 ({exc}): pip install -e '.[test]'", pytrace=False)
        pytest.skip(f"S3 tests need moto[server] and boto3 ({exc})")
    from s3_fixtures import CREDENTIALS, MotoProcess, make_bucket

    server = MotoProcess().start()
    saved = {k: os.environ.get(k) for k in [*CREDENTIALS, "AWS_ENDPOINT_URL"]}
    os.environ.update(CREDENTIALS)
    os.environ["AWS_ENDPOINT_URL"] = server.url
    try:
        make_bucket(server.url)
        yield server.url
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        server.stop()


@pytest.fixture
def s3_root(s3_endpoint: str) -> str:
    """A fresh ``s3://bucket/prefix`` artifact root on the session's S3 server."""
    import uuid

    from s3_fixtures import BUCKET

    return f"s3://{BUCKET}/t-{uuid.uuid4().hex[:12]}"


def _run_python(
    code: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter (the real thing: separate process, real exit)."""
    full_env = {k: v for k, v in os.environ.items() if k not in _CLEAN_ENV}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def run_python():  # type: ignore[no-untyped-def]
    """``run_python(code, cwd, env=None)``: run code in a fresh interpreter and return the CompletedProcess."""
    return _run_python


# --- tracking server fixtures ---------------------------------------------------------------------------
# local_postgres: one real PostgreSQL for the session (fails loudly if it cannot start; EXPBOARD_TEST_SKIP_POSTGRES=1
# skips instead). tracking_uri: None, or with EXPBOARD_TEST_TRACKING=http | http-postgresql the URL of a fresh
# tracking server process for the test, so the client API tests can run against the server unchanged.


@pytest.fixture(scope="session")
def local_postgres() -> Iterator[Any]:
    from expboard.server.devpg import LocalPostgres

    if os.environ.get("EXPBOARD_TEST_SKIP_POSTGRES") == "1":
        pytest.skip("EXPBOARD_TEST_SKIP_POSTGRES=1: PostgreSQL tests skipped on request")
    pg = LocalPostgres()
    try:
        pg.start()
    except (FileNotFoundError, RuntimeError) as exc:
        pytest.fail(
            f"cannot start PostgreSQL for the tests ({exc}); EXPBOARD_TEST_SKIP_POSTGRES=1 skips them", pytrace=False
        )
    yield pg
    pg.stop()


@pytest.fixture
def tracking_uri(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | None]:
    mode = os.environ.get("EXPBOARD_TEST_TRACKING", "")
    if not mode:
        yield None
        return
    from expboard.server.process import ServerProcess

    if mode not in ("http", "http-postgresql"):
        raise ValueError(f"EXPBOARD_TEST_TRACKING={mode!r}: use http or http-postgresql")
    root = tmp_path / "tracking-server"
    db = f"sqlite:///{root / 'expboard.db'}"
    if mode == "http-postgresql":
        db = request.getfixturevalue("local_postgres").create_database()
    artifacts: Any = root / "artifacts"
    if test_artifacts_mode() == "s3":
        artifacts = request.getfixturevalue("s3_root")
    with ServerProcess(db, artifacts) as server:
        yield server.url
