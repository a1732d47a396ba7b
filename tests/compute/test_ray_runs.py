"""Script runs on a real local Ray cluster (head + worker node), the workspace on a tracking server on
PostgreSQL: live scalars in a real TensorBoard, cancel, a failing script, the agent killed, a node lost,
a two-node torch.distributed run, and a run waiting for resources."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from compute_helpers import alive, read, wait_until
from ray_helpers import roomier_heartbeat  # noqa: F401  (autouse)

from expboard import Experiment, Run, RunStatus, Workspace
from expboard.compute import ComputeTarget, PyTorchConfiguration, RayCompute, ScriptRunConfig
from expboard.compute.ray import RayJobsClient, current_job_id
from expboard.compute.ray_local import LocalRayCluster

sys.path.insert(0, str(Path(__file__).parent.parent / "tensorboard"))
from tbhelpers import get_json, scalars, wait_for  # type: ignore[import-not-found]

from expboard.tensorboard import Tensorboard

# Loops until the run gets the tag "stop" (so the test decides when it ends), writing TensorBoard scalars.
TRAIN_UNTIL_STOPPED = """
    import os, subprocess, sys, time
    from expboard import Run, SummaryWriter
    run = Run.get_context()
    child = subprocess.Popen(["sleep", "300"])
    run.tag("child_pid", str(child.pid))
    print("started on", os.environ.get("EXPBOARD_RAY_NODE_ID"), "rank", os.environ.get("RANK"), flush=True)
    writer = SummaryWriter("logs")
    step = 0
    while "stop" not in run.get_tags() and step < 1500:
        writer.add_scalar("loss", 1.0 / (step + 1), step)
        writer.flush()
        step += 1
        time.sleep(0.2)
    writer.close()
    child.kill()
    os.makedirs("outputs", exist_ok=True)
    with open("outputs/steps.txt", "w") as f:
        f.write(str(step))
    print("steps", step)
"""

# Each rank: an all_reduce, then TensorBoard scalars until its run gets the tag "stop" (the test decides).
TORCH_DISTRIBUTED = """
    import os, time
    import torch
    import torch.distributed as dist
    from expboard import Run, SummaryWriter
    dist.init_process_group("gloo")  # env://: MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE
    rank, world = dist.get_rank(), dist.get_world_size()
    total = torch.tensor([float(rank + 1)])
    dist.all_reduce(total)
    print(f"rank {rank} of {world} local {os.environ['LOCAL_RANK']} sum {total.item():g} "
          f"node {os.environ['EXPBOARD_RAY_NODE_ID']}", flush=True)
    run = Run.get_context()
    writer = SummaryWriter("logs")
    step = 0
    while "stop" not in run.get_tags() and step < 1500:
        writer.add_scalar("loss", (rank + 1) / (step + 1), step)
        writer.flush()
        step += 1
        time.sleep(0.2)
    writer.close()
    dist.destroy_process_group()
"""


@pytest.fixture(scope="module")
def server_ws(
    local_postgres: Any, ray_cluster: LocalRayCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Workspace]:
    """A workspace on a tracking server on PostgreSQL, with the cluster attached as ``ray-cluster``."""
    from expboard.server.process import ServerProcess

    root = tmp_path_factory.mktemp("ray-server")
    with ServerProcess(local_postgres.create_database(), root / "artifacts") as server:
        ws = Workspace.init(root / "project", tracking_uri=server.url)
        ComputeTarget.attach(
            ws, "ray-cluster", RayCompute.attach_configuration(address=ray_cluster.address, python=sys.executable)
        )
        yield ws
        ws.close()


@pytest.fixture
def gone(server_ws: Workspace) -> Iterator[list[Run]]:
    """Runs a test started; at the end their agents, scripts and script children must all be gone."""
    runs: list[Run] = []
    yield runs
    pids = []
    for run in runs:
        for child in [run, *run.get_children()]:
            props, tags = child.get_properties(), child.get_tags()
            pids += [int(v) for k, v in props.items() if k in ("expboard.agent_pid", "expboard.script_pid")]
            pids += [int(tags["child_pid"])] if "child_pid" in tags else []
    deadline = time.monotonic() + 30
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [p for p in pids if alive(p)]
    for p in left:
        os.kill(p, signal.SIGKILL)
    assert not left, f"processes left running: {left}"


def _submit(ws: Workspace, src: Path, script: str = "train.py", **kwargs: Any) -> Run:
    kwargs.setdefault("compute_target", "ray-cluster")
    return Experiment(ws, "ray-runs").submit(ScriptRunConfig(src, script, **kwargs))


def _status(run: Run) -> RunStatus:
    return run.get_status()


def _job(ws: Workspace, run: Run) -> dict[str, Any]:
    target: RayCompute = ws.compute_targets["ray-cluster"]
    job_id = current_job_id(run.get_properties())
    assert job_id is not None
    return target.client.job(job_id)


def _agent_node(ws: Workspace, run: Run) -> str:
    """The Ray node the run's agent runs on: the job's driver node, or (when a queue driver started the
    agent in a placement group) the node the script reports."""

    def said() -> bool:
        return "system_logs/driver.log" in run.get_file_names() and b"started on" in read(run, "system_logs/driver.log")

    wait_until(said, timeout=60, what="the script's first line")
    reported = read(run, "system_logs/driver.log").decode().split("started on ", 1)[1].split()[0]
    return reported if reported != "None" else str(_job(ws, run)["driver_node_id"])


def _node_id(cluster: LocalRayCluster, resource: str) -> str:
    return next(str(n["node_id"]) for n in cluster.nodes() if resource in (n.get("resources_total") or {}))


def test_run_completes_off_the_head_with_scalars_live_in_tensorboard(
    server_ws: Workspace, ray_cluster: LocalRayCluster, project: Callable[..., Path], gone: list[Run]
) -> None:
    run = _submit(server_ws, project(**{"train.py": TRAIN_UNTIL_STOPPED}))
    gone.append(run)
    tb = Tensorboard([run], port=0, poll_interval=0.3)
    url = tb.start()
    try:

        def live_points() -> list[Any]:
            tags = get_json(f"{url}data/plugin/scalars/tags")
            names = [name for name, t in tags.items() if "loss" in t]
            return scalars(url, names[0], "loss") if names else []

        points = wait_for(lambda: len(p := live_points()) >= 3 and p, timeout=120)
        assert _status(run) == RunStatus.RUNNING  # seen while the script still trains
        assert [p[1] for p in points[:3]] == [0, 1, 2] and points[0][2] == 1.0
        run.tag("stop", "1")
        details = run.wait_for_completion(timeout=120)
    finally:
        tb.stop()
    assert details["status"] == "Completed" and details["target"] == "ray-cluster"
    steps = int(read(run, "outputs/steps.txt"))
    assert steps >= 3
    log = read(run, "system_logs/driver.log").decode()
    assert f"steps {steps}" in log
    # the run is Completed once the agent has stored everything; its Ray job ends when the agent exits
    wait_until(lambda: _job(server_ws, run)["status"] != "RUNNING", timeout=60, what="the Ray job to end")
    job = _job(server_ws, run)
    assert job["status"] == "SUCCEEDED"
    assert _agent_node(server_ws, run) == _node_id(ray_cluster, "worker0")  # not the head
    assert any(n.startswith("logs/events.out.tfevents.") for n in run.get_file_names())


def test_cancel_stops_the_job_and_every_process(
    server_ws: Workspace, project: Callable[..., Path], gone: list[Run]
) -> None:
    run = _submit(server_ws, project(**{"train.py": TRAIN_UNTIL_STOPPED}))
    gone.append(run)
    wait_until(lambda: "child_pid" in run.get_tags(), timeout=120, what="the script running")
    started = time.monotonic()
    run.cancel()
    details = run.wait_for_completion(timeout=60, raise_on_error=False)
    assert details["status"] == "Canceled"
    assert time.monotonic() - started < 30
    wait_until(lambda: _job(server_ws, run)["status"] in ("STOPPED", "SUCCEEDED"), timeout=60, what="the job ending")


def test_failing_script_is_failed_with_exit_code_and_stderr(
    server_ws: Workspace, project: Callable[..., Path], gone: list[Run]
) -> None:
    script = "import sys\nprint('starting')\nprint('CUDA out of patience', file=sys.stderr)\nsys.exit(3)\n"
    run = _submit(server_ws, project(**{"train.py": script}))
    gone.append(run)
    details = run.wait_for_completion(timeout=120, raise_on_error=False)
    assert details["status"] == "Failed"
    assert details["error"]["exitCode"] == 3 and "CUDA out of patience" in details["error"]["stderrTail"]
    assert "starting" in read(run, "system_logs/driver.log").decode()


SUBMIT_AND_EXIT = """
import sys
from expboard import Experiment, ScriptRunConfig, Workspace
ws = Workspace(sys.argv[1])
run = Experiment(ws, "ray-runs").submit(ScriptRunConfig(sys.argv[2], "train.py", compute_target="ray-cluster"))
print(run.id)
"""


def test_agent_killed_ends_the_run_failed_for_any_reader_without_the_submitter(
    server_ws: Workspace, project: Callable[..., Path], gone: list[Run]
) -> None:
    """The run is submitted by a process that exits at once, so nobody follows its Ray job; after the agent
    is killed -9, a fresh ``expboard runs list`` (and then Run.get(...).get_status()) sees it end Failed with
    Ray's reason, with no call on the Ray target."""
    src = project(**{"train.py": TRAIN_UNTIL_STOPPED})
    out = subprocess.run(
        [sys.executable, "-c", SUBMIT_AND_EXIT, str(server_ws.path), str(src)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    run = Run.get(server_ws, out.stdout.split()[-1])
    gone.append(run)
    wait_until(lambda: "child_pid" in run.get_tags(), timeout=120, what="the script running")
    os.kill(int(run.get_properties()["expboard.agent_pid"]), signal.SIGKILL)
    cli = [sys.executable, "-m", "expboard", "runs", "list", "--experiment", "ray-runs", "--json"]
    seen: set[str] = set()

    def listed_failed() -> bool:
        listed = subprocess.run(cli, cwd=server_ws.path, capture_output=True, text=True, timeout=60, check=True)
        status = next(r["status"] for r in json.loads(listed.stdout) if r["run_id"] == run.id)
        seen.add(status)
        return status == "Failed"

    wait_until(listed_failed, timeout=120, what="expboard runs list showing the run Failed")
    assert seen <= {"Running", "NotResponding", "Failed"}
    assert Run.get(server_ws, run.id).get_status() == RunStatus.FAILED
    error = run.get_details()["error"]
    assert error["code"] == "RayJobEnded" and "exit code" in error["message"], error


def test_a_node_lost_mid_run_fails_the_run_and_leaves_no_orphan(
    server_ws: Workspace, ray_cluster: LocalRayCluster, project: Callable[..., Path], gone: list[Run]
) -> None:
    ray_cluster.add_node("victim", cpus=1)
    ray_cluster.wait_for_nodes(3)
    run = _submit(server_ws, project(**{"train.py": TRAIN_UNTIL_STOPPED}), resources={"victim": 1})
    gone.append(run)
    wait_until(lambda: "child_pid" in run.get_tags(), timeout=120, what="the script running")
    assert _agent_node(server_ws, run) == _node_id(ray_cluster, "victim")
    script_pid = int(run.get_properties()["expboard.script_pid"])
    assert ray_cluster.kill_node("victim")
    wait_until(lambda: not alive(script_pid), timeout=30, what="the script ending with its node")
    seen: set[RunStatus] = set()

    def failed() -> bool:
        seen.add(status := _status(run))
        return status == RunStatus.FAILED

    wait_until(failed, timeout=120, what="the run Failed")
    assert seen <= {RunStatus.RUNNING, RunStatus.NOT_RESPONDING, RunStatus.FAILED}
    target = server_ws.compute_targets["ray-cluster"]
    wait_until(lambda: target.get_status().serialize()["nodesDead"] >= 1, timeout=120, what="Ray: the node dead")


def test_two_node_run_with_torch_distributed_every_rank_live_in_tensorboard(
    server_ws: Workspace, ray_cluster: LocalRayCluster, project: Callable[..., Path], gone: list[Run]
) -> None:
    run = _submit(server_ws, project(**{"train.py": TORCH_DISTRIBUTED}), distributed_job_config=PyTorchConfiguration(2))
    gone.append(run)
    tb = Tensorboard([run], port=0, poll_interval=0.3)
    url = tb.start()
    try:

        def loss_runs() -> list[str]:
            tags = get_json(f"{url}data/plugin/scalars/tags")
            return sorted(name for name, t in tags.items() if "loss" in t)

        names = wait_for(lambda: len(n := loss_runs()) == 2 and n, timeout=180)
        (rank1,) = run.get_children()
        # both ranks' scalars are in TensorBoard while both ranks still train
        assert run.get_status() == RunStatus.RUNNING and rank1.get_status() == RunStatus.RUNNING
        first = [scalars(url, name, "loss")[0][2] for name in names]
        assert sorted(first) == [1.0, 2.0]  # rank r logs (r + 1) / (step + 1): step 0 of each rank
        for r in (run, rank1):
            r.tag("stop")
        details = run.wait_for_completion(timeout=240, raise_on_error=False)
        assert details["status"] == "Completed", details.get("error")
        assert rank1.wait_for_completion(timeout=60, raise_on_error=False)["status"] == "Completed"
        logs = [read(r, "system_logs/driver.log").decode() for r in (run, rank1)]
        assert "rank 0 of 2 local 0 sum 3" in logs[0] and "rank 1 of 2 local 0 sum 3" in logs[1]
        nodes = {line.rsplit("node ", 1)[1].split()[0] for text in logs for line in text.splitlines() if "sum" in line}
        assert len(nodes) == 2  # STRICT_SPREAD: one rank per node
    finally:
        tb.stop()


def test_a_run_waits_queued_for_resources(
    server_ws: Workspace,
    ray_cluster: LocalRayCluster,
    project: Callable[..., Path],
    gone: list[Run],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    src = project(**{"train.py": TRAIN_UNTIL_STOPPED, "quick.py": "print('my turn')\n"})
    first = _submit(server_ws, src, resources={"worker0": 1})
    gone.append(first)
    wait_until(lambda: "child_pid" in first.get_tags(), timeout=120, what="the first run running")
    # The cluster's usage report said "free" (it lags behind): a job of the agent, which Ray holds PENDING
    # and fails after RAY_JOB_START_TIMEOUT_SECONDS (12 s here, 900 s by default); expboard queues it again.
    monkeypatch.setattr(RayCompute, "fits_now", lambda self, eligible, need: True)
    second = _submit(server_ws, src, "quick.py", resources={"worker0": 1})
    monkeypatch.undo()
    gone.append(second)
    # Nothing fits this one: a queue driver holds it Queued, until the target's queue_timeout_s.
    ComputeTarget.attach(
        server_ws,
        "impatient",
        RayCompute.attach_configuration(address=ray_cluster.address, python=sys.executable, queue_timeout_s=3),
    )
    never = _submit(server_ws, src, "quick.py", resources={"no-such-accelerator": 1}, compute_target="impatient")
    gone.append(never)

    def requeued() -> bool:
        assert _status(second) == RunStatus.QUEUED  # never NotResponding, never Failed while it waits
        return any(k.startswith("expboard.ray_job_id.") for k in second.get_properties())

    wait_until(requeued, timeout=120, what="the PENDING job failed by Ray and the run queued again")
    waited_until = time.monotonic() + 6  # Queued by now for > 18 s, longer than the heartbeat timeout (10 s)
    while time.monotonic() < waited_until:
        assert _status(second) == RunStatus.QUEUED
        time.sleep(0.5)

    def queue_log() -> bytes:
        assert _status(second) == RunStatus.QUEUED
        names = second.get_file_names()
        return read(second, "system_logs/queue.log") if "system_logs/queue.log" in names else b""

    wait_until(lambda: b"waiting for resources: 1 x {'CPU': 1.0, 'worker0': 1.0}" in queue_log(), timeout=60)
    first.tag("stop", "1")
    assert first.wait_for_completion(timeout=120)["status"] == "Completed"
    assert second.wait_for_completion(timeout=120)["status"] == "Completed"
    assert "my turn" in read(second, "system_logs/driver.log").decode()
    details = never.wait_for_completion(timeout=120, raise_on_error=False)
    assert details["status"] == "Failed" and details["error"]["code"] == "QueueTimeout"
    assert "no-such-accelerator" in details["error"]["message"]


def test_jobs_client_reports_unknown_jobs(ray_cluster: LocalRayCluster) -> None:
    from expboard.errors import NotFoundError

    with pytest.raises(NotFoundError):
        RayJobsClient(ray_cluster.address).job("no-such-job")
