"""Benchmark: TensorBoard reading the run history through expboard's data provider, side by side with
TensorBoard reading the same data from event files (its Rust data server and its Python loader).

    python bench/bench_provider.py [--runs 1000] [--tags 10] [--points 1000] [--big 10000000]
                                   [--series 1000000] [--reads 50] [--live 20] [--idle 30] [--timeout 600]

1. Start-up, many runs: ``--runs`` runs x ``--tags`` tags x ``--points`` points. Time from starting
   ``tensorboard`` to all runs listed (``/data/runs``) and to a full scalars answer (every tag of every run
   through ``scalars_multirun``, all points there), for the provider, ``--load_fast=true`` (Rust) and
   ``--load_fast=false`` (Python) over event files holding the same points.
2. Start-up, one long series of ``--big`` points: the same two times.
3. ReadScalars latency: ``--reads`` reads of 1,000 points (downsampled) of a ``--series``-point series,
   p50/p95, straight over gRPC and through TensorBoard's HTTP API (target p95 < 50 ms), and the Rust loader's
   HTTP answer for the same series from an event file. Over gRPC twice: "cold" (a different point count
   each read, 1000, 999, ...: always thinned in the store) and repeated (what TensorBoard sends on every
   reload; the provider keeps a thinned read while the series' summary is unchanged).
4. Live latency, ``--live`` times each: a point logged with ``run.log`` + ``flush``, and an event record
   appended to the run's ``logs/`` file, until TensorBoard's HTTP API serves it (target p50 <= 0.5 s).
5. Idle CPU with the ``--runs`` runs served, over ``--idle`` seconds (TensorBoard process tree + the
   provider's process), provider vs the Rust data server over the event files.

Prints a JSON report with ratios. Scale the sizes down on a small machine (and say so with the results).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from benchcommon import free_port as _free_port
from benchcommon import uptime as _uptime


def _get(url: str, timeout: float = 120) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


def _post(url: str, form: list[tuple[str, str]], timeout: float = 300) -> Any:
    data = urllib.parse.urlencode(form).encode()
    with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=timeout) as resp:
        return json.loads(resp.read())


class TB:
    """A ``tensorboard`` process (its own process group) on a free port."""

    def __init__(self, args: list[str]) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        cmd = [sys.executable, "-m", "tensorboard.main", *args, "--host", "127.0.0.1", "--port", str(self.port)]
        self.t0 = time.perf_counter()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def wait_up(self, timeout: float = 300) -> None:
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            try:
                _get(f"{self.url}data/environment", timeout=10)
                return
            except (urllib.error.URLError, OSError, ValueError):
                time.sleep(0.1)
        raise RuntimeError(f"tensorboard on {self.url} did not answer")

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def cpu_seconds(self) -> float:
        import psutil  # type: ignore[import-untyped]

        try:
            p = psutil.Process(self.proc.pid)
            procs = [p, *p.children(recursive=True)]
            return sum(sum(q.cpu_times()[:2]) for q in procs)
        except psutil.Error:
            return float("nan")

    def stop(self) -> None:
        import signal

        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()


def _startup(tb: TB, runs: list[str], tags: list[str], expected: int, timeout: float) -> dict[str, float]:
    """Seconds from start to all runs listed, and to every (run, tag) answering ``expected`` points."""
    out: dict[str, float] = {}
    deadline = time.perf_counter() + timeout
    want = set(runs)
    while time.perf_counter() < deadline:
        try:
            if want <= set(_get(f"{tb.url}data/runs", timeout=30)):
                out["runs_listed_s"] = tb.elapsed()
                break
        except (urllib.error.URLError, OSError, ValueError):
            pass
        time.sleep(0.05)
    else:
        return {"runs_listed_s": float("nan"), "full_scalars_s": float("nan"), "timed_out": timeout}
    pending = set(tags)
    while pending and time.perf_counter() < deadline:
        for tag in sorted(pending):
            try:
                answer = _post(
                    f"{tb.url}data/plugin/scalars/scalars_multirun", [("tag", tag), *(("runs", r) for r in runs)]
                )
            except (urllib.error.URLError, OSError, ValueError):
                continue
            if all(len(answer.get(r, [])) == expected for r in runs):
                pending.discard(tag)
        if pending:
            time.sleep(0.1)
    out["full_scalars_s"] = tb.elapsed() if not pending else float("nan")
    return out


def build_many(root: Path, n_runs: int, n_tags: int, n_points: int) -> tuple[Any, str, list[str], Path]:
    """The same points in the run history and as event files (one folder per run, named as the provider
    names runs)."""
    from expboard import Experiment, Workspace
    from expboard.tensorboard.export import run_folder_name
    from expboard.tfevents import EventFileWriter

    ws = Workspace.init(root / "ws")
    exp = Experiment(ws, "bench-many")
    logdir = root / "events-many"
    names = []
    steps = np.arange(n_points, dtype=np.int64)
    walls = 1.7e9 + steps * 0.01
    rng = np.random.default_rng(0)
    for i in range(n_runs):
        run = exp.start_logging(display_name=f"r{i}")
        values = {f"tag{t}": rng.random(n_points) for t in range(n_tags)}
        for tag, v in values.items():
            run.log_array(tag, v, steps=steps, wall_times=walls)
        run.complete()
        name = run_folder_name(run.record)
        names.append(name)
        with EventFileWriter(logdir / name, flush_secs=0) as w:
            for tag, v in values.items():
                w.add_scalars_array(tag, steps, v, wall_times=walls)
    return ws, "bench-many", names, logdir


def build_big(ws: Any, root: Path, n: int, experiment: str) -> tuple[str, Path]:
    from expboard import Experiment
    from expboard.tensorboard.export import run_folder_name
    from expboard.tfevents import EventFileWriter

    run = Experiment(ws, experiment).start_logging(display_name="big")
    steps = np.arange(n, dtype=np.int64)
    walls = 1.7e9 + steps * 0.001
    values = np.sin(steps / 1000.0)
    for start in range(0, n, 1_000_000):  # logged as a training loop would flush it: in pieces
        sl = slice(start, start + 1_000_000)
        run.log_array("loss", values[sl], steps=steps[sl], wall_times=walls[sl])
    run.complete()
    name = run_folder_name(run.record)
    logdir = root / f"events-{experiment}"
    with EventFileWriter(logdir / name, flush_secs=0) as w:
        w.add_scalars_array("loss", steps, values, wall_times=walls)
    return name, logdir


def bench_startup(ws: Any, experiment: str, names: list[str], tags: list[str], logdir: Path, expected: int,
                  timeout: float, loaders: list[str]) -> dict[str, Any]:  # fmt: skip
    from expboard.tensorboard.provider import DataProviderServer

    out: dict[str, Any] = {}
    with DataProviderServer(ws.store, experiments=[experiment], ingest_interval=None) as server:
        tb = TB(["--grpc_data_provider", str(server.address)])
        try:
            out["provider"] = _startup(tb, names, tags, expected, timeout)
        finally:
            tb.stop()
    for fast in loaders:
        tb = TB(["--logdir", str(logdir), f"--load_fast={fast}", "--reload_interval", "1"])
        try:
            out[f"events_load_fast_{fast}"] = _startup(tb, names, tags, expected, timeout)
        finally:
            tb.stop()
    return out


def _pcts(xs: list[float]) -> dict[str, float]:
    xs = sorted(xs)
    return {"p50_ms": 1000 * statistics.median(xs), "p95_ms": 1000 * xs[max(0, int(round(0.95 * len(xs))) - 1)]}


def bench_reads(ws: Any, root: Path, n: int, reads: int) -> dict[str, Any]:
    import grpc  # type: ignore[import-untyped]
    from tensorboard.data.proto import data_provider_pb2 as pb  # type: ignore[import-untyped]
    from tensorboard.data.proto import data_provider_pb2_grpc as pb_grpc

    from expboard.tensorboard.provider import DataProviderServer

    name, logdir = build_big(ws, root, n, "bench-series")
    out: dict[str, Any] = {"points": n}
    with DataProviderServer(ws.store, experiments=["bench-series"], ingest_interval=None) as server:
        with grpc.insecure_channel(str(server.address)) as channel:
            stub = pb_grpc.TensorBoardDataProviderStub(channel)
            req = pb.ReadScalarsRequest(experiment_id="bench-series")
            req.plugin_filter.plugin_name = "scalars"
            req.run_tag_filter.runs.names.append(name)
            req.run_tag_filter.tags.names.append("loss")
            req.downsample.num_points = 1000
            cold = []  # a different point count each time: never an earlier answer, always read in the store
            for i in range(reads):
                req.downsample.num_points = 1000 - i
                t0 = time.perf_counter()
                res = stub.ReadScalars(req)
                cold.append(time.perf_counter() - t0)
                data = res.runs[0].tags[0].data
                assert len(data.step) == 1000 - i and data.step[-1] == n - 1, (len(data.step), data.step[-1])
            out["grpc_read_scalars_cold"] = _pcts(cold)
            req.downsample.num_points = 1000
            times = []  # the same request again, as TensorBoard repeats it on every reload and for every viewer
            for _ in range(reads):
                t0 = time.perf_counter()
                res = stub.ReadScalars(req)
                times.append(time.perf_counter() - t0)
            data = res.runs[0].tags[0].data
            assert len(data.step) == 1000 and data.step[-1] == n - 1, (len(data.step), data.step[-1])
            out["grpc_read_scalars"] = _pcts(times)
        tb = TB(["--grpc_data_provider", str(server.address)])
        try:
            out["tensorboard_http_provider"] = _http_reads(tb, name, reads, n)
        finally:
            tb.stop()
    tb = TB(["--logdir", str(logdir), "--load_fast=true"])
    try:
        out["tensorboard_http_events_rust"] = _http_reads(tb, name, reads, n)
    finally:
        tb.stop()
    return out


def _http_reads(tb: TB, run: str, reads: int, n: int) -> dict[str, float]:
    url = f"{tb.url}data/plugin/scalars/scalars?{urllib.parse.urlencode({'run': run, 'tag': 'loss'})}"
    deadline = time.perf_counter() + 900
    while time.perf_counter() < deadline:  # loaded (the event-file loaders need a while)
        try:
            points = _get(url, timeout=60)
            if points and points[-1][1] == n - 1:
                break
        except (urllib.error.URLError, OSError, ValueError):
            pass
        time.sleep(0.2)
    times = []
    for _ in range(reads):
        t0 = time.perf_counter()
        _get(url)
        times.append(time.perf_counter() - t0)
    return _pcts(times)


def bench_live(ws: Any, tmp: Path, samples: int) -> dict[str, Any]:
    from expboard import Experiment
    from expboard.tensorboard import Tensorboard
    from expboard.tensorboard.export import run_folder_name
    from expboard.tfevents import file_version_event, frame_record, scalar_event

    out: dict[str, Any] = {}
    run = Experiment(ws, "bench-live").start_logging(display_name="live")
    run.log("metric", 0.0, step=0)
    event_file = "logs/events.out.tfevents.1.bench"
    ws.store.append_file(run.id, event_file, frame_record(file_version_event(1.7e9)), 0)
    offset = len(frame_record(file_version_event(1.7e9)))
    for mode in ("provider", "files"):
        with Tensorboard([run], port=0, mode=mode, poll_interval=0.2) as tb:
            url = tb.start()
            name = run_folder_name(run.record)
            metric_run = name if mode == "provider" else f"{name}/run_history"
            log_run = name  # the provider ingests logs/ into the run; the mirror copies logs/ into its folder

            def served(run_name: str, tag: str, step: int, url: str = url) -> bool:
                q = urllib.parse.urlencode({"run": run_name, "tag": tag})
                try:
                    return any(p[1] == step for p in _get(f"{url}data/plugin/scalars/scalars?{q}", timeout=10))
                except (urllib.error.URLError, OSError, ValueError):
                    return False

            base = 1 if mode == "provider" else 1_000_000
            metric_lat, event_lat = [], []
            for i in range(samples):
                step = base + i
                t0 = time.perf_counter()
                run.log("metric", float(i), step=step)
                run.flush()
                while not served(metric_run, "metric", step) and time.perf_counter() - t0 < 30:
                    time.sleep(0.01)
                metric_lat.append(time.perf_counter() - t0)
                record = frame_record(scalar_event("tb_loss", float(i), step, 1.7e9 + step))
                t0 = time.perf_counter()
                ws.store.append_file(run.id, event_file, record, offset)
                offset += len(record)
                while not served(log_run, "tb_loss", step) and time.perf_counter() - t0 < 30:
                    time.sleep(0.01)
                event_lat.append(time.perf_counter() - t0)
            out[mode] = {"run_log_flush": _pcts(metric_lat), "logs_event_append": _pcts(event_lat)}
    run.complete()
    return out


def bench_idle(ws: Any, experiment: str, logdir: Path, seconds: float) -> dict[str, Any]:
    import psutil

    from expboard.tensorboard.provider import DataProviderServer

    me = psutil.Process()
    out: dict[str, Any] = {}
    with DataProviderServer(ws.store, experiments=[experiment]) as server:
        tb = TB(["--grpc_data_provider", str(server.address)])
        try:
            tb.wait_up()
            _get(f"{tb.url}experiment/{experiment}/data/runs", timeout=300)  # served once, as a browser would
            time.sleep(5)  # the first ingest pass over every run
            c0, s0, t0 = tb.cpu_seconds(), sum(me.cpu_times()[:2]), time.perf_counter()
            time.sleep(seconds)
            wall = time.perf_counter() - t0
            out["provider"] = {
                "tensorboard_cpu_pct": 100 * (tb.cpu_seconds() - c0) / wall,
                "provider_process_cpu_pct": 100 * (sum(me.cpu_times()[:2]) - s0) / wall,
            }
        finally:
            tb.stop()
    tb = TB(["--logdir", str(logdir), "--load_fast=true"])
    try:
        tb.wait_up()
        _get(f"{tb.url}data/runs", timeout=300)
        time.sleep(30)  # loaded
        c0, t0 = tb.cpu_seconds(), time.perf_counter()
        time.sleep(seconds)
        out["events_load_fast_true"] = {
            "tensorboard_cpu_pct": 100 * (tb.cpu_seconds() - c0) / (time.perf_counter() - t0)
        }
    finally:
        tb.stop()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=1000)
    p.add_argument("--tags", type=int, default=10)
    p.add_argument("--points", type=int, default=1000)
    p.add_argument("--big", type=int, default=10_000_000)
    p.add_argument("--series", type=int, default=1_000_000)
    p.add_argument("--reads", type=int, default=50)
    p.add_argument("--live", type=int, default=20)
    p.add_argument("--idle", type=float, default=30.0)
    p.add_argument("--timeout", type=float, default=600.0, help="per start-up measurement")
    p.add_argument(
        "--python-loader-max-points",
        type=int,
        default=2_000_000,
        help="skip TensorBoard's Python loader above this many points (it reads ~100k points/s)",
    )
    a = p.parse_args()
    report: dict[str, Any] = {"machine": f"{platform.machine()} {os.cpu_count()} cores", "load_before": _uptime()}
    with tempfile.TemporaryDirectory(prefix="bench-provider-") as d:
        root = Path(d)
        t0 = time.perf_counter()
        ws, experiment, names, logdir = build_many(root, a.runs, a.tags, a.points)
        report["build_many_s"] = time.perf_counter() - t0
        tags = [f"tag{t}" for t in range(a.tags)]
        total = a.runs * a.tags * a.points
        loaders = ["true"] + (["false"] if total <= a.python_loader_max_points else [])
        report["many"] = {"runs": a.runs, "tags": a.tags, "points": a.points}
        report["many"].update(bench_startup(ws, experiment, names, tags, logdir, a.points, a.timeout, loaders))
        big_name, big_logdir = build_big(ws, root, a.big, "bench-big")
        loaders = ["true"] + (["false"] if a.big <= a.python_loader_max_points else [])
        report["big"] = {"points": a.big}
        report["big"].update(bench_startup(ws, "bench-big", [big_name], ["loss"], big_logdir, 1000, a.timeout, loaders))
        report["read_scalars"] = bench_reads(ws, root, a.series, a.reads)
        report["live"] = bench_live(ws, root, a.live)
        report["idle"] = {"seconds": a.idle, **bench_idle(ws, experiment, logdir, a.idle)}
        ws.close()
    for key in ("many", "big"):
        prov = report[key]["provider"]
        for other in ("events_load_fast_true", "events_load_fast_false"):
            if other in report[key]:
                for m in ("runs_listed_s", "full_scalars_s"):
                    report[key].setdefault("ratios", {})[f"{other}/{m}"] = report[key][other][m] / prov[m]
    report["load_after"] = _uptime()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
