"""Benchmark: run.log into the embedded store (flush included), side by side with MLflow on SQLite.

    python bench/bench_logging.py [--points 1000000] [--mlflow-batch-points 20000] [--mlflow-metric-points 300]

Targets (product.md): >= 1,000,000 points/s, and >= 100x MLflow's log_batch.
MLflow is far slower, so it gets fewer points; every rate is points per second of wall time.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path


def bench_expboard(root: Path, n: int) -> tuple[float, float]:
    import numpy as np

    from expboard import Experiment, Workspace

    ws = Workspace.init(root / "expboard")
    exp = Experiment(ws, "bench")
    run = exp.start_logging()
    log = run.log
    t0 = time.perf_counter()
    for i in range(n):
        log("loss", 0.5 + i * 1e-9, step=i)
    run.flush()
    per_call = n / (time.perf_counter() - t0)
    stored = run.get_metric_series("loss")[0]
    assert len(stored) == n and stored.steps[-1] == n - 1, "points were lost"

    run2 = exp.start_logging()
    values = np.random.default_rng(0).random(n)
    t0 = time.perf_counter()
    run2.log_array("loss", values)
    run2.flush()
    batch = n / (time.perf_counter() - t0)
    assert len(run2.get_metric_series("loss")[0]) == n
    ws.close()
    return per_call, batch


def bench_mlflow(root: Path, batch_points: int, metric_points: int) -> tuple[float, float]:
    import logging

    logging.getLogger("mlflow").setLevel(logging.ERROR)
    logging.getLogger("alembic").setLevel(logging.ERROR)
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    exp_id = client.create_experiment("bench", artifact_location=str(root / "mlruns"))
    run_id = client.create_run(exp_id).info.run_id  # schema migrations happen before timing starts

    t0 = time.perf_counter()
    for i in range(metric_points):
        client.log_metric(run_id, "loss", 0.5, step=i)
    per_metric = metric_points / (time.perf_counter() - t0)

    run_id = client.create_run(exp_id).info.run_id
    now = int(time.time() * 1000)
    t0 = time.perf_counter()
    for start in range(0, batch_points, 1000):  # 1000 metrics per call is MLflow's limit
        client.log_batch(run_id, metrics=[Metric("loss", 0.5, now, i) for i in range(start, start + 1000)])
    per_batch = batch_points / (time.perf_counter() - t0)
    return per_metric, per_batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--mlflow-batch-points", type=int, default=20_000)
    parser.add_argument("--mlflow-metric-points", type=int, default=300)
    args = parser.parse_args()

    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        per_call, batch = bench_expboard(root, args.points)
        try:
            ml_metric, ml_batch = bench_mlflow(root, args.mlflow_batch_points, args.mlflow_metric_points)
        except ImportError:
            ml_metric = ml_batch = float("nan")
            print("mlflow is not installed: pip install -e '.[bench]'")
    rows = [
        (f"expboard run.log ({args.points:,} points, flush included)", per_call),
        (f"expboard run.log_array ({args.points:,} points)", batch),
        (f"mlflow log_batch ({args.mlflow_batch_points:,} points, SQLite)", ml_batch),
        (f"mlflow log_metric ({args.mlflow_metric_points:,} points, SQLite)", ml_metric),
    ]
    for label, rate in rows:
        print(f"{label:<62} {rate:>14,.0f} points/s")
    print(f"ratio run.log / mlflow log_batch:   {per_call / ml_batch:>10,.0f}x   (target >= 100x)")
    print(f"ratio run.log / mlflow log_metric:  {per_call / ml_metric:>10,.0f}x")
    print(f"run.log target >= 1,000,000 points/s: {'met' if per_call >= 1_000_000 else 'MISSED'}")


if __name__ == "__main__":
    main()
