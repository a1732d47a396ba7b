"""The tracking server with run files in S3 (moto's real server on 127.0.0.1): faults, streaming with bounded
memory, and two stateless servers on one database and one bucket."""

from __future__ import annotations

import http.client
import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from server_http import raw_request

from expboard.records import MetricKind, RunRecord, RunStatus
from expboard.server.process import ServerProcess
from expboard.stores.base import MetricChunk
from expboard.stores.http import HttpStore
from s3_fixtures import BUCKET, CREDENTIALS, free_port, make_bucket, wait_until_up


class ThreadedS3:
    """moto's ThreadedMotoServer, stoppable and restartable on one port; buckets survive a restart."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server: Any = None

    def start(self) -> None:
        from moto.server import ThreadedMotoServer

        deadline = time.monotonic() + 30
        while True:
            try:
                self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
                self.server.start()
                break
            except OSError:  # the port is still closing
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        wait_until_up(self.url)

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


@pytest.fixture
def threaded_s3(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[ThreadedS3]:
    s3 = ThreadedS3()
    s3.start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.url)
    make_bucket(s3.url)
    yield s3
    s3.stop()


def _server_env(endpoint: str) -> dict[str, str]:
    return {**CREDENTIALS, "AWS_ENDPOINT_URL": endpoint}


def _root() -> str:
    return f"s3://{BUCKET}/srv-{uuid.uuid4().hex[:12]}"


def _make_run(store: HttpStore) -> str:
    exp = store.get_or_create_experiment(f"s3-{uuid.uuid4().hex[:8]}").name
    return store.create_run(RunRecord(uuid.uuid4().hex, exp, RunStatus.RUNNING, time.time())).run_id


def test_object_storage_outage_mid_run_loses_nothing(threaded_s3: ThreadedS3, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'expboard.db'}"
    with ServerProcess(db, _root(), env=_server_env(threaded_s3.url)) as server:
        store = HttpStore(server.url, spool_dir=tmp_path / "spool", retry_for=5, metrics_retry_for=1)
        rid = _make_run(store)
        offset = 0
        lines = []
        for i in range(10):
            line = f"before {i}\n".encode()
            offset = store.append_file(rid, "logs/driver.log", line, offset).size
            lines.append(line)
        threaded_s3.stop()
        answer = raw_request(server.url, "POST", f"/api/v1/runs/{rid}/files/logs/driver.log?offset={offset}", b"x")
        assert answer.status == 503 and "object storage" in answer.json()["message"]
        for i in range(10):  # the client spools what it cannot deliver, and returns
            line = f"during {i}\n".encode()
            offset = store.append_file(rid, "logs/driver.log", line, offset).size
            lines.append(line)
            store.log_metrics([MetricChunk(rid, "loss", MetricKind.SCALAR, np.array([i]), np.array([1.0]), [0.5])])
        assert store.pending()[0] > 0
        threaded_s3.start()
        store.flush(timeout=120)
        assert store.read_file(rid, "logs/driver.log") == b"".join(lines)
        (series,) = store.get_metrics(rid, "loss")
        assert list(series.steps) == list(range(10))
        store.close()


def test_s3_endpoint_flag_wins_over_the_environment(s3_endpoint: str, tmp_path: Path) -> None:
    env = {**CREDENTIALS, "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}  # wrong: the flag must win
    args = ["--s3-endpoint-url", s3_endpoint]
    with ServerProcess(f"sqlite:///{tmp_path / 'e.db'}", _root(), env=env, extra_args=args) as server:
        store = HttpStore(server.url, spool_dir=tmp_path / "spool")  # the client speaks HTTP only
        rid = _make_run(store)
        assert store.write_file(rid, "outputs/a.txt", b"via the flag").size == 12
        assert store.read_file(rid, "outputs/a.txt") == b"via the flag"
        store.close()


def _half_upload(url: str, rid: str, name: str, total: int, sent: int) -> socket.socket:
    host, port = url.rsplit("/", 1)[-1].split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    head = f"PUT /api/v1/runs/{rid}/files/{name} HTTP/1.1\r\nHost: x\r\nContent-Length: {total}\r\n\r\n"
    sock.sendall(head.encode())
    piece = os.urandom(1 << 20)
    for _ in range(sent // len(piece)):
        sock.sendall(piece)
    return sock


def test_half_uploads_are_never_listed(threaded_s3: ThreadedS3, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'expboard.db'}"
    with ServerProcess(db, _root(), env=_server_env(threaded_s3.url)) as server:
        store = HttpStore(server.url, spool_dir=tmp_path / "spool")
        rid = _make_run(store)
        store.write_file(rid, "outputs/model.bin", b"old model")
        # the client goes away half way
        sock = _half_upload(server.url, rid, "outputs/model.bin", 40 << 20, 20 << 20)
        sock.close()
        # the server is killed half way
        sock = _half_upload(server.url, rid, "outputs/other.bin", 40 << 20, 20 << 20)
        time.sleep(1.0)
        server.stop(kill=True)
        sock.close()
        server.start()
        assert [(i.name, i.size) for i in store.list_files(rid)] == [("outputs/model.bin", 9)]
        assert store.read_file(rid, "outputs/model.bin") == b"old model"
        store.close()


def _vm_hwm_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_large_files_stream_through_the_server_with_bounded_memory(s3_endpoint: str, tmp_path: Path) -> None:
    size = 160 << 20
    db = f"sqlite:///{tmp_path / 'expboard.db'}"
    with ServerProcess(db, _root(), env=_server_env(s3_endpoint)) as server:
        store = HttpStore(server.url, spool_dir=tmp_path / "spool")
        rid = _make_run(store)
        store.write_file(rid, "warmup.bin", os.urandom(8 << 20))  # the first upload loads what uploads need
        store.read_file(rid, "warmup.bin")
        assert server.process is not None
        before = _vm_hwm_kib(server.process.pid)
        src = tmp_path / "big.bin"
        rng = np.random.default_rng(1)
        with open(src, "wb") as f:
            for _ in range(size >> 20):
                f.write(rng.bytes(1 << 20))
        with open(src, "rb") as f:
            assert store.write_file_stream(rid, "outputs/big.bin", f).size == size
        host, port = server.url.rsplit("/", 1)[-1].split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=120)
        conn.request("GET", f"/api/v1/runs/{rid}/files/outputs/big.bin")
        resp = conn.getresponse()
        assert resp.status == 200 and int(resp.headers["content-length"]) == size
        with open(src, "rb") as f:
            while piece := resp.read(4 << 20):
                assert piece == f.read(len(piece))
            assert f.read(1) == b""
        conn.close()
        grown_mib = (_vm_hwm_kib(server.process.pid) - before) / 1024
        assert grown_mib < 48, f"the server's peak memory grew by {grown_mib:.0f} MiB for a {size >> 20} MiB file"
        store.close()


def test_two_servers_on_one_database_and_bucket_serve_the_same_runs(
    s3_endpoint: str, local_postgres: Any, tmp_path: Path
) -> None:
    db = local_postgres.create_database()
    root = _root()
    env = _server_env(s3_endpoint)
    with ServerProcess(db, root, env=env) as a, ServerProcess(db, root, env=env) as b:
        stores = [HttpStore(a.url, spool_dir=tmp_path / "sa"), HttpStore(b.url, spool_dir=tmp_path / "sb")]
        rid = _make_run(stores[0])
        offset, expected = 0, b""
        for i in range(60):  # a client whose requests alternate between the two servers
            s = stores[i % 2]
            data = f"event {i}\n".encode() * (1 + i % 7)
            assert s.append_file(rid, "logs/events.out", data, offset).size == offset + len(data)
            if i % 10 == 0:  # an answer lost, the append retried through the other server: a no-op
                stores[(i + 1) % 2].append_file(rid, "logs/events.out", data, offset)
            offset += len(data)
            expected += data
            s.log_metrics([MetricChunk(rid, "m", MetricKind.SCALAR, np.array([i]), np.array([float(i)]), [i * 1.0])])
        stores[1].write_file(rid, "outputs/model.bin", b"model")
        stores[0].update_run(rid, status=RunStatus.COMPLETED)  # compaction starts on one server
        for s in stores:
            s.flush(timeout=60)
            assert s.read_file(rid, "logs/events.out") == expected
            assert [i.name for i in s.list_files(rid)] == ["logs/events.out", "outputs/model.bin"]
            (series,) = s.get_metrics(rid, "m")
            assert list(series.steps) == list(range(60))
        deadline = time.monotonic() + 60  # and the other server keeps reading it while it happens
        while time.monotonic() < deadline:
            assert stores[1].read_file(rid, "logs/events.out") == expected
            keys = _keys(s3_endpoint, root)
            if not [k for k in keys if "/.expboard/" in k]:
                break
            time.sleep(0.5)
        assert not [k for k in _keys(s3_endpoint, root) if "/.expboard/" in k], "not compacted"
        assert stores[1].append_file(rid, "logs/events.out", b"late\n", offset).size == offset + 5
        assert stores[0].read_file(rid, "logs/events.out") == expected + b"late\n"
        for s in stores:
            s.close()


def _keys(endpoint: str, root: str) -> list[str]:
    import boto3

    prefix = root.split("/", 3)[3] + "/"
    client = boto3.session.Session(**_session_kwargs()).client("s3", endpoint_url=endpoint)
    return [o["Key"] for o in client.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])]


def _session_kwargs() -> dict[str, str]:
    return {
        "aws_access_key_id": CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        "region_name": CREDENTIALS["AWS_DEFAULT_REGION"],
    }


def test_presigned_downloads_go_straight_to_object_storage(s3_endpoint: str, tmp_path: Path) -> None:
    """With --presign-downloads-mb, a large file stored as one object is answered 307 to a presigned URL that
    any HTTP client fetches without credentials (urllib here: no AWS signing); HttpStore follows it, ranges
    included. Small files and appended files not yet compacted still come through the server."""
    import urllib.request

    args = ["--presign-downloads-mb", "1"]
    with ServerProcess(f"sqlite:///{tmp_path / 'p.db'}", _root(), env=_server_env(s3_endpoint), extra_args=args) as srv:
        store = HttpStore(srv.url, spool_dir=tmp_path / "spool")
        rid = _make_run(store)
        big = os.urandom(2 * 1024 * 1024 + 5)
        store.write_file(rid, "outputs/big.bin", big)
        store.write_file(rid, "outputs/small.txt", b"small")
        store.append_file(rid, "logs/ev", big, 0)
        answer = raw_request(srv.url, "GET", f"/api/v1/runs/{rid}/files/outputs/big.bin", token=None)
        assert answer.status == 307
        location = answer.headers["location"]
        assert location.startswith(s3_endpoint) and "Signature" in location
        with urllib.request.urlopen(location, timeout=60) as r:  # no token, no AWS credentials
            assert r.read() == big
        assert store.read_file(rid, "outputs/big.bin") == big
        assert store.read_file(rid, "outputs/big.bin", 1000, 10) == big[1000:1010]
        assert store.read_file(rid, "outputs/big.bin", len(big) + 10) == b""
        assert b"".join(store.iter_file(rid, "outputs/big.bin")) == big
        for name, data in (("outputs/small.txt", b"small"), ("logs/ev", big)):
            answer = raw_request(srv.url, "GET", f"/api/v1/runs/{rid}/files/{name}", token=None)
            assert (answer.status, answer.body) == (200, data)
        store.close()
