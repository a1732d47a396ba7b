"""Delivery of metric batches: exactly once across server restarts, from many processes, through the spool."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from expboard.errors import StoreUnavailableError
from expboard.records import MetricKind, RunRecord, RunStatus
from expboard.server.process import ServerProcess
from expboard.stores.base import MetricChunk
from expboard.stores.http import HttpStore


def _new_run(store: HttpStore) -> str:
    store.get_or_create_experiment("delivery")
    run_id = uuid.uuid4().hex
    store.create_run(RunRecord(run_id=run_id, experiment="delivery", status=RunStatus.RUNNING, created=time.time()))
    return run_id


def _batch(run_id: str, start: int, n: int, name: str = "loss") -> list[MetricChunk]:
    steps = np.arange(start, start + n)
    return [MetricChunk(run_id, name, MetricKind.SCALAR, steps, np.full(n, 1.0), steps.astype(np.float64))]


@pytest.mark.parametrize("kill", [False, True], ids=["sigterm", "sigkill"])
def test_server_restarted_mid_run_stores_every_point_once(db_uri: str, tmp_path: Path, kill: bool) -> None:
    with ServerProcess(db_uri, tmp_path / "artifacts") as server:
        store = HttpStore(server.url, spool_dir=tmp_path / "spool", metrics_retry_for=0.5)
        run_id = _new_run(store)
        n_batches, per_batch = 300, 100
        done = threading.Event()

        def log() -> None:
            for b in range(n_batches):
                store.log_metrics(_batch(run_id, b * per_batch, per_batch), batch_id=f"{run_id}-{b}")
                time.sleep(0.002)
            done.set()

        writer = threading.Thread(target=log)
        writer.start()
        time.sleep(0.2)
        server.restart(kill=kill, down_for=1.0)  # batches in flight get lost answers, then spool
        time.sleep(0.2)
        server.restart(kill=kill)
        writer.join(120)
        assert done.is_set()
        store.flush(timeout=60)
        (series,) = store.get_metrics(run_id, "loss")
        assert len(series) == n_batches * per_batch
        assert series.steps.tolist() == list(range(n_batches * per_batch))  # once each, in logging order
        store.close()


def test_eight_processes_log_concurrently_without_loss(tmp_path: Path, pg_uri: str) -> None:
    code = textwrap.dedent("""
        import sys, numpy as np
        from expboard.stores.http import HttpStore
        from expboard.stores.base import MetricChunk
        from expboard.records import MetricKind
        url, run_id, spool, worker = sys.argv[1:5]
        store = HttpStore(url, spool_dir=spool)
        for b in range(50):
            steps = np.arange(b * 200, (b + 1) * 200)
            store.log_metrics([MetricChunk(run_id, "w" + worker, MetricKind.SCALAR, steps, steps * 1.0, steps * 1.0),
                               MetricChunk(run_id, "shared", MetricKind.SCALAR, steps, steps * 1.0, steps * 0.0)])
        store.close()
    """)
    with ServerProcess(pg_uri, tmp_path / "artifacts") as server:
        store = HttpStore(server.url, spool_dir=tmp_path / "spool")
        run_id = _new_run(store)
        procs = [
            subprocess.Popen([sys.executable, "-c", code, server.url, run_id, str(tmp_path / f"s{i}"), str(i)])
            for i in range(8)
        ]
        assert [p.wait(180) for p in procs] == [0] * 8
        got = {s.name: s for s in store.get_metrics(run_id)}
        assert sorted(got) == ["shared"] + [f"w{i}" for i in range(8)]
        for i in range(8):
            assert got[f"w{i}"].steps.tolist() == list(range(10_000))
        assert len(got["shared"]) == 80_000
        store.close()


def test_spool_while_server_is_down_then_deliver(tmp_path: Path, sqlite_uri: str) -> None:
    server = ServerProcess(sqlite_uri, tmp_path / "artifacts").start()
    store = HttpStore(server.url, spool_dir=tmp_path / "spool", metrics_retry_for=0.2, retry_for=30)
    run_id = _new_run(store)
    server.stop()
    t0 = time.monotonic()
    for b in range(5):
        store.log_metrics(_batch(run_id, b * 10, 10), batch_id=f"down-{b}")  # returns: spooled
    assert time.monotonic() - t0 < 10
    assert store.pending() == (5, 50)
    assert len(list(store.spool_dir.glob("*.batch"))) == 5
    with pytest.raises(StoreUnavailableError, match=r"5 metric batch\(es\) with 50 points are not yet delivered"):
        store.flush(timeout=0.5)
    server.start()  # same port
    store.log_metrics(_batch(run_id, 50, 10), batch_id="after")  # queues behind the spool: order kept
    store.flush(timeout=30)
    assert store.pending() == (0, 0)
    (series,) = store.get_metrics(run_id, "loss")
    assert series.steps.tolist() == list(range(60))
    store.close()
    server.stop()
    assert not store.spool_dir.exists()


def test_spool_is_bounded(tmp_path: Path, sqlite_uri: str) -> None:
    with ServerProcess(sqlite_uri, tmp_path / "artifacts") as server:
        store = HttpStore(server.url, spool_dir=tmp_path / "spool", metrics_retry_for=0.1, spool_max_bytes=20_000)
        run_id = _new_run(store)
        server.stop()
        store.log_metrics(_batch(run_id, 0, 500))  # ~12 kB: fits
        with pytest.raises(StoreUnavailableError, match="spool .* is full"):
            store.log_metrics(_batch(run_id, 500, 500))
        server.start()
        store.flush(timeout=30)
        assert len(store.get_metrics(run_id, "loss")[0]) == 500
        store.close()


def test_close_with_pending_batches_says_so_and_the_next_process_sends_them(tmp_path: Path, sqlite_uri: str) -> None:
    server = ServerProcess(sqlite_uri, tmp_path / "artifacts").start()
    store = HttpStore(server.url, spool_dir=tmp_path / "spool")
    run_id = _new_run(store)
    store.close()
    url = server.url
    server.stop()
    code = textwrap.dedent("""
        import sys, numpy as np
        from expboard.errors import StoreUnavailableError
        from expboard.stores.http import HttpStore
        from expboard.stores.base import MetricChunk
        from expboard.records import MetricKind
        url, run_id, spool = sys.argv[1:4]
        store = HttpStore(url, spool_dir=spool, metrics_retry_for=0.2)
        steps = np.arange(100)
        store.log_metrics([MetricChunk(run_id, "orphan", MetricKind.SCALAR, steps, steps * 1.0, steps * 2.0)], "o1")
        try:
            store.close(timeout=0.5)
        except StoreUnavailableError as exc:
            print(exc)
    """)
    result = subprocess.run(
        [sys.executable, "-c", code, url, run_id, str(tmp_path / "spool")], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "1 metric batch(es) with 100 points are not yet delivered" in result.stdout
    assert "will be sent when the server answers again" in result.stdout
    assert len(list((tmp_path / "spool").rglob("*.batch"))) == 1
    server.start()
    later = HttpStore(server.url, spool_dir=tmp_path / "spool")  # adopts the ended process's spool
    later.flush(timeout=30)
    (series,) = later.get_metrics(run_id, "orphan")
    assert series.values.tolist() == [2.0 * i for i in range(100)]
    assert not list((tmp_path / "spool").rglob("*.batch"))
    later.close()
    server.stop()


def test_calls_retry_until_the_server_is_back(tmp_path: Path, sqlite_uri: str) -> None:
    server = ServerProcess(sqlite_uri, tmp_path / "artifacts").start()
    store = HttpStore(server.url, spool_dir=tmp_path / "spool", retry_for=30)
    run_id = _new_run(store)
    server.stop()
    restarter = threading.Timer(1.0, server.start)
    restarter.start()
    try:
        store.set_tags(run_id, {"after": "restart"})  # retried with back-off until the server answers
        assert store.get_run(run_id).tags == {"after": "restart"}
    finally:
        restarter.join()
        store.close()
        server.stop()
    quick = HttpStore(server.url, spool_dir=tmp_path / "spool2", retry_for=0.3)
    with pytest.raises(StoreUnavailableError, match="unreachable"):
        quick.get_run(run_id)
    quick.close()


def test_expboard_server_command_line(tmp_path: Path) -> None:
    for args in (["-m", "expboard.server", "--help"], ["-m", "expboard", "server", "--help"]):
        result = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=60, env={**os.environ})
        assert result.returncode == 0, result.stderr
        for flag in ("--backend-store-uri", "--artifacts-root", "--host", "--port", "--auth-token-file"):
            assert flag in result.stdout
