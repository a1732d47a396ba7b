"""What to run: :class:`ScriptRunConfig` (with Azure ML's :class:`RunConfiguration`), and the older
:class:`Estimator` mapped onto it."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import ValidationError
from .environment import CondaDependencies, Environment

__all__ = [
    "DEFAULT_ENVIRONMENT",
    "DockerConfiguration",
    "Estimator",
    "MpiConfiguration",
    "PyTorchConfiguration",
    "RunConfiguration",
    "ScriptRunConfig",
]


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


DEFAULT_ENVIRONMENT = "expboard-default"  # a run without an Environment: the agent's own interpreter


class RunConfiguration:
    """Azure ML's run configuration: ``environment``, ``target``, ``node_count``, ``environment_variables``
    and ``max_run_duration_seconds``, given to ``ScriptRunConfig(run_config=...)``; what the
    ScriptRunConfig itself says wins.

    >>> rc = RunConfiguration()
    >>> rc.target, rc.node_count
    ('local', 1)
    """

    def __init__(
        self,
        script: str | None = None,
        arguments: Sequence[Any] | None = None,
        framework: str = "Python",
        communicator: str = "None",
        conda_dependencies: Any = None,
    ) -> None:
        self.script = script
        self.arguments: list[Any] = list(arguments or [])
        self.framework = framework
        self.communicator = communicator
        self.target: Any = "local"
        self.node_count = 1
        self.environment_variables: dict[str, str] = {}
        self.max_run_duration_seconds: float | None = None
        # No environment given: the run agent's interpreter as it is (user-managed), nothing built.
        self.environment = Environment(DEFAULT_ENVIRONMENT)
        self.environment.python.user_managed_dependencies = True
        if conda_dependencies is not None:
            self.environment.python.user_managed_dependencies = False
            self.environment.python.conda_dependencies = conda_dependencies

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(target={_target_name(self.target)!r}, environment={self.environment.name!r}, "
            f"node_count={self.node_count})"
        )


def _target_name(target: Any) -> str:
    return target if isinstance(target, str) else str(getattr(target, "name", target))


def _check_duration(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or value != value:
        raise ValidationError(f"max_run_duration_seconds must be a number of seconds above 0, or None, not {value!r}")
    return float(value)


def _command_argv(command: Any) -> list[str] | str:
    if isinstance(command, str):
        if not command.strip():
            raise ValidationError("command must not be empty: give a string like 'python train.py --lr 0.1'")
        return command
    if isinstance(command, Sequence) and not isinstance(command, bytes) and len(command) > 0:
        return [str(c) for c in command]
    raise ValidationError(
        f"command must be a list like ['python', 'train.py', '--lr', 0.1] or a string, not {command!r}"
    )


class DockerConfiguration:
    """Azure ML's container settings for a run (``ScriptRunConfig(docker_runtime_config=...)``): accepted so
    Azure ML code runs; ``use_docker=True`` is refused, as runs here do not use containers."""

    def __init__(self, use_docker: bool = False, shm_size: str | None = None, arguments: Sequence[str] = ()) -> None:
        if use_docker:
            raise ValidationError(
                "use_docker=True: runs here do not use containers; leave it out and give the packages as an "
                "Environment (ScriptRunConfig(environment=...))"
            )
        self.use_docker = False
        self.shm_size = shm_size
        self.arguments = list(arguments)


class ScriptRunConfig:
    """A script in a source folder, its arguments, and where and in what environment to run it.

    ``source_directory`` is snapshotted when the run is submitted (``.expboardignore``, or else
    ``.gitignore``, patterns are left out); the script runs in a private copy of it, as
    ``python -u <script> <arguments>``, or, with ``command`` (a list, or a string run by ``bash -c``, as
    Azure ML), that command instead of script and arguments, ``python`` in it being the environment's
    interpreter. Whatever it writes under ``./logs`` is streamed into the run's files ``logs/...`` while it
    runs, ``./outputs`` is stored as ``outputs/...`` when it ends.

    ``compute_target`` is ``"local"`` (a supervised subprocess on this machine), the name of a target
    attached to the workspace (``ws.compute_targets.attach(name, target)``) or a target object; left out, the
    ``run_config``'s target, else ``"local"``. ``environment`` is an :class:`Environment`, or a dict of extra
    environment variables for the script (stored with the run, so keep secrets out of it), or None (the
    ``run_config``'s environment: nothing installed, the run agent's interpreter). ``max_run_duration_seconds``:
    a run still running that long after its script started is canceled, with the reason in its error.

    >>> config = ScriptRunConfig("./sample_projects/tensorboard-demo", "train.py",
    ...                          arguments=["--log_dir", "./logs"])
    >>> config.arguments
    ['--log_dir', './logs']
    """

    def __init__(
        self,
        source_directory: str | os.PathLike[str],
        script: str | None = None,
        arguments: Sequence[Any] | None = None,
        compute_target: Any = None,
        environment: Environment | Mapping[str, Any] | None = None,
        distributed_job_config: PyTorchConfiguration | None = None,
        resources: Mapping[str, float] | None = None,
        run_config: RunConfiguration | None = None,
        max_run_duration_seconds: float | None = None,
        command: Sequence[Any] | str | None = None,
        **azure_only: Any,
    ) -> None:
        unknown = set(azure_only) - {"docker_runtime_config", "resume_from", "_telemetry_values"}
        if unknown:
            raise TypeError(f"ScriptRunConfig() got unexpected keyword arguments {', '.join(sorted(unknown))}")
        if distributed_job_config is not None and not isinstance(distributed_job_config, PyTorchConfiguration):
            raise ValidationError("distributed_job_config must be a PyTorchConfiguration(node_count=N) or None")
        if run_config is not None and not isinstance(run_config, RunConfiguration):
            raise ValidationError("run_config must be a RunConfiguration() or None")
        if resources is not None and (
            not isinstance(resources, Mapping)
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in resources.values())
        ):
            raise ValidationError(
                "resources must be a dict of amounts per process, like {'CPU': 2, 'GPU': 1, 'memory': 2e9}"
            )
        self.command: list[str] | str | None = None
        if command is not None:
            if arguments:
                raise ValidationError("give command, or script and arguments, not both (command holds the arguments)")
            self.command = _command_argv(command)
            if script is None:
                script = _script_of(self.command)
        elif not script or not isinstance(script, str):
            if run_config is not None and run_config.script:
                script = run_config.script
            else:
                raise ValidationError(
                    "script must be the path of a file inside source_directory, like 'train.py' (or give command=)"
                )
        if not isinstance(script, str):
            raise ValidationError(f"script must be a path like 'train.py', not {script!r}")
        if isinstance(arguments, (str, bytes)):
            raise ValidationError(f"arguments must be a list, like ['--log_dir', './logs'], not {arguments!r}")
        if environment is not None and not isinstance(environment, (Mapping, Environment)):
            raise ValidationError(
                "environment must be an Environment, a dict of environment variables (like {'OMP_NUM_THREADS': '1'}) "
                "or None"
            )
        self.run_config = run_config if run_config is not None else RunConfiguration()
        if arguments is None and command is None and run_config is not None and run_config.arguments:
            arguments = run_config.arguments
        self.source_directory = Path(source_directory)
        self.script = script
        self.arguments: list[str] = [str(a) for a in (arguments or [])]
        self.compute_target = compute_target if compute_target is not None else self.run_config.target
        if isinstance(environment, Environment):
            self.run_config.environment = environment
            environment = None
        self.environment: dict[str, str] = {str(k): str(v) for k, v in (environment or {}).items()}
        if distributed_job_config is None and self.run_config.node_count > 1:
            distributed_job_config = PyTorchConfiguration(node_count=int(self.run_config.node_count))
        self.distributed_job_config = distributed_job_config
        self.resources: dict[str, float] = {str(k): float(v) for k, v in (resources or {}).items()}
        if max_run_duration_seconds is None:
            max_run_duration_seconds = self.run_config.max_run_duration_seconds
        self.max_run_duration_seconds = _check_duration(max_run_duration_seconds)

    @property
    def run_environment(self) -> Environment:
        """The :class:`Environment` the run gets (``environment=`` when it was one, else the run_config's)."""
        env = self.run_config.environment
        if not isinstance(env, Environment):
            raise ValidationError("run_config.environment must be an Environment")
        return env

    @property
    def node_count(self) -> int:
        """How many nodes the run gang-launches on (``distributed_job_config.node_count``, else 1)."""
        return self.distributed_job_config.node_count if self.distributed_job_config is not None else 1

    @property
    def target_name(self) -> str:
        """The compute target's name (the target object's ``name`` when one was given)."""
        return _target_name(self.compute_target)

    def variables(self) -> dict[str, str]:
        """The script's extra environment variables: the environment's, the run_config's, then the dict given
        as ``environment=`` (later ones win)."""
        merged = dict(self.run_environment.environment_variables)
        merged.update(self.run_config.environment_variables)
        merged.update(self.environment)
        return {str(k): str(v) for k, v in merged.items()}

    def to_dict(self) -> dict[str, Any]:
        """What the run agent needs, as stored with the run in ``runconfig.json``: ``environment`` holds the
        script's extra variables, ``environment_definition`` the :class:`Environment` (name, version, Python
        packages), ``command`` the command when one replaces script and arguments."""
        return {
            "script": self.script,
            "arguments": list(self.arguments),
            "command": self.command,
            "environment": self.variables(),
            "environment_definition": self.run_environment.to_json(),
            "max_run_duration_seconds": self.max_run_duration_seconds,
            "source_directory": str(self.source_directory),
            "compute_target": self.target_name,
            "node_count": self.node_count,
            "resources": dict(self.resources),
        }

    def __repr__(self) -> str:
        what = (
            f"command={self.command!r}"
            if self.command is not None
            else (f"script={self.script!r}, arguments={self.arguments!r}")
        )
        return (
            f"{type(self).__name__}(source_directory={str(self.source_directory)!r}, {what}, "
            f"compute_target={self.target_name!r}, environment={self.run_environment.name!r})"
        )


def _script_of(command: list[str] | str) -> str:
    """The script a command runs, for the run's name: its first ``.py`` word, else its first word."""
    words = command.split() if isinstance(command, str) else command
    return next((w for w in words if w.endswith(".py")), words[0] if words else "command")


class Estimator(ScriptRunConfig):
    """Azure ML's older way to say the same thing: ``script_params`` is a dict of arguments; the environment is
    ``environment_definition`` or made of ``pip_packages`` and ``conda_packages``.

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
        environment_definition: Environment | None = None,
        pip_packages: Sequence[str] | None = None,
        conda_packages: Sequence[str] | None = None,
        max_run_duration_seconds: float | None = None,
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
        env: Environment | None = environment_definition
        if env is not None and (pip_packages or conda_packages):
            raise ValidationError("give environment_definition or pip_packages/conda_packages, not both")
        if pip_packages or conda_packages:
            env = Environment(f"{Path(entry_script).stem}-estimator")
            env.python.conda_dependencies = CondaDependencies.create(
                pip_packages=pip_packages, conda_packages=conda_packages
            )
        run_config = RunConfiguration()
        if env is not None:
            run_config.environment = env
        super().__init__(
            source_directory,
            entry_script,
            arguments,
            compute_target,
            environment,
            run_config=run_config,
            max_run_duration_seconds=max_run_duration_seconds,
        )
        self.entry_script = entry_script
        self.script_params = dict(script_params or {})
