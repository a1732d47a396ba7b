"""Benchmark: the same MLflow client code against ``mlflow server`` and against expboard's tracking server,
both on the same PostgreSQL (one database each), side by side in one run.

    python bench/bench_mlflow_api.py [--runs 10000] [--batches 20] [--log-metric-calls 300]

Scenarios, each with ``mlflow.tracking.MlflowClient`` unchanged (only the tracking URI differs):

- ``log_batch`` of 1,000 metrics (MLflow's limit per call) into one run, ``--batches`` calls: metrics/s
  and the median call;
- a ``log_metric`` loop, ``--log-metric-calls`` calls: calls/s;
- ``search_runs`` over ``--runs`` runs (each with 2 params, 1 tag and 2 metrics, the same in both, written
  beforehand straight into each server's database): every run page by page (1,000 a page), a filtered and
  ordered search (``metrics.loss < 0.5 and params.opt = 'adam'``, ``metrics.loss DESC``, first 1,000), and
  ``mlflow.search_runs`` of all runs into a pandas DataFrame. Also one page over raw HTTP (what
  the server alone takes: the MLflow client's own parsing is the same for both and is part of the rest).

Both servers run side by side; every scenario alternates between them (``--rounds`` rounds, the first server
swapping each round) and the best of the rounds is compared, so both see the same machine load.

Targets: expboard >= 5x MLflow's server on ``log_batch`` and on ``search_runs``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchcommon import free_port as _free_port
from benchcommon import uptime as _uptime


@contextmanager
def mlflow_server(db: str, root: Path) -> Iterator[str]:
    """``mlflow server`` (its defaults but a longer worker health check) on PostgreSQL, artifacts proxied to a
    folder."""
    port = _free_port()
    log_path = root / "mlflow-server.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("mlflow")),
                "server",
                "--backend-store-uri",
                db.replace("postgresql://", "postgresql+psycopg://"),
                "--artifacts-destination",
                str(root / "mlflow-artifacts"),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                # its 4 workers import MLflow at start; on a loaded machine that takes longer than uvicorn's
                # 5 s health check, which then kills and restarts them forever
                "--uvicorn-opts",
                "--timeout-worker-healthcheck 120",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.time() + 600
            while True:
                try:
                    urllib.request.urlopen(f"{url}/health", timeout=2).read()
                    break
                except OSError as exc:
                    if time.time() > deadline or proc.poll() is not None:
                        raise RuntimeError(f"mlflow server did not start: {log_path.read_text()[-2000:]}") from exc
                    time.sleep(0.5)
            yield url
        finally:
            os.killpg(proc.pid, 15)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait()


@contextmanager
def expboard_server(db: str, root: Path) -> Iterator[str]:
    from expboard.server.process import ServerProcess

    with ServerProcess(db, root / "expboard-artifacts") as server:
        yield server.url


# --- the runs to search, written straight into each server's database (the same content) -----------------
RUN_CONTENT = (
    "run i: params opt = adam (odd i) or sgd and lr = 0.001 * (i % 10), tag group = g(i % 5), "
    "metrics loss = (i % 1000) / 1000 and acc = (i % 97) / 97 at step 0"
)


def _content(i: int) -> tuple[dict[str, str], dict[str, str], dict[str, float]]:
    params = {"opt": "adam" if i % 2 else "sgd", "lr": str(0.001 * (i % 10))}
    return params, {"group": f"g{i % 5}"}, {"loss": (i % 1000) / 1000, "acc": (i % 97) / 97}


def populate_mlflow(db: str, exp_id: str, runs: int) -> None:
    """Rows as MLflow's SQL store writes them for create_run + log_batch (runs, tags, params, metrics,
    latest_metrics), in bulk: creating 10,000 runs through MLflow's server takes far too long here (about
    7 runs/s on this machine)."""
    import uuid

    import psycopg

    now = int(time.time() * 1000)
    run_rows, tag_rows, param_rows, metric_rows = [], [], [], []
    for i in range(runs):
        rid = uuid.uuid4().hex
        params, tags, metrics = _content(i)
        run_rows.append(
            (
                rid,
                f"run-{i}",
                "LOCAL",
                "",
                "",
                "bench",
                "RUNNING",
                now + i,
                None,
                "",
                "active",
                f"mlflow-artifacts:/{exp_id}/{rid}/artifacts",
                int(exp_id),
            )
        )
        tag_rows += [(k, v, rid) for k, v in {**tags, "mlflow.runName": f"run-{i}", "mlflow.user": "bench"}.items()]
        param_rows += [(k, v, rid) for k, v in params.items()]
        metric_rows += [(k, v, now, rid, 0, False) for k, v in metrics.items()]
    with psycopg.connect(db) as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO runs (run_uuid, name, source_type, source_name, entry_point_name, user_id, status, "
            "start_time, end_time, source_version, lifecycle_stage, artifact_uri, experiment_id) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            run_rows,
        )
        cur.executemany("INSERT INTO tags (key, value, run_uuid) VALUES (%s, %s, %s)", tag_rows)
        cur.executemany("INSERT INTO params (key, value, run_uuid) VALUES (%s, %s, %s)", param_rows)
        for table in ("metrics", "latest_metrics"):
            cur.executemany(
                f"INSERT INTO {table} (key, value, timestamp, run_uuid, step, is_nan) VALUES (%s, %s, %s, %s, %s, %s)",
                metric_rows,
            )


def populate_expboard(db: str, root: Path, exp_name: str, runs: int) -> None:
    """The same runs: run, tag and property rows in bulk, metrics through the store's ``log_metrics``."""
    import uuid

    import numpy as np
    import psycopg

    from expboard.records import MetricKind
    from expboard.stores.base import MetricChunk
    from expboard.stores.sql import SqlStore

    now = time.time()
    run_rows, tag_rows, prop_rows, chunks = [], [], [], []
    one = np.zeros(1, np.int64)
    for i in range(runs):
        rid = uuid.uuid4().hex
        params, tags, metrics = _content(i)
        run_rows.append((rid, exp_name, f"run-{i}", "interactive", "Running", now + i / 1000, now + i / 1000))
        tag_rows += [(rid, k, v) for k, v in {**tags, "mlflow.user": "bench"}.items()]
        prop_rows += [(rid, k, v) for k, v in params.items()]
        chunks += [
            MetricChunk(rid, k, MetricKind.SCALAR, one, np.full(1, now), np.full(1, v)) for k, v in metrics.items()
        ]
    with psycopg.connect(db) as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO runs (run_id, experiment, display_name, run_type, status, created, start_time) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s)",
            run_rows,
        )
        cur.executemany("INSERT INTO tags (run_id, key, value) VALUES (%s, %s, %s)", tag_rows)
        cur.executemany("INSERT INTO properties (run_id, key, value) VALUES (%s, %s, %s)", prop_rows)
    store = SqlStore(db, root / "expboard-artifacts")
    try:
        for start in range(0, len(chunks), 5000):
            store.log_metrics(chunks[start : start + 5000])
    finally:
        store.close()


# --- the MLflow client code, the same for both servers ---------------------------------------------------
def prepare(url: str, runs: int, populate: Callable[[str, str, int], None]) -> dict[str, Any]:
    """The experiments and runs the scenarios use, on one server."""
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=url)
    exp_id = client.create_experiment("bench-logging")
    run_id = client.create_run(exp_id).info.run_id
    client.log_batch(run_id, metrics=[Metric("warmup", 0.0, 0, 0)])
    search_exp = client.create_experiment("bench-search")
    t0 = time.perf_counter()
    populate(url, search_exp, runs)
    return {
        "url": url,
        "client": client,
        "run_id": run_id,
        "search_exp": search_exp,
        "runs": runs,
        "populate_s": time.perf_counter() - t0,
        "round": 0,
    }


def log_batch_scenario(ctx: dict[str, Any], batches: int) -> dict[str, float]:
    from mlflow.entities import Metric

    client, run_id, base = ctx["client"], ctx["run_id"], ctx["round"] * batches * 100
    durations = []
    for b in range(batches):
        ts = int(time.time() * 1000)
        metrics = [Metric(f"m{k}", float(i), ts, base + b * 100 + i) for k in range(10) for i in range(100)]
        t0 = time.perf_counter()
        client.log_batch(run_id, metrics=metrics)
        durations.append(time.perf_counter() - t0)
    return {
        "log_batch_metrics_per_s": 1000 * batches / sum(durations),
        "log_batch_p50_ms": statistics.median(durations) * 1000,
    }


def log_metric_scenario(ctx: dict[str, Any], calls: int) -> dict[str, float]:
    client, run_id = ctx["client"], ctx["run_id"]
    t0 = time.perf_counter()
    for i in range(calls):
        client.log_metric(run_id, "loss", 1.0 / (i + 1), step=ctx["round"] * calls + i)
    return {"log_metric_calls_per_s": calls / (time.perf_counter() - t0)}


def search_all_scenario(ctx: dict[str, Any]) -> dict[str, float]:
    client, exp, runs = ctx["client"], ctx["search_exp"], ctx["runs"]
    t0 = time.perf_counter()
    n, token = 0, None
    while True:
        page = client.search_runs([exp], max_results=1000, page_token=token)
        n += len(page)
        token = page.token
        if not token:
            break
    elapsed = time.perf_counter() - t0
    assert n == runs, f"search_runs found {n} of {runs} runs"
    return {"search_all_s": elapsed}


def search_raw_scenario(ctx: dict[str, Any]) -> dict[str, float]:
    import json

    body = json.dumps({"experiment_ids": [ctx["search_exp"]], "max_results": 1000}).encode()
    req = urllib.request.Request(
        f"{ctx['url']}/api/2.0/mlflow/runs/search", data=body, headers={"Content-Type": "application/json"}
    )
    t0 = time.perf_counter()
    with urllib.request.urlopen(req, timeout=600) as resp:
        data = resp.read()
    elapsed = time.perf_counter() - t0
    assert len(json.loads(data)["runs"]) == min(1000, ctx["runs"])
    return {"search_raw_page_s": elapsed}


def search_filtered_scenario(ctx: dict[str, Any]) -> dict[str, float]:
    t0 = time.perf_counter()
    page = ctx["client"].search_runs(
        [ctx["search_exp"]],
        "metrics.loss < 0.5 and params.opt = 'adam'",
        order_by=["metrics.loss DESC"],
        max_results=1000,
    )
    elapsed = time.perf_counter() - t0
    values = [r.data.metrics["loss"] for r in page]
    assert values == sorted(values, reverse=True) and all(v < 0.5 for v in values)
    return {"search_filtered_s": elapsed}


def search_pandas_scenario(ctx: dict[str, Any]) -> dict[str, float]:
    import mlflow

    mlflow.set_tracking_uri(ctx["url"])
    t0 = time.perf_counter()
    n = len(mlflow.search_runs(experiment_ids=[ctx["search_exp"]], max_results=ctx["runs"]))
    elapsed = time.perf_counter() - t0
    assert n == ctx["runs"]
    return {"search_pandas_s": elapsed}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--log-metric-calls", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3, help="each scenario this many times on each server, alternating")
    args = ap.parse_args()

    import mlflow

    from expboard.server.devpg import LocalPostgres

    print(f"# {platform.machine()}, {os.cpu_count()} cores; before: {_uptime()}", flush=True)
    scenarios: list[Callable[[dict[str, Any]], dict[str, float]]] = [
        lambda c: log_batch_scenario(c, args.batches),
        lambda c: log_metric_scenario(c, args.log_metric_calls),
        search_all_scenario,
        search_raw_scenario,
        search_filtered_scenario,
        search_pandas_scenario,
    ]
    results: dict[str, dict[str, list[float]]] = {"expboard": {}, "mlflow": {}}
    with (
        tempfile.TemporaryDirectory(prefix="bench-mlflow-api-") as tmp,
        LocalPostgres(settings={}) as pg,
        contextlib.ExitStack() as stack,
    ):
        root = Path(tmp)
        contexts: dict[str, dict[str, Any]] = {}
        for name, server in (("expboard", expboard_server), ("mlflow", mlflow_server)):
            db = pg.create_database(f"bench_{name}")

            def populate(url: str, exp_id: str, runs: int, name: str = name, db: str = db) -> None:
                if name == "mlflow":
                    populate_mlflow(db, exp_id, runs)
                else:
                    populate_expboard(db, root, exp_id, runs)

            url = stack.enter_context(server(db, root))
            contexts[name] = prepare(url, args.runs, populate)
        print(f"# both servers up, runs written ({_uptime()})", flush=True)
        # the two servers run side by side: every scenario alternates between them, the first one swapping
        # each round, so both see the same load
        for r in range(args.rounds):
            order = ["expboard", "mlflow"] if r % 2 == 0 else ["mlflow", "expboard"]
            for scenario in scenarios:
                for name in order:
                    contexts[name]["round"] = r
                    for key, value in scenario(contexts[name]).items():
                        results[name].setdefault(key, []).append(value)
            print(f"# round {r + 1}: {_uptime()}", flush=True)
    print(f"# after: {_uptime()}")
    print(
        f"\nMLflow {mlflow.__version__} client; {args.runs:,} runs searched; PostgreSQL, one database each; "
        f"best of {args.rounds} alternating rounds\n"
    )
    print("| scenario | expboard server | MLflow server | ratio |")
    print("|---|---:|---:|---:|")
    rows = [
        ("`log_batch`, 1,000 metrics a call (metrics/s)", "log_batch_metrics_per_s", True),
        ("`log_batch` median call (ms)", "log_batch_p50_ms", False),
        ("`log_metric` loop (calls/s)", "log_metric_calls_per_s", True),
        (f"`search_runs`, all {args.runs:,} runs in pages of 1,000 (s)", "search_all_s", False),
        ("`search_runs`, filter + order_by, first 1,000 (s)", "search_filtered_s", False),
        (f"`mlflow.search_runs` into pandas, {args.runs:,} runs (s)", "search_pandas_s", False),
        ("the server alone: one page of 1,000 runs over raw HTTP (s)", "search_raw_page_s", False),
    ]
    for label, key, higher_better in rows:
        pick = max if higher_better else min
        ex, ml = pick(results["expboard"][key]), pick(results["mlflow"][key])
        ratio = ex / ml if higher_better else ml / ex
        fmt = "{:,.0f}" if higher_better else "{:,.3f}" if ex < 10 else "{:,.1f}"
        print(f"| {label} | {fmt.format(ex)} | {fmt.format(ml)} | {ratio:,.1f}x |")
    for name in ("expboard", "mlflow"):
        print(f"# {name} every round: {results[name]}; populate {contexts[name]['populate_s']:.1f} s")


if __name__ == "__main__":
    main()
