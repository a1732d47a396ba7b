"""A small Ray cluster on this machine (a head and worker nodes, each with its own temporary folder), for
trying the Ray target, for the tests and for the benchmarks.

>>> cluster = LocalRayCluster(workers=1, cpus_per_node=1).start()   # doctest: +SKIP
>>> cluster.address                                                   # doctest: +SKIP
'http://127.0.0.1:40123'
>>> cluster.stop()                                                    # doctest: +SKIP

Every node is started with ``ray start`` (the head with ``--head --port=0``, workers with ``--address``),
``RAY_AUTH_MODE`` set explicitly (``disabled`` unless the environment says otherwise), the dashboard (the
Jobs API) on 127.0.0.1 and a custom resource naming the node (``head``, ``worker0``, ``worker1`` ...), so
tests can tell nodes apart. Ray's own gRPC services listen on all interfaces; Ray has no option to change
that. :meth:`stop` runs ``ray stop --force``, which ends every Ray cluster of this machine's user.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["LocalRayCluster", "ray_command"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ray_command() -> str:
    exe = Path(sys.executable).with_name("ray")
    if exe.exists():
        return str(exe)
    found = shutil.which("ray")
    if found is None:
        raise FileNotFoundError("no `ray` command: pip install 'expboard[ray]'")
    return found


class LocalRayCluster:
    """A head node and ``workers`` worker nodes on 127.0.0.1."""

    def __init__(
        self,
        workers: int = 1,
        cpus_per_node: int = 1,
        head_cpus: int | None = None,
        root: str | os.PathLike[str] | None = None,
        object_store_mb: int = 80,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.workers = workers
        self.cpus_per_node = cpus_per_node
        self.head_cpus = cpus_per_node if head_cpus is None else head_cpus
        # Ray's socket paths must stay under 107 bytes: a short root.
        self.root = Path(root) if root is not None else Path(tempfile.mkdtemp(prefix="xbray-", dir="/tmp"))
        self.object_store_bytes = object_store_mb * 1024 * 1024
        self.dashboard_port = 0
        self.gcs_address = ""
        self.env = dict(os.environ)
        self.env.setdefault("RAY_AUTH_MODE", "disabled")
        self.env["RAY_USAGE_STATS_ENABLED"] = "0"
        self.env.update(env or {})  # for the nodes' Ray processes, like RAY_JOB_START_TIMEOUT_SECONDS
        self.node_dirs: dict[str, Path] = {}

    @property
    def address(self) -> str:
        """The Jobs API (dashboard) address, what ``RayCompute.attach_configuration(address=...)`` takes."""
        return f"http://127.0.0.1:{self.dashboard_port}"

    def _ray(self, *args: str, timeout: float = 120) -> str:
        proc = subprocess.run(
            [ray_command(), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"ray {' '.join(args[:2])} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc.stdout

    def _common(self, name: str, cpus: int) -> list[str]:
        temp = self.root / name
        temp.mkdir(parents=True, exist_ok=True)
        self.node_dirs[name] = temp
        return [
            "--node-ip-address=127.0.0.1",
            f"--num-cpus={cpus}",
            "--num-gpus=0",
            f"--resources={json.dumps({name: 1})}",
            f"--temp-dir={temp}",
            f"--object-store-memory={self.object_store_bytes}",
            f"--dashboard-agent-listen-port={_free_port()}",
            "--disable-usage-stats",
        ]

    def start(self, timeout: float = 180) -> LocalRayCluster:
        self.dashboard_port = _free_port()
        self._ray(
            "start",
            "--head",
            "--port=0",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={self.dashboard_port}",
            f"--ray-client-server-port={_free_port()}",
            "--include-dashboard=true",
            *self._common("head", self.head_cpus),
            timeout=timeout,
        )
        self.gcs_address = (self.root / "head" / "ray_current_cluster").read_text().strip()
        for i in range(self.workers):
            self.add_node(f"worker{i}", timeout=timeout)
        self.wait_for_nodes(1 + self.workers, timeout=timeout)
        return self

    def add_node(self, name: str, cpus: int | None = None, timeout: float = 120) -> None:
        """Start one more worker node with the custom resource ``{name: 1}``."""
        self._ray(
            "start",
            f"--address={self.gcs_address}",
            *self._common(name, self.cpus_per_node if cpus is None else cpus),
            timeout=timeout,
        )

    def nodes(self) -> list[dict[str, Any]]:
        url = f"{self.address}/api/v0/nodes?limit=100&detail=1"
        with urllib.request.urlopen(url, timeout=10) as resp:
            return list(json.loads(resp.read())["data"]["result"]["result"])

    def wait_for_nodes(self, alive: int, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            try:
                nodes = self.nodes()
                last = [(n.get("node_name"), n.get("state")) for n in nodes]
                if sum(1 for n in nodes if n.get("state") == "ALIVE") >= alive:
                    return
            except OSError as exc:
                last = exc
            time.sleep(0.5)
        raise TimeoutError(f"the local Ray cluster did not reach {alive} alive nodes in {timeout} s: {last}")

    def node_pids(self, name: str) -> list[int]:
        """Ray's own processes of one node: its raylet, log monitor, agents and workers (``ray::...``), not
        the processes those started (a job's entrypoint and what it runs)."""
        marker = str(self.node_dirs[name])
        own: list[int] = []
        children: dict[int, list[int]] = {}
        cmdlines: dict[int, str] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
            if f"temp_dir={marker} " in cmdline + " " or f"--session-dir={marker}/" in cmdline:
                own.append(int(entry))
            cmdlines[int(entry)] = cmdline
        out, todo = [], list(own)
        while todo:
            pid = todo.pop()
            if cmdlines.get(pid, "").startswith("ray::") or "site-packages/ray/" in cmdlines.get(pid, ""):
                out.append(pid)
            todo.extend(children.get(pid, []))
        return sorted(set(out))

    def kill_node(self, name: str) -> list[int]:
        """SIGKILL one worker node's Ray processes (the node lost, as far as Ray can tell); returns the pids.
        What Ray's workers started (a job's entrypoint, its script) is left alone: it must not outlive its
        node, and making sure of that is the job of whoever started it."""
        pids = self.node_pids(name)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return pids

    def stop(self) -> None:
        """``ray stop --force`` (every Ray cluster of this user on this machine), then remove the folders."""
        try:
            self._ray("stop", "--force", timeout=120)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> LocalRayCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
