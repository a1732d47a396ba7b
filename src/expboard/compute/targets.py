"""Compute targets: where submitted runs execute. ``local`` is built in; others are attached by name.

A target is an object with a ``name``, a ``type``, ``submit(run, config)`` (start the run agent for a
Queued run, return at once) and ``get_status()`` (a :class:`TargetStatus`). A new kind of target (a Ray
cluster) registers its type with :func:`register_target_type` so attached targets of that type can be
saved in the workspace (``.expboard/compute.json``) and found again by name, by the CLI too:

>>> ws.compute_targets.attach("gpu-cluster", RayTarget("gpu-cluster", address="ray://head:10001"))  # doctest: +SKIP
>>> "gpu-cluster" in ws.compute_targets                                                           # doctest: +SKIP
True
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import plugins
from ..errors import NotFoundError, ValidationError
from ..records import RunStatus
from .agent import ACTIVE_STATUSES, ENV_AGENT_LOG, agent_command
from .environment import check_buildable

if TYPE_CHECKING:
    from ..run import Run
    from ..workspace import Workspace
    from .config import ScriptRunConfig

__all__ = [
    "COMPUTE_FILE",
    "AttachConfiguration",
    "ComputeTarget",
    "ComputeTargets",
    "LocalTarget",
    "TargetStatus",
    "register_target_type",
]

COMPUTE_FILE = "compute.json"


@dataclass(frozen=True)
class TargetStatus:
    """What a target has: ``state`` ("Succeeded" when usable), nodes, CPUs, GPUs, and active runs."""

    name: str
    type: str
    state: str
    nodes: int
    cpus: int
    gpus: int
    active_runs: int = 0
    details: dict[str, Any] = field(default_factory=dict)

    def serialize(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "state": self.state,
            "nodes": self.nodes,
            "cpus": self.cpus,
            "gpus": self.gpus,
            "activeRuns": self.active_runs,
            **self.details,
        }


class ComputeTarget(ABC):
    """Where runs execute. Subclasses set ``type`` and implement ``submit`` and ``get_status``."""

    type: str = ""
    # How runs get their Environment: "venv" (the run agent builds a cached virtual environment on the
    # machine it runs on) or "runtime_env" (the target makes it, as Ray does from the job's runtime_env).
    environment_build: str = "venv"

    def __init__(self, name: str) -> None:
        self.name = name
        self.workspace: Workspace | None = None  # set when attached

    @abstractmethod
    def submit(self, run: Run, config: ScriptRunConfig) -> None:
        """Start supervising ``run`` (Queued, its snapshot and runconfig.json stored); return at once."""

    @abstractmethod
    def get_status(self) -> TargetStatus:
        """Nodes, CPUs, GPUs and how many runs are active on this target."""

    def check_environment(self, definition: Mapping[str, Any]) -> None:
        """Raise EnvironmentBuildError for an environment this target cannot make (conda packages, Docker),
        before the run is created."""
        check_buildable(definition)

    def to_config(self) -> dict[str, Any]:
        """What to save in ``.expboard/compute.json`` to make this target again (without ``type``)."""
        return {}

    @classmethod
    def from_config(cls, name: str, config: Mapping[str, Any]) -> ComputeTarget:
        return cls(name, **config)

    @staticmethod
    def attach(workspace: Workspace, name: str, attach_configuration: AttachConfiguration) -> ComputeTarget:
        """Azure ML's way to attach existing compute by name:
        ``ComputeTarget.attach(ws, "ray-cluster", RayCompute.attach_configuration(address=URL))``; the target
        is saved in the workspace and found again in ``ws.compute_targets``."""
        if not isinstance(attach_configuration, AttachConfiguration):
            raise ValidationError(
                f"ComputeTarget.attach takes an attach configuration (like RayCompute.attach_configuration(...)), "
                f"not {type(attach_configuration).__name__}"
            )
        target = attach_configuration.create_target(name)
        attached: ComputeTarget = workspace.compute_targets.attach(name, target)
        return attached

    def wait_for_completion(self, show_output: bool = False, **kwargs: Any) -> None:  # noqa: B027
        """Azure ML compute targets provision nodes here; targets that are always ready return at once."""

    def _active_runs(self) -> int:
        if self.workspace is None:
            return 0
        records = self.workspace.store.list_runs(statuses=list(ACTIVE_STATUSES))
        return sum(1 for r in records if r.target == self.name and r.run_type == "script")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class AttachConfiguration(ABC):
    """What :meth:`ComputeTarget.attach` needs to make a target of some type (``RayCompute.attach_configuration``)."""

    @abstractmethod
    def create_target(self, name: str) -> ComputeTarget:
        """The target, named ``name``, not yet attached."""


def _gpu_count() -> int:
    try:
        return len([d for d in os.listdir("/proc/driver/nvidia/gpus")])
    except OSError:
        return 0


class LocalTarget(ComputeTarget):
    """This machine: each run is supervised by a detached agent process (``python -m expboard.compute``)
    that survives the submitting process. The agent's own stdout/stderr go to
    ``<temp folder>/expboard-agent-<run id>.log``, removed when the agent ends and it is empty."""

    type = "local"

    def __init__(self, name: str = "local", python: str | None = None) -> None:
        super().__init__(name)
        self.python = python

    def submit(self, run: Run, config: ScriptRunConfig) -> None:
        if config.node_count > 1:
            raise ValidationError(
                f"compute target {self.name!r} is this one machine: node_count={config.node_count} needs a "
                "cluster target (RayCompute)"
            )
        env = dict(os.environ)
        env.update(run.workspace.env())
        env["PYTHONUNBUFFERED"] = "1"
        log_path = Path(tempfile.gettempdir()) / f"expboard-agent-{run.id}.log"
        env[ENV_AGENT_LOG] = str(log_path)
        # A heartbeat now: the agent has EXPBOARD_HEARTBEAT_TIMEOUT_S to claim the run, or it is NotResponding.
        run.workspace.store.update_run(run.id, heartbeat=time.time(), only_if_status=[RunStatus.QUEUED])
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                agent_command(run.id, self.python),
                env=env,
                cwd=tempfile.gettempdir(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C in the submitting terminal does not reach the agent
                close_fds=True,
            )
        # Reap the agent when it ends while we still run (no zombie); if we end first, init adopts it.
        threading.Thread(target=proc.wait, name=f"expboard-reap-{proc.pid}", daemon=True).start()

    def get_status(self) -> TargetStatus:
        return TargetStatus(
            name=self.name,
            type=self.type,
            state="Succeeded",
            nodes=1,
            cpus=os.cpu_count() or 1,
            gpus=_gpu_count(),
            active_runs=self._active_runs(),
            details={"python": self.python or sys.executable},
        )

    def to_config(self) -> dict[str, Any]:
        return {"python": self.python} if self.python else {}


_TARGET_TYPES: dict[str, Callable[[str, Mapping[str, Any]], ComputeTarget]] = {
    "local": LocalTarget.from_config,
}


def register_target_type(type_name: str, factory: Callable[[str, Mapping[str, Any]], ComputeTarget]) -> None:
    """Make attached targets of ``type_name`` loadable from ``.expboard/compute.json``:
    ``factory(name, saved_config)`` builds one (``SomeTarget.from_config`` usually)."""
    _TARGET_TYPES[type_name] = factory


class ComputeTargets(Mapping[str, ComputeTarget]):
    """The workspace's compute targets by name (``ws.compute_targets``): ``local`` and attached ones.

    >>> cts = ws.compute_targets                          # doctest: +SKIP
    >>> cts["local"].get_status().serialize()["cpus"]     # doctest: +SKIP
    8
    """

    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace
        self._lock = threading.Lock()
        self._targets: dict[str, ComputeTarget] = {}
        self._add(LocalTarget())
        for name, saved in self._read_saved().items():
            factory = _TARGET_TYPES.get(str(saved.get("type")))
            if factory is None:
                plugins.load()  # the target types expboard brings (Ray) register when their module loads
                factory = _TARGET_TYPES.get(str(saved.get("type")))
            if factory is None:
                continue  # a type this process does not know (its module not imported): skipped
            config = {k: v for k, v in saved.items() if k != "type"}
            self._add(factory(name, config))

    @property
    def _file(self) -> Path | None:
        if self.workspace.path is None:
            return None
        return self.workspace.path / ".expboard" / COMPUTE_FILE

    def _read_saved(self) -> dict[str, dict[str, Any]]:
        f = self._file
        if f is None or not f.is_file():
            return {}
        try:
            data = json.loads(f.read_text())
        except (OSError, json.JSONDecodeError):
            return {}
        return {k: v for k, v in data.items() if isinstance(v, dict)} if isinstance(data, dict) else {}

    def _save(self) -> None:
        f = self._file
        if f is None:
            return
        data = {
            name: {"type": t.type, **t.to_config()}
            for name, t in self._targets.items()
            if not (name == "local" and isinstance(t, LocalTarget) and not t.to_config())
        }
        tmp = f.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        os.replace(tmp, f)

    def _add(self, target: ComputeTarget) -> None:
        target.workspace = self.workspace
        self._targets[target.name] = target

    def attach(self, name: str, target: ComputeTarget, persist: bool = True) -> ComputeTarget:
        """Add ``target`` under ``name`` (saved in the workspace's ``.expboard/compute.json`` unless
        ``persist=False`` or its type is not registered); replaces a target of that name."""
        if not name or not isinstance(name, str):
            raise ValidationError("a compute target needs a name")
        if not isinstance(target, ComputeTarget):
            raise ValidationError(f"cannot attach {target!r}: it is not a ComputeTarget")
        target.name = name
        with self._lock:
            self._add(target)
            if persist and target.type in _TARGET_TYPES:
                self._save()
        return target

    def detach(self, name: str) -> None:
        """Remove an attached target (``local`` comes back as the built-in one)."""
        with self._lock:
            if name not in self._targets:
                raise NotFoundError(f"no compute target {name!r}; targets: {', '.join(self._targets)}")
            del self._targets[name]
            if name == "local":
                self._add(LocalTarget())
            self._save()

    def get(self, name: str, default: Any = None) -> Any:
        return self._targets.get(name, default)

    def resolve(self, target: str | ComputeTarget) -> ComputeTarget:
        """A target object from a name or a target (an unattached target object is used as it is)."""
        if isinstance(target, ComputeTarget):
            if target.workspace is None:
                target.workspace = self.workspace
            return target
        return self[str(target)]

    def list(self) -> list[ComputeTarget]:
        return list(self._targets.values())

    def __getitem__(self, name: str) -> ComputeTarget:
        try:
            return self._targets[name]
        except KeyError:
            raise NotFoundError(
                f"no compute target {name!r} in this workspace; targets: {', '.join(sorted(self._targets))}. "
                "Attach one with ws.compute_targets.attach(name, target)"
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._targets)

    def __len__(self) -> int:
        return len(self._targets)

    def __repr__(self) -> str:
        return f"ComputeTargets({sorted(self._targets)!r})"
