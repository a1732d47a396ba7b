"""The REST API as a client without expboard sees it: auth, limits, path traversal, formats, OpenAPI."""

from __future__ import annotations

import json
import math
import os
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from server_http import TOKEN, raw_request

from expboard.errors import AuthError, NotFoundError, PayloadTooLargeError, ValidationError
from expboard.records import MetricKind, RunRecord, RunStatus
from expboard.server.process import ServerProcess
from expboard.stores.base import MetricChunk
from expboard.stores.http import HttpStore
from expboard.stores.wire import WIRE_CONTENT_TYPE, encode_batch


def _make_run(store: HttpStore, experiment: str = "api") -> str:
    store.get_or_create_experiment(experiment)
    run_id = uuid.uuid4().hex
    store.create_run(RunRecord(run_id=run_id, experiment=experiment, status=RunStatus.RUNNING, created=time.time()))
    return run_id


def test_health_and_openapi_need_no_token(secured: ServerProcess) -> None:
    assert raw_request(secured.url, "GET", "/api/v1/health", token=None).json()["status"] == "ok"
    doc = raw_request(secured.url, "GET", "/api/v1/openapi.json", token=None).json()
    assert doc["openapi"].startswith("3.")
    paths = doc["paths"]
    for path in [
        "/api/v1/experiments/{name}",
        "/api/v1/runs",
        "/api/v1/runs/{run_id}",
        "/api/v1/metric-batches",
        "/api/v1/runs/{run_id}/metrics",
        "/api/v1/runs/{run_id}/files/{name}",
        "/api/v1/runs/{run_id}/tags",
        "/api/v1/runs/{run_id}/properties",
        "/api/v1/runs/{run_id}/children",
    ]:
        assert path in paths, path
    assert WIRE_CONTENT_TYPE in paths["/api/v1/metric-batches"]["post"]["requestBody"]["content"]


@pytest.mark.parametrize(
    "auth", [None, "Bearer wrong-token-0123456789", "Basic dGVzdA==", f"bearer {TOKEN}x", TOKEN, "Bearer "]
)
def test_requests_without_a_valid_token_get_401_and_change_nothing(secured: ServerProcess, auth: str | None) -> None:
    headers = {"Authorization": auth} if auth is not None else {}
    answer = raw_request(secured.url, "PUT", "/api/v1/experiments/sneaky", headers=headers, token=None)
    assert answer.status == 401
    assert answer.json()["error"] == "AuthError"
    assert answer.headers["www-authenticate"].startswith("Bearer")
    assert raw_request(secured.url, "GET", "/api/v1/experiments", headers=headers, token=None).status == 401
    assert raw_request(secured.url, "GET", "/api/v1/experiments").json() == []  # nothing was created


def test_http_store_sends_the_token(secured: ServerProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for token in (None, "wrong-token-0123456789"):
        s = HttpStore(secured.url, token=token, spool_dir=tmp_path / "s1")
        with pytest.raises(AuthError):
            s.list_experiments()
        s.close()
    s = HttpStore(secured.url, token=TOKEN, spool_dir=tmp_path / "s3")
    s.get_or_create_experiment("ok")
    s.close()
    monkeypatch.setenv("EXPBOARD_TOKEN", TOKEN)
    store = HttpStore(secured.url, spool_dir=tmp_path / "s4")
    assert [e.name for e in store.list_experiments()] == ["ok"]
    # a metric batch refused for auth is an error at once, not something to spool and retry
    run_id = _make_run(store)
    bad = HttpStore(secured.url, token="wrong-token-0123456789", spool_dir=tmp_path / "s5")
    with pytest.raises(AuthError):
        bad.log_metrics([MetricChunk(run_id, "m", MetricKind.SCALAR, [0], [0.0], [1.0])])
    assert store.get_metrics(run_id) == []
    bad.close()
    store.close()


def test_token_file(sqlite_uri: str, tmp_path: Path) -> None:
    token_file = tmp_path / "tokens"
    token_file.write_text("# team tokens\nfile-token-0123456789abcdef\n\n")
    import subprocess
    import sys

    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "expboard.server",
            "--backend-store-uri",
            sqlite_uri,
            "--artifacts-root",
            str(tmp_path / "artifacts"),
            "--port",
            "0",
            "--auth-token-file",
            str(token_file),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "auth on" in line
        url = line.split()[4]
        assert raw_request(url, "GET", "/api/v1/experiments", token="file-token-0123456789abcdef").status == 200
        assert raw_request(url, "GET", "/api/v1/experiments", token=TOKEN).status == 401
    finally:
        proc.terminate()
        proc.wait(20)
        assert proc.stdout is not None
        proc.stdout.close()


def test_server_refuses_to_listen_beyond_loopback_without_tokens(sqlite_uri: str, tmp_path: Path) -> None:
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "EXPBOARD_SERVER_TOKENS"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "expboard.server",
            "--backend-store-uri",
            sqlite_uri,
            "--artifacts-root",
            str(tmp_path / "a"),
            "--host",
            "0.0.0.0",
            "--port",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 1
    assert "without auth" in result.stderr
    short = tmp_path / "short"
    short.write_text("abc\n")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "expboard.server",
            "--backend-store-uri",
            sqlite_uri,
            "--artifacts-root",
            str(tmp_path / "a"),
            "--port",
            "0",
            "--auth-token-file",
            str(short),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 1 and "at least 16" in result.stderr


def test_oversized_bodies_get_413(secured: ServerProcess, tmp_path: Path) -> None:
    store = HttpStore(secured.url, token=TOKEN, spool_dir=tmp_path / "spool")
    run_id = _make_run(store)
    big = b"x" * (1024 * 1024 + 1)
    answer = raw_request(secured.url, "POST", f"/api/v1/runs/{run_id}/files/big.bin?offset=0", big)
    assert answer.status == 413 and answer.json()["error"] == "PayloadTooLargeError"
    # chunked upload without Content-Length: counted while reading
    import http.client
    from urllib.parse import urlparse

    parsed = urlparse(secured.url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
    conn.request(
        "POST",
        f"/api/v1/runs/{run_id}/files/chunked.bin?offset=0",
        body=iter([b"y" * 65536] * 20),
        headers={"Authorization": f"Bearer {TOKEN}"},
        encode_chunked=True,
    )
    resp = conn.getresponse()
    assert resp.status == 413 and json.loads(resp.read())["error"] == "PayloadTooLargeError"
    conn.close()
    assert store.list_files(run_id) == []
    # whole-file uploads (PUT) are streamed to the file storage, so the limit does not apply to them
    answer = raw_request(secured.url, "PUT", f"/api/v1/runs/{run_id}/files/big.bin", big)
    assert answer.status == 200 and store.read_file(run_id, "big.bin") == big
    # metric batches over the limit too
    values = np.zeros(100_000)
    body = encode_batch([MetricChunk(run_id, "m", MetricKind.SCALAR, np.arange(100_000), values, values)], "b")
    answer = raw_request(secured.url, "POST", "/api/v1/metric-batches", body)
    assert answer.status == 413
    unaware = HttpStore(secured.url, token=TOKEN, spool_dir=tmp_path / "s2", max_request_bytes=8 << 20)
    with pytest.raises(PayloadTooLargeError):
        unaware.append_file(run_id, "too-big.bin", big, 0)
    unaware.close()
    # the HTTP store keeps within a limit it knows: big files are streamed, big batches go in parts
    small = HttpStore(secured.url, token=TOKEN, spool_dir=tmp_path / "s3", max_request_bytes=256 * 1024)
    data = os.urandom(3 * 1024 * 1024 + 17)
    assert small.write_file(run_id, "pieces.bin", data).size == len(data)
    assert small.read_file(run_id, "pieces.bin") == data
    small.log_metrics([MetricChunk(run_id, "m", MetricKind.SCALAR, np.arange(100_000), values, values)], "big")
    small.log_metrics([MetricChunk(run_id, "m", MetricKind.SCALAR, np.arange(100_000), values, values)], "big")
    (series,) = small.get_metrics(run_id, "m")
    assert series.steps.tolist() == list(range(100_000))  # once, in order, despite the retry
    small.close()
    store.close()


TRAVERSALS = [
    "..%2F..%2F..%2Fescaped.txt",
    "..%2f..%2fescaped.txt",
    "%2e%2e/%2e%2e/escaped.txt",
    "%2E%2E%2F%2E%2E%2Fescaped.txt",
    "../../escaped.txt",
    "a/../../escaped.txt",
    "..",
    "%2Fetc%2Fescaped.txt",
    "/tmp/escaped.txt",
    "..%5C..%5Cescaped.txt",
    "C:%5Cescaped.txt",
    "ok%00.txt",
    "%252e%252e%252fescaped.txt",
]


@pytest.mark.parametrize("name", TRAVERSALS)
def test_path_traversal_is_refused(secured: ServerProcess, tmp_path: Path, name: str) -> None:
    store = HttpStore(secured.url, token=TOKEN, spool_dir=tmp_path / "spool")
    run_id = _make_run(store)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if "spool" not in p.parts)
    literal = name.startswith("%252e")  # double-encoded: a harmless literal name "%2e%2e%2f...", kept in the run
    for method, suffix in [("PUT", ""), ("POST", "?offset=0"), ("GET", "")]:
        answer = raw_request(secured.url, method, f"/api/v1/runs/{run_id}/files/{name}{suffix}", b"pwned")
        if literal:
            assert answer.status in (200, 409), (method, answer.status, answer.body)
            continue
        assert answer.status in (400, 404), (method, answer.status, answer.body)
        assert answer.json()["error"] in ("ValidationError", "NotFoundError")
    after = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if "spool" not in p.parts)
    new = [str(p) for p in after if p not in before]
    assert all(p == "artifacts" or p.startswith(f"artifacts/{run_id}") for p in new), new
    assert bool(new) == literal
    assert not [p for p in Path("/tmp").glob("escaped.txt")]
    store.close()


@pytest.mark.parametrize("run_part", ["..", "..%2F..", "%2E%2E", "a%2Fb", "%2e%2e%2fartifacts"])
def test_run_ids_cannot_traverse(secured: ServerProcess, run_part: str) -> None:
    for method in ("PUT", "GET"):
        answer = raw_request(secured.url, method, f"/api/v1/runs/{run_part}/files/x.txt", b"x")
        assert answer.status in (400, 404), answer.body
    answer = raw_request(secured.url, "GET", f"/api/v1/runs/{run_part}/files")
    assert answer.status in (200, 400, 404)
    if answer.status == 200:
        assert answer.json() == []


def test_errors_are_json_with_the_class_name(secured: ServerProcess, tmp_path: Path) -> None:
    answer = raw_request(secured.url, "GET", "/api/v1/runs/nope")
    assert answer.status == 404 and answer.json() == {"error": "NotFoundError", "message": answer.json()["message"]}
    answer = raw_request(secured.url, "GET", "/api/v1/no-such-route")
    assert answer.status == 404 and answer.json()["error"] == "NotFoundError"
    answer = raw_request(secured.url, "POST", "/api/v1/runs", b"{not json", {"Content-Type": "application/json"})
    assert answer.status == 400 and answer.json()["error"] == "ValidationError"
    answer = raw_request(secured.url, "POST", "/api/v1/metric-batches", b"EXPB\x01garbage")
    assert answer.status == 400 and answer.json()["error"] == "ValidationError"
    answer = raw_request(secured.url, "PUT", "/api/v1/experiments/bad%20name")
    assert answer.status == 400 and answer.json()["error"] == "ValidationError"
    store = HttpStore(secured.url, token=TOKEN, spool_dir=tmp_path / "spool")
    with pytest.raises(NotFoundError) as info:
        store.get_run("missing")
    assert "missing" in str(info.value)
    with pytest.raises(ValidationError):
        store.get_or_create_experiment("bad name")
    store.close()


def test_metrics_as_json_and_binary_and_file_ranges(secured: ServerProcess, tmp_path: Path) -> None:
    store = HttpStore(secured.url, token=TOKEN, spool_dir=tmp_path / "spool")
    run_id = _make_run(store)
    vals = np.array([1.0, math.nan, math.inf, -math.inf])
    store.log_metrics([MetricChunk(run_id, "m", MetricKind.SCALAR, np.arange(4), np.ones(4), vals)], "b1")
    doc = raw_request(secured.url, "GET", f"/api/v1/runs/{run_id}/metrics?format=json").json()
    assert doc["series"][0]["values"] == [1.0, "nan", "inf", "-inf"]
    assert doc["series"][0]["steps"] == [0, 1, 2, 3]
    answer = raw_request(secured.url, "GET", f"/api/v1/runs/{run_id}/metrics?name=m&max_points=2")
    assert answer.headers["content-type"] == WIRE_CONTENT_TYPE
    store.write_file(run_id, "logs/out.txt", b"0123456789")
    answer = raw_request(
        secured.url, "GET", f"/api/v1/runs/{run_id}/files/logs/out.txt", headers={"Range": "bytes=2-5"}
    )
    assert answer.status == 206 and answer.body == b"2345" and answer.headers["content-range"] == "bytes 2-5/10"
    answer = raw_request(secured.url, "GET", f"/api/v1/runs/{run_id}/files/logs/out.txt", headers={"Range": "bytes=7-"})
    assert answer.status == 206 and answer.body == b"789"
    answer = raw_request(secured.url, "GET", f"/api/v1/runs/{run_id}/files/logs/out.txt")
    assert answer.status == 200 and answer.body == b"0123456789" and answer.headers["accept-ranges"] == "bytes"
    answer = raw_request(secured.url, "GET", f"/api/v1/runs/{run_id}/files/logs/out.txt", headers={"Range": "bytes=-3"})
    assert answer.status == 400
    store.close()
