"""Runs on a Ray cluster, through the Ray Jobs API (the cluster's dashboard address, ``http://HOST:8265``).

>>> config = RayCompute.attach_configuration(address="http://head:8265")                    # doctest: +SKIP
>>> ComputeTarget.attach(ws, "ray-cluster", config).wait_for_completion(show_output=True)  # doctest: +SKIP
>>> Experiment(ws, "tb").submit(ScriptRunConfig(".", "train.py", compute_target="ray-cluster"))  # doctest: +SKIP

This side talks to the Jobs API's REST endpoints with the standard library only (no ``import ray``, fast);
the cluster's Python needs expboard installed (``pip install 'expboard[ray]'`` on every node).

How a run goes (see the README's "Runs on a Ray cluster"):

- **One process** (``node_count=1``): if a node has the run's resources free now, a Ray job whose entrypoint
  is the shared run agent, ``python -m expboard.compute RUN_ID``, with ``entrypoint_num_cpus`` /
  ``_num_gpus`` / ``_memory`` / ``_resources`` set to the run's resources, and kept off the head node (a
  label selector) while the cluster has other nodes. The agent unpacks the run's stored snapshot into a
  fresh folder of its own (per run: Ray's ``working_dir`` would be shared between identical jobs), streams
  the driver log and ``./logs`` into the run and stores ``./outputs``, exactly as on the local target.
- **Waiting for resources, and several nodes**: a Ray job that needs no resources (it runs on the head),
  ``python -m expboard.compute.ray_gang RUN_ID``, holds the run Queued with its heartbeat while a placement
  group for the run waits for resources (as long as ``queue_timeout_s`` allows; Ray's own 15-minute limit
  on PENDING jobs does not apply), then starts the agent on the reserved node(s) (see :mod:`.ray_gang`).
- **Watching**: any reader of a silent run (NotResponding, or its heartbeat late) asks the cluster about
  its job through the liveness reaper (:func:`end_gone_runs`, registered in :mod:`expboard.plugins`) and
  ends it Failed with Ray's reason when the job has ended, so the final state needs neither the submitting
  process nor a call on the target. While the submitting process lives, a thread follows its runs' jobs:
  it keeps the heartbeat of a run whose job Ray holds PENDING (the usage report said "free" but was behind),
  hands such a run to a
  queue driver job when Ray fails the PENDING job (:meth:`RayCompute.requeue`), stops the job
  (``stop_job``) of a run canceled while queued or whose agent did not end it within the grace period,
  and ends Failed a run whose job ended without it (a node lost, the agent killed: the run's heartbeat
  stops, it shows NotResponding, then Failed with Ray's reason).
  :meth:`RayCompute.get_status` (and ``expboard compute show``) does the same for every active run of the
  target, so a run never stays active for a job that is gone, whoever looks.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shlex
import socket
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .. import plugins, settings
from ..errors import ComputeUnavailableError, ConfigError, ExpboardError, NotFoundError, ValidationError
from ..liveness import ACTIVE_STATUSES, heartbeat_timeout, not_responding_with
from ..records import RunRecord, RunStatus
from .environment import ray_runtime_env
from .targets import AttachConfiguration, ComputeTarget, TargetStatus, register_target_type

if TYPE_CHECKING:
    from ..run import Run
    from ..stores import Store
    from ..workspace import Workspace
    from .config import ScriptRunConfig

__all__ = [
    "ADDRESS_PROPERTY",
    "JOB_ID_PROPERTY",
    "RAY_PLAN_ENV",
    "RayAttachConfiguration",
    "RayCompute",
    "RayJobsClient",
    "check_job",
    "current_job_id",
    "end_gone_runs",
    "is_this_machine",
]

JOB_ID_PROPERTY = "expboard.ray_job_id"
ADDRESS_PROPERTY = "expboard.ray_address"  # the cluster's Jobs API, so any reader can ask about the job
RAY_PLAN_ENV = settings.env("ray_plan")  # JSON: what the queue/gang driver needs (resources, node count, python)
_TERMINAL_JOB = ("SUCCEEDED", "FAILED", "STOPPED")
FOLLOW_TIMEOUT_S = 3.0  # the submitting process's polls of its runs' jobs: short, so its heartbeat keeps up
# A reader leaves a run whose job Ray failed before it started this long at least (or the heartbeat timeout,
# if longer) to the process that submitted it, which queues it again.
REQUEUE_GRACE_S = 30.0
_NOT_TERMINAL_RUN = [s for s in RunStatus if not s.is_terminal]
# Settings of the submitting process that travel with the run into the job (the agent reads them there).
_NOT_SENT = tuple(settings.env(n) for n in ("run_id", "agent_log", "workspace"))


class RayJobsClient:
    """The Ray Jobs REST API at ``address`` (``http://HOST:8265``), with errors that say what to check."""

    def __init__(self, address: str, timeout: float = 10.0) -> None:
        address = address.strip().rstrip("/")
        if "://" not in address:
            address = "http://" + address
        parsed = urllib.parse.urlsplit(address)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValidationError(
                f"a Ray cluster address is the Jobs API (dashboard) URL, like http://HOST:8265, not {address!r}"
            )
        self.address = address
        self.timeout = timeout

    def request(self, method: str, path: str, body: Any = None, timeout: float | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.address + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout or self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            text = exc.read().decode(errors="replace")[-2000:]
            if exc.code == 404:
                raise NotFoundError(
                    f"Ray cluster {self.address}: {method} {path}: not found ({text.strip()})"
                ) from None
            raise ComputeUnavailableError(
                f"Ray cluster {self.address} answered {method} {path} with HTTP {exc.code}: {text.strip()}"
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ComputeUnavailableError(
                f"cannot reach the Ray cluster at {self.address} ({reason}): check that the head node runs "
                "(`ray status` there), that the address is its dashboard / Jobs API URL (`ray start --head "
                "--dashboard-host 0.0.0.0`, port 8265 unless --dashboard-port says otherwise) and that no "
                "firewall is in between"
            ) from None
        return json.loads(raw) if raw else None

    def version(self) -> dict[str, Any]:
        return dict(self.request("GET", "/api/version"))

    def nodes(self) -> list[dict[str, Any]]:
        """Every node the cluster knows (ALIVE and DEAD), from the state API."""
        data = self.request("GET", "/api/v0/nodes?limit=10000&detail=1")
        return list(data["data"]["result"]["result"])

    def usage_by_node(self) -> dict[str, dict[str, list[float]]]:
        """``{node_id: {resource: [used, total]}}`` from the cluster status report."""
        data = self.request("GET", "/api/cluster_status")
        report = ((data.get("data") or {}).get("clusterStatus") or {}).get("loadMetricsReport") or {}
        return dict(report.get("usageByNode") or {})

    def submit_job(self, body: Mapping[str, Any]) -> str:
        return str(self.request("POST", "/api/jobs/", dict(body), timeout=60)["submission_id"])

    def job(self, job_id: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/api/jobs/{urllib.parse.quote(job_id)}"))

    def stop_job(self, job_id: str) -> bool:
        return bool(self.request("POST", f"/api/jobs/{urllib.parse.quote(job_id)}/stop", {}).get("stopped"))


def is_this_machine(address: str) -> bool:
    """Whether ``address`` (an IP address, as Ray reports its nodes') is one of this machine's: a loopback
    address, or one a socket can bind to here."""
    if _is_loopback(address):
        return True
    try:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.bind((address, 0))
        return True
    except (OSError, ValueError):
        return False


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class RayAttachConfiguration(AttachConfiguration):
    """What :meth:`RayCompute.attach_configuration` returns: the cluster's address and run defaults."""

    def __init__(self, address: str, **options: Any) -> None:
        RayJobsClient(address)  # validates the address
        self.address = address
        self.options = options

    def create_target(self, name: str) -> RayCompute:
        return RayCompute(name, self.address, **self.options)

    def __repr__(self) -> str:
        return f"RayAttachConfiguration(address={self.address!r})"


class RayCompute(ComputeTarget):
    """A Ray cluster, reached through its Jobs API.

    ``address``: the dashboard / Jobs API URL (``http://HOST:8265``). ``python``: the interpreter on the
    cluster's nodes that has expboard installed (default ``python``). ``resources``: what one process of a
    run needs unless its :class:`ScriptRunConfig` says otherwise (Ray's names: ``CPU``, ``GPU``,
    ``memory`` in bytes, and custom resources; default ``{"CPU": 1}``). ``run_on_head``: allow runs on the
    head node while the cluster has other nodes (default False). ``queue_timeout_s``: how long a run may
    wait Queued for resources before it ends Failed (default None: as long as it takes).
    """

    type = "Ray"
    environment_build = "runtime_env"  # a run's Environment becomes its job's runtime_env (pip, env_vars)

    def __init__(
        self,
        name: str,
        address: str,
        python: str = "python",
        resources: Mapping[str, float] | None = None,
        run_on_head: bool = False,
        queue_timeout_s: float | None = None,
    ) -> None:
        super().__init__(name)
        self.client = RayJobsClient(address)
        self.address = self.client.address
        self.python = python
        self.resources = {str(k): float(v) for k, v in (resources or {"CPU": 1}).items()}
        self.run_on_head = run_on_head
        self.queue_timeout_s = queue_timeout_s

    @staticmethod
    def attach_configuration(address: str, **options: Any) -> RayAttachConfiguration:
        """For ``ComputeTarget.attach(ws, name, RayCompute.attach_configuration(address="http://HOST:8265"))``;
        ``options`` are :class:`RayCompute`'s keyword arguments."""
        return RayAttachConfiguration(address, **options)

    def to_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"address": self.address, "python": self.python, "resources": self.resources}
        if self.run_on_head:
            config["run_on_head"] = True
        if self.queue_timeout_s is not None:
            config["queue_timeout_s"] = self.queue_timeout_s
        return config

    @classmethod
    def from_config(cls, name: str, config: Mapping[str, Any]) -> RayCompute:
        return cls(name, **dict(config))

    # --- the cluster ---------------------------------------------------------------------------------
    def wait_for_completion(self, show_output: bool = False, timeout: float = 60.0, **kwargs: Any) -> None:
        """Wait until the cluster answers (raises ComputeUnavailableError after ``timeout`` seconds)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                version = self.client.version()
                nodes = [n for n in self.client.nodes() if n.get("state") == "ALIVE"]
                break
            except ComputeUnavailableError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1.0)
        if show_output:
            print(
                f"Ray cluster {self.name!r} at {self.address}: Ray {version.get('ray_version', '?')}, "
                f"{len(nodes)} node(s) alive"
            )

    def get_status(self) -> TargetStatus:
        """Nodes alive and dead, CPUs, GPUs and memory (used and total), read from the cluster. Runs of
        this target whose Ray job has ended without them are ended here (see the module's doc)."""
        nodes = self.client.nodes()
        usage = self.client.usage_by_node()
        alive = [n for n in nodes if n.get("state") == "ALIVE"]

        def total(key: str, which: int) -> float:
            return sum(float((usage.get(str(n["node_id"])) or {}).get(key, [0.0, 0.0])[which]) for n in alive)

        def node_total(n: dict[str, Any], key: str) -> float:
            return float((n.get("resources_total") or {}).get(key, 0.0))

        active = self._reconcile()
        details = {
            "address": self.address,
            "nodesAlive": len(alive),
            "nodesDead": len(nodes) - len(alive),
            "cpusUsed": total("CPU", 0),
            "gpusUsed": total("GPU", 0),
            "memoryTotal": sum(node_total(n, "memory") for n in alive),
            "memoryUsed": total("memory", 0),
            "nodeList": [
                {
                    "nodeId": n.get("node_id"),
                    "ip": n.get("node_ip"),
                    "state": n.get("state"),
                    "head": bool(n.get("is_head_node")),
                    "resources": {
                        k: v for k, v in (n.get("resources_total") or {}).items() if not k.startswith("node:")
                    },
                }
                for n in nodes
            ],
        }
        return TargetStatus(
            name=self.name,
            type=self.type,
            state="Succeeded" if alive else "Unusable",
            nodes=len(alive),
            cpus=int(sum(node_total(n, "CPU") for n in alive)),
            gpus=int(sum(node_total(n, "GPU") for n in alive)),
            active_runs=active,
            details=details,
        )

    # --- submit -------------------------------------------------------------------------------------
    def run_resources(self, config: ScriptRunConfig) -> dict[str, float]:
        """What one process of the run needs: the target's defaults, overridden by the run's."""
        need = dict(self.resources)
        need.update(getattr(config, "resources", None) or {})
        return {k: v for k, v in need.items() if v > 0}

    def _check_store(self, ws: Workspace, nodes: list[dict[str, Any]]) -> None:
        uri = ws.tracking_uri
        parsed = urllib.parse.urlsplit(uri)
        if parsed.scheme in ("http", "https") and parsed.hostname and not _is_loopback(parsed.hostname):
            return  # a tracking server the cluster can reach (if it cannot, the run fails with the reason)
        elsewhere = sorted(
            {
                str(n.get("node_ip"))
                for n in nodes
                if n.get("state") == "ALIVE" and not is_this_machine(str(n.get("node_ip")))
            }
        )
        if not elsewhere:
            return  # every node is this machine: the same files and loopback addresses
        what = "a tracking server on 127.0.0.1" if parsed.scheme in ("http", "https") else "this machine's files"
        raise ConfigError(
            f"the workspace's run history ({uri}) is {what}, but Ray cluster {self.name!r} ({self.address}) has "
            f"nodes on other machines ({', '.join(elsewhere)}) that cannot open it. Use a tracking server they "
            "can reach: `expboard server --host 0.0.0.0 --backend-store-uri postgresql://... --artifacts-root "
            "DIR`, then set the workspace's tracking_uri to http://THIS_HOST:5000"
        )

    def _job_env(self, ws: Workspace, plan: Mapping[str, Any] | None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k.startswith("EXPBOARD_") and k not in _NOT_SENT}
        env.update(ws.env())
        env["PYTHONUNBUFFERED"] = "1"
        if plan is not None:
            env[RAY_PLAN_ENV] = json.dumps(dict(plan))
        return env

    def _runtime_env(self, ws: Workspace, run_id: str, plan: Mapping[str, Any] | None) -> dict[str, Any]:
        """The job's runtime_env: expboard's variables, and the run's Environment (its pip packages, which
        Ray installs and caches on the nodes, and its variables; see ``environment.ray_runtime_env``)."""
        try:
            config = json.loads(ws.store.read_file(run_id, "runconfig.json"))
        except NotFoundError:
            config = {}
        runtime_env = ray_runtime_env(config.get("environment_definition"))
        runtime_env["env_vars"] = {**runtime_env.get("env_vars", {}), **self._job_env(ws, plan)}
        return runtime_env

    def _eligible(self, nodes: list[dict[str, Any]], node_count: int) -> tuple[list[dict[str, Any]], str | None]:
        """The alive nodes a run may use, and the head's id when the run is kept off it: off the head unless
        ``run_on_head`` or the other nodes are too few for the run's ``node_count``."""
        alive = [n for n in nodes if n.get("state") == "ALIVE"]
        head = next((str(n["node_id"]) for n in alive if n.get("is_head_node")), None)
        others = [n for n in alive if not n.get("is_head_node")]
        if self.run_on_head or len(others) < node_count:
            return alive, None
        return others, head

    def submit(self, run: Run, config: ScriptRunConfig) -> None:
        ws = run.workspace
        nodes = self.client.nodes()
        self._check_store(ws, nodes)
        need = self.run_resources(config)
        node_count = int(getattr(config, "node_count", 1))
        eligible, avoid_head = self._eligible(nodes, node_count)
        ws.store.update_run(run.id, heartbeat=time.time(), only_if_status=[RunStatus.QUEUED])
        queue = node_count > 1 or not self.fits_now(eligible, need)
        job_id = self._submit_job(ws, run.id, need, node_count, avoid_head, queue)
        ws.store.add_properties(run.id, {JOB_ID_PROPERTY: job_id, ADDRESS_PROPERTY: self.address})
        _watcher().watch(self, ws.store, run.id, job_id)

    def _submit_job(
        self, ws: Workspace, run_id: str, need: dict[str, float], node_count: int, avoid: str | None, queue: bool
    ) -> str:
        if queue:
            plan = {
                "node_count": node_count,
                "resources": need,
                "python": self.python,
                "avoid_node": avoid,
                "queue_timeout_s": self.queue_timeout_s,
            }
            body: dict[str, Any] = {
                "entrypoint": shlex.join([self.python, "-m", "expboard.compute.ray_gang", run_id]),
                "runtime_env": self._runtime_env(ws, run_id, plan),
                "entrypoint_num_cpus": 0,
                "metadata": {"expboard_run_id": run_id, "expboard_role": "queue"},
            }
        else:
            body = self._direct_job(run_id, ws, need, avoid)
        body["submission_id"] = f"expboard-{run_id}-{int(time.time() * 1000) % 100000000}"
        return self.client.submit_job(body)

    def requeue(self, run_id: str) -> str:
        """Hand a run still Queued whose job Ray failed before it started (Ray's limit on PENDING jobs, 15
        minutes by default) to a queue driver job, which waits for resources as long as the run may; returns
        the new job's id (also stored as property ``expboard.ray_job_id.<n>``)."""
        if self.workspace is None:
            raise ValidationError(f"compute target {self.name!r} is not attached to a workspace")
        ws, store = self.workspace, self.workspace.store
        config = json.loads(store.read_file(run_id, "runconfig.json"))
        need = dict(self.resources)
        need.update({str(k): float(v) for k, v in (config.get("resources") or {}).items()})
        need = {k: v for k, v in need.items() if v > 0}
        node_count = int(config.get("node_count") or 1)
        _, avoid = self._eligible(self.client.nodes(), node_count)
        job_id = self._submit_job(ws, run_id, need, node_count, avoid, queue=True)
        rec = store.get_run(run_id)
        n = 1 + sum(1 for k in rec.properties if k == JOB_ID_PROPERTY or k.startswith(JOB_ID_PROPERTY + "."))
        store.add_properties(run_id, {f"{JOB_ID_PROPERTY}.{n}": job_id})
        return job_id

    def _direct_job(
        self, run_id: str, ws: Workspace, need: Mapping[str, float], avoid_head: str | None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "entrypoint": shlex.join([self.python, "-m", "expboard.compute", run_id]),
            "runtime_env": self._runtime_env(ws, run_id, None),
            "entrypoint_num_cpus": need.get("CPU", 0),
            "metadata": {"expboard_run_id": run_id, "expboard_role": "agent"},
        }
        if need.get("GPU"):
            body["entrypoint_num_gpus"] = need["GPU"]
        if need.get("memory"):
            body["entrypoint_memory"] = int(need["memory"])
        custom = {k: v for k, v in need.items() if k not in ("CPU", "GPU", "memory")}
        if custom:
            body["entrypoint_resources"] = custom
        if avoid_head:
            body["entrypoint_label_selector"] = {"ray.io/node-id": f"!{avoid_head}"}
        return body

    def fits_now(self, eligible: list[dict[str, Any]], need: Mapping[str, float]) -> bool:
        """Whether one of the ``eligible`` nodes has ``need`` free now (by the cluster's last usage report)."""
        try:
            usage = self.client.usage_by_node()
        except (ComputeUnavailableError, KeyError, TypeError):
            return False
        for n in eligible:
            node = usage.get(str(n["node_id"])) or {}
            if all(float(node.get(k, [0.0, 0.0])[1]) - float(node.get(k, [0.0, 0.0])[0]) >= v for k, v in need.items()):
                return True
        return False

    # --- keeping runs and jobs in step ----------------------------------------------------------------
    def _reconcile(self) -> int:
        """End the active runs of this target whose job is gone; returns how many stay active."""
        if self.workspace is None:
            return 0
        store = self.workspace.store
        records = [
            r
            for r in [*store.list_runs(statuses=list(ACTIVE_STATUSES)), *not_responding_with(store, JOB_ID_PROPERTY)]
            if r.target == self.name and r.run_type == "script"
        ]
        active = 0
        for r in records:
            job_id = current_job_id(r.properties)
            if job_id and check_job(self.client, store, r.run_id, job_id, final=True, target=self) == "ended":
                continue
            active += 1
        return active


def current_job_id(properties: Mapping[str, str]) -> str | None:
    """The run's latest Ray job (``expboard.ray_job_id``, or ``expboard.ray_job_id.<n>`` after a requeue)."""
    numbered = [
        (int(k.rsplit(".", 1)[1]), v)
        for k, v in properties.items()
        if k.startswith(JOB_ID_PROPERTY + ".") and k.rsplit(".", 1)[1].isdigit()
    ]
    return max(numbered)[1] if numbered else properties.get(JOB_ID_PROPERTY)


def check_job(
    client: RayJobsClient, store: Store, run_id: str, job_id: str, final: bool, target: RayCompute | None = None
) -> str:
    """One look at a run and its Ray job. Returns ``"ended"`` (both ended: nothing more to watch),
    ``"job-ended"`` (the job ended, the run not yet: with ``final`` the run is ended now), ``"wait"``,
    ``"requeued <job id>"`` (Ray failed the job before it started: ``target`` queued the run again), or
    ``"unreachable"`` (the cluster or the store did not answer)."""
    try:
        rec = store.get_run(run_id)
        if rec.status == RunStatus.QUEUED:  # first, so a slow cluster answer does not delay the heartbeat
            rec = store.update_run(run_id, heartbeat=time.time(), only_if_status=[RunStatus.QUEUED])
        job = client.job(job_id)
    except NotFoundError:
        return "ended"
    except ExpboardError:
        return "unreachable"
    job_status = str(job.get("status"))
    now = time.time()
    grace = float(settings.get("cancel_grace_s"))
    if job_status in _TERMINAL_JOB:
        if rec.status.is_terminal:
            return "ended"
        message = job.get("message") or ""
        # Ray's limit on PENDING jobs: the run is Queued, or NotResponding because nobody kept its heartbeat
        never_started = (
            "failed to start within" in message
            and rec.start_time is None
            and rec.status in (RunStatus.QUEUED, RunStatus.NOT_RESPONDING)
        )
        queued = never_started and rec.status == RunStatus.QUEUED
        if queued and target is not None:
            try:
                return "requeued " + target.requeue(run_id)
            except ExpboardError:
                return "unreachable"
        ended_at = float(job.get("end_time") or 0) / 1000.0  # Ray's timestamp, in ms
        if queued and now - ended_at < max(heartbeat_timeout(rec), REQUEUE_GRACE_S):
            # a reader, not a follower: the process that submitted the run, if it lives, queues it again within
            # a few seconds (later on a loaded machine). Until its heartbeat timeout, the run is left to it.
            return "wait"
        if not final:
            return "job-ended"
        code = job.get("driver_exit_code")
        store.update_run(
            run_id,
            status=RunStatus.CANCELED if rec.status == RunStatus.CANCEL_REQUESTED else RunStatus.FAILED,
            end_time=now,
            error={
                "code": "RayJobEnded",
                "message": f"the run's Ray job {job_id} ended {job_status} while the run was {rec.status.value}"
                + (f" (exit code {code})" if code is not None else "")
                + (f": {message}" if message else "")
                + (
                    "; Ray gave up on the job before it started and no process that could queue the run again "
                    "was following it"
                    if never_started
                    else "; a node lost, or the run's agent killed"
                ),
            },
            only_if_status=[rec.status],
        )
        return "ended"
    if rec.status == RunStatus.QUEUED:  # in Ray's queue, or its entrypoint starting: heartbeat written above
        pass
    elif job_status == "PENDING" and rec.status == RunStatus.NOT_RESPONDING and rec.start_time is None:
        # silent only because nobody kept the heartbeat of a run Ray still holds in its queue (the submitting
        # process is gone): Queued again, so its agent can claim it when Ray starts the job
        store.update_run(
            run_id, status=RunStatus.QUEUED, heartbeat=now, error=None, only_if_status=[RunStatus.NOT_RESPONDING]
        )
    elif rec.status == RunStatus.CANCELED or (
        rec.status == RunStatus.CANCEL_REQUESTED and rec.heartbeat is not None and now - rec.heartbeat > grace + 10
    ):
        try:
            client.stop_job(job_id)
        except ExpboardError:
            return "unreachable"
    return "wait"


class _Watched:
    def __init__(self, target: RayCompute, store: Store, job_id: str) -> None:
        # A short timeout, so that a slow cluster answer never delays the next heartbeat by much.
        self.target, self.store, self.job_id = target, store, job_id
        self.client = RayJobsClient(target.client.address, timeout=FOLLOW_TIMEOUT_S)
        self.job_ended_seen = 0  # polls that saw the job ended and the run not (yet)
        self.said_unreachable = False


class _Watcher:
    """One daemon thread per process that follows the Ray jobs of the runs this process submitted; it ends
    when nothing is left to follow."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.items: dict[str, _Watched] = {}
        self.thread: threading.Thread | None = None

    def watch(self, target: RayCompute, store: Store, run_id: str, job_id: str) -> None:
        with self.lock:
            self.items[run_id] = _Watched(target, store, job_id)
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._loop, name="expboard-ray-watch", daemon=True)
                self.thread.start()

    def _loop(self) -> None:
        while True:
            time.sleep(1.0)
            with self.lock:
                items = dict(self.items)
                if not items:
                    self.thread = None
                    return
            for run_id, w in items.items():
                try:
                    state = check_job(w.client, w.store, run_id, w.job_id, final=w.job_ended_seen >= 2, target=w.target)
                except Exception as exc:  # the thread must go on for the other runs
                    state, reason = "unreachable", str(exc)
                else:
                    reason = "the cluster or the run history did not answer"
                if state == "ended":
                    with self.lock:
                        self.items.pop(run_id, None)
                elif state == "job-ended":
                    w.job_ended_seen += 1
                elif state.startswith("requeued "):
                    w.job_id, w.job_ended_seen = state.split(" ", 1)[1], 0
                elif state == "unreachable" and not w.said_unreachable:
                    w.said_unreachable = True
                    print(f"expboard: following Ray job {w.job_id}: {reason}; retrying", file=sys.stderr)


_WATCHER = _Watcher()

# When this process last asked about a run, and until when a cluster address is left alone (it did not answer).
_LOOKED: dict[str, float] = {}
_SILENT_UNTIL: dict[str, float] = {}
END_CHECK_EVERY_S = 2.0
UNREACHABLE_BACKOFF_S = 30.0


def end_gone_runs(store: Store, records: list[RunRecord]) -> None:
    """For the liveness reaper (registered in :mod:`expboard.plugins`): a silent run (NotResponding, or its
    heartbeat late) whose Ray job has ended ends Failed now, with Ray's reason. It needs only the run's record
    (the job id and the cluster's address are its properties), so any reader does it (``Run.get_status``,
    ``expboard runs list``, TensorBoard's Runs tab), whether or not the process that submitted the run lives.
    Each run is asked about at most every ``END_CHECK_EVERY_S`` seconds per process, and a cluster that does
    not answer is left alone for ``UNREACHABLE_BACKOFF_S`` seconds, so readers stay fast."""
    now = time.monotonic()
    for r in records:
        job_id, address = current_job_id(r.properties), r.properties.get(ADDRESS_PROPERTY)
        if not job_id or not address or now < _LOOKED.get(r.run_id, 0.0) or now < _SILENT_UNTIL.get(address, 0.0):
            continue
        _LOOKED[r.run_id] = now + END_CHECK_EVERY_S
        try:
            state = check_job(RayJobsClient(address, timeout=3.0), store, r.run_id, job_id, final=True)
        except (ExpboardError, OSError, ValueError):
            state = "unreachable"
        if state == "unreachable":
            _SILENT_UNTIL[address] = now + UNREACHABLE_BACKOFF_S
        elif state == "ended":
            _LOOKED.pop(r.run_id, None)


def _watcher() -> _Watcher:
    return _WATCHER


register_target_type(RayCompute.type, RayCompute.from_config)
plugins.register_end_check(end_gone_runs, marker=JOB_ID_PROPERTY)
