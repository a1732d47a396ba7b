"""Logging while the store is not answering: the time of each ``run.log`` call, next to MLflow's
``mlflow.log_metric(..., synchronous=False)``, in one run.

    python bench/bench_journal.py [--lock-s 8] [--outage-s 30] [--rate 100000]

Two disruptions, each applied to both tools the same way:

- a second process holds SQLite's write lock (``BEGIN IMMEDIATE``) for ``--lock-s`` seconds: expboard's
  embedded store, and MLflow's sqlite backend;
- the tracking server is killed (SIGKILL) for ``--outage-s`` seconds and started again on the same port:
  ``expboard server`` and ``mlflow server``, each on SQLite.

A loop logs one point per call at ``--rate`` points/s (both tools; 0: as fast as it can) for 1-2 s before,
through the disruption and 3 s after, timing every call. Then everything is flushed and the stored points
are counted in the database. expboard also runs at full speed under the lock, which passes its 2M-point
memory bound and exercises the disk journal. Printed: calls, max, p99.9, p99 and median call time, the
time to drain afterwards, points stored of points logged, and the ratios (MLflow / expboard).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import warnings
from array import array
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchcommon import free_port, uptime


class SqliteLock:
    """A second process that takes SQLite's write lock on :meth:`lock` and lets it go on :meth:`release`
    (started beforehand: forking a big process from the logging one would stall it and blur the figure)."""

    def __init__(self, db: Path) -> None:
        code = (
            "import sqlite3, sys\n"
            f"c = sqlite3.connect({str(db)!r}, isolation_level=None)\n"
            "sys.stdin.readline()\nc.execute('BEGIN IMMEDIATE')\nprint('locked', flush=True)\n"
            "sys.stdin.readline()\nc.execute('COMMIT')\n"
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )

    def lock(self) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "locked"

    def release(self) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("\n")
        self.proc.stdin.close()
        self.proc.wait(60)
        self.proc.stdout.close()


def drive(
    log: Callable[[int], None], seconds: float, rate: float, events: list[tuple[float, Callable[[], None]]]
) -> tuple[array, list[tuple[float, float]]]:
    """Call ``log(i)`` for ``seconds`` at ``rate`` calls/s (0: flat out), running each event at its time
    (in a thread, so the loop never waits for it). Returns every call's seconds, and the slowest calls'
    (start second, seconds) by the loop's clock, to tell them from the events."""
    times = array("d")
    starts = array("d")
    clock = time.perf_counter
    threads = [threading.Timer(at, fn) for at, fn in events]
    start = clock()
    for t in threads:
        t.start()
    i = 0
    end = start + seconds
    while True:
        t0 = clock()
        log(i)
        t1 = clock()
        times.append(t1 - t0)
        starts.append(t0)
        i += 1
        if i % 1000 == 0:
            if t1 > end:
                break
            if rate:
                ahead = start + i / rate - t1
                if ahead > 0:
                    time.sleep(ahead)
    for t in threads:
        t.join()
    a, b = np.frombuffer(times, dtype=np.float64), np.frombuffer(starts, dtype=np.float64)
    slow = [(float(b[i] - start), float(a[i])) for i in sorted(np.argsort(a)[-3:])]
    return times, slow


def stats(
    name: str, run: tuple[array, list[tuple[float, float]]], stored: int, drain: float, extra: str = ""
) -> dict[str, Any]:
    times, slow = run
    a = np.frombuffer(times, dtype=np.float64)
    out = {
        "name": name,
        "calls": len(a),
        "max": float(a.max()),
        "p999": float(np.quantile(a, 0.999)),
        "p99": float(np.quantile(a, 0.99)),
        "p50": float(np.median(a)),
        "stored": stored,
        "drain": drain,
    }
    print(
        f"{name:<34} calls {out['calls']:>10,}  max {out['max'] * 1e3:9.2f} ms  p99.9 {out['p999'] * 1e6:9.1f} us  "
        f"p99 {out['p99'] * 1e6:7.1f} us  p50 {out['p50'] * 1e6:6.2f} us  stored {stored:,} of {len(a):,}  "
        f"drain {drain:.1f} s {extra}\n{'':34} slowest calls (at s: ms): "
        + ", ".join(f"{t:.2f}: {d * 1e3:.0f}" for t, d in slow),
        flush=True,
    )
    return out


def ratios(mine: dict[str, Any], peer: dict[str, Any]) -> None:
    print(
        f"  ratio MLflow/expboard: max {peer['max'] / mine['max']:.1f}x, p99.9 {peer['p999'] / mine['p999']:.1f}x, "
        f"p50 {peer['p50'] / mine['p50']:.1f}x",
        flush=True,
    )


def count_expboard(db: Path, run_id: str) -> int:
    with sqlite3.connect(db) as c:
        return int(c.execute("SELECT COALESCE(SUM(n), 0) FROM metric_chunks WHERE run_id = ?", (run_id,)).fetchone()[0])


def count_mlflow(db: Path, run_id: str) -> int:
    with sqlite3.connect(db) as c:
        return int(c.execute("SELECT COUNT(*) FROM metrics WHERE run_uuid = ?", (run_id,)).fetchone()[0])


# --- expboard ------------------------------------------------------------------------------------------
def expboard_lock(
    root: Path, lock_s: float, rate: float, label: str, max_pending: int | None = None, locked: bool = True
) -> dict[str, Any]:
    from expboard import Experiment, Workspace

    slug = label.replace(" ", "-")
    db = root / f"{slug}.db"
    ws = Workspace.init(root / slug, tracking_uri=f"sqlite:///{db}")
    run = Experiment(ws, "journal").start_logging()
    run.log("loss", 0.0)
    run.flush()
    if max_pending is not None:
        run._buf.max_pending = max_pending
    lock = SqliteLock(db)
    events = [(1.0, lock.lock), (1.0 + lock_s, lock.release)] if locked else [(1.0 + lock_s, lock.release)]
    times = drive(lambda i: run.log("loss", float(i)), 1 + lock_s + 3, rate, events)
    t = time.perf_counter()
    run.flush()
    drain = time.perf_counter() - t
    journaled = run._buf.journaled
    stored = count_expboard(db, run.id) - 1
    run.complete()
    ws.close()
    return stats(f"expboard run.log ({label})", times, stored, drain, f"journaled {journaled:,}")


class ExpboardServer:
    def __init__(self, root: Path) -> None:
        from expboard.server.process import ServerProcess

        self.db = root / "eb-server.db"
        self.server = ServerProcess(f"sqlite:///{self.db}", root / "eb-artifacts").start()

    def kill(self) -> None:
        self.server.stop(kill=True)

    def start(self) -> None:
        self.server.start()


def expboard_outage(root: Path, outage_s: float, rate: float) -> dict[str, Any]:
    from expboard import Experiment, Workspace

    os.environ["EXPBOARD_SPOOL_DIR"] = str(root / "eb-spool")
    server = ExpboardServer(root)
    try:
        ws = Workspace(tracking_uri=server.server.url)
        run = Experiment(ws, "journal").start_logging()
        run.log("loss", 0.0)
        run.flush()
        times = drive(
            lambda i: run.log("loss", float(i)),
            2 + outage_s + 3,
            rate,
            [(2.0, server.kill), (2.0 + outage_s, server.start)],
        )
        t = time.perf_counter()
        run.flush(timeout=600)
        drain = time.perf_counter() - t
        journaled = run._buf.journaled
        run.complete()
        ws.close()
        stored = count_expboard(server.db, run.id) - 1
    finally:
        server.server.stop()
    return stats("expboard run.log (server down)", times, stored, drain, f"journaled {journaled:,}")


# --- MLflow ----------------------------------------------------------------------------------------------
def mlflow_lock(root: Path, lock_s: float, rate: float, locked: bool = True) -> dict[str, Any]:
    import mlflow

    db = root / f"mlflow-lock{int(locked)}.db"
    mlflow.set_tracking_uri(f"sqlite:///{db}")
    mlflow.set_experiment("journal")
    with mlflow.start_run() as active:
        mlflow.log_metric("loss", 0.0, step=0)
        lock = SqliteLock(db)
        events = [(1.0, lock.lock), (1.0 + lock_s, lock.release)] if locked else [(1.0 + lock_s, lock.release)]
        times = drive(
            lambda i: mlflow.log_metric("loss", float(i), step=i + 1, synchronous=False), 1 + lock_s + 3, rate, events
        )
        t = time.perf_counter()
        mlflow.flush_async_logging()
        drain = time.perf_counter() - t
        run_id = active.info.run_id
    label = "locked" if locked else "no lock"
    return stats(f"MLflow log_metric(async) ({label})", times, count_mlflow(db, run_id) - 1, drain)


class MlflowServer:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.db = root / "mlflow-server.db"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        log = open(self.root / "mlflow-server.log", "ab")  # noqa: SIM115 - the server's output, closed with it
        self.proc = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("mlflow")),
                "server",
                "--backend-store-uri",
                f"sqlite:///{self.db}",
                "--default-artifact-root",
                str(self.root / "ml-artifacts"),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.time() + 600  # under heavy load it took more than 3 minutes
        while True:
            try:
                urllib.request.urlopen(f"{self.url}/health", timeout=2).read()
                return
            except OSError:
                if time.time() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("mlflow server did not start") from None
                time.sleep(0.3)

    def kill(self) -> None:
        if self.proc is not None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)
            self.proc = None


def mlflow_outage(root: Path, outage_s: float, rate: float) -> dict[str, Any]:
    import mlflow

    server = MlflowServer(root)
    try:
        mlflow.set_tracking_uri(server.url)
        mlflow.set_experiment("journal-server")
        with mlflow.start_run() as active:
            mlflow.log_metric("loss", 0.0, step=0)
            times = drive(
                lambda i: mlflow.log_metric("loss", float(i), step=i + 1, synchronous=False),
                2 + outage_s + 3,
                rate,
                [(2.0, server.kill), (2.0 + outage_s, server.start)],
            )
            t = time.perf_counter()
            try:
                mlflow.flush_async_logging()
            except Exception as exc:  # what the user would see
                print(f"  MLflow flush_async_logging raised {type(exc).__name__}: {str(exc)[:200]}")
            drain = time.perf_counter() - t
            run_id = active.info.run_id
    finally:
        server.kill()
    return stats("MLflow log_metric(async) (server down)", times, count_mlflow(server.db, run_id) - 1, drain)


def free_stall(n: int = 2_000_000) -> None:
    """The logging thread's longest gap while another thread frees a written batch of ``n`` points (three
    Python lists): in one go (one C call holding the GIL) and as the writer does it (expboard.buffer._free)."""
    from expboard.buffer import _free
    from expboard.records import MetricKind
    from expboard.stores import MetricChunk

    for mode in ("in one go", "in pieces (the writer)", "in one go", "in pieces (the writer)"):
        cols = (list(range(n)), [time.time() + i for i in range(n)], [float(i) for i in range(n)])
        chunks = [MetricChunk("r", "loss", MetricKind.SCALAR, *cols)]
        del cols
        stop = threading.Event()
        worst = [0.0]

        def logger(stop: threading.Event = stop, worst: list[float] = worst) -> None:
            clock, column, prev = time.perf_counter, [], time.perf_counter()
            while not stop.is_set():
                column.append(1.0)
                now = clock()
                worst[0] = max(worst[0], now - prev)
                prev = now
                if len(column) > 100_000:
                    column.clear()

        thread = threading.Thread(target=logger)
        thread.start()
        time.sleep(0.2)
        t = time.perf_counter()
        if mode == "in one go":
            chunks.clear()
        else:
            _free(chunks)
        took = time.perf_counter() - t
        time.sleep(0.2)
        stop.set()
        thread.join()
        print(
            f"  freeing a written batch of {n:,} points {mode:<22}: {took * 1e3:7.1f} ms; the logging thread's "
            f"longest gap {worst[0] * 1e3:6.1f} ms",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lock-s", type=float, default=8.0)
    parser.add_argument("--outage-s", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=100_000, help="points/s of the paced loop (0: flat out)")
    parser.add_argument("--skip-outage", action="store_true")
    parser.add_argument("--skip-lock", action="store_true", help="only the server outage")
    parser.add_argument("--expboard-only", action="store_true", help="no MLflow (a quick look at expboard alone)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.getLogger("mlflow").setLevel(logging.CRITICAL)
    logging.getLogger("expboard").setLevel(logging.ERROR)
    import mlflow

    print(f"{uptime()}\nexpboard vs MLflow {mlflow.__version__}; paced at {args.rate:,.0f} points/s", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-journal-") as tmp:
        root = Path(tmp)
        os.environ["EXPBOARD_JOURNAL_DIR"] = str(root / "journal")
        print("\n== a written batch freed by the writer thread while the loop logs")
        free_stall()
        if not args.skip_lock:
            lock_cases(root, args)
        if not args.skip_outage:
            print(f"\n== the tracking server is killed for {args.outage_s:g} s, then started again")
            mine = expboard_outage(root, args.outage_s, args.rate)
            if not args.expboard_only:
                peer = mlflow_outage(root, args.outage_s, args.rate)
                ratios(mine, peer)
            print(f"   {uptime()}")


def lock_cases(root: Path, args: argparse.Namespace) -> None:
    print("\n== the machine's floor: the same loop, nothing disrupted")
    mine = expboard_lock(root, args.lock_s, args.rate, "no lock", locked=False)
    if not args.expboard_only:
        peer = mlflow_lock(root, args.lock_s, args.rate, locked=False)
        ratios(mine, peer)
    print(f"\n== a second process holds SQLite's write lock for {args.lock_s:g} s")
    mine = expboard_lock(root, args.lock_s, args.rate, "locked")
    if not args.expboard_only:
        peer = mlflow_lock(root, args.lock_s, args.rate)
        ratios(mine, peer)
    full = expboard_lock(root, args.lock_s, 0, "locked, flat out, 200k bound", max_pending=200_000)
    if not args.expboard_only:
        ratios(full, peer)
    print(f"   {uptime()}")


if __name__ == "__main__":
    main()
