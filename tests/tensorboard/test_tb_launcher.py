"""Tensorboard against a real TensorBoard process, queried over its HTTP API."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tbhelpers import (
    ALPHAS,
    event_records,
    get_json,
    make_sweep,
    post_json,
    ridge_mse,
    scalars,
    session_groups,
    wait_for,
)

from expboard import Experiment, Run, Workspace
from expboard.tensorboard import PortInUseError, Tensorboard, TensorboardError
from expboard.tensorboard import launcher as launcher_module
from expboard.tensorboard.export import export_to_tensorboard, run_folder_name


def _group_pids(pid: int) -> list[int]:
    """Processes in TensorBoard's process group (itself and the Rust data server)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[2]) == pid and fields[0] != "Z":  # pgrp
                out.append(int(entry))
    return out


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


# --------------------------------------------------------------------------------------------- Option 2
@pytest.fixture(scope="module", params=["true", "false"], ids=["rust-loader", "python-loader"])
def sweep(
    request: pytest.FixtureRequest, module_ws: Workspace, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    root_run = make_sweep(module_ws, f"sweep-{request.param}")
    logdir = tmp_path_factory.mktemp("exportedTBlogs")
    result = export_to_tensorboard(root_run, logdir, hparams=["alpha"])
    tb = Tensorboard([], local_root=logdir, port=0, load_fast=request.param)
    url = tb.start()
    yield tb, url, root_run, result
    tb.stop()


def test_sweep_runs_tags_and_values(sweep: Any) -> None:
    tb, url, root_run, result = sweep
    assert url.startswith("http://127.0.0.1:") and url.endswith("/")
    assert tb.start() == url  # a second start() is the same instance
    expected = ridge_mse()
    children = {c.id: c for c in root_run.get_children()}
    names = {str(result.run_dirs[cid].relative_to(result.logdir)): c for cid, c in children.items()}
    runs = wait_for(lambda: set(names) <= set(get_json(f"{url}data/runs")) and get_json(f"{url}data/runs"))
    assert set(names) <= set(runs)
    tags = wait_for(lambda: (t := get_json(f"{url}data/plugin/scalars/tags")) and all(n in t for n in names) and t)
    for name, child in names.items():
        assert set(tags[name]) == {"alpha", "mse"}
        alpha = float(child.display_name[len("alpha") :])
        ((wall, step, value),) = scalars(url, name, "mse")
        assert step == 0
        assert value == pytest.approx(expected[alpha], rel=1e-6)
        assert wall == pytest.approx(child.get_metric_series("mse")[0].wall_times[0])


def test_sweep_hparams_sessions(sweep: Any) -> None:
    _, url, _, result = sweep
    expected = ridge_mse()
    groups = wait_for(lambda: len(session_groups(url).get("sessionGroups", [])) == len(ALPHAS) and session_groups(url))
    seen = {}
    for group in groups["sessionGroups"]:
        alpha = group["hparams"]["alpha"]
        (metric,) = group["metricValues"]
        assert metric["name"]["tag"] == "mse"
        seen[alpha] = metric["value"]
        assert group["sessions"][0]["status"] == "STATUS_SUCCESS"
    assert sorted(seen) == ALPHAS
    assert all(seen[a] == pytest.approx(expected[a], rel=1e-6) for a in ALPHAS)
    experiment = post_json(f"{url}data/plugin/hparams/experiment", {})
    assert [h["name"] for h in experiment["hparamInfos"]] == ["alpha"]
    assert [m["name"]["tag"] for m in experiment["metricInfos"]] == ["mse"]


# --------------------------------------------------------------------------------------------- live runs
LOG_FILE = "logs/events.out.tfevents.1700000000.trainer.1.0"


class Live:
    def __init__(self, ws: Workspace) -> None:
        exp = Experiment(ws, "tensorboard-demo")
        self.ws = ws
        self.growing = exp.start_logging(display_name="growing")
        self.replaced = exp.start_logging(display_name="replaced")
        self.metrics = exp.start_logging(display_name="metrics")
        self.offset = 0
        self.append(event_records("loss", [(0, 1.0), (1, 0.5)], header=True))
        ws.store.write_file(self.replaced.id, LOG_FILE, event_records("acc", [(0, 0.1), (1, 0.2)], header=True))
        self.metrics.log("acc", 0.25, step=0)
        self.metrics.flush()
        self.tb = Tensorboard([self.growing, self.replaced, self.metrics], port=0, poll_interval=0.3, mode="files")

    def append(self, data: bytes) -> None:
        self.ws.store.append_file(self.growing.id, LOG_FILE, data, self.offset)
        self.offset += len(data)

    def folder(self, run: Run) -> str:
        return run_folder_name(run.record)


@pytest.fixture(scope="module")
def live(module_ws: Workspace) -> Iterator[Live]:
    state = Live(module_ws)
    state.url = state.tb.start()  # type: ignore[attr-defined]
    yield state
    state.tb.stop()


def test_growing_logs_file_shows_new_steps_without_restart(live: Live) -> None:
    url, run = live.url, live.folder(live.growing)  # type: ignore[attr-defined]
    assert wait_for(lambda: [p[1] for p in scalars(url, run, "loss")] == [0, 1])
    pid = live.tb.pid
    # a record split over two appends: TensorBoard waits for its second half
    record = event_records("loss", [(2, 0.25)])
    live.append(record[:10])
    time.sleep(1.5)
    live.append(record[10:] + event_records("loss", [(3, 0.125)]))
    points = wait_for(lambda: (p := scalars(url, run, "loss")) and len(p) == 4 and p)
    assert [p[1] for p in points] == [0, 1, 2, 3]
    assert [p[2] for p in points] == [1.0, 0.5, 0.25, 0.125]
    assert points[3][0] == pytest.approx(1_700_000_003.0)
    assert live.tb.pid == pid


def test_replaced_file_is_copied_again(live: Live) -> None:
    url, run = live.url, live.folder(live.replaced)  # type: ignore[attr-defined]
    assert wait_for(lambda: [p[2] for p in scalars(url, run, "acc")] == pytest.approx([0.1, 0.2]))
    # replaced by a new file (as rsync or a restarted script would do), shorter than before
    live.ws.store.write_file(
        live.replaced.id, LOG_FILE, event_records("acc", [(0, 0.9)], wall=1_800_000_000.0, header=True)
    )
    wait_for(lambda: [p[2] for p in scalars(url, run, "acc")] == pytest.approx([0.9]))


def test_logged_metrics_are_live(live: Live) -> None:
    url = live.url  # type: ignore[attr-defined]
    run = f"{live.folder(live.metrics)}/run_history"
    assert wait_for(lambda: [p[1:] for p in scalars(url, run, "acc")] == [(0, 0.25)])
    for step in (1, 2, 3):
        live.metrics.log("acc", 0.25 + step / 10, step=step)
    live.metrics.log("note", "epoch done")
    live.metrics.flush()
    points = wait_for(lambda: (p := scalars(url, run, "acc")) and len(p) == 4 and p)
    assert [p[1] for p in points] == [0, 1, 2, 3]
    assert [p[2] for p in points] == pytest.approx([0.25, 0.35, 0.45, 0.55])
    # a child run started while TensorBoard runs appears nested in its parent's folder
    with live.metrics.child_run("fold1") as child:
        child.log("loss", 0.5)
    child_run = f"{live.folder(live.metrics)}/{run_folder_name(child.record)}/run_history"
    assert wait_for(lambda: [p[1:] for p in scalars(url, child_run, "loss")] == [(0, 0.5)])
    # points logged just before the run ends are shown by the poll after its end
    live.metrics.log("acc", 0.9, step=4)
    live.metrics.complete()
    assert wait_for(lambda: len(scalars(url, run, "acc")) == 5)
    sync = live.tb.sync
    assert sync is not None
    wait_for(lambda: sync.runs[live.metrics.id].done)


# --------------------------------------------------------------------------------------------- lifecycle
def test_busy_port_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        tb = Tensorboard([], local_root=tmp_path, port=port)
        with pytest.raises(PortInUseError, match=f"port {port} is already in use"):
            tb.start()
        assert tb.process is None


def test_tensorboards_own_port_complaint_is_detected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        monkeypatch.setattr(launcher_module, "port_is_free", lambda port, host="127.0.0.1": True)
        tb = Tensorboard([], local_root=tmp_path, port=port)
        with pytest.raises(PortInUseError, match=f"{port}"):
            tb.start()
        assert tb.process is None


def test_early_exit_raises_with_its_output(tmp_path: Path) -> None:
    tb = Tensorboard([], local_root=tmp_path, port=0, extra_args=["--no_such_flag"])
    with pytest.raises(TensorboardError, match="no_such_flag"):
        tb.start()
    assert tb.process is None


def test_stop_leaves_no_process_and_is_idempotent(module_ws: Workspace) -> None:
    run = Experiment(module_ws, "stop-test").start_logging()
    run.log("x", 1.0)
    with Tensorboard([run], port=0, mode="files") as tb:
        url = tb.start()
        root = tb.local_root
        assert root is not None and root.is_dir()
        pid = tb.pid
        assert pid is not None
        wait_for(lambda: len(_group_pids(pid)) >= 2)  # TensorBoard and its data server
        pids = _group_pids(pid)
        sync_thread = tb.sync._thread if tb.sync is not None else None
        assert sync_thread is not None and sync_thread.is_alive()
        assert get_json(f"{url}data/runs") is not None
    assert all(_gone(p) for p in pids)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not sync_thread.is_alive()
    assert not root.exists()  # the temporary mirror is removed
    tb.stop()  # idempotent
    run.complete()


def test_stopped_at_interpreter_exit(tmp_path: Path) -> None:
    code = textwrap.dedent(
        f"""
        from expboard.tensorboard import Tensorboard
        tb = Tensorboard([], local_root={str(tmp_path)!r}, port=0)
        tb.start()
        print(tb.pid, flush=True)
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXPBOARD_")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    pid = int(proc.stdout.split()[-1])
    assert _gone(pid)
