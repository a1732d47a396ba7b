"""The Ray target: attached by address and found again by name, its status read from a real cluster, the
CLI, and the errors for an address that does not answer and a run history the cluster cannot reach."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from ray_helpers import roomier_heartbeat  # noqa: F401  (autouse)

from expboard import Experiment, Workspace
from expboard.compute import ComputeTarget, RayCompute, ScriptRunConfig
from expboard.compute.ray_local import LocalRayCluster
from expboard.errors import ComputeUnavailableError, ConfigError, ValidationError


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _dead_nodes(cluster: LocalRayCluster) -> int:
    return sum(1 for n in cluster.nodes() if n.get("state") != "ALIVE")


def test_attach_saved_in_the_workspace_and_status_from_the_cluster(
    ws: Workspace, ray_cluster: LocalRayCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    target = ComputeTarget.attach(
        ws, "ray-cluster", RayCompute.attach_configuration(address=ray_cluster.address, python=sys.executable)
    )
    assert target.type == "Ray" and target.name == "ray-cluster"
    again = Workspace(ws.path).compute_targets["ray-cluster"]  # a new process would see the same
    assert isinstance(again, RayCompute) and again.address == ray_cluster.address
    again.wait_for_completion(show_output=True)
    assert "2 node(s) alive" in capsys.readouterr().out
    status = again.get_status().serialize()
    assert status["type"] == "Ray" and status["state"] == "Succeeded"
    dead = _dead_nodes(ray_cluster)  # a node another test killed stays listed as dead
    assert status["nodes"] == 2 and status["nodesAlive"] == 2 and status["nodesDead"] == dead
    assert status["cpus"] == 2 and status["gpus"] == 0
    assert status["memoryTotal"] > 0 and 0 <= status["cpusUsed"] <= 2
    heads = [n for n in status["nodeList"] if n["head"]]
    assert len(heads) == 1 and heads[0]["resources"]["head"] == 1
    assert any(n["resources"].get("worker0") == 1 for n in status["nodeList"] if not n["head"])


def test_cli_attach_list_show(ws: Workspace, ray_cluster: LocalRayCluster) -> None:
    assert ws.path is not None

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "expboard", *args], cwd=ws.path, capture_output=True, text=True, timeout=120
        )

    done = cli("compute", "attach", "ray", "team", "--address", ray_cluster.address, "--python", sys.executable)
    assert done.returncode == 0, done.stderr
    assert "Attached Ray cluster" in done.stdout
    listing = cli("compute", "list", "--json")
    assert listing.returncode == 0, listing.stderr
    rows = {row["name"]: row for row in json.loads(listing.stdout)}
    dead = _dead_nodes(ray_cluster)
    assert rows["team"]["type"] == "Ray" and rows["team"]["nodes"] == 2 and rows["local"]["type"] == "local"
    shown = cli("compute", "show", "team")
    assert shown.returncode == 0, shown.stderr
    assert f"2 alive, {dead} dead" in shown.stdout and "(head)" in shown.stdout and "worker0=1" in shown.stdout
    bad = cli("compute", "attach", "ray", "nowhere", "--address", f"http://127.0.0.1:{_free_port()}", "--timeout", "1")
    assert bad.returncode != 0 and "cannot reach the Ray cluster at http://127.0.0.1:" in bad.stderr
    assert "nowhere" not in Workspace(ws.path).compute_targets  # not saved


def test_unreachable_address_is_a_clear_error(ws: Workspace, project: Callable[..., Path]) -> None:
    address = f"http://127.0.0.1:{_free_port()}"
    target = ComputeTarget.attach(ws, "down", RayCompute.attach_configuration(address=address))
    with pytest.raises(ComputeUnavailableError) as info:
        target.wait_for_completion(timeout=1)
    assert address in str(info.value) and "ray status" in str(info.value)
    with pytest.raises(ComputeUnavailableError):
        target.get_status()
    src = project(**{"train.py": "print('never')\n"})
    with pytest.raises(ComputeUnavailableError, match="cannot reach the Ray cluster"):
        Experiment(ws, "ray").submit(ScriptRunConfig(src, "train.py", compute_target="down"))
    with pytest.raises(ValidationError, match="like http://HOST:8265"):
        RayCompute.attach_configuration(address="ftp://head")


def test_a_run_history_the_cluster_cannot_reach_is_refused_at_submit(
    ws: Workspace, ray_cluster: LocalRayCluster, project: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import expboard.compute.ray as ray_target

    target = ComputeTarget.attach(
        ws, "remote", RayCompute.attach_configuration(address=ray_cluster.address, python=sys.executable)
    )
    # A cluster on other machines cannot be started here: its nodes' addresses are made "not this machine".
    monkeypatch.setattr(ray_target, "is_this_machine", lambda address: False)
    src = project(**{"train.py": "print('never')\n"})
    with pytest.raises(ConfigError) as info:
        Experiment(ws, "ray").submit(ScriptRunConfig(src, "train.py", compute_target=target))
    message = str(info.value)
    assert ws.tracking_uri in message and "tracking server" in message and "expboard server" in message
    assert ray_target.is_this_machine("127.0.0.1") is False  # (patched)
    monkeypatch.undo()
    assert ray_target.is_this_machine("127.0.0.1") and not ray_target.is_this_machine("203.0.113.7")


def test_an_embedded_workspace_works_with_a_cluster_on_this_machine(
    ws: Workspace, ray_cluster: LocalRayCluster, project: Callable[..., Path], pids: list[int]
) -> None:
    assert ws.tracking_uri.startswith("sqlite:") or ws.tracking_uri.startswith("http://127.0.0.1")
    ComputeTarget.attach(
        ws, "here", RayCompute.attach_configuration(address=ray_cluster.address, python=sys.executable)
    )
    script = "from expboard import Run\nRun.get_context().log('answer', 42)\nprint('on the cluster')\n"
    run = Experiment(ws, "ray").submit(
        ScriptRunConfig(project(**{"train.py": script}), "train.py", compute_target="here")
    )
    details = run.wait_for_completion(timeout=120)
    assert details["status"] == "Completed" and details["target"] == "here"
    assert run.get_metrics() == {"answer": 42}
    assert b"on the cluster" in run.workspace.store.read_file(run.id, "system_logs/driver.log")


class _PendingJobs:
    """Ray's answer for a job it still holds PENDING (a stand-in for the Jobs API: getting Ray to hold a job
    PENDING while its usage report says "free" cannot be arranged reliably on a test cluster)."""

    def job(self, job_id: str) -> dict[str, str]:
        return {"status": "PENDING", "message": "waiting for resources"}


def test_a_queued_run_nobody_kept_alive_is_queued_again_while_ray_holds_its_job(ws: Workspace) -> None:
    from expboard import Run, RunStatus
    from expboard.compute.ray import check_job

    run = Run.create(Experiment(ws, "pending"), run_type="script", status=RunStatus.QUEUED)
    ws.store.update_run(run.id, status=RunStatus.NOT_RESPONDING, error={"code": "NotResponding", "message": "x"})
    assert check_job(_PendingJobs(), ws.store, run.id, "job-1", final=True) == "wait"  # type: ignore[arg-type]
    record = ws.store.get_run(run.id)
    assert record.status == RunStatus.QUEUED and record.error is None and record.heartbeat is not None
    started = Run.create(Experiment(ws, "pending"), run_type="script", status=RunStatus.RUNNING)
    ws.store.update_run(started.id, status=RunStatus.NOT_RESPONDING, start_time=1.0)
    check_job(_PendingJobs(), ws.store, started.id, "job-2", final=True)  # type: ignore[arg-type]
    assert ws.store.get_run(started.id).status == RunStatus.NOT_RESPONDING  # it did start: not queued again


class _FailedBeforeStart:
    """Ray's answer for a job it failed while PENDING, ``ended_s_ago`` seconds ago."""

    def __init__(self, ended_s_ago: float) -> None:
        self.end_time = int((time.time() - ended_s_ago) * 1000)

    def job(self, job_id: str) -> dict[str, Any]:
        return {
            "status": "FAILED",
            "message": "Job supervisor actor failed to start within 12.0 seconds.",
            "end_time": self.end_time,
        }


def test_a_reader_leaves_a_run_ray_never_started_to_its_follower_for_a_while(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    from expboard import Run, RunStatus
    from expboard.compute.ray import check_job

    monkeypatch.setenv("EXPBOARD_HEARTBEAT_TIMEOUT_S", "40")
    run = Run.create(Experiment(ws, "pending"), run_type="script", status=RunStatus.QUEUED)
    # A loaded machine slowed the submitting process's loop: a reader (no target to queue it again) waits.
    assert check_job(_FailedBeforeStart(35), ws.store, run.id, "job-1", final=True) == "wait"  # type: ignore[arg-type]
    assert ws.store.get_run(run.id).status == RunStatus.QUEUED
    monkeypatch.setenv("EXPBOARD_HEARTBEAT_TIMEOUT_S", "10")  # shorter than the 30 s a reader waits at least
    assert check_job(_FailedBeforeStart(25), ws.store, run.id, "job-1", final=True) == "wait"  # type: ignore[arg-type]
    # Nobody queued it again within the heartbeat timeout: it ends, saying why.
    assert check_job(_FailedBeforeStart(31), ws.store, run.id, "job-1", final=True) == "ended"  # type: ignore[arg-type]
    record = ws.store.get_run(run.id)
    assert record.status == RunStatus.FAILED and record.error is not None
    assert "no process that could queue the run again" in record.error["message"]
    # NotResponding because nobody kept its heartbeat: ended at once, with the same reason.
    silent = Run.create(Experiment(ws, "pending"), run_type="script", status=RunStatus.QUEUED)
    ws.store.update_run(silent.id, status=RunStatus.NOT_RESPONDING, error={"code": "NotResponding", "message": "x"})
    assert check_job(_FailedBeforeStart(5), ws.store, silent.id, "job-2", final=True) == "ended"  # type: ignore[arg-type]
    error = ws.store.get_run(silent.id).error
    assert error is not None and "no process that could queue the run again" in error["message"]
