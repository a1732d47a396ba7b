"""The Ray job that queues a run for resources and gang-launches it: ``python -m expboard.compute.ray_gang RUN_ID``.

:class:`~expboard.compute.ray.RayCompute` submits it (needing no resources itself, so it runs on the head)
when a run must wait for resources or runs on several nodes. It reads its plan from ``EXPBOARD_RAY_PLAN``
(resources per process, ``node_count``, the node to avoid, the interpreter, the queue timeout) and:

1. asks Ray for a placement group of ``node_count`` bundles of the run's resources, ``STRICT_SPREAD``
   (one per node) when there are several; while Ray cannot place it, the run stays Queued with a fresh
   heartbeat, for as long as ``queue_timeout_s`` allows (no limit by default), and ``system_logs/queue.log``
   says what it waits for; a run canceled meanwhile ends here;
2. starts one Ray task per bundle, each running the shared run agent, ``python -m expboard.compute RUN_ID``,
   with ``MASTER_ADDR`` / ``MASTER_PORT`` (rank 0's node and a free port there), ``RANK``, ``WORLD_SIZE``,
   ``LOCAL_RANK=0``, ``NODE_RANK`` and ``EXPBOARD_RAY_NODE_ID`` in its environment, which the agent hands
   on to the script;
3. rank 0 is the run itself; every other rank is a child run ``<name>_rank<i>`` of it (status, driver log,
   ``./logs``, ``./outputs`` of its own: ``Tensorboard([run])`` shows every rank live, since it mirrors child
   runs' logs too, and a failing rank is a run with its exit code and stderr);
4. keeps the ranks together: a rank that fails, or whose node is lost (its task dies), ends the run Failed
   (even when rank 0 has already ended it Completed) and the other ranks are canceled; a cancel of the run
   reaches every rank. Rank 0's agent ends the run when rank 0's script ends; each rank's own status is
   that of its child run.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from typing import Any

from .. import settings
from ..children import death_signal_preexec
from ..errors import ExpboardError
from ..records import RunRecord, RunStatus
from ..stores import Store
from .agent import RUNCONFIG_FILE
from .ray import RAY_PLAN_ENV
from .snapshot import SNAPSHOT_FILE

__all__ = ["QUEUE_LOG", "main", "rank_env"]

QUEUE_LOG = "system_logs/queue.log"
_NOT_TERMINAL = [s for s in RunStatus if not s.is_terminal]
_STARTED = [RunStatus.STARTING, RunStatus.RUNNING, RunStatus.FINALIZING]


def rank_env(rank: int, world: int, master_addr: str, master_port: int) -> dict[str, str]:
    """The variables ``torch.distributed``'s ``env://`` initialisation reads, for one process per node."""
    return {
        "MASTER_ADDR": master_addr,
        "MASTER_PORT": str(master_port),
        "RANK": str(rank),
        "WORLD_SIZE": str(world),
        "LOCAL_RANK": "0",
        "LOCAL_WORLD_SIZE": "1",
        "NODE_RANK": str(rank),
    }


def _open_store() -> Store:
    from ..workspace import Workspace

    folder = settings.get("workspace")
    ws = Workspace(folder) if folder and os.path.isdir(folder) else Workspace()
    return ws.store


class _Log:
    def __init__(self, store: Store, run_id: str) -> None:
        self.store, self.run_id, self.offset = store, run_id, 0

    def __call__(self, message: str) -> None:
        line = f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {message}\n".encode()
        print(message, flush=True)
        try:
            self.offset = self.store.append_file(self.run_id, QUEUE_LOG, line, self.offset).size
        except ExpboardError:
            pass


def _agent_task(python: str, run_id: str, env: dict[str, str]) -> int:
    """Inside a Ray task: the shared run agent for ``run_id``, ending with the task's worker."""
    import ray

    full = dict(os.environ)
    full.update(env)
    full[settings.env("ray_node_id")] = str(ray.get_runtime_context().get_node_id())

    proc = subprocess.Popen(
        [python, "-m", "expboard.compute", run_id],
        env=full,
        stdin=subprocess.DEVNULL,
        preexec_fn=death_signal_preexec(),  # ends with the task's worker (this thread is the task's)
    )
    try:
        return proc.wait()
    finally:
        if proc.poll() is None:  # the task was canceled: the agent ends the run Canceled
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def _probe() -> tuple[str, int]:
    import socket

    import ray

    with socket.socket() as s:
        s.bind(("", 0))
        port = int(s.getsockname()[1])
    return str(ray.util.get_node_ip_address()), port  # type: ignore[no-untyped-call]


def _child_runs(store: Store, parent: RunRecord, world: int) -> list[str]:
    """Rank i > 0 as child run ``<parent id>_rank<i>``, Queued, with the parent's snapshot and run config."""
    snapshot = store.read_file(parent.run_id, SNAPSHOT_FILE)
    runconfig = store.read_file(parent.run_id, RUNCONFIG_FILE)
    ids = []
    for rank in range(1, world):
        now = time.time()
        rec = store.create_run(
            RunRecord(
                run_id=f"{parent.run_id}_rank{rank}",
                experiment=parent.experiment,
                status=RunStatus.QUEUED,
                created=now,
                display_name=f"{parent.display_name}_rank{rank}",
                parent_id=parent.run_id,
                run_type="script",
                target=parent.target,
                heartbeat=now,
                properties={"expboard.rank": str(rank), "expboard.world_size": str(world)},
            )
        )
        store.write_file(rec.run_id, SNAPSHOT_FILE, snapshot)
        store.write_file(rec.run_id, RUNCONFIG_FILE, runconfig)
        ids.append(rec.run_id)
    return ids


def _fail(store: Store, run_id: str, message: str, code: str = "GangFailed", also_completed: bool = False) -> None:
    only = [*_NOT_TERMINAL, RunStatus.COMPLETED] if also_completed else _NOT_TERMINAL
    try:
        store.update_run(
            run_id,
            status=RunStatus.FAILED,
            end_time=time.time(),
            error={"code": code, "message": message},
            only_if_status=only,
        )
    except ExpboardError:
        pass


def _cancel(store: Store, run_id: str) -> None:
    try:
        store.update_run(run_id, status=RunStatus.CANCELED, end_time=time.time(), only_if_status=[RunStatus.QUEUED])
        store.update_run(run_id, status=RunStatus.CANCEL_REQUESTED, only_if_status=_STARTED)
    except ExpboardError:
        pass


def run_gang(store: Store, run_id: str, plan: dict[str, Any], run_ids: list[str]) -> int:
    """Queue, launch and follow the run (``run_ids`` gets the ids of its rank runs, rank 0 first)."""
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    log = _Log(store, run_id)
    run_ids[:] = [run_id]
    world = int(plan.get("node_count") or 1)
    need = {str(k): float(v) for k, v in (plan.get("resources") or {}).items()}
    python = str(plan.get("python") or "python")
    avoid = plan.get("avoid_node")
    queue_timeout = plan.get("queue_timeout_s")
    heartbeat_s = min(5.0, float(settings.get("heartbeat_s")))

    ray.init(address=os.environ.get("RAY_ADDRESS", "auto"), log_to_driver=False, logging_level=logging.WARNING)
    bundle = {k: v for k, v in need.items() if k != "memory"}
    if need.get("memory"):
        bundle["memory"] = need["memory"]
    bundle = bundle or {"CPU": 0.001}
    selector = [{"ray.io/node-id": f"!{avoid}"}] * world if avoid else None
    strategy = "STRICT_SPREAD" if world > 1 else "PACK"
    pg = placement_group([dict(bundle) for _ in range(world)], strategy=strategy, bundle_label_selector=selector)
    try:
        started = time.monotonic()
        said = False
        while not pg.wait(timeout_seconds=heartbeat_s):
            if not said:
                log(
                    f"waiting for resources: {world} x {bundle}"
                    + (" on distinct nodes" if world > 1 else "")
                    + (", off the head node" if avoid else "")
                )
                said = True
            rec = store.update_run(run_id, heartbeat=time.time(), only_if_status=[RunStatus.QUEUED])
            if rec.status != RunStatus.QUEUED:
                log(f"the run is {rec.status.value} while it waited for resources: nothing to run")
                return 0
            if queue_timeout is not None and time.monotonic() - started > float(queue_timeout):
                _fail(
                    store,
                    run_id,
                    f"waited {float(queue_timeout):g} s (queue_timeout_s) for resources the cluster did not have: "
                    f"{world} x {bundle}",
                    code="QueueTimeout",
                )
                return 1
        rec = store.update_run(run_id, heartbeat=time.time(), only_if_status=[RunStatus.QUEUED])
        if rec.status != RunStatus.QUEUED:
            return 0
        if said:
            log(f"resources reserved after {time.monotonic() - started:.1f} s")

        def on_bundle(i: int) -> PlacementGroupSchedulingStrategy:
            return PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=i)

        task = ray.remote(_agent_task)
        options: dict[str, Any] = {
            "num_cpus": need.get("CPU", 0),
            "num_gpus": need.get("GPU", 0),
            "resources": {k: v for k, v in need.items() if k not in ("CPU", "GPU", "memory")} or None,
            "max_retries": 0,
        }
        if need.get("memory"):
            options["memory"] = need["memory"]
        envs: list[dict[str, str]] = [{}]
        if world > 1:
            addr, port = ray.get(
                ray.remote(_probe).options(num_cpus=0, scheduling_strategy=on_bundle(0)).remote(), timeout=300
            )
            envs = [rank_env(i, world, addr, port) for i in range(world)]
            run_ids += _child_runs(store, rec, world)
            log(f"{world} ranks, MASTER_ADDR={addr} MASTER_PORT={port}; ranks 1..{world - 1} are child runs")
        refs = [
            task.options(**options, scheduling_strategy=on_bundle(i)).remote(python, rid, envs[i])
            for i, rid in enumerate(run_ids)
        ]
        return _follow(store, run_id, run_ids, refs, log)
    finally:
        remove_placement_group(pg)


def _follow(store: Store, run_id: str, run_ids: list[str], refs: list[Any], log: _Log) -> int:
    """Wait for every rank; keep the gang together (one fails or is lost: all stop; canceled: all cancel)."""
    import ray

    pending = dict(zip(refs, range(len(refs)), strict=True))
    stopping = False
    exit_codes: dict[int, int] = {}
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
        for ref in ready:
            rank = pending.pop(ref)
            try:
                exit_codes[rank] = int(ray.get(ref))
            except Exception as exc:  # the task died: its node was lost or its worker killed
                exit_codes[rank] = -1
                what = type(exc).__name__
                message = f"rank {rank} was lost ({what}): its Ray node died or its worker was killed"
                log(message)
                _fail(store, run_ids[rank], message, code="NodeLost")
        if len(run_ids) == 1:
            continue
        records = {}
        for rid in run_ids:
            try:
                records[rid] = store.get_run(rid)
            except ExpboardError:
                pass
        failed = [r for r in records.values() if r.status in (RunStatus.FAILED, RunStatus.NOT_RESPONDING)]
        parent = records.get(run_id)
        if failed and not stopping:
            worst = failed[0]
            err = (worst.error or {}).get("message", worst.status.value)
            if worst.run_id != run_id:
                _fail(
                    store,
                    run_id,
                    f"rank {worst.properties.get('expboard.rank', '?')} failed: {err}",
                    also_completed=True,
                )
            stopping = True
            for rid in run_ids:
                _cancel(store, rid)
        elif parent is not None and parent.status in (RunStatus.CANCEL_REQUESTED, RunStatus.CANCELED) and not stopping:
            stopping = True
            for rid in run_ids[1:]:
                _cancel(store, rid)
    if len(run_ids) > 1:
        statuses = {rid: store.get_run(rid).status for rid in run_ids}
        bad = [rid for rid, st in statuses.items() if st in (RunStatus.FAILED, RunStatus.NOT_RESPONDING)]
        if bad and statuses[run_id] != RunStatus.FAILED:
            _fail(store, run_id, f"rank run {bad[0]} ended {statuses[bad[0]].value}", also_completed=True)
        log("ranks ended: " + ", ".join(f"{rid} {st.value}" for rid, st in statuses.items()))
    return 0 if all(code == 0 for code in exit_codes.values()) else 1


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m expboard.compute.ray_gang RUN_ID  (with EXPBOARD_RAY_PLAN set)", file=sys.stderr)
        return 2
    run_id = args[0]
    plan = json.loads(os.environ.get(RAY_PLAN_ENV) or "{}")
    store = _open_store()
    run_ids: list[str] = [run_id]
    try:
        return run_gang(store, run_id, plan, run_ids)
    except BaseException as exc:
        for rid in run_ids:
            _fail(store, rid, f"the run's Ray gang driver failed: {exc!r}", code="AgentError")
        raise
    finally:
        store.close()


if __name__ == "__main__":  # run as the module itself, so Ray's workers import the task functions by name
    from expboard.compute.ray_gang import main as _main

    sys.exit(_main())
