"""What to run: :class:`ScriptRunConfig`, and the older :class:`Estimator` mapped onto it."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import ValidationError

__all__ = ["Estimator", "MpiConfiguration", "PyTorchConfiguration", "ScriptRunConfig"]


class PyTorchConfiguration:
    """A run on ``node_count`` nodes, one process per node, with the environment ``torch.distributed``
    reads (MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE, LOCAL_RANK), as Azure ML's class of that name.
    Compute targets that have one node (``local``) refuse ``node_count`` above 1."""

    def __init__(self, node_count: int = 1, process_count: int | None = None) -> None:
        if not isinstance(node_count, int) or node_count < 1:
            raise ValidationError(f"node_count must be a whole number of nodes, 1 or more, not {node_count!r}")
        if process_count not in (None, node_count):
            raise ValidationError("one process per node: leave process_count out or set it to node_count")
        self.node_count = node_count

    def __repr__(self) -> str:
        return f"{type(self).__name__}(node_count={self.node_count})"


class MpiConfiguration(PyTorchConfiguration):
    """Azure ML's name for the same shape: ``node_count`` processes on distinct nodes."""


class ScriptRunConfig:
    """A script in a source folder, its arguments, and where to run it.

    ``source_directory`` is snapshotted when the run is submitted (``.expboardignore``, or else
    ``.gitignore``, patterns are left out); the script runs in a private copy of it, as
    ``python -u <script> <arguments>``. Whatever it writes under ``./logs`` is streamed into the run's files
    ``logs/...`` while it runs, ``./outputs`` is stored as ``outputs/...`` when it ends.

    ``compute_target`` is ``"local"`` (a supervised subprocess on this machine), the name of a target
    attached to the workspace (``ws.compute_targets.attach(name, target)``) or a target object.
    ``environment`` is a dict of extra environment variables for the script (stored with the run, so keep
    secrets out of it), or None.

    >>> config = ScriptRunConfig("./sample_projects/tensorboard-demo", "train.py",
    ...                          arguments=["--log_dir", "./logs"])
    >>> config.arguments
    ['--log_dir', './logs']
    """

    def __init__(
        self,
        source_directory: str | os.PathLike[str],
        script: str,
        arguments: Sequence[Any] | None = None,
        compute_target: Any = "local",
        environment: Mapping[str, Any] | None = None,
        distributed_job_config: PyTorchConfiguration | None = None,
        resources: Mapping[str, float] | None = None,
    ) -> None:
        if distributed_job_config is not None and not isinstance(distributed_job_config, PyTorchConfiguration):
            raise ValidationError("distributed_job_config must be a PyTorchConfiguration(node_count=N) or None")
        if resources is not None and (
            not isinstance(resources, Mapping)
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in resources.values())
        ):
            raise ValidationError(
                "resources must be a dict of amounts per process, like {'CPU': 2, 'GPU': 1, 'memory': 2e9}"
            )
        if not script or not isinstance(script, str):
            raise ValidationError("script must be the path of a file inside source_directory, like 'train.py'")
        if isinstance(arguments, (str, bytes)):
            raise ValidationError(f"arguments must be a list, like ['--log_dir', './logs'], not {arguments!r}")
        if environment is not None and not isinstance(environment, Mapping):
            raise ValidationError(
                "environment must be a dict of environment variables (like {'OMP_NUM_THREADS': '1'}) or None"
            )
        self.source_directory = Path(source_directory)
        self.script = script
        self.arguments: list[str] = [str(a) for a in (arguments or [])]
        self.compute_target = compute_target
        self.environment: dict[str, str] = {str(k): str(v) for k, v in (environment or {}).items()}
        self.distributed_job_config = distributed_job_config
        self.resources: dict[str, float] = {str(k): float(v) for k, v in (resources or {}).items()}

    @property
    def node_count(self) -> int:
        """How many nodes the run gang-launches on (``distributed_job_config.node_count``, else 1)."""
        return self.distributed_job_config.node_count if self.distributed_job_config is not None else 1

    @property
    def target_name(self) -> str:
        """The compute target's name (the target object's ``name`` when one was given)."""
        target = self.compute_target
        return target if isinstance(target, str) else str(getattr(target, "name", target))

    def to_dict(self) -> dict[str, Any]:
        """What the run agent needs, as stored with the run in ``runconfig.json``."""
        return {
            "script": self.script,
            "arguments": list(self.arguments),
            "environment": dict(self.environment),
            "source_directory": str(self.source_directory),
            "compute_target": self.target_name,
            "node_count": self.node_count,
            "resources": dict(self.resources),
        }

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(source_directory={str(self.source_directory)!r}, script={self.script!r}, "
            f"arguments={self.arguments!r}, compute_target={self.target_name!r})"
        )


class Estimator(ScriptRunConfig):
    """Azure ML's older way to say the same thing: ``script_params`` is a dict of arguments.

    ``{"--log_dir": "./logs", "--verbose": None}`` becomes ``["--log_dir", "./logs", "--verbose"]``: a value
    of None or True makes a flag without a value; False leaves the flag out.

    >>> Estimator("./project", entry_script="train.py", script_params={"--log_dir": "./logs"}).arguments
    ['--log_dir', './logs']
    """

    def __init__(
        self,
        source_directory: str | os.PathLike[str],
        entry_script: str,
        script_params: Mapping[str, Any] | None = None,
        compute_target: Any = "local",
        environment: Mapping[str, Any] | None = None,
    ) -> None:
        if script_params is not None and not isinstance(script_params, Mapping):
            raise ValidationError("script_params must be a dict like {'--log_dir': './logs'}")
        arguments: list[str] = []
        for key, value in (script_params or {}).items():
            if value is False:
                continue
            arguments.append(str(key))
            if value is not None and value is not True:
                arguments.append(str(value))
        super().__init__(source_directory, entry_script, arguments, compute_target, environment)
        self.entry_script = entry_script
        self.script_params = dict(script_params or {})
