"""Benchmark: export_to_tensorboard of a 1,000,000-point run, and live latency through a real TensorBoard.

    python bench/bench_tensorboard.py [--points 1000000] [--peer-points 100000] [--appends 10]

1. Export: one run with ``--points`` scalar points (logged with ``log_array``), exported with
   ``export_to_tensorboard``; points/s of the whole call (reading the run history included) and of the
   reading part alone. Side by side, peers writing the same kind of points one ``add_scalar`` call per
   point (tensorboardX, torch's SummaryWriter) on ``--peer-points`` points, since they are far slower.
2. Live latency: ``Tensorboard([run], port=0)`` over a Running run; an event record is appended to the run's
   ``logs/`` file (``store.append_file``, as the run agent does) and the time until TensorBoard's HTTP API
   serves its step is measured, ``--appends`` times (p50 and max; target < 3 s). The same for a point
   logged with ``run.log`` (+ ``flush``), which goes through the ``run_history`` event writer.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from benchcommon import uptime as _uptime


def bench_export(root: Path, n: int) -> dict[str, float]:
    import numpy as np

    from expboard import Experiment, Workspace
    from expboard.tensorboard.export import export_to_tensorboard

    ws = Workspace.init(root / "ws")
    run = Experiment(ws, "bench-export").start_logging(display_name="million")
    rng = np.random.default_rng(0)
    run.log_array("loss", rng.random(n), steps=np.arange(n), wall_times=1.7e9 + np.arange(n) * 0.01)
    run.complete()
    t0 = time.perf_counter()
    run.get_metric_series()
    read_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = export_to_tensorboard(run, root / "export", progress=False)
    total_s = time.perf_counter() - t0
    assert result.points == n, result
    size = sum(p.stat().st_size for p in (root / "export").rglob("*") if p.is_file())
    ws.close()
    return {"points": n, "total_s": total_s, "read_s": read_s, "bytes": size}


def bench_peer(root: Path, which: str, n: int) -> float:
    if which == "tensorboardX":
        from tensorboardX import SummaryWriter
    else:
        from torch.utils.tensorboard import SummaryWriter  # type: ignore[no-redef]
    w = SummaryWriter(str(root / which))
    t0 = time.perf_counter()
    for i in range(n):
        w.add_scalar("loss", 0.5 + i * 1e-9, i, walltime=1.7e9 + i * 0.01)
    w.close()
    return n / (time.perf_counter() - t0)


def _served_steps(url: str, run: str, tag: str) -> set[int]:
    query = urllib.parse.urlencode({"run": run, "tag": tag})
    try:
        with urllib.request.urlopen(f"{url}data/plugin/scalars/scalars?{query}", timeout=5) as resp:
            return {int(p[1]) for p in json.loads(resp.read())}
    except urllib.error.HTTPError:
        return set()


def _wait_served(url: str, run: str, tag: str, step: int, timeout: float = 30.0) -> float:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if step in _served_steps(url, run, tag):
            return time.perf_counter() - t0
        time.sleep(0.02)
    raise TimeoutError(f"step {step} of {run}/{tag} not served within {timeout} s")


def bench_latency(root: Path, appends: int) -> dict[str, Any]:
    from expboard import Experiment, Workspace
    from expboard.tensorboard import Tensorboard
    from expboard.tensorboard.export import run_folder_name
    from expboard.tfevents import file_version_event, frame_record, scalar_event

    ws = Workspace.init(root / "live")
    run = Experiment(ws, "bench-live").start_logging(display_name="live")
    name = "logs/events.out.tfevents.1700000000.bench.1.0"
    data = frame_record(file_version_event()) + frame_record(scalar_event("loss", 1.0, 0))
    ws.store.append_file(run.id, name, data, 0)
    offset = len(data)
    run.log("acc", 0.0, step=0)
    run.flush()
    files_lat: list[float] = []
    metric_lat: list[float] = []
    with Tensorboard([run], port=0) as tb:
        url = tb.start()
        folder = run_folder_name(run.record)
        _wait_served(url, folder, "loss", 0)
        _wait_served(url, f"{folder}/run_history", "acc", 0)
        for i in range(1, appends + 1):
            time.sleep(0.37)  # not in step with the 1 s polling and reloading
            rec = frame_record(scalar_event("loss", 1.0 / (i + 1), i))
            t0 = time.perf_counter()
            ws.store.append_file(run.id, name, rec, offset)
            offset += len(rec)
            _wait_served(url, folder, "loss", i)
            files_lat.append(time.perf_counter() - t0)
        for i in range(1, appends + 1):
            time.sleep(0.37)
            t0 = time.perf_counter()
            run.log("acc", i / appends, step=i)
            run.flush()
            _wait_served(url, f"{folder}/run_history", "acc", i)
            metric_lat.append(time.perf_counter() - t0)
        device = f"{tb.load_fast} loader"
    run.complete()
    ws.close()
    return {"files": files_lat, "metrics": metric_lat, "loader": device}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--peer-points", type=int, default=100_000)
    parser.add_argument("--appends", type=int, default=10)
    args = parser.parse_args()

    print(
        f"# {time.strftime('%Y-%m-%d %H:%M')} {platform.machine()}, nproc {os.cpu_count()}, "
        f"python {sys.version.split()[0]}"
    )
    print(f"# before: {_uptime()}")
    with tempfile.TemporaryDirectory(prefix="bench-tensorboard-") as tmp:
        root = Path(tmp)
        ex = bench_export(root, args.points)
        rate = ex["points"] / ex["total_s"]
        detail = f"reading the history alone: {ex['read_s']:.2f} s; {ex['bytes'] / 1e6:.1f} MB written"
        print(f"export_to_tensorboard {ex['points']:,} points: {ex['total_s']:.2f} s = {rate:,.0f} points/s ({detail})")
        for peer in ("tensorboardX", "torch"):
            try:
                rate = bench_peer(root, peer, args.peer_points)
            except ImportError as exc:
                print(f"{peer}: not installed ({exc})")
                continue
            print(f"{peer} add_scalar {args.peer_points:,} points: {rate:,.0f} points/s")
        lat = bench_latency(root, args.appends)
        for key, label in (("files", "logs/ append -> served"), ("metrics", "run.log + flush -> served")):
            values = lat[key]
            print(
                f"latency {label} ({len(values)} x, {lat['loader']}): p50 {statistics.median(values):.2f} s, "
                f"max {max(values):.2f} s, all: {' '.join(f'{v:.2f}' for v in values)}"
            )
    print(f"# after: {_uptime()}")


if __name__ == "__main__":
    main()
