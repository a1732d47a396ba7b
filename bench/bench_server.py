"""Benchmark: metric ingestion through the tracking server on PostgreSQL, side by side with MLflow's server.

    python bench/bench_server.py [--clients 4] [--seconds 10] [--batch-points 10000]

One PostgreSQL (default, durable settings: fsync and synchronous commit on), one database for each server.
Each scenario runs ``--clients`` client processes on loopback for ``--seconds``, each logging into a run
of its own, one batch after the other; a batch is 10 metrics x (batch points / 10) steps:

- expboard: ``HttpStore.log_metrics`` (what the client's flusher calls), with ``--batch-points`` points
  a batch, and again with 1,000 points a batch (MLflow's limit per ``log_batch``);
- MLflow: ``MlflowClient.log_batch`` with 1,000 metrics a call (its limit), ``mlflow server`` with its
  default 4 workers.

Reported: points/s over all clients (stored points counted in the database afterwards, divided by the time
from the common start to the last client's end) and p50/p99 latency of one batch call.
Target (product.md): >= 200,000 points/s from 4 clients with PostgreSQL.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from benchcommon import free_port as _free_port
from benchcommon import uptime as _uptime

METRICS_PER_BATCH = 10


# --- clients (run in their own processes) ---------------------------------------------------------------
def client_expboard(url: str, run_id: str, seconds: float, batch_points: int, start_at: float) -> dict[str, Any]:
    from expboard.records import MetricKind
    from expboard.stores.base import MetricChunk
    from expboard.stores.http import HttpStore

    store = HttpStore(url, spool_dir=tempfile.mkdtemp(prefix="bench-spool-"))
    per_metric = batch_points // METRICS_PER_BATCH
    rng = np.random.default_rng(0)
    latencies, step = [], 0
    time.sleep(max(0.0, start_at - time.time()))
    end = start_at + seconds
    while time.time() < end:
        steps = np.arange(step, step + per_metric)
        now = np.full(per_metric, time.time())
        chunks = [
            MetricChunk(run_id, f"m{k}", MetricKind.SCALAR, steps, now, rng.random(per_metric))
            for k in range(METRICS_PER_BATCH)
        ]
        t0 = time.perf_counter()
        store.log_metrics(chunks, batch_id=uuid.uuid4().hex)
        latencies.append(time.perf_counter() - t0)
        step += per_metric
    store.flush(timeout=60)
    store.close()
    return {"points": step * METRICS_PER_BATCH, "latencies": latencies, "end": time.time()}


def client_mlflow(url: str, run_id: str, seconds: float, batch_points: int, start_at: float) -> dict[str, Any]:
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=url)
    per_metric = batch_points // METRICS_PER_BATCH
    rng = np.random.default_rng(0)
    latencies, step = [], 0
    time.sleep(max(0.0, start_at - time.time()))
    end = start_at + seconds
    while time.time() < end:
        values = rng.random((METRICS_PER_BATCH, per_metric))
        t0 = time.perf_counter()
        ts = int(time.time() * 1000)
        metrics = [
            Metric(f"m{k}", float(values[k, i]), ts, step + i)
            for k in range(METRICS_PER_BATCH)
            for i in range(per_metric)
        ]
        client.log_batch(run_id, metrics=metrics)
        latencies.append(time.perf_counter() - t0)
        step += per_metric
    return {"points": step * METRICS_PER_BATCH, "latencies": latencies, "end": time.time()}


# --- orchestration ----------------------------------------------------------------------------------------
def _run_clients(kind: str, url: str, run_ids: list[str], seconds: float, batch_points: int) -> dict[str, Any]:
    start_at = time.time() + 4.0  # after every client has imported its libraries
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--client", kind, url, rid, str(seconds), str(batch_points), str(start_at)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for rid in run_ids
    ]
    results = []
    for p in procs:
        out, _ = p.communicate(timeout=seconds + 180)
        if p.returncode != 0:
            raise RuntimeError(f"{kind} client failed with exit code {p.returncode}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    lat = np.array([x for r in results for x in r["latencies"]]) * 1000
    wall = max(r["end"] for r in results) - start_at
    return {
        "points": sum(r["points"] for r in results),
        "wall": wall,
        "p50": float(np.percentile(lat, 50)),
        "p99": float(np.percentile(lat, 99)),
        "batches": len(lat),
    }


def bench_expboard(pg: Any, root: Path, clients: int, seconds: float, batch_points: int) -> dict[str, Any]:
    import psycopg

    from expboard.records import RunRecord, RunStatus
    from expboard.server.process import ServerProcess
    from expboard.stores.http import HttpStore

    db = pg.create_database(f"expboard_{batch_points}")
    with ServerProcess(db, root / f"artifacts-{batch_points}") as server:
        setup = HttpStore(server.url, spool_dir=root / "spool")
        setup.get_or_create_experiment("bench")
        run_ids = []
        for _ in range(clients):
            rid = uuid.uuid4().hex
            setup.create_run(RunRecord(rid, "bench", RunStatus.RUNNING, time.time()))
            run_ids.append(rid)
        setup.close()
        result = _run_clients("expboard", server.url, run_ids, seconds, batch_points)
    with psycopg.connect(db) as conn:
        stored = conn.execute("SELECT COALESCE(SUM(n), 0) FROM metric_chunks").fetchone()[0]
    assert stored == result["points"], f"expboard stored {stored} of {result['points']} points"
    return result


def bench_mlflow(pg: Any, root: Path, clients: int, seconds: float) -> dict[str, Any]:
    import psycopg

    db = pg.create_database("mlflow")
    port = _free_port()
    mlflow = Path(sys.executable).with_name("mlflow")
    log = open(root / "mlflow.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [
            str(mlflow),
            "server",
            "--backend-store-uri",
            db.replace("postgresql://", "postgresql+psycopg://"),
            "--default-artifact-root",
            str(root / "mlartifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        import urllib.request

        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(f"{url}/health", timeout=2).read()
                break
            except OSError as exc:
                if time.time() > deadline or proc.poll() is not None:
                    tail = (root / "mlflow.log").read_text()[-2000:]
                    raise RuntimeError(f"mlflow server did not start: {tail}") from exc
                time.sleep(0.5)
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=url)
        exp_id = client.create_experiment("bench")
        run_ids = [client.create_run(exp_id).info.run_id for _ in range(clients)]
        result = _run_clients("mlflow", url, run_ids, seconds, 1000)
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(30)
        log.close()
    with psycopg.connect(db) as conn:
        stored = conn.execute("SELECT COUNT(*) FROM metrics").fetchone()[0]
    assert stored == result["points"], f"MLflow stored {stored} of {result['points']} points"
    return result


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        kind, url, rid, seconds, batch_points, start_at = sys.argv[2:8]
        fn = client_expboard if kind == "expboard" else client_mlflow
        print(json.dumps(fn(url, rid, float(seconds), int(batch_points), float(start_at))))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--batch-points", type=int, default=10_000)
    ap.add_argument("--mlflow-seconds", type=float, default=20.0, help="MLflow is slow: give it more batches")
    ap.add_argument("--skip-mlflow", action="store_true")
    args = ap.parse_args()

    import mlflow

    from expboard.server.devpg import LocalPostgres

    print(f"# {platform.machine()}, {os.cpu_count()} cores; before: {_uptime()}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-server-") as tmp, LocalPostgres(settings={}) as pg:
        root = Path(tmp)
        for bp in (args.batch_points, 1000):
            r = bench_expboard(pg, root, args.clients, args.seconds, bp)
            rows.append((f"expboard server, `HttpStore.log_metrics`, {bp:,} points a batch", r))
            print(rows[-1], flush=True)
        if not args.skip_mlflow:
            r = bench_mlflow(pg, root, args.clients, args.mlflow_seconds)
            rows.append((f"MLflow {mlflow.__version__} server (4 workers), `log_batch`, 1,000 metrics a batch", r))
            print(rows[-1], flush=True)
    print(f"# after: {_uptime()}")
    version = subprocess.run(
        [str(LocalPostgres().bindir / "postgres"), "--version"], capture_output=True, text=True
    ).stdout.strip()
    print(
        f"\n{version} (durable defaults), {args.clients} client processes, {args.seconds:g} s for each expboard "
        f"scenario, {args.mlflow_seconds:g} s for MLflow\n"
    )
    print("| what | points stored | points/s | batch p50 ms | batch p99 ms |")
    print("|---|---:|---:|---:|---:|")
    for label, r in rows:
        print(f"| {label} | {r['points']:,} | {r['points'] / r['wall']:,.0f} | {r['p50']:.1f} | {r['p99']:.1f} |")
    if not args.skip_mlflow:
        ml = rows[-1][1]["points"] / rows[-1][1]["wall"]
        for label, r in rows[:-1]:
            print(f"\nRatio ({label.split(', ')[2]}): {r['points'] / r['wall'] / ml:,.0f}x MLflow")


if __name__ == "__main__":
    main()
