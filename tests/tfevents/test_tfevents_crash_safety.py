"""SummaryWriter's queue semantics and crash safety, checked with real processes killed by SIGKILL and read
back with TensorBoard's own loader; reopening after close; file names of concurrent writers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator as ea

from expboard.tfevents import SummaryWriter, event_files, read_scalars


def tb_steps(logdir: Path, tag: str) -> list[int]:
    """Steps of ``tag`` as TensorBoard's Python loader reads them (a cut-off last record is skipped)."""
    acc = ea.EventAccumulator(str(logdir), size_guidance={ea.SCALARS: 0})
    acc.Reload()
    return [e.step for e in acc.Scalars(tag)] if tag in acc.Tags()["scalars"] else []


def start_child(code: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, stdout=subprocess.PIPE, text=True)


def kill_when_ready(proc: subprocess.Popen[str], after: float = 0.0) -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "ready", line
    if after:
        time.sleep(after)
    proc.send_signal(signal.SIGKILL)
    proc.stdout.close()
    assert proc.wait(timeout=30) == -signal.SIGKILL


@pytest.mark.parametrize("n", [1000, 333])
def test_sigkill_loses_at_most_max_queue_events(tmp_path: Path, n: int) -> None:
    # a training loop: one add_scalar per step, then the process is killed at once, with no flush or close
    proc = start_child(
        f"""
        import time
        from expboard import SummaryWriter
        w = SummaryWriter("logs")  # torch's defaults: max_queue=10, flush_secs=120
        for i in range({n}):
            w.add_scalar("loss", 1.0 / (i + 1), i)
            time.sleep(0.003)
        print("ready", flush=True)
        time.sleep(600)
        """,
        tmp_path,
    )
    kill_when_ready(proc)
    steps = tb_steps(tmp_path / "logs", "loss")
    assert steps == list(range(len(steps)))
    assert len(steps) >= n - 10, f"{n - len(steps)} of {n} points lost"


def test_sigkill_after_a_burst_loses_nothing_older_than_a_second(tmp_path: Path) -> None:
    # a burst far faster than max_queue allows to write one by one, then a long step: the burst is on disk
    # about a second later even though the writer is never flushed
    proc = start_child(
        """
        from expboard import SummaryWriter
        w = SummaryWriter("logs")
        for i in range(50_000):
            w.add_scalar("loss", i * 0.5, i)
        w.add_text("note", "after the burst", 1)
        print("ready", flush=True)
        import time
        time.sleep(600)
        """,
        tmp_path,
    )
    kill_when_ready(proc, after=1.5)
    assert tb_steps(tmp_path / "logs", "loss") == list(range(50_000))
    acc = ea.EventAccumulator(str(tmp_path / "logs"), size_guidance={ea.TENSORS: 0})
    acc.Reload()
    assert "note/text_summary" in acc.Tags()["tensors"]


def test_events_reach_the_file_within_a_second_without_flush(tmp_path: Path) -> None:
    w = SummaryWriter(tmp_path, flush_secs=120)
    try:
        w.add_scalar("a", 1.0, 1)  # one event: below max_queue, so only the timer writes it
        t0 = time.monotonic()
        while not tb_steps(tmp_path, "a") and time.monotonic() - t0 < 20:
            time.sleep(0.05)
        assert tb_steps(tmp_path, "a") == [1]
        # about a second; generous bound for a loaded machine
        assert time.monotonic() - t0 < 5
    finally:
        w.close()


def test_max_queue_events_are_written_at_once(tmp_path: Path) -> None:
    w = SummaryWriter(tmp_path, max_queue=5, flush_secs=3600)
    try:
        for i in range(5):
            time.sleep(0.005)
            w.add_scalar("a", float(i), i)
        # no sleep, no flush: the fifth event wrote the queue from the calling thread
        assert read_scalars(tmp_path)["a"].steps.tolist() == [0, 1, 2, 3, 4]
        w.add_histogram("h", np.array([1.0, 2.0]), 1)
        w.add_text("t", "x", 1)
        assert "a" in read_scalars(tmp_path)  # still readable, nothing half-written
    finally:
        w.close()


def test_write_after_close_reopens_a_new_file_like_torch(tmp_path: Path) -> None:
    w = SummaryWriter(tmp_path)
    w.add_scalar("a", 1.0, 1)
    first = w.file_path
    w.close()
    assert w.file_writer is None and w.all_writers is None
    w.add_scalar("a", 2.0, 2)  # torch opens a new event file here
    w.add_text("t", "hello", 2)
    w.add_scalars("g", {"x": 1.0}, 2)
    assert w.file_writer is not None and w.file_path != first
    w.close()
    w.close()  # idempotent
    files = event_files(tmp_path)
    assert len(files) == 2 and files[0] == first
    assert tb_steps(tmp_path, "a") == [1, 2]  # TensorBoard reads the files in name order
    assert read_scalars(tmp_path / "g_x")["g"].values.tolist() == [1.0]


def test_concurrent_writers_never_share_a_file(tmp_path: Path) -> None:
    # two processes with the same host name and pid (as in containers), opening writers in the same second
    # in the same folder: torch's naming scheme gives both the same file name
    code = """
        import os, socket, sys, time
        os.getpid = lambda: 1
        socket.gethostname = lambda: "container"
        from expboard import SummaryWriter
        time.sleep(max(0.0, float(sys.argv[1]) - time.time()))
        w = SummaryWriter("logs")
        for i in range(100):
            w.add_scalar(sys.argv[2], float(i), i)
        w.close()
        print(w.file_path.name, flush=True)
    """
    start_at = str(int(time.time()) + 3)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code), start_at, tag],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            text=True,
        )
        for tag in ("a", "b")
    ]
    names = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert len(set(names)) == 2, names
    assert sorted(os.listdir(tmp_path / "logs")) == sorted(names)
    for name, tag in zip(names, ("a", "b"), strict=True):
        got = read_scalars(tmp_path / "logs" / name)
        assert list(got) == [tag] and got[tag].steps.tolist() == list(range(100))


def test_many_writers_in_one_second_get_sorted_distinct_names(tmp_path: Path) -> None:
    writers = [SummaryWriter(tmp_path) for _ in range(20)]
    names = [w.file_path.name for w in writers]
    for w in writers:
        w.close()
    assert len(set(names)) == 20 and names == sorted(names)
