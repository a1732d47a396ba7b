"""Batches a server refuses for good: never retried forever, cut to the refused metrics, quarantined next
to the spool with the server's answer, reported once; the spool and flush never stall behind them."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from server_http import TOKEN

from expboard import Experiment, Workspace
from expboard.errors import ExpboardError, NotFoundError, PayloadTooLargeError, StoreUnavailableError, ValidationError
from expboard.records import MetricKind, RunRecord, RunStatus
from expboard.server.process import ServerProcess
from expboard.stores.base import MetricChunk
from expboard.stores.http import HttpStore
from expboard.values import MAX_TEXT_BYTES


def _new_run(store: HttpStore) -> str:
    store.get_or_create_experiment("quarantine")
    run_id = uuid.uuid4().hex
    store.create_run(RunRecord(run_id=run_id, experiment="quarantine", status=RunStatus.RUNNING, created=time.time()))
    return run_id


def _chunk(run_id: str, n: int = 100, name: str = "loss", start: int = 0) -> MetricChunk:
    steps = np.arange(start, start + n)
    return MetricChunk(run_id, name, MetricKind.SCALAR, steps, np.ones(n), steps * 1.0)


class _Faulty(BaseHTTPRequestHandler):
    """A stand-in for a tracking server with a bug: metric batches get ``status`` (500, 503) forever."""

    status = 500
    batches = 0

    def do_GET(self) -> None:  # health: an answer without a body limit
        self._answer(200, {"status": "ok"})

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        type(self).batches += 1
        self._answer(self.status, {"error": "ExpboardError", "message": f"simulated fault {self.status}"})

    def _answer(self, status: int, doc: dict[str, str]) -> None:
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def faulty() -> Iterator[tuple[str, type[_Faulty]]]:
    handler = type("Handler", (_Faulty,), {"batches": 0, "status": 500})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", handler
    httpd.shutdown()
    httpd.server_close()
    thread.join(10)


def test_a_repeated_500_is_permanent_quarantined_and_not_retried(
    faulty: tuple[str, type[_Faulty]], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url, handler = faulty
    store = HttpStore(url, spool_dir=tmp_path / "spool", server_error_tries=3)
    t0 = time.monotonic()
    with caplog.at_level(logging.WARNING, "expboard.stores.http"), pytest.raises(ExpboardError, match="simulated"):
        store.log_metrics([_chunk("run-a")], batch_id="b500")
    assert time.monotonic() - t0 < 10
    assert handler.batches == 3  # tried three times, then given up
    warnings = [r for r in caplog.records if "b500" in r.getMessage()]
    assert len(warnings) == 1 and "'loss' of run 'run-a'" in warnings[0].getMessage()
    (entry,) = store.quarantined()
    assert entry["status"] == 500 and "simulated fault 500" in entry["message"] and entry["batch_id"] == "b500"
    assert entry["metrics"] == [{"run_id": "run-a", "name": "loss", "points": 100}]
    assert Path(entry["path"]).parent == tmp_path / "spool" / "quarantine"
    store.log_metrics([_chunk("run-a")], batch_id="b500")  # a retry of a refused batch: no request, no error
    assert handler.batches == 3
    store.flush()  # nothing pending: returns at once
    store.close()


def test_a_spool_behind_a_server_answering_503_does_not_hang_flush(
    faulty: tuple[str, type[_Faulty]], tmp_path: Path
) -> None:
    url, handler = faulty
    handler.status = 503
    store = HttpStore(url, spool_dir=tmp_path / "spool", metrics_retry_for=0.2, retry_for=1.0)
    store.log_metrics([_chunk("run-a")], batch_id="b503")  # transient: spooled, kept
    assert store.pending() == (1, 100)
    t0 = time.monotonic()
    with pytest.raises(StoreUnavailableError, match="answered with transient errors"):
        store.flush()  # no timeout given, yet it does not wait forever on a server that answers
    assert time.monotonic() - t0 < 30
    assert store.pending() == (1, 100) and store.quarantined() == []  # transient: kept, not quarantined
    with pytest.raises(StoreUnavailableError):
        store.close(timeout=0.5)


def test_the_spool_moves_past_refused_batches(
    sqlite_uri: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = ServerProcess(sqlite_uri, tmp_path / "artifacts").start()
    store = HttpStore(server.url, spool_dir=tmp_path / "spool", metrics_retry_for=0.2)
    good = _new_run(store)
    server.stop()
    store.log_metrics([_chunk(good, 10, start=0)], batch_id="s1")
    # one batch with a metric of a run that does not exist, next to one of the good run
    store.log_metrics([_chunk("no-such-run", 10, "lost"), _chunk(good, 10, start=10)], batch_id="s2")
    store.log_metrics([_chunk("no-such-run", 5, "lost")], batch_id="s3")
    store.log_metrics([_chunk(good, 10, start=20)], batch_id="s4")
    assert store.pending() == (4, 45)
    server.start()
    with caplog.at_level(logging.WARNING, "expboard.stores.http"):
        store.flush(timeout=60)
    (series,) = store.get_metrics(good, "loss")
    assert series.steps.tolist() == list(range(30))  # every good point, in order
    refused = store.quarantined()
    assert sorted(m["points"] for e in refused for m in e["metrics"]) == [5, 10]
    assert all(e["error"] == "NotFoundError" and e["status"] == 404 for e in refused)
    assert len([r for r in caplog.records if "refused" in r.getMessage()]) == 2  # once each
    assert store.pending() == (0, 0)
    store.close()
    server.stop()


def test_a_refused_metric_does_not_cost_the_others_their_points(sqlite_uri: str, tmp_path: Path) -> None:
    with ServerProcess(sqlite_uri, tmp_path / "artifacts") as server:
        store = HttpStore(server.url, spool_dir=tmp_path / "spool")
        good = _new_run(store)
        batch = [_chunk(good, 1000), _chunk("missing-run", 10, "x"), _chunk(good, 1000, "acc")]
        with pytest.raises(NotFoundError, match="missing-run"):
            store.log_metrics(batch, batch_id="mixed")
        assert {s.name: len(s) for s in store.get_metrics(good)} == {"loss": 1000, "acc": 1000}
        store.log_metrics(batch, batch_id="mixed")  # the writer's retry: a no-op, nothing twice
        assert {s.name: len(s) for s in store.get_metrics(good)} == {"loss": 1000, "acc": 1000}
        assert [e["metrics"][0]["run_id"] for e in store.quarantined()] == ["missing-run"]
        # once the cause is fixed, quarantined batches can be sent again
        store.create_run(
            RunRecord(run_id="missing-run", experiment="quarantine", status=RunStatus.RUNNING, created=time.time())
        )
        assert store.resend_quarantined() == (1, 0)
        assert len(store.get_metrics("missing-run", "x")[0]) == 10
        assert store.quarantined() == []
        store.close()


def test_values_that_cannot_be_sent_are_refused_by_the_client(sqlite_uri: str, tmp_path: Path) -> None:
    with ServerProcess(sqlite_uri, tmp_path / "artifacts") as server:
        store = HttpStore(server.url, spool_dir=tmp_path / "spool")
        good = _new_run(store)
        with pytest.raises(ValidationError, match="metric name"):
            store.log_metrics([_chunk(good, 10, "bad\ud800")])
        bad_step = MetricChunk(good, "big-step", MetricKind.SCALAR, [2**70], [1.0], [1.0])
        odd = MetricChunk(good, "complex", MetricKind.SCALAR, [0], [1.0], [np.complex64(1 + 2j)])
        with pytest.raises(ValidationError, match="big-step"):
            store.log_metrics([_chunk(good, 10), bad_step, odd], batch_id="local")
        (series,) = store.get_metrics(good)
        assert series.name == "loss" and len(series) == 10
        store.close()


def test_a_string_over_the_servers_body_limit_does_not_poison_the_client(
    sqlite_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with ServerProcess(sqlite_uri, tmp_path / "artifacts", tokens=[TOKEN], max_request_mb=1) as server:
        store = HttpStore(server.url, token=TOKEN, spool_dir=tmp_path / "spool")  # its own limit: 8 MiB
        good = _new_run(store)
        huge = MetricChunk(good, "text", MetricKind.SCALAR, [0], [1.0], ["x" * (2 * 1024 * 1024)])
        with pytest.raises(PayloadTooLargeError, match="'text' of run"):
            store.log_metrics([_chunk(good, 1000), huge], batch_id="huge")
        assert len(store.get_metrics(good, "loss")[0]) == 1000
        store.log_metrics([_chunk(good, 1000), huge], batch_id="huge")  # retried by the writer: a no-op
        store.log_metrics([_chunk(good, 1000, start=1000)])  # and the store goes on working
        assert len(store.get_metrics(good, "loss")[0]) == 2000
        store.flush()
        store.close()
        # through the client API: another run completes with every point
        monkeypatch.setenv("EXPBOARD_TOKEN", TOKEN)
        monkeypatch.setenv("EXPBOARD_SPOOL_DIR", str(tmp_path / "ws-spool"))
        ws = Workspace.init(tmp_path / "project", tracking_uri=server.url)
        exp = Experiment(ws, "poison")
        a, b = exp.start_logging(), exp.start_logging()
        with pytest.raises(ValidationError, match="upload_file"):  # over the text limit: refused at the call
            a.log("note", "x" * (2 * 1024 * 1024))
        a.log("note", "x" * MAX_TEXT_BYTES)  # within the text limit, but over this server's body limit
        for i in range(1000):
            b.log("loss", float(i))
        b.complete()  # the refused point is isolated to its own chunk: nothing raises here
        b.flush()
        assert b.get_status() == RunStatus.COMPLETED
        assert len(b.get_metric_series("loss")[0]) == 1000
        a.log("loss", 1.0)
        a.complete()
        assert a.get_metrics()["loss"] == 1.0
        ws.close()
