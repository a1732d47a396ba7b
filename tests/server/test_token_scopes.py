"""Token names and scopes: read-only tokens only GET, write tokens log runs, admin tokens also see the
token list; every write is logged with the token's name; old one-column token files keep working."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from server_http import raw_request

from expboard.errors import AuthError, ConfigError, ForbiddenError
from expboard.records import MetricKind, RunRecord, RunStatus
from expboard.server.auth import load_tokens
from expboard.server.process import ServerProcess
from expboard.stores.base import MetricChunk
from expboard.stores.http import HttpStore

READ, WRITE, ADMIN, OLD = ("r" * 20, "w" * 20, "a" * 20, "o" * 20)


@pytest.fixture
def server(sqlite_uri: str, tmp_path: Path) -> Iterator[ServerProcess]:
    token_file = tmp_path / "tokens.txt"
    token_file.write_text(
        f"# name       scope  token\nviewer       read   {READ}\ntrainer      write  {WRITE}\n"
        f"ops          admin  {ADMIN}\n{OLD}\n"
    )
    with ServerProcess(sqlite_uri, tmp_path / "artifacts", auth_token_file=token_file) as s:
        yield s


def _wait_for(server: ServerProcess, text: str) -> list[str]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        lines = [line for line in list(server.output) if text in line]
        if lines:
            return lines
        time.sleep(0.1)
    raise AssertionError(f"{text!r} not in the server's log: {list(server.output)[-20:]}")


def test_scopes(server: ServerProcess, tmp_path: Path) -> None:
    url = server.url
    assert raw_request(url, "GET", "/api/v1/whoami", token=READ).json() == {"name": "viewer", "scope": "read"}
    assert raw_request(url, "GET", "/api/v1/whoami", token=OLD).json() == {"name": "tokens.txt:5", "scope": "write"}
    # read-only: every GET, no write of any kind, and nothing changes
    answer = raw_request(url, "PUT", "/api/v1/experiments/peek", token=READ)
    assert answer.status == 403 and answer.json()["error"] == "ForbiddenError"
    assert "read-only" in answer.json()["message"]
    assert raw_request(url, "GET", "/api/v1/experiments", token=READ).json() == []
    writer = HttpStore(url, token=WRITE, spool_dir=tmp_path / "w")
    writer.get_or_create_experiment("scoped")
    run_id = uuid.uuid4().hex
    writer.create_run(RunRecord(run_id=run_id, experiment="scoped", status=RunStatus.RUNNING, created=time.time()))
    writer.log_metrics([MetricChunk(run_id, "m", MetricKind.SCALAR, [0, 1], [1.0, 1.0], [1.0, 2.0])])
    writer.write_file(run_id, "outputs/a.txt", b"a")
    reader = HttpStore(url, token=READ, spool_dir=tmp_path / "r")
    assert reader.get_run(run_id).status == RunStatus.RUNNING
    assert reader.get_metrics(run_id)[0].values.tolist() == [1.0, 2.0]
    assert reader.read_file(run_id, "outputs/a.txt") == b"a"
    with pytest.raises(ForbiddenError):
        reader.set_tags(run_id, {"k": "v"})
    with pytest.raises(AuthError):  # ForbiddenError is an AuthError: code catching AuthError sees it too
        reader.write_file(run_id, "outputs/b.txt", b"b")
    with pytest.raises(ForbiddenError):  # refused for the token, not the data: raised, never quarantined
        reader.log_metrics([MetricChunk(run_id, "m", MetricKind.SCALAR, [2], [1.0], [3.0])])
    assert reader.quarantined() == []
    assert writer.get_metrics(run_id)[0].values.tolist() == [1.0, 2.0]
    assert writer.get_run(run_id).tags == {}
    # admin: the token list (names and scopes, never the tokens)
    assert raw_request(url, "GET", "/api/v1/tokens", token=WRITE).status == 403
    listed = raw_request(url, "GET", "/api/v1/tokens", token=ADMIN)
    assert listed.status == 200 and {"name": "viewer", "scope": "read"} in listed.json()
    assert READ not in listed.body.decode()
    assert raw_request(url, "PUT", "/api/v1/experiments/by-admin", token=ADMIN).status == 200
    assert raw_request(url, "PUT", "/api/v1/experiments/by-old", token=OLD).status == 200
    # the audit log names who wrote what, and never a token
    assert _wait_for(server, "token 'trainer': POST /api/v1/metric-batches -> 204")
    assert _wait_for(server, "token 'ops': PUT /api/v1/experiments/by-admin -> 200")
    assert _wait_for(server, "token 'tokens.txt:5': PUT /api/v1/experiments/by-old -> 200")
    assert _wait_for(server, "refused PUT /api/v1/experiments/peek: token 'viewer' is read-only")
    assert not [line for line in server.output if WRITE in line or READ in line]
    for s in (reader, writer):
        s.close()


def test_token_files(tmp_path: Path) -> None:
    f = tmp_path / "t"
    f.write_text(f"{OLD}\n")  # the old format: one bare token a line
    (token,) = load_tokens(f, environ={})
    assert (token.name, token.scope, token.secret) == ("t:1", "write", OLD)
    assert OLD not in repr(token)
    env = {"EXPBOARD_SERVER_TOKENS": f"{WRITE},dash:read:{READ}"}
    assert [(t.name, t.scope) for t in load_tokens(None, environ=env)] == [("env:1", "write"), ("dash", "read")]
    for text, message in [
        (f"alice root {READ}\n", "invalid scope 'root'"),
        (f"alice {READ}\n", "expected 'NAME SCOPE TOKEN'"),
        ("alice read short\n", "at least 16 characters"),
        (f"a read {READ}\na write {WRITE}\n", "unique"),
        (f"a read {READ}\nb write {READ}\n", "listed twice"),
        ("# only a comment\n", "holds no token"),
        (f"bad/name read {READ}\n", "invalid token name"),
    ]:
        f.write_text(text)
        with pytest.raises(ConfigError, match=message):
            load_tokens(f, environ={})


def test_auth_off_means_everything_is_allowed(sqlite_uri: str, tmp_path: Path) -> None:
    with ServerProcess(sqlite_uri, tmp_path / "artifacts") as server:
        assert raw_request(server.url, "GET", "/api/v1/whoami", token=None).json()["name"] == "anonymous"
        assert raw_request(server.url, "PUT", "/api/v1/experiments/free", token=None).status == 200
        values = np.zeros(3)
        store = HttpStore(server.url, spool_dir=tmp_path / "s")
        store.get_or_create_experiment("free")
        run_id = uuid.uuid4().hex
        store.create_run(RunRecord(run_id=run_id, experiment="free", status=RunStatus.RUNNING, created=time.time()))
        store.log_metrics([MetricChunk(run_id, "m", MetricKind.SCALAR, np.arange(3), values, values)])
        assert store.get_metrics(run_id)[0].values.tolist() == [0.0, 0.0, 0.0]
        store.close()
