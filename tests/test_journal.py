"""Logging never waits for the store: a real SQLite held locked by a second process, a real tracking server
killed and restarted, the journal's bound, its survival of the process and of SIGKILL mid-write."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from expboard import Experiment, Run, Workspace, state
from expboard import run as run_module
from expboard.buffer import MetricBuffer
from expboard.errors import StoreUnavailableError
from expboard.stores.journal import Journal
from expboard.stores.wire import decode_batch

# The slowest run.log call allowed while the store is locked or down: well below the outage (a logging thread
# that waits for the store shows it whole), well above what a loaded machine's scheduler adds (tens of ms).
# The benchmark (bench/bench_journal.py) measures the real figures.
BOUND_S = 1.0
LOCK_S = 3.0


@pytest.fixture(autouse=True)
def _journal_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "journal"
    monkeypatch.setenv("EXPBOARD_JOURNAL_DIR", str(folder))
    monkeypatch.setenv("EXPBOARD_SPOOL_DIR", str(tmp_path / "spool"))
    return folder


class SqliteLock:
    """A second process holding SQLite's write lock (BEGIN IMMEDIATE) until :meth:`release`."""

    def __init__(self, db: Path) -> None:
        code = (
            "import sqlite3, sys\n"
            f"c = sqlite3.connect({str(db)!r}, isolation_level=None)\n"
            "c.execute('BEGIN IMMEDIATE')\nprint('locked', flush=True)\nsys.stdin.readline()\nc.execute('COMMIT')\n"
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "locked"

    def release(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.write("\n")
            self.proc.stdin.flush()
            self.proc.wait(30)

    def __enter__(self) -> SqliteLock:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.release()
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            for f in (self.proc.stdin, self.proc.stdout):
                if f is not None:
                    f.close()


@pytest.fixture
def sqlite_ws(tmp_path: Path) -> Iterator[Workspace]:
    ws = Workspace.init(tmp_path / "project", tracking_uri=f"sqlite:///{tmp_path / 'expboard.db'}")
    yield ws
    ws.close()


def _small(buf: MetricBuffer, monkeypatch: pytest.MonkeyPatch, max_pending: int = 20_000) -> None:
    monkeypatch.setattr(buf, "max_pending", max_pending)
    monkeypatch.setattr(buf, "flush_threshold", max_pending // 10)


def _log_timed(run: Run, name: str, start: int, n: int) -> float:
    """Log points start..start+n-1; the slowest call's seconds."""
    worst = 0.0
    clock = time.perf_counter
    for i in range(start, start + n):
        t = clock()
        run.log(name, float(i))
        worst = max(worst, clock() - t)
    return worst


def _journal_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "go to the journal" in r.getMessage()]


def test_run_log_never_waits_for_a_locked_sqlite_and_loses_nothing(
    sqlite_ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "expboard")
    run = Experiment(sqlite_ws, "locked").start_logging()
    run.log("loss", 0.0)
    run.flush()
    buf = run._buf
    _small(buf, monkeypatch)
    n, worst = 0, 0.0
    with SqliteLock(tmp_path / "expboard.db") as lock:
        t_end = time.monotonic() + LOCK_S
        while time.monotonic() < t_end or n < 5 * buf.max_pending:
            worst = max(worst, _log_timed(run, "loss", n + 1, 1_000))
            n += 1_000
        run.log_row("rows", a=1, b="x")  # other kinds take the same path
        assert buf.journaled > 0, "the memory bound was passed: points must have gone to the journal"
        assert buf.pending_points()[0] <= 3 * buf.max_pending
        lock.release()
    assert worst < BOUND_S, f"run.log took {worst:.3f} s while the store was locked"
    run.flush()
    (series,) = run.get_metric_series("loss")
    assert series.steps.tolist() == list(range(n + 1))  # every point once, in order
    assert series.values.tolist() == [float(i) for i in range(n + 1)]
    assert run.get_metrics("rows")["rows"] == {"a": [1], "b": ["x"]}
    assert len(_journal_warnings(caplog)) == 1
    assert not buf.journal.paths() and not list(buf.journal.folder.glob("*.batch"))


def test_arrays_journaled_while_the_store_is_locked_are_all_written(
    sqlite_ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many log_array calls past the memory bound: every array goes to the journal under a name of its own
    (no record replaces another) and reaches the store, in order."""
    run = Experiment(sqlite_ws, "arrays").start_logging()
    run.log("loss", 0.0)
    run.flush()
    buf = run._buf
    _small(buf, monkeypatch, max_pending=2_000)
    with SqliteLock(tmp_path / "expboard.db"):
        for k in range(12):
            run.log_array("loss", np.arange(1 + 1_000 * k, 1 + 1_000 * (k + 1), dtype=np.float64))
        deadline = time.monotonic() + 10
        while buf.journaled < 8_000 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert buf.journaled >= 8_000, "the arrays past the memory bound must have gone to the journal"
    run.flush()
    (series,) = run.get_metric_series("loss")
    assert series.steps.tolist() == list(range(12_001))
    assert series.values.tolist() == [float(i) for i in range(12_001)]
    assert not buf.journal.paths()


def test_journal_never_replaces_a_record_whose_name_is_given_twice(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j", 1 << 20)
    first, second = (journal.append([body], stems=["000000000007"])[0] for body in (b"one", b"two"))
    assert first != second and first.read_bytes() == b"one" and second.read_bytes() == b"two"
    assert journal.paths() == [first, second]


def test_the_journal_bound_is_honoured_and_what_is_dropped_is_said(
    sqlite_ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "expboard")
    run = Experiment(sqlite_ws, "bounded").start_logging()
    run.log("x", 0.0)
    run.flush()
    buf = run._buf
    _small(buf, monkeypatch, max_pending=10_000)
    bound = 600_000  # bytes: about 30,000 points of three 8-byte columns
    monkeypatch.setattr(buf.journal, "max_bytes", bound)
    n = 100_000
    sizes = []
    with SqliteLock(tmp_path / "expboard.db") as lock:
        for start in range(1, n + 1, 10_000):
            _log_timed(run, "x", start, 10_000)
            sizes.append(sum(p.stat().st_size for p in buf.journal.folder.glob("*.batch")))
        time.sleep(0.3)  # the spiller's last batch
        sizes.append(sum(p.stat().st_size for p in buf.journal.folder.glob("*.batch")))
        lock.release()
    assert max(sizes) <= bound
    dropped = sum(buf.dropped.values())
    assert dropped > 0
    run.flush()
    steps = run.get_metric_series("x")[0].steps
    assert len(steps) == n + 1 - dropped  # the rest is stored, once
    assert (np.diff(steps) > 0).all()  # in order; the dropped points are one gap
    assert np.count_nonzero(np.diff(steps) > 1) == 1
    dropped_msgs = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert any("journal" in m and "full" in m for m in dropped_msgs)  # when it starts
    assert any(f"{dropped} metric points were dropped" in m for m in dropped_msgs)  # the totals
    assert len(_journal_warnings(caplog)) == 1


_CHILD = textwrap.dedent(
    """
    import sys, time
    from expboard import Workspace, Experiment
    from expboard.errors import StoreUnavailableError
    ws = Workspace(sys.argv[1])
    run = Experiment(ws, "crash").start_logging()
    run.log("loss", 0.0); run.flush()
    buf = run._buf
    buf.max_pending, buf.flush_threshold = 5_000, 500
    print(run.id, flush=True)
    sys.stdin.readline()  # the store is locked now
    n = int(sys.argv[2])
    for i in range(1, n + 1):
        run.log("loss", float(i))
    if sys.argv[3] == "exit":  # the interpreter's exit, with 0.5 s for the store
        buf.close_wait_s = 0.5
        sys.exit(0)
    if sys.argv[3] == "close":
        try:
            buf.close(timeout=0.5)
        except StoreUnavailableError as exc:
            print("kept", exc, flush=True)
    else:
        while True:  # keep logging: the parent kills it mid-write
            n += 1
            run.log("loss", float(n))
    time.sleep(600)
    """
)


def _child(ws: Workspace, n: int, mode: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(ws.path), str(n), mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE if mode == "exit" else None,
        text=True,
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def _end(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    for f in (proc.stdin, proc.stdout, proc.stderr):
        if f is not None:
            f.close()


def test_a_journal_left_by_a_killed_process_is_written_once_by_the_next_open(
    sqlite_ws: Workspace, tmp_path: Path, _journal_dir: Path
) -> None:
    n = 40_000
    proc, run_id = _child(sqlite_ws, n, "close")
    try:
        with SqliteLock(tmp_path / "expboard.db"):
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write("\n")
            proc.stdin.flush()
            line = proc.stdout.readline()
            assert line.startswith("kept"), line
            assert "expboard journal" in line
            proc.send_signal(signal.SIGKILL)  # the store still locked: nothing but the journal has them
            proc.wait(30)
    finally:
        _end(proc)
    assert list(_journal_dir.rglob("*.batch"))
    with Workspace(sqlite_ws.path) as ws2:  # opening the workspace takes the journal over
        run = Run.get(ws2, run_id)
        steps = run.get_metric_series("loss")[0].steps  # get_* flushes: the journal is written first
        assert steps.tolist() == list(range(n + 1))
    with Workspace(sqlite_ws.path) as ws3:  # and only once
        assert Run.get(ws3, run_id).get_metric_series("loss")[0].steps.tolist() == list(range(n + 1))
    assert not list(_journal_dir.rglob("*.batch"))


def test_exit_with_the_store_locked_leaves_the_journal_for_the_next_open(
    sqlite_ws: Workspace, tmp_path: Path, _journal_dir: Path
) -> None:
    n = 30_000
    proc, run_id = _child(sqlite_ws, n, "exit")
    try:
        with SqliteLock(tmp_path / "expboard.db"):
            assert proc.stdin is not None and proc.stderr is not None
            proc.stdin.write("\n")
            proc.stdin.flush()
            lines = [proc.stderr.readline()]  # the journal's warning, then at exit (the store still locked):
            while lines[-1] and "kept in the journal" not in lines[-1]:
                lines.append(proc.stderr.readline())
            assert "expboard journal" in lines[-1], lines
            assert sum("go to the journal" in line for line in lines) == 1, lines
            assert list(_journal_dir.rglob("*.batch"))
        proc.wait(60)  # the lock gone, the run's final status is stored and the process ends
    finally:
        _end(proc)
    with Workspace(sqlite_ws.path) as ws2:
        run = Run.get(ws2, run_id)
        assert run.get_metric_series("loss")[0].steps.tolist() == list(range(n + 1))
        assert run.get_status().value == "Completed"
    assert not list(_journal_dir.rglob("*.batch"))


def test_sigkill_mid_write_leaves_a_journal_that_expboard_journal_replays_cleanly(
    sqlite_ws: Workspace, tmp_path: Path, _journal_dir: Path
) -> None:
    proc, run_id = _child(sqlite_ws, 20_000, "loop")
    try:
        with SqliteLock(tmp_path / "expboard.db"):
            assert proc.stdin is not None
            proc.stdin.write("\n")
            proc.stdin.flush()
            deadline = time.monotonic() + 60
            while len(list(_journal_dir.rglob("*.batch"))) < 6 and time.monotonic() < deadline:
                time.sleep(0.02)
            proc.send_signal(signal.SIGKILL)  # while it spills: a record may be half-written
            proc.wait(30)
    finally:
        _end(proc)
    records = sorted(_journal_dir.rglob("*.batch"))
    assert len(records) >= 6
    journaled = []
    for p in records:
        journaled += decode_batch(p.read_bytes())[1][0]["steps"].tolist()  # every record is whole
    (folder,) = {p.parent for p in records}
    (folder / "000000000001.batch.tmp").write_bytes(b"EXPB\x01half")  # what a kill mid-write leaves
    (folder / "999999999999.batch").write_bytes(b"not a batch")  # a record damaged by hand
    done = subprocess.run(
        [sys.executable, "-m", "expboard", "journal", "--wait", "60"],
        cwd=sqlite_ws.path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "journaled metric batch(es)" in done.stdout and "written" in done.stdout
    assert "cannot be read" in done.stderr  # the damaged record is set aside, said so, and the rest written
    steps = Run.get(sqlite_ws, run_id).get_metric_series("loss")[0].steps.tolist()
    assert len(steps) == len(set(steps))  # none twice
    assert sorted(steps) == steps  # in order
    assert set(journaled) <= set(steps)  # every journaled point stored
    assert list(_journal_dir.glob("*/corrupt/*"))  # set aside, not deleted
    assert not list(_journal_dir.rglob("*.tmp"))


def test_journal_records_are_whole_or_absent_and_oldest_first(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j", max_bytes=100)
    a, b = j.append([b"a" * 40, b"b" * 40])
    with pytest.raises(StoreUnavailableError, match="full"):
        j.append([b"c" * 40])
    assert j.paths() == [a, b] and j.nbytes == 80
    (p1, p2) = j.replace(a, [b"a1", b"a2"])
    assert j.paths() == [p1, p2, b] and sorted(j.folder.iterdir()) == [p1, p2, b]
    j.remove(p1)
    assert [p.read_bytes() for p in j.paths()] == [b"a2", b"b" * 40]
    # a journal of an ended process is taken over whole by one process, oldest first
    dead = tmp_path / "j" / "999999999-0000000000001-deadbeef"
    dead.mkdir()
    (dead / "000000000001.batch").write_bytes(b"old")
    (dead / "000000000002.batch.tmp").write_bytes(b"half")
    j2 = Journal(tmp_path / "j", max_bytes=100)
    j2.adopt()
    assert [p.read_bytes() for p in j2.paths()] == [b"old"]
    assert not list(tmp_path.rglob("*.tmp"))
    assert Journal(tmp_path / "j", max_bytes=100).adopt() == []  # j2 is alive: its folder stays its own


def test_run_log_never_waits_for_a_tracking_server_that_is_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from expboard.server.process import ServerProcess

    with ServerProcess(f"sqlite:///{tmp_path / 'server.db'}", tmp_path / "artifacts") as server:
        ws = Workspace(tracking_uri=server.url)
        try:
            run = Experiment(ws, "outage").start_logging()
            run.log("loss", 0.0)
            run.flush()
            _small(run._buf, monkeypatch)
            server.stop(kill=True)
            restarted = threading.Timer(2.0, server.start)  # down for longer than the 2 s the store retries
            restarted.start()
            worst, i, t_end = 0.0, 0, time.monotonic() + 3.0
            while time.monotonic() < t_end:  # through the outage and the restart
                worst = max(worst, _log_timed(run, "loss", i + 1, 1_000))
                i += 1_000
                time.sleep(0.005)
            restarted.join()
            assert worst < BOUND_S, f"run.log took {worst:.3f} s while the server was down"
            run.flush(timeout=60)
            steps = run.get_metric_series("loss")[0].steps
            assert steps.tolist() == list(range(i + 1))
        finally:
            ws.close()
            state.release(ws.store)
        assert os.environ["EXPBOARD_SPOOL_DIR"]  # the server's spool lived in tmp_path


class _StoreCalls:
    """Which threads called these store methods (the logging thread must call none of them)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, store: object, names: list[str]) -> None:
        self.threads: list[str] = []
        self.names: list[str] = []
        for name in names:
            real = getattr(store, name)

            def wrapper(*args: object, _real: object = real, _name: str = name, **kwargs: object) -> object:
                self.threads.append(threading.current_thread().name)
                self.names.append(_name)
                return _real(*args, **kwargs)  # type: ignore[operator]

            monkeypatch.setattr(store, name, wrapper)


def _first_logs(run: Run) -> float:
    """The first calls to series stored by another process (default and given steps); the slowest's seconds."""
    worst = 0.0
    for name, value, step in [("loss", 3.0, None), ("loss", 9.0, 100), ("loss", 4.0, None), ("acc", 0.5, None)]:
        t = time.perf_counter()
        run.log(name, value, step)
        worst = max(worst, time.perf_counter() - t)
    run.log_list("curve", [7, 8])
    image = Path(os.environ["EXPBOARD_JOURNAL_DIR"]).parent / "plot.png"
    image.write_bytes(b"\x89PNG not really")
    t = time.perf_counter()
    run.log_image("plot", path=image)  # its file queues too
    return max(worst, time.perf_counter() - t)


def _logged_elsewhere(ws: Workspace) -> str:
    run = Experiment(ws, "resumed").start_logging()
    for i in range(3):
        run.log("loss", float(i))
    run.log("acc", 0.1, step=7)  # one stored point: the next default step is 1
    run.log_list("curve", [1, 2, 3])
    run.flush()
    return run.id


def _check_resumed(run: Run) -> None:
    series = {s.name: s for s in run.get_metric_series()}
    assert series["loss"].steps.tolist() == [0, 1, 2, 3, 100, 5]  # as one process logging them all would
    assert series["loss"].values.tolist() == [0.0, 1.0, 2.0, 3.0, 9.0, 4.0]
    assert series["acc"].steps.tolist() == [7, 1]
    assert run.get_metrics("curve")["curve"] == [1, 2, 3, 7, 8]
    (name,) = series["plot"].values
    assert run.store.read_file(run.id, name) == b"\x89PNG not really"


def test_first_log_to_a_series_stored_elsewhere_never_waits_for_a_locked_sqlite(
    sqlite_ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = _logged_elsewhere(sqlite_ws)
    with Workspace(sqlite_ws.path) as other:  # a second store and buffer, as in another process
        again = Run.get(other, run_id)
        calls = _StoreCalls(monkeypatch, other.store, ["count_metric_points", "get_metrics", "log_metrics"])
        with SqliteLock(tmp_path / "expboard.db") as lock:
            worst = _first_logs(again)
            in_logging_thread = [t for t in calls.threads if t == threading.current_thread().name]
            lock.release()
        assert worst < BOUND_S, f"a first run.log took {worst:.3f} s while the store was locked"
        assert in_logging_thread == []  # the stored count is read by the writer, never by run.log
        again.flush()
        assert "count_metric_points" in calls.names and "get_metrics" not in calls.names
        _check_resumed(again)


def test_first_log_to_a_series_stored_elsewhere_never_waits_for_a_server_that_is_down(tmp_path: Path) -> None:
    from expboard.server.process import ServerProcess

    with ServerProcess(f"sqlite:///{tmp_path / 'server.db'}", tmp_path / "artifacts") as server:
        ws = Workspace(tracking_uri=server.url)
        other = Workspace(tracking_uri=server.url)
        try:
            run_id = _logged_elsewhere(ws)
            again = Run.get(other, run_id)
            server.stop(kill=True)
            worst = _first_logs(again)
            assert worst < BOUND_S, f"a first run.log took {worst:.3f} s while the server was down"
            t = time.monotonic()
            again.complete()  # gives up once a try has failed (not after FINISH_WAIT_S), the status kept
            took = time.monotonic() - t
            assert again.record.status.value == "Completed"
            server.start()
            again.flush(timeout=60)
            _check_resumed(again)
            assert Run.get(ws, run_id).get_status().value == "Completed"
            assert took < run_module.FINISH_WAIT_S, f"complete() took {took:.1f} s with the server down"
        finally:
            for w in (ws, other):
                w.close()


def test_a_run_with_outputs_ends_soon_with_the_server_down_and_keeps_the_files(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from expboard.server.process import ServerProcess

    caplog.set_level(logging.WARNING, "expboard")
    outputs = tmp_path / "outputs"
    (outputs / "model").mkdir(parents=True)
    for i in range(3):
        (outputs / "model" / f"part{i}.bin").write_bytes(bytes([i]) * 1000)
    with ServerProcess(f"sqlite:///{tmp_path / 'server.db'}", tmp_path / "artifacts") as server:
        ws = Workspace(tracking_uri=server.url)
        try:
            run = Experiment(ws, "outputs").start_logging(outputs=outputs)
            run.log("loss", 0.5)
            server.stop(kill=True)
            t = time.monotonic()
            run.complete()  # before: 30 s per file, then raised
            took = time.monotonic() - t
            warned = [r.getMessage() for r in caplog.records if "outputs folder" in r.getMessage()]
            assert len(warned) == 1 and str(outputs) in warned[0] and ".upload_folder('outputs'" in warned[0]
            assert sorted(p.name for p in (outputs / "model").iterdir()) == ["part0.bin", "part1.bin", "part2.bin"]
            server.start()
            ws.store.flush(timeout=60)
            again = Run.get(ws, run.id)
            again.upload_folder("outputs", outputs)  # as the warning says
            assert again.get_status().value == "Completed" and again.get_metrics()["loss"] == 0.5
            assert sorted(n for n in again.get_file_names() if n.startswith("outputs/")) == [
                f"outputs/model/part{i}.bin" for i in range(3)
            ]
            assert took < 15, f"complete() took {took:.1f} s with the server down"  # 4.4 s here, 90 s before
        finally:
            ws.close()


_END_CHILD = textwrap.dedent(
    """
    import sys, time
    from expboard import Experiment, Run, Workspace
    from expboard import run as run_module
    run_module.FINISH_WAIT_S = 1.0
    ws = Workspace(sys.argv[1])
    fetched = Run.get(ws, sys.argv[2])  # made by another process: its default steps go on from the stored ones
    failing = Experiment(ws, "ends").start_logging()
    left = Experiment(ws, "ends").start_logging()  # left running: the interpreter's exit completes it
    fetched._buf.close_wait_s = 1.0
    print(failing.id, left.id, flush=True)
    sys.stdin.readline()  # the store is locked now
    for i in range(1_000):
        fetched.log("loss", float(i))
        left.log("x", float(i))
    t = time.perf_counter()
    fetched.complete()
    try:
        with failing:
            failing.log("x", 1.0)
            raise ValueError("boom")
    except ValueError:
        pass
    print(f"ended {time.perf_counter() - t:.3f}", flush=True)
    """
)


def test_run_ends_with_the_store_locked_in_bounded_time_and_nothing_is_lost(
    sqlite_ws: Workspace, tmp_path: Path, _journal_dir: Path
) -> None:
    run_id = _logged_elsewhere(sqlite_ws)
    proc = subprocess.Popen(
        [sys.executable, "-c", _END_CHILD, str(sqlite_ws.path), run_id],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        failing_id, left_id = proc.stdout.readline().split()
        with SqliteLock(tmp_path / "expboard.db"):
            t = time.monotonic()
            proc.stdin.write("\n")
            proc.stdin.flush()
            ended = proc.stdout.readline()
            # complete() and the with block's fail() each wait 1 s (FINISH_WAIT_S, 10 s by default), no more
            assert ended.startswith("ended") and float(ended.split()[1]) < 2 + 2 * BOUND_S, ended
            proc.wait(60)
            exited = time.monotonic() - t  # the exit gives the store close_wait_s (1 s here, 30 s by default)
            err = proc.stderr.read()
            assert "kept in the journal" in err and "expboard journal" in err, err
            assert len(list(_journal_dir.rglob("*.status"))) == 3  # the final statuses, and the points
            assert list(_journal_dir.rglob("*.batch"))
        assert exited < 20, f"the process took {exited:.1f} s to end with the store locked"
    finally:
        _end(proc)
    with Workspace(sqlite_ws.path) as ws2:  # takes the journal over and writes it, points first
        fetched, failing, left = (Run.get(ws2, i) for i in (run_id, failing_id, left_id))
        assert fetched.get_metric_series("loss")[0].steps.tolist() == list(range(1_003))
        assert fetched.get_status().value == "Completed"
        assert failing.get_status().value == "Failed" and "boom" in failing.get_details()["error"]["message"]
        assert left.get_metrics("x")["x"] == [float(i) for i in range(1_000)]
        assert left.get_status().value == "Completed"
    assert not list(_journal_dir.rglob("*.status")) and not list(_journal_dir.rglob("*.batch"))


class CuttableProxy:
    """A TCP proxy on 127.0.0.1 in front of the shared PostgreSQL: :meth:`cut` closes every connection through
    it and closes new ones at once (PostgreSQL gone, as a client sees it), :meth:`restore` lets them through."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.up = True
        self.lock = threading.Lock()
        self.sockets: list[socket.socket] = []
        self.threads = [threading.Thread(target=self._accept, name="test-proxy", daemon=True)]
        self.threads[0].start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.up:
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self.lock:
                self.sockets += [client, upstream]
                for a, b in ((client, upstream), (upstream, client)):
                    t = threading.Thread(target=self._pipe, args=(a, b), name="test-proxy-pipe", daemon=True)
                    self.threads.append(t)
                    t.start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        self.up = False
        with self.lock:
            for s in self.sockets:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def restore(self) -> None:
        self.up = True

    def close(self) -> None:
        self.cut()
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread (close alone does not)
        except OSError:
            pass
        self.listener.close()
        for t in self.threads:
            t.join(10)
        with self.lock:
            for s in self.sockets:
                s.close()


def test_run_log_never_waits_for_a_postgresql_that_goes_away_and_comes_back(
    local_postgres: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = CuttableProxy(local_postgres.port)
    uri = local_postgres.create_database().replace(f":{local_postgres.port}/", f":{proxy.port}/")
    ws = Workspace.init(tmp_path / "pg", tracking_uri=uri)
    try:
        run = Experiment(ws, "pg-outage").start_logging()
        run.log("loss", 0.0)
        run.flush()
        _small(run._buf, monkeypatch)
        proxy.cut()  # mid-logging: the writer's connection breaks, and reconnecting fails
        worst, i, t_end = 0.0, 0, time.monotonic() + 1.5
        while time.monotonic() < t_end or i < 3 * run._buf.max_pending:
            worst = max(worst, _log_timed(run, "loss", i + 1, 1_000))
            i += 1_000
            time.sleep(0.01)  # about 100,000 points a second: few enough to write back quickly
        deadline = time.monotonic() + 30
        while not run._buf.journaled and time.monotonic() < deadline:
            time.sleep(0.05)
        assert run._buf.journaled > 0  # past the memory bound: the journal has them
        proxy.restore()
        assert worst < BOUND_S, f"run.log took {worst:.3f} s while PostgreSQL was away"
        run.flush()  # the writer connects again
        steps = run.get_metric_series("loss")[0].steps
        assert steps.tolist() == list(range(i + 1))  # every point once, in order
        run.complete()
        assert run.get_status().value == "Completed"
    finally:
        proxy.restore()
        ws.close()
        proxy.close()


def test_journaled_relative_steps_count_from_the_number_read_once(
    sqlite_ws: Workspace, monkeypatch: pytest.MonkeyPatch, _journal_dir: Path
) -> None:
    first = Experiment(sqlite_ws, "resumed").start_logging()
    for i in range(3):
        first.log("loss", float(i))
    first.flush()
    other = Workspace(sqlite_ws.path)  # a second store and buffer, as in another process
    run = Run.get(other, first.id)
    buf = run._buf
    _small(buf, monkeypatch, max_pending=2_000)

    def down(*args: object, **kwargs: object) -> None:
        raise StoreUnavailableError("the store is down")

    real_count = other.store.count_metric_points
    monkeypatch.setattr(other.store, "count_metric_points", down)
    monkeypatch.setattr(other.store, "log_metrics", down)
    _log_timed(run, "loss", 0, 10_000)  # default steps 0.. relative to a count nobody knows yet
    deadline = time.monotonic() + 30
    while buf.journaled < 5_000 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert buf.journaled >= 5_000
    monkeypatch.setattr(other.store, "count_metric_points", real_count)  # the count answers, writes do not
    with pytest.raises(StoreUnavailableError):
        buf.flush()
    with pytest.raises(StoreUnavailableError, match="kept in the journal"):
        state.release(other.store, timeout=0.2)
    other.store.close()
    (folder,) = [p for p in _journal_dir.glob("*/*") if p.is_dir()]
    assert (folder / "counts.json").is_file()  # kept before any point was written
    folder.rename(folder.with_name("999999999-0000000000001-deadbeef"))  # what a process that ended leaves
    first.log("loss", 99.0, step=1_000)  # stored meanwhile: a count read now would be 4
    first.flush()
    with Workspace(sqlite_ws.path) as ws3:
        steps = Run.get(ws3, first.id).get_metric_series("loss")[0].steps.tolist()
    assert steps == [0, 1, 2, 1_000, *range(3, 10_003)]
    assert not list(_journal_dir.rglob("*.batch")) and not list(_journal_dir.rglob("counts.json"))
