"""Inputs a careless or hostile client sends, as raw HTTP, on SQLite and PostgreSQL: every one gets a 4xx
with a message (never a 500), nothing outside a run is listed, and another run keeps every point."""

from __future__ import annotations

import json
import socket
import struct
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from server_http import TOKEN, Answer, raw_request

from expboard.records import MetricKind, RunRecord, RunStatus
from expboard.server.process import ServerProcess
from expboard.stores.base import MetricChunk
from expboard.stores.http import HttpStore
from expboard.stores.wire import WIRE_CONTENT_TYPE

JSON = {"Content-Type": "application/json"}


@pytest.fixture
def server(db_uri: str, tmp_path: Path) -> Iterator[ServerProcess]:
    with ServerProcess(db_uri, tmp_path / "artifacts", tokens=[TOKEN], max_request_mb=1) as s:
        yield s


@pytest.fixture
def store(server: ServerProcess, tmp_path: Path) -> Iterator[HttpStore]:
    s = HttpStore(server.url, token=TOKEN, spool_dir=tmp_path / "spool")
    yield s
    s.close()


def _run(store: HttpStore) -> str:
    store.get_or_create_experiment("hostile")
    run_id = uuid.uuid4().hex
    store.create_run(RunRecord(run_id=run_id, experiment="hostile", status=RunStatus.RUNNING, created=time.time()))
    return run_id


def _refused(answer: Answer, status: int | tuple[int, ...] = 400, error: str | None = None) -> None:
    statuses = (status,) if isinstance(status, int) else status
    assert answer.status in statuses, (answer.status, answer.body[:300])
    doc = answer.json()
    assert doc["message"], doc
    if error is not None:
        assert doc["error"] == error, doc


def _bystander(store: HttpStore) -> str:
    """A run with 1,000 points, checked intact at the end of each test."""
    run_id = _run(store)
    steps = np.arange(1000)
    store.log_metrics([MetricChunk(run_id, "loss", MetricKind.SCALAR, steps, np.ones(1000), steps * 0.5)], "bys")
    return run_id


def _intact(store: HttpStore, run_id: str) -> None:
    (series,) = store.get_metrics(run_id, "loss")
    assert series.steps.tolist() == list(range(1000))


def test_run_ids_are_validated_on_every_route(server: ServerProcess, store: HttpStore) -> None:
    other = _bystander(store)
    store.write_file(other, "secret.txt", b"not yours")
    for bad in ["%2e%2e", ".", "%2E", "..%2F..", "a" * 300, ".hidden", "a%20b"]:
        for method, path in [
            ("GET", f"/api/v1/runs/{bad}/files"),
            ("GET", f"/api/v1/runs/{bad}/files/secret.txt"),
            ("PUT", f"/api/v1/runs/{bad}/files/x.txt"),
            ("GET", f"/api/v1/runs/{bad}"),
            ("GET", f"/api/v1/runs/{bad}/metrics"),
            ("GET", f"/api/v1/runs/{bad}/children"),
            ("PATCH", f"/api/v1/runs/{bad}/tags"),
        ]:
            body = b"{}" if method == "PATCH" else b"x"
            answer = raw_request(server.url, method, path, body, JSON)
            if "%2F" in bad:  # decodes to more path segments: no route has them
                _refused(answer, 404, "NotFoundError")
                continue
            _refused(answer, 400, "ValidationError")
            assert "run id" in answer.json()["message"]
    for bad_id in [".", "..", "x" * 256, "../up", "a/b", ""]:
        payload = {"run_id": bad_id, "experiment": "hostile", "status": "Running", "created": time.time()}
        _refused(raw_request(server.url, "POST", "/api/v1/runs", json.dumps(payload).encode(), JSON))
    longest = "r" * 255
    payload = {"run_id": longest, "experiment": "hostile", "status": "Running", "created": time.time()}
    assert raw_request(server.url, "POST", "/api/v1/runs", json.dumps(payload).encode(), JSON).status == 201
    assert store.write_file(longest, "ok.txt", b"fine").name == "ok.txt"
    assert [f.name for f in store.list_files(longest)] == ["ok.txt"]
    _intact(store, other)


def test_times_must_be_finite_and_plausible(server: ServerProcess, store: HttpStore) -> None:
    run_id = _run(store)
    for body in [
        b'{"start_time": 1e300}',
        b'{"heartbeat": Infinity}',
        b'{"end_time": -Infinity}',
        b'{"start_time": NaN}',
        b'{"heartbeat": -5}',
        b'{"start_time": "soon"}',
    ]:
        _refused(raw_request(server.url, "PATCH", f"/api/v1/runs/{run_id}", body, JSON), 400, "ValidationError")
    record = store.get_run(run_id)
    assert record.start_time is None and record.heartbeat is None and record.end_time is None
    for created in ["NaN", "Infinity", "1e300", "-1"]:
        body = f'{{"run_id": "{uuid.uuid4().hex}", "experiment": "hostile", "status": "Running", "created": {created}}}'
        _refused(raw_request(server.url, "POST", "/api/v1/runs", body.encode(), JSON), 400, "ValidationError")
    assert raw_request(server.url, "GET", "/api/v1/runs").status == 200  # listing still works for everyone
    assert all(r.created < 4e9 for r in store.list_runs())


def test_the_listed_server_errors_are_4xx_with_a_message(server: ServerProcess, store: HttpStore) -> None:
    other = _bystander(store)
    run_id = _run(store)
    url = server.url
    base = f"/api/v1/runs/{run_id}"
    long_part = "n" * 256
    _refused(raw_request(url, "PUT", f"{base}/files/{long_part}.txt", b"x"), 400, "ValidationError")
    _refused(raw_request(url, "PUT", f"{base}/files/dir/{long_part}", b"x"), 400, "ValidationError")
    _refused(raw_request(url, "PUT", f"{base}/files/outputs/", b"x"), 400, "ValidationError")
    assert raw_request(url, "PUT", f"{base}/files/outputs/model.pt", b"m").status == 200
    _refused(raw_request(url, "PUT", f"{base}/files/outputs", b"x"), 409, "ConflictError")  # a folder is there
    _refused(raw_request(url, "PUT", f"{base}/files/outputs/model.pt/x", b"x"), 409, "ConflictError")
    _refused(raw_request(url, "GET", f"{base}/metrics?min_step=1e20"), 400)
    assert raw_request(url, "GET", f"{base}/metrics?min_step={10**20}&format=json").json() == {"series": []}
    assert raw_request(url, "GET", f"{base}/metrics?max_step={-(10**20)}&format=json").json() == {"series": []}
    for value in ["bytes=1e20-", f"bytes={10**20}-", f"bytes=0-{10**20}"]:
        _refused(raw_request(url, "GET", f"{base}/files/outputs/model.pt", headers={"Range": value}), 400)
    _refused(raw_request(url, "GET", f"{base}/files/outputs/model.pt?offset={10**20}"), 400)
    huge = raw_request(url, "GET", f"{base}/files/outputs/model.pt?length={2**63 - 1}")  # not that much memory
    assert huge.status == 200 and huge.body == b"m"
    assert raw_request(url, "GET", f"{base}/files/outputs/model.pt?offset={2**62}").body == b""
    _refused(raw_request(url, "POST", f"{base}/files/outputs/model.pt?offset={10**20}", b"x"), 400)

    def batch(header: bytes, columns: bytes = b"") -> Answer:
        body = struct.pack("<4sBI", b"EXPB", 1, len(header)) + header + columns
        return raw_request(url, "POST", "/api/v1/metric-batches", body, {"Content-Type": WIRE_CONTENT_TYPE})

    _refused(batch(b'["not", "an", "object"]'), 400, "ValidationError")
    _refused(batch(b"42"), 400, "ValidationError")
    chunk = {"run_id": run_id, "name": "m", "kind": "scalar", "dtype": "f8", "sizes": [8, 8, 8]}
    for n in ["1e400", "Infinity", "-Infinity", "NaN", "null", "1e18", "-1"]:
        header = json.dumps({"batch_id": None, "chunks": [chunk]}).replace('"sizes"', f'"n": {n}, "sizes"')
        _refused(batch(header.encode(), b"\0" * 24), 400, "ValidationError")
    deep = b'{"batch_id": null, "chunks": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    _refused(batch(deep), 400, "ValidationError")
    nested = b'{"error": ' + b'{"a": ' * 100_000 + b"1" + b"}" * 100_000 + b"}"
    _refused(raw_request(url, "PATCH", base, nested, JSON), 400, "ValidationError")
    _refused(raw_request(url, "PATCH", f"{base}/tags", b"[" * 100_000 + b"]" * 100_000, JSON), 400)
    assert store.get_metrics(run_id) == []
    _intact(store, other)


def test_a_chunked_json_body_over_the_limit_is_413(server: ServerProcess, store: HttpStore) -> None:
    import http.client
    from urllib.parse import urlparse

    run_id = _run(store)
    parsed = urlparse(server.url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
    pieces = [b'{"k": "'] + [b"v" * 65536] * 20 + [b'"}']
    conn.request(
        "PATCH",
        f"/api/v1/runs/{run_id}/tags",
        body=iter(pieces),
        headers={"Authorization": f"Bearer {TOKEN}", **JSON},
        encode_chunked=True,
    )
    resp = conn.getresponse()
    assert resp.status == 413 and json.loads(resp.read())["error"] == "PayloadTooLargeError"
    conn.close()
    assert store.get_run(run_id).tags == {}


def test_json_values_keep_their_shape_and_names_come_back_normalized(server: ServerProcess, store: HttpStore) -> None:
    run_id = _run(store)
    url = server.url

    def json_batch(blob: bytes, n: int = 1) -> Answer:
        chunk = {"run_id": run_id, "name": "cm", "kind": "confusion_matrix", "n": n, "dtype": "json"}
        chunk["sizes"] = [8 * n, 8 * n, len(blob)]
        header = json.dumps({"batch_id": uuid.uuid4().hex, "chunks": [chunk]}).encode()
        columns = np.arange(n, dtype="<i8").tobytes() + np.ones(n, dtype="<f8").tobytes() + blob
        body = struct.pack("<4sBI", b"EXPB", 1, len(header)) + header + columns
        return raw_request(url, "POST", "/api/v1/metric-batches", body, {"Content-Type": WIRE_CONTENT_TYPE})

    _refused(json_batch(b'"a"'), 400, "ValidationError")  # a string is not a column of points
    _refused(json_batch(b'{"k": [1, 2]}'), 400, "ValidationError")
    assert store.get_metrics(run_id) == []
    assert json_batch(b'[{"k": [1, 2]}]').status == 204
    assert json_batch(b'["a"]').status == 204
    (series,) = store.get_metrics(run_id, "cm")
    assert series.values == [{"k": [1, 2]}, "a"]
    # through the client: a dict and a string keep their shape on the way to the store and back
    chunk = MetricChunk(run_id, "obj", MetricKind.CONFUSION_MATRIX, [0, 1], [1.0, 1.0], [{"a": 1}, "a"])
    store.log_metrics([chunk])
    assert store.get_metrics(run_id, "obj")[0].values == [{"a": 1}, "a"]
    # names with '//' are answered as stored
    answer = raw_request(url, "PUT", f"/api/v1/runs/{run_id}/files/logs//a//b.txt", b"x")
    assert answer.status == 200 and answer.json()["name"] == "logs/a/b.txt"
    answer = raw_request(url, "POST", f"/api/v1/runs/{run_id}/files/logs//c.txt?offset=0", b"x")
    assert answer.status == 200 and answer.json()["name"] == "logs/c.txt"
    assert store.write_file(run_id, "./out//x.txt", b"y").name == "out/x.txt"
    assert [f.name for f in store.list_files(run_id)] == ["logs/a/b.txt", "logs/c.txt", "out/x.txt"]
    assert store.read_file(run_id, "logs//a/b.txt") == b"x"


def test_unauthenticated_clients_cannot_send_megabytes_of_headers(server: ServerProcess) -> None:
    host, port = "127.0.0.1", server.port
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall(b"GET /api/v1/experiments HTTP/1.1\r\nHost: x\r\n")
        sent, answer = 0, b""
        piece = b"X-Pad: " + b"a" * 65_000 + b"\r\n"
        try:
            while sent < 16 * 1024 * 1024:
                sock.sendall(piece)
                sent += len(piece)
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except (ConnectionResetError, TimeoutError):
            pass
    assert sent < 4 * 1024 * 1024, f"the server read {sent} bytes of headers"
    if answer:  # the answer may be lost in the reset; when it arrives it says why
        assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
    # normal requests with a token are unaffected
    assert raw_request(server.url, "GET", "/api/v1/experiments").status == 200
    assert raw_request(server.url, "GET", "/api/v1/experiments", headers={"X-Long": "b" * 8000}).status == 200


def test_unauthenticated_clients_cannot_send_a_large_body(server: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(b"PUT /api/v1/experiments/x HTTP/1.1\r\nHost: x\r\nContent-Length: 104857600\r\n\r\n")
        sent, answer = 0, b""
        try:
            while sent < 100 * 1024 * 1024:
                sock.sendall(b"z" * 65536)
                sent += 65536
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except (ConnectionResetError, TimeoutError):
            pass
    assert sent < 32 * 1024 * 1024, f"the server read {sent} bytes of an unauthenticated body"
    if answer:
        assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
