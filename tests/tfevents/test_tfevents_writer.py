"""EventFileWriter / SummaryWriter lifecycle: names, flushing, exit, ordering, duck typing."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from expboard.tfevents import (
    EventFileReader,
    EventFileWriter,
    SummaryWriter,
    encode_scalars,
    read_scalars,
    write_event_file,
)

NAME = re.compile(r"^events\.out\.tfevents\.\d{10}\.[^.]+(\.[^.]+)*\.\d+\.\d{6}(\.suffix)?$")


def test_file_names_unique_and_sorted(tmp_path: Path) -> None:
    writers = [EventFileWriter(tmp_path, flush_secs=0) for _ in range(12)]
    names = [w.path.name for w in writers]
    for w in writers:
        w.close()
    assert len(set(names)) == 12 and names == sorted(names)
    assert all(NAME.match(n) for n in names)
    with EventFileWriter(tmp_path, filename_suffix=".suffix", flush_secs=0) as w:
        assert w.path.name.endswith(".suffix") and NAME.match(w.path.name)


def test_flush_thread_writes_without_explicit_flush(tmp_path: Path) -> None:
    w = EventFileWriter(tmp_path, flush_secs=0.05)
    w.add_scalar("a", 1.0, 1)
    deadline = time.time() + 5
    while time.time() < deadline and "a" not in read_scalars(w.path):
        time.sleep(0.02)
    assert read_scalars(w.path)["a"].values.tolist() == [1.0]
    w.close()
    assert w.closed
    w.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        w.add_scalars_array("a", [2], [2.0])


def test_data_flushed_at_interpreter_exit(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from expboard.tfevents import SummaryWriter\n"
        f"w = SummaryWriter({str(tmp_path)!r}, flush_secs=3600)\n"
        "for i in range(1000): w.add_scalar('x', i, i)\n"
        "w.add_text('t', 'bye', 1)\n"
        "sys.exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    got = read_scalars(tmp_path)
    assert got["x"].steps.tolist() == list(range(1000))
    assert got["x"].values.tolist() == [float(i) for i in range(1000)]


def test_per_tag_order_kept_across_paths(tmp_path: Path) -> None:
    w = EventFileWriter(tmp_path, flush_secs=0, max_pending=7)  # drains often
    expected: list[int] = []
    for i in range(100):
        if i % 10 == 0:
            w.add_scalars_array("a", [1000 + i], [0.0])
            expected.append(1000 + i)
        w.add_scalar("a", float(i), i)
        w.add_scalar("b", float(i), i)
        expected.append(i)
    w.close()
    got = read_scalars(w.path)
    assert got["a"].steps.tolist() == expected
    assert got["b"].steps.tolist() == list(range(100))


def test_summary_writer_defaults_and_duck_typing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    torch = pytest.importorskip("torch")
    with SummaryWriter(comment="_c") as w:
        logdir = Path(w.get_logdir())
        w.add_scalar("t", torch.tensor(1.5), torch.tensor(3))
        w.add_scalar("np", np.float32(2.5), np.int64(4))
        w.add_scalar("none", 7)
        w.add_histogram("h", torch.randn(50, requires_grad=True), 1)
        w.add_image("i", torch.rand(3, 4, 4), 1)
    assert logdir.parent == Path("runs") and logdir.name.endswith("_c")
    got = read_scalars(logdir)
    assert (got["t"].steps.tolist(), got["t"].values.tolist()) == ([3], [1.5])
    assert (got["np"].steps.tolist(), got["np"].values.tolist()) == ([4], [2.5])
    assert got["none"].steps.tolist() == [0]


def test_purge_step_writes_session_start(tmp_path: Path) -> None:
    with SummaryWriter(tmp_path, purge_step=5) as w:
        w.add_scalar("a", 1.0, 5)
    events = list(EventFileReader(w.file_path).events())
    assert events[1].session_log_status == 1 and events[1].step == 5


def test_write_event_file_writes_a_whole_file_tensorboard_reads(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from tensorboard.backend.event_processing import event_file_loader

    def write(i: int) -> Path:
        records = [encode_scalars("loss", np.arange(10), 1.7e9 + i, np.arange(10) * float(i))]
        return write_event_file(tmp_path / "logs" / f"run{i}", records, ".x")  # the folder is created

    with ThreadPoolExecutor(8) as pool:
        paths = list(pool.map(write, range(16)))
    assert len(set(paths)) == 16 and all(
        p.name.endswith(".x") and p.parent.name == f"run{i}" for i, p in enumerate(paths)
    )
    events = list(event_file_loader.EventFileLoader(str(paths[3])).Load())
    assert events[0].file_version == "brain.Event:2"
    assert [(e.step, e.summary.value[0].tensor.float_val[0]) for e in events[1:]] == [(s, 3.0 * s) for s in range(10)]
