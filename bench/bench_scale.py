"""Scaling: how expboard's cost grows with the history, next to MLflow (and torch's writer for export).

    python bench/bench_scale.py [--scale 1] [--issue-sizes] [--only SECTION]

Sizes go 10x apart; ``--scale`` multiplies the largest ones (the defaults are modest, for a shared machine).
Each section prints expboard's time at each size, the growth factor between sizes, the peer's time and the
ratio, and the process's peak RSS.
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import tempfile
import time
import uuid
import warnings
from pathlib import Path

import numpy as np


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(fn) -> float:  # type: ignore[no-untyped-def]
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def first_log(root: Path, sizes: list[int]) -> None:
    """The first run.log to a series already holding N points, from a fresh process's view."""
    from expboard import Experiment, Run, Workspace

    print("\n== first run.log to an existing series of N points (a run fetched again)")
    for n in sizes:
        ws = Workspace.init(root / f"first{n}")
        run = Experiment(ws, "e").start_logging()
        for start in range(0, n, 1_000_000):
            run.log_array("loss", np.random.rand(min(1_000_000, n - start)))
        run.flush()
        other = Workspace(ws.path)
        again = Run.get(other, run.id)
        before = rss_mb()
        dt = timed(lambda again=again: again.log("loss", 1.0))  # queued: the writer reads the stored count
        stored = timed(again.flush)  # until the point is stored, after the count
        print(
            f"expboard  N={n:>10,}  first log {dt * 1e3:8.2f} ms, stored after {stored * 1e3:8.2f} ms"
            f"   peak RSS {rss_mb():7.0f} MB (before {before:.0f})"
        )
        (info,) = ws.store.get_metric_info([run.id])
        assert info.count == n + 1 and info.last_step == n, info  # the step after the stored ones
        other.close()
        run.complete()
        ws.close()


def _files_alone(logdir: Path, out: Path) -> float:
    """The file system's part: the same folders and files (same sizes) as an export wrote, created with plain
    os calls and the bytes already in memory, in a fresh folder."""
    files = [(p.relative_to(logdir).parent, p.stat().st_size) for p in logdir.rglob("*tfevents*")]
    t = time.perf_counter()
    for folder, size in files:
        d = out / folder
        d.mkdir(parents=True, exist_ok=True)
        with open(d / "events.out.tfevents.0.host.1.0", "xb", buffering=0) as f:
            f.write(bytes(size))
    return time.perf_counter() - t


def export(root: Path, sizes: list[int], torch_sizes: list[int], repeats: int = 3) -> None:
    """export_to_tensorboard of K children x 3 metrics x 100 points (each into a fresh folder, best and median
    of ``repeats``), the file system alone creating the same folders and files, and torch's SummaryWriter
    writing the same points."""
    from expboard import Experiment, Workspace
    from expboard.tensorboard.export import export_to_tensorboard

    print("\n== export of K child runs x 3 metrics x 100 points")
    times: dict[int, list[float]] = {}
    alone: dict[int, list[float]] = {}
    for k in sizes:
        ws = Workspace.init(root / f"export{k}")
        parent = Experiment(ws, "sweep").start_logging()
        for i in range(k):
            child = parent.child_run(f"alpha{i}")
            for m in ("mse", "mae", "r2"):
                child.log_array(m, np.random.rand(100))
            child.complete()
        parent.complete()
        times[k], alone[k] = [], []
        for r in range(repeats):  # alternating, so both see the same disk and load
            logdir = root / f"tb{k}-{r}"
            times[k].append(timed(lambda ws=ws, parent=parent, logdir=logdir: export_to_tensorboard(parent, logdir)))
            alone[k].append(_files_alone(logdir, root / f"files{k}-{r}"))
        ws.close()
    torch_times = {}
    for k in torch_sizes:
        from torch.utils.tensorboard import SummaryWriter

        def write(k: int = k) -> None:
            vals = np.random.rand(3, 100).tolist()
            for i in range(k):
                w = SummaryWriter(str(root / f"torch{k}" / f"alpha{i}"))
                for j, m in enumerate(("mse", "mae", "r2")):
                    for step, v in enumerate(vals[j]):
                        w.add_scalar(m, v, step)
                w.close()

        torch_times[k] = timed(write)
    prev = None
    for k in sizes:
        best, median = min(times[k]), float(np.median(times[k]))
        growth = f"  x{best / min(times[prev]):.1f} for x{k // prev}" if prev else ""
        if k in torch_times:
            peer = f"  torch {torch_times[k]:7.2f} s  ratio {torch_times[k] / best:5.1f}x"
        else:  # torch's cost is linear in the runs: its time per run at the size measured
            per_run = min(torch_times[t] / t for t in torch_times)
            peer = f"  torch ~{per_run * k:7.2f} s (its time per run)  ratio ~{per_run * k / best:5.1f}x"
        own = min(t - a for t, a in zip(times[k], alone[k], strict=True))  # the rest: reading, encoding, planning
        files = f"  files alone {min(alone[k]):.2f} s (median {float(np.median(alone[k])):.2f}), the rest {own:.2f} s"
        print(f"expboard  K={k:>6,}  {best:7.2f} s (median {median:.2f}){growth}{peer}{files}")
        prev = k
    print(f"peak RSS {rss_mb():.0f} MB")


_CHILD = """
import json, resource, sys, time
from pathlib import Path

def rss():  # current RSS, MB
    return int(open("/proc/self/statm").read().split()[1]) * resource.getpagesize() / 2**20

what, where, run_id, out = sys.argv[1:5]
if what == "mlflow":
    import logging, warnings
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    from mlflow.tracking import MlflowClient
    client = MlflowClient(tracking_uri=where)
    client.get_metric_history(run_id, "loss")[:1]
    before = rss()
    t = time.perf_counter()
    n = len(client.get_metric_history(run_id, "loss"))
elif what == "export":  # where: the workspace folder
    from expboard import Run, Workspace
    from expboard.tensorboard.export import export_to_tensorboard
    ws = Workspace(where)
    run = Run.get(ws, run_id)
    before = rss()
    t = time.perf_counter()
    n = export_to_tensorboard(run, Path(out) / "tb").points
else:
    from expboard.stores.http import HttpStore
    from expboard.stores.sql import SqlStore
    store = HttpStore(where) if where.startswith("http") else SqlStore(where, Path(out) / "artifacts")
    store.get_metrics(run_id, "loss", max_step=0)
    before = rss()
    t = time.perf_counter()
    n = len(store.get_metrics(run_id, "loss")[0])
dt = time.perf_counter() - t
# VmHWM: this process's own peak (ru_maxrss would start at the forking parent's size)
peak = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) / 1024
print(json.dumps({"n": n, "seconds": dt, "growth_mb": peak - before}))
"""


def _child(what: str, where: str, run_id: str, out: Path) -> dict[str, float]:
    import json
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _CHILD, what, where, run_id, str(out)], capture_output=True, text=True, check=False
    )
    if done.returncode:
        raise RuntimeError(done.stderr[-2000:])
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _read_postgres(root: Path, sizes: list[int]) -> None:
    from expboard.records import RunRecord, RunStatus
    from expboard.server.devpg import LocalPostgres
    from expboard.stores.base import MetricChunk
    from expboard.stores.sql import SqlStore

    try:
        pg = LocalPostgres()
        pg.start()
    except (FileNotFoundError, RuntimeError) as exc:
        print(f"PostgreSQL not measured: {exc}")
        return
    try:
        for n in sizes:
            uri = pg.create_database(f"read{n}")
            store = SqlStore(uri, root / f"pg{n}")
            exp = store.get_or_create_experiment("e").name
            run_id = store.create_run(RunRecord(f"pg{n}", exp, RunStatus.COMPLETED, created=time.time())).run_id
            for start in range(0, n, 1_000_000):
                m = min(1_000_000, n - start)
                steps = np.arange(start, start + m, dtype=np.int64)
                store.log_metrics([MetricChunk(run_id, "loss", "scalar", steps, steps / 1e3, np.random.rand(m))])
            store.close()
            r = _child("read", uri, run_id, root / f"pgout{n}")
            decoded = 24 * n / 2**20
            print(
                f"expboard  read   postgr  N={n:>11,}  {r['seconds']:7.2f} s  RSS +{r['growth_mb']:7.0f} MB"
                f"  = {r['growth_mb'] / decoded:4.2f}x the decoded {decoded:.0f} MB"
            )
    finally:
        pg.stop()


def read_memory(
    root: Path,
    sizes: list[int],
    http_sizes: list[int],
    export_sizes: list[int],
    mlflow_sizes: list[int],
    pg_sizes: tuple[int, ...] = (),
) -> None:
    """Peak RSS growth of reading one series of N points whole (a fresh process each), against its decoded
    size (24 bytes a point: int64 step, float64 wall time, float64 value); of exporting it; MLflow's
    get_metric_history next to it."""
    from expboard import Experiment, Workspace
    from expboard.server.process import ServerProcess
    from expboard.stores.base import MetricChunk

    print("\n== reading a series of N points whole: time and peak RSS growth / decoded size (fresh process each)")
    for n in sorted(set(sizes) | set(http_sizes) | set(export_sizes)):
        ws = Workspace.init(root / f"read{n}")
        run = Experiment(ws, "e").start_logging()
        for start in range(0, n, 1_000_000):
            m = min(1_000_000, n - start)
            steps = np.arange(start, start + m, dtype=np.int64)
            ws.store.log_metrics([MetricChunk(run.id, "loss", "scalar", steps, steps / 1e3 + 1.7e9, np.random.rand(m))])
        run.complete()
        uri, artifacts = ws.tracking_uri, ws.path
        ws.close()
        decoded = 24 * n / 2**20
        targets = []
        if n in sizes:
            targets.append(("read", "sqlite", uri))
        server = None
        if n in http_sizes:
            server = ServerProcess(uri, Path(artifacts) / "server-artifacts").start()
            targets.append(("read", "http", server.url))
        if n in export_sizes:
            targets.append(("export", "sqlite", str(artifacts)))
        try:
            for what, name, where in targets:
                r = _child(what, where, run.id, root / f"out{n}{what}{name}")
                print(
                    f"expboard  {what:6} {name:6}  N={n:>11,}  {r['seconds']:7.2f} s  RSS +{r['growth_mb']:7.0f} MB"
                    f"  = {r['growth_mb'] / decoded:4.2f}x the decoded {decoded:.0f} MB"
                )
                if what == "export":
                    import shutil

                    shutil.rmtree(root / f"out{n}{what}{name}", ignore_errors=True)
        finally:
            if server is not None:
                server.stop()
        import shutil

        shutil.rmtree(root / f"read{n}", ignore_errors=True)
    if pg_sizes:
        _read_postgres(root, pg_sizes)
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    for n in mlflow_sizes:
        where = f"sqlite:///{root / f'mlflow-read{n}.db'}"
        client = MlflowClient(tracking_uri=where)
        exp_id = client.create_experiment(f"e{uuid.uuid4().hex[:6]}")
        rid = client.create_run(exp_id).info.run_id
        for start in range(0, n, 1000):
            client.log_batch(
                rid, metrics=[Metric("loss", float(i), int(1.7e12), i) for i in range(start, min(n, start + 1000))]
            )
        r = _child("mlflow", where, rid, root)
        decoded = 24 * n / 2**20
        print(
            f"mlflow    read   sqlite  N={n:>11,}  {r['seconds']:7.2f} s  RSS +{r['growth_mb']:7.0f} MB"
            f"  = {r['growth_mb'] / decoded:4.2f}x the decoded {decoded:.0f} MB (get_metric_history)"
        )


def _cli_first_page(root: Path, n: int) -> str:
    """``expboard runs list --json`` over the same database, in a new process: wall time and peak RSS."""
    import json
    import subprocess
    import sys

    from expboard import Workspace

    Workspace.init(root / f"listws{n}", tracking_uri=f"sqlite:///{root / f'list{n}.db'}").close()
    # the CLI's main in a new interpreter that reports its own peak RSS (a child's peak as wait4 gives it
    # starts from the parent's RSS at fork)
    code = (
        "import resource, sys\nfrom expboard.cli import main\ntry:\n    main(['runs', 'list', '--json', '-e', 'e'])\n"
        "finally:\n    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)"
    )
    t = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root / f"listws{n}", capture_output=True, text=True, check=True
    )
    dt = time.perf_counter() - t
    rss = int(out.stderr.strip().splitlines()[-1]) / 1024
    runs = len(json.loads(out.stdout))
    return f"CLI `runs list --json` {dt:.2f} s, {runs} runs, peak RSS {rss:.0f} MB"


def listing(root: Path, sizes: list[int], mlflow_sizes: list[int]) -> None:
    """The first page of 100 runs (newest first), and a filtered page, among N runs."""
    from expboard.records import RunRecord, RunStatus
    from expboard.stores.query import RunFilter
    from expboard.stores.sql import SqlStore

    print("\n== first page of 100 runs among N (and with a tag + metric filter)")
    for n in sizes:
        store = SqlStore(f"sqlite:///{root / f'list{n}.db'}", root / f"list{n}")
        exp = store.get_or_create_experiment("e").name
        for i in range(n):
            rid = f"run{i:07d}"
            store.create_run(
                RunRecord(rid, exp, RunStatus.COMPLETED, created=1e9 + i, tags={"k": str(i % 10)}, display_name=rid)
            )
        from expboard.stores.base import MetricChunk

        for start in range(0, n, 1000):
            store.log_metrics(
                [
                    MetricChunk(f"run{i:07d}", "mse", "scalar", [0], [1.0], [i / n])
                    for i in range(start, min(n, start + 1000))
                ]
            )
        page = min(timed(lambda store=store, exp=exp: store.query_runs(experiment=exp, limit=100)) for _ in range(3))
        f = RunFilter.parse(tags=["k=3"], metrics=["mse<0.5"])
        filt = min(
            timed(lambda store=store, f=f, exp=exp: store.query_runs(experiment=exp, filter=f, limit=100))
            for _ in range(3)
        )
        full = timed(lambda store=store, exp=exp: store.list_runs(experiment=exp))
        print(
            f"expboard  N={n:>8,}  first page {page * 1e3:7.2f} ms  filtered page {filt * 1e3:7.2f} ms"
            f"  (whole list_runs {full:6.2f} s)  {_cli_first_page(root, n)}"
        )
        store.close()
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    import mlflow
    from mlflow.tracking import MlflowClient

    for n in mlflow_sizes:
        client = MlflowClient(tracking_uri=f"sqlite:///{root / f'mlflow{n}.db'}")
        exp_id = client.create_experiment(f"e{uuid.uuid4().hex[:6]}")
        for i in range(n):
            r = client.create_run(exp_id, tags={"k": str(i % 10)})
            client.log_metric(r.info.run_id, "mse", i / n)
        page = min(timed(lambda c=client, e=exp_id: c.search_runs([e], max_results=100)) for _ in range(3))
        filt = min(
            timed(lambda c=client, e=exp_id: c.search_runs([e], "tags.k = '3' and metrics.mse < 0.5", max_results=100))
            for _ in range(3)
        )
        print(f"mlflow    N={n:>8,}  first page {page * 1e3:7.2f} ms  filtered page {filt * 1e3:7.2f} ms")
    del mlflow
    print(f"peak RSS {rss_mb():.0f} MB")


def one_call(root: Path, sizes: list[int]) -> None:
    """One log_array of N points (a size past SQLite's 1 GB row limit once failed), then flushed."""
    from expboard import Experiment, Workspace

    print("\n== one log_array call of N points")
    for n in sizes:
        ws = Workspace.init(root / f"one{n}")
        run = Experiment(ws, "e").start_logging()
        values = np.random.rand(n)
        before = rss_mb()
        dt = timed(lambda run=run, values=values: (run.log_array("big", values), run.flush()))
        stored = ws.store.count_metric_points(run.id, "big")
        print(
            f"expboard  N={n:>11,}  {dt:7.2f} s  stored {stored:,}  peak RSS {rss_mb():7.0f} MB (before {before:.0f})"
        )
        del values
        run.complete()
        ws.close()


def reaper(root: Path, sizes: list[int]) -> None:
    """The liveness check every ``runs list`` and Runs tab request makes, over a history of N runs: (a) all
    Completed but 10 Running, (b) all NotResponding (died long ago), 1 in 100 of them on a Ray cluster. Now,
    next to what it did before: (a) without the index on the runs' status, (b) listing every NotResponding run
    for the end checks instead of asking the store for those with a Ray job."""
    import sqlite3

    from expboard import plugins
    from expboard.compute import ray  # noqa: F401  (registers the Ray end check and its marker)
    from expboard.liveness import reap_unresponsive
    from expboard.records import RunRecord, RunStatus
    from expboard.stores.sql import SqlStore

    print("\n== liveness check (each `runs list`, each Runs tab request) over a history of N runs")
    for n in sizes:
        for case in ("completed", "not-responding"):
            db = root / f"reap-{case}-{n}.db"
            store = SqlStore(f"sqlite:///{db}", root / f"reap-{case}-{n}")
            exp = store.get_or_create_experiment("e").name
            now_s = time.time()
            for i in range(n):
                if case == "completed":
                    status, props = (RunStatus.RUNNING if i < 10 else RunStatus.COMPLETED), {}
                else:
                    status, props = RunStatus.NOT_RESPONDING, ({"expboard.ray_job_id": f"j{i}"} if i % 100 == 0 else {})
                store.create_run(
                    RunRecord(
                        f"r{i:07d}", exp, status, created=1e9 + i, run_type="script", heartbeat=now_s, properties=props
                    )
                )
            reap_unresponsive(store)  # warm
            now = min(timed(lambda store=store: reap_unresponsive(store)) for _ in range(3))
            if case == "completed":
                with sqlite3.connect(db) as conn:
                    conn.execute("DROP INDEX runs_by_status")
                before = min(timed(lambda store=store: reap_unresponsive(store)) for _ in range(3))
            else:
                checks = plugins._end_checks
                plugins._end_checks = [(c, None) for c, _ in checks]  # no marker: every NotResponding run
                try:
                    before = min(timed(lambda store=store: reap_unresponsive(store)) for _ in range(3))
                finally:
                    plugins._end_checks = checks
            print(
                f"  {case:>14}  N={n:>9,}  {now * 1000:7.1f} ms   before {before * 1000:8.1f} ms   "
                f"ratio {before / now:6.1f}x   peak RSS {rss_mb():.0f} MB"
            )
            store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=int, default=1, help="multiply the largest sizes")
    parser.add_argument(
        "--issue-sizes",
        action="store_true",
        help="the sizes the scaling defects were found at: 1M-50M points, 100-3,000 children, 1k-100k runs",
    )
    parser.add_argument(
        "--only", choices=["first-log", "one-call", "export", "list", "read", "reaper"], action="append"
    )
    args = parser.parse_args()
    s = args.scale
    print(f"load average {os.getloadavg()}, {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        only = set(args.only or ["first-log", "one-call", "export", "list", "read", "reaper"])
        if "first-log" in only:
            first_log(root, [1_000_000, 10_000_000, 50_000_000] if args.issue_sizes else [100_000, 1_000_000 * s])
        if "one-call" in only:
            one_call(root, [5_000_000, 50_000_000] if args.issue_sizes else [1_000_000 * s])
        if "export" in only:
            export(root, [100, 1000, 3000 * s], [100])
        if "read" in only:
            big = [1_000_000, 10_000_000, 50_000_000 * s]
            read_memory(
                root, big, [1_000_000, 10_000_000], [1_000_000, 10_000_000 * s], [100_000], (1_000_000, 10_000_000)
            )
        if "list" in only:
            listing(root, [1_000, 10_000, 100_000] if args.issue_sizes else [1_000, 10_000 * s], [100, 1_000])
        if "reaper" in only:
            reaper(root, [1_000, 10_000, 100_000] if args.issue_sizes else [1_000, 10_000 * s])


if __name__ == "__main__":
    main()
