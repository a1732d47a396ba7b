"""Environments: the Python packages and variables a submitted run needs, as Azure ML's ``Environment``.

>>> env = Environment.from_pip_requirements("sklearn-env", "requirements.txt")   # doctest: +SKIP
>>> env.environment_variables["OMP_NUM_THREADS"] = "1"                          # doctest: +SKIP
>>> env.register(ws).version                                                    # doctest: +SKIP
'1'
>>> ScriptRunConfig("./project", "train.py", environment=env)                   # doctest: +SKIP

Where a run's environment comes from:

- ``python.user_managed_dependencies = True``: the script runs with ``python.interpreter_path`` (default:
  the interpreter of the run agent, the one that submitted the run on the local target). Nothing is built.
- otherwise, on the local target, the packages are installed into a virtual environment built once per
  specification (the hash of its pip packages, pip options, conda packages and channels, the interpreter
  and this expboard) under ``EXPBOARD_ENV_CACHE_DIR`` and reused by every later run with the same
  specification. The build runs under a file lock, so two runs at once never build one environment twice;
  a failed build is removed, never reused. Its output (pip's) goes to the run's driver log.
- on a Ray cluster the environment becomes the job's ``runtime_env`` (``pip`` and ``env_vars``, see
  :func:`ray_runtime_env`): Ray builds and caches it on the nodes.

A built environment sees its own packages first, then expboard and the packages expboard itself needs
(numpy, ...: linked from the agent's interpreter into a folder of the environment that comes after its
site-packages on ``sys.path``), and nothing else the agent's interpreter has: so ``Run.get_context()``
works in the script, an environment that pins its own numpy gets its own, and a package it does not list
is not importable unless expboard needs it.

Azure ML's SDK packages (``azureml-defaults``, ``azureml-core``, ...) in a specification are left out of
builds (expboard plays their part). Conda packages other than ``python`` and ``pip`` need conda, which
the local target's builder does not use: they are refused with an error that says what to do.
"""

from __future__ import annotations

import copy
import fcntl
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import settings
from ..errors import ExpboardError, NotFoundError, ValidationError

if TYPE_CHECKING:
    from ..workspace import Workspace

__all__ = [
    "OBJECT_KIND",
    "CondaDependencies",
    "DockerSection",
    "Environment",
    "EnvironmentBuildError",
    "PreparedEnvironment",
    "PythonSection",
    "check_buildable",
    "environment_key",
    "prepare_environment",
    "ray_runtime_env",
]

OBJECT_KIND = "environment"  # the kind of workspace object registered environments are stored as
_COMPLETE = ".expboard-environment.json"  # written last into a built environment: it is complete
_HOST_FOLDER = "expboard-host"  # in a built environment: links to expboard and the packages it needs
_SDK_PREFIX = "azureml"  # Azure ML's own SDK packages: expboard stands in for them
_CONDA_SATISFIED = {"python", "pip"}  # conda entries a virtual environment of this interpreter satisfies


class EnvironmentBuildError(ExpboardError):
    """An environment could not be built (pip failed, conda needed); the message says what to change."""

    status_code = 400


def _package_name(spec: str) -> str:
    """``scikit-learn==1.3`` -> ``scikit-learn``; ``python=3.8`` -> ``python``."""
    m = re.match(r"\s*([A-Za-z0-9_.\-]+)", spec)
    return m.group(1).lower().replace("_", "-") if m else spec.strip().lower()


class CondaDependencies:
    """Azure ML's description of a conda environment file: conda packages, channels, and pip packages and
    options (``dependencies: [..., {pip: [...]}]``).

    >>> deps = CondaDependencies.create(pip_packages=["numpy==1.26.4"], conda_packages=["python=3.11"])
    >>> list(deps.pip_packages)
    ['numpy==1.26.4']
    """

    def __init__(
        self, conda_dependencies_file_path: str | os.PathLike[str] | None = None, _underlying_structure: Any = None
    ) -> None:
        self.name = "project_environment"
        self._conda: list[str] = []
        self._pip: list[str] = []
        self._pip_options: list[str] = []
        self._channels: list[str] = []
        data = _underlying_structure
        if conda_dependencies_file_path is not None:
            data = _read_yaml(Path(conda_dependencies_file_path))
        if data is not None:
            self._load(data, str(conda_dependencies_file_path or "the conda specification"))

    def _load(self, data: Any, where: str) -> None:
        if not isinstance(data, Mapping):
            raise ValidationError(f"{where} must be a conda environment file: a mapping with 'dependencies'")
        self.name = str(data.get("name") or self.name)
        self._channels = [str(c) for c in data.get("channels") or []]
        for dep in data.get("dependencies") or []:
            if isinstance(dep, Mapping) and "pip" in dep:
                for line in dep.get("pip") or []:
                    self._add_pip_line(str(line))
            elif isinstance(dep, (str, int, float)):
                self._conda.append(str(dep))
            else:
                raise ValidationError(f"{where}: a dependency must be a package or a 'pip:' list, not {dep!r}")

    def _add_pip_line(self, line: str) -> None:
        line = line.strip()
        if not line or line.startswith("#"):
            return
        if line.startswith("-") and not line.startswith(("-e ", "--editable")):
            self._pip_options.append(line)
        else:
            self._pip.append(line)

    @staticmethod
    def create(
        pip_packages: Sequence[str] | None = None,
        conda_packages: Sequence[str] | None = None,
        python_version: str | None = None,
        pin_sdk_version: bool = True,
        pip_indexurl: str | None = None,
        channels: Sequence[str] | None = None,
    ) -> CondaDependencies:
        """Azure ML's ``CondaDependencies.create``: pip and conda packages (``pin_sdk_version`` is accepted
        and unused: Azure ML's SDK packages are not installed)."""
        for what, value in (("pip_packages", pip_packages), ("conda_packages", conda_packages)):
            if isinstance(value, str):
                raise ValidationError(f"{what} must be a list of packages, like ['numpy'], not {value!r}")
        deps = CondaDependencies()
        if python_version is not None:
            deps._conda.append(f"python={python_version}")
        for p in conda_packages or []:
            deps.add_conda_package(p)
        for p in pip_packages or []:
            deps.add_pip_package(p)
        if pip_indexurl:
            deps.set_pip_option(f"--index-url {pip_indexurl}")
        for c in channels or []:
            deps.add_channel(c)
        return deps

    @property
    def pip_packages(self) -> Iterator[str]:
        return iter(list(self._pip))

    @property
    def conda_packages(self) -> Iterator[str]:
        return iter(list(self._conda))

    @property
    def conda_channels(self) -> Iterator[str]:
        return iter(list(self._channels))

    @property
    def pip_options(self) -> Iterator[str]:
        return iter(list(self._pip_options))

    def add_pip_package(self, pip_package: str) -> None:
        """Add a pip requirement (``"numpy"``, ``"torch==2.13.0"``, a wheel's path); one of the same name is
        replaced."""
        if not isinstance(pip_package, str) or not pip_package.strip():
            raise ValidationError(f"a pip package is a requirement string like 'numpy>=1.24', not {pip_package!r}")
        self.remove_pip_package(_package_name(pip_package))
        self._pip.append(pip_package.strip())

    def add_conda_package(self, conda_package: str) -> None:
        if not isinstance(conda_package, str) or not conda_package.strip():
            raise ValidationError(f"a conda package is a string like 'scikit-learn=1.3', not {conda_package!r}")
        self.remove_conda_package(_package_name(conda_package))
        self._conda.append(conda_package.strip())

    def remove_pip_package(self, pip_package: str) -> None:
        name = _package_name(pip_package)
        self._pip = [p for p in self._pip if _package_name(p) != name]

    def remove_conda_package(self, conda_package: str) -> None:
        name = _package_name(conda_package)
        self._conda = [p for p in self._conda if _package_name(p) != name]

    def add_channel(self, channel: str) -> None:
        if channel not in self._channels:
            self._channels.append(channel)

    def set_pip_option(self, pip_option: str) -> None:
        """A line of pip options (``"--extra-index-url URL"``, ``"--find-links DIR"``, ``"--no-index"``)."""
        if pip_option not in self._pip_options:
            self._pip_options.append(pip_option)

    def get_python_version(self) -> str | None:
        for p in self._conda:
            if _package_name(p) == "python":
                return p.split("=", 1)[1].lstrip("=") if "=" in p else None
        return None

    def _as_dict(self) -> dict[str, Any]:
        deps: list[Any] = list(self._conda)
        if self._pip or self._pip_options:
            deps.append({"pip": [*self._pip_options, *self._pip]})
        data: dict[str, Any] = {"name": self.name, "dependencies": deps}
        if self._channels:
            data["channels"] = list(self._channels)
        return data

    def serialize_to_string(self) -> str:
        """The conda environment file (YAML)."""
        import yaml

        return str(yaml.safe_dump(self._as_dict(), sort_keys=False))

    def save(self, path: str | os.PathLike[str]) -> str:
        Path(path).write_text(self.serialize_to_string())
        return str(path)

    save_to_file = save

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CondaDependencies) and self._as_dict() == other._as_dict()

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"CondaDependencies(conda_packages={self._conda!r}, pip_packages={self._pip!r})"


def _read_yaml(path: Path) -> Any:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ValidationError(f"cannot read the conda specification {str(path)!r}: {exc.strerror}") from None
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValidationError(f"{str(path)!r} is not a valid conda environment file (YAML): {exc}") from None


class PythonSection:
    """``env.python``: ``user_managed_dependencies`` (use ``interpreter_path`` as it is, install nothing),
    ``interpreter_path`` and ``conda_dependencies``."""

    def __init__(self) -> None:
        self.user_managed_dependencies = False
        self.interpreter_path: str | None = None
        self.conda_dependencies_file: str | None = None
        self.base_conda_environment: str | None = None
        self._conda = CondaDependencies()

    @property
    def conda_dependencies(self) -> CondaDependencies:
        return self._conda

    @conda_dependencies.setter
    def conda_dependencies(self, value: CondaDependencies) -> None:
        if not isinstance(value, CondaDependencies):
            raise ValidationError(
                "python.conda_dependencies must be a CondaDependencies, like "
                "CondaDependencies.create(pip_packages=[...])"
            )
        self._conda = value


class DockerSection:
    """``env.docker``: accepted so Azure ML code runs; runs do not use containers (``enabled`` must stay
    False on the local target, where a base image would be silently ignored otherwise)."""

    def __init__(self) -> None:
        self.enabled = False
        self.base_image: str | None = None
        self.base_dockerfile: str | None = None
        self.shm_size: str | None = None
        self.arguments: list[str] = []


class Environment:
    """A named environment for runs (see the module's documentation for how runs get it).

    ``Environment(name)`` starts empty (nothing installed, not user-managed: an empty virtual
    environment); fill ``python.conda_dependencies``, or set ``python.user_managed_dependencies = True`` to
    run with an interpreter you manage. ``register(ws)`` stores it in the run history as a new version.
    """

    def __init__(self, name: str) -> None:
        if not isinstance(name, str) or not name:
            raise ValidationError(f"an environment needs a name, like Environment('sklearn-env'), not {name!r}")
        self.name = name
        self.version: str | None = None
        self.python = PythonSection()
        self.docker = DockerSection()
        self.environment_variables: dict[str, str] = {}
        self.inferencing_stack_version: str | None = None

    # --- constructors ----------------------------------------------------------------------------
    @staticmethod
    def from_pip_requirements(
        name: str, file_path: str | os.PathLike[str], pip_version: str | None = None
    ) -> Environment:
        """An environment with the requirements of a pip requirements file (options such as
        ``--find-links`` or ``--index-url`` included; ``-r other.txt`` read relative to it)."""
        env = Environment(name)
        deps = CondaDependencies()
        for line in _requirement_lines(Path(file_path)):
            deps._add_pip_line(line)
        if pip_version:
            deps._conda.append(f"pip={pip_version}")
        env.python.conda_dependencies = deps
        return env

    @staticmethod
    def from_conda_specification(name: str, file_path: str | os.PathLike[str]) -> Environment:
        """An environment from a conda environment file (``dependencies``, its ``pip:`` list, ``channels``)."""
        env = Environment(name)
        env.python.conda_dependencies = CondaDependencies(file_path)
        return env

    def clone(self, new_name: str) -> Environment:
        env = copy.deepcopy(self)
        env.name = new_name
        env.version = None
        return env

    # --- the run history -------------------------------------------------------------------------
    def register(self, workspace: Workspace) -> Environment:
        """Store this definition as the next version of ``name`` in the workspace's run history and return
        it with its ``version``; a definition equal to the latest version is that version again."""
        store = workspace.store
        body = self._definition()
        try:
            latest = store.get_object(OBJECT_KIND, self.name)
        except NotFoundError:
            latest = None
        record = latest if latest is not None and dict(latest.body) == body else None
        if record is None:
            record = store.register_object(OBJECT_KIND, self.name, body)
        self.version = str(record.version)
        return Environment._from_definition(self.name, record.body, str(record.version))

    @staticmethod
    def get(workspace: Workspace, name: str, version: str | int | None = None, label: str | None = None) -> Environment:
        """A registered environment, the latest version unless ``version`` is given."""
        if label is not None:
            raise ValidationError("environment labels are not kept by expboard: give version=, or none for the latest")
        v: int | None = None
        if version is not None:
            try:
                v = int(version)
            except (TypeError, ValueError):
                raise ValidationError(f"an environment version is a number like '1', not {version!r}") from None
        try:
            record = workspace.store.get_object(OBJECT_KIND, name, v)
        except NotFoundError:
            raise NotFoundError(_missing_message(workspace, name, v)) from None
        return Environment._from_definition(name, record.body, str(record.version))

    @staticmethod
    def list(workspace: Workspace) -> dict[str, Environment]:
        """The latest version of every registered environment, by name (Azure ML's ``EnvironmentDictionary``)."""
        latest: dict[str, Any] = {}
        for record in workspace.store.list_objects(OBJECT_KIND):
            latest[record.name] = record  # listed by name, then version: the last one wins
        return {n: Environment._from_definition(n, r.body, str(r.version)) for n, r in sorted(latest.items())}

    # --- serialization ---------------------------------------------------------------------------
    def _definition(self) -> dict[str, Any]:
        """The definition as stored (in the run history and in a run's ``runconfig.json``), Azure ML's keys."""
        deps = self.python.conda_dependencies
        return {
            "python": {
                "userManagedDependencies": bool(self.python.user_managed_dependencies),
                "interpreterPath": self.python.interpreter_path,
                "condaDependencies": deps._as_dict(),
            },
            "environmentVariables": {str(k): str(v) for k, v in self.environment_variables.items()},
            "docker": {"enabled": bool(self.docker.enabled), "baseImage": self.docker.base_image},
        }

    def to_json(self) -> dict[str, Any]:
        """Name, version and definition: what ``runconfig.json`` keeps of a run's environment."""
        return {"name": self.name, "version": self.version, **self._definition()}

    @staticmethod
    def _from_definition(name: str, body: Mapping[str, Any], version: str | None) -> Environment:
        env = Environment(name)
        env.version = version
        python = body.get("python") or {}
        env.python.user_managed_dependencies = bool(python.get("userManagedDependencies"))
        env.python.interpreter_path = python.get("interpreterPath")
        env.python.conda_dependencies = CondaDependencies(_underlying_structure=python.get("condaDependencies") or {})
        env.environment_variables = {str(k): str(v) for k, v in (body.get("environmentVariables") or {}).items()}
        docker = body.get("docker") or {}
        env.docker.enabled = bool(docker.get("enabled"))
        env.docker.base_image = docker.get("baseImage")
        return env

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> Environment:
        return Environment._from_definition(str(data["name"]), data, data.get("version"))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Environment) and (self.name, self._definition()) == (other.name, other._definition())

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return json.dumps({"name": self.name, "version": self.version, **self._definition()}, indent=4)


def _missing_message(workspace: Workspace, name: str, version: int | None) -> str:
    which = f"version {version} of " if version is not None else ""
    registered = sorted({r.name for r in workspace.store.list_objects(OBJECT_KIND)})
    text = f"no {which}environment {name!r} is registered in this workspace"
    if name.startswith(("AzureML-", "azureml-")) or name.lower().startswith("azureml"):
        text += (
            f". {name!r} is one of Azure ML's curated environments (a Docker image in Azure), which expboard does "
            "not ship: make the same one with Environment.from_pip_requirements(name, 'requirements.txt') or "
            "Environment(name) and env.python.conda_dependencies = CondaDependencies.create(pip_packages=[...]), "
            "then env.register(ws); or run with this interpreter: env = Environment(name); "
            "env.python.user_managed_dependencies = True"
        )
    else:
        text += ". Register it first with env.register(ws)"
    if registered:
        text += f". Registered: {', '.join(registered)}"
    return text


def _requirement_lines(path: Path, depth: int = 0) -> list[str]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ValidationError(f"cannot read the pip requirements file {str(path)!r}: {exc.strerror}") from None
    lines: list[str] = []
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        m = re.match(r"(-r|--requirement)\s*=?\s*(\S+)$", line)
        if m and depth < 10:
            lines.extend(_requirement_lines(path.parent / m.group(2), depth + 1))
            continue
        m = re.match(r"(--find-links|-f)\s*=?\s*(\S+)$", line)
        if m and "://" not in m.group(2):  # a local folder: relative to the requirements file
            line = f"--find-links {(path.parent / m.group(2)).resolve()}"
        lines.append(line)
    return lines


# --- building on the local target --------------------------------------------------------------------
@dataclass(frozen=True)
class PreparedEnvironment:
    """What the agent runs a script with: ``python`` (an interpreter) and ``bin_dir`` (put first on PATH,
    so ``python`` in a ``command`` is this interpreter)."""

    python: str
    bin_dir: str
    built: bool = False  # a built (cached) virtual environment, not an interpreter used as it is


def _expboard_fingerprint() -> dict[str, str]:
    try:
        version = importlib.metadata.version("expboard")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that is not installed
        version = "unknown"
    return {"expboard": str(Path(__file__).resolve().parents[1]), "version": version}


def _build_spec(definition: Mapping[str, Any]) -> dict[str, Any]:
    deps = (definition.get("python") or {}).get("condaDependencies") or {}
    conda = CondaDependencies(_underlying_structure=deps)
    return {
        "pip": [p for p in conda._pip if not _package_name(p).startswith(_SDK_PREFIX)],
        "pip_options": list(conda._pip_options),
        "conda": [p for p in conda._conda if _package_name(p) not in _CONDA_SATISFIED],
        "channels": list(conda._channels),
    }


def environment_key(definition: Mapping[str, Any]) -> str:
    """The hash a built environment is cached under: its packages, pip options, conda packages and
    channels, the interpreter it is made from, and this expboard (whose links it holds)."""
    spec = {
        **_build_spec(definition),
        "interpreter": sys.executable,
        "python": ".".join(map(str, sys.version_info[:3])),
        **_expboard_fingerprint(),
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:32]


def _needed_modules() -> dict[str, Path]:
    """Where expboard and every package of its own dependency tree (markers evaluated, no extras) are
    imported from in this interpreter, and their metadata folders: what a built environment links to."""
    from packaging.requirements import Requirement

    seen: set[str] = set()
    todo = ["expboard"]
    dists: list[importlib.metadata.Distribution] = []
    while todo:
        name = todo.pop().lower().replace("_", "-")
        if name in seen:
            continue
        seen.add(name)
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        dists.append(dist)
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            todo.append(req.name)
    links: dict[str, Path] = {}  # the name in the environment's link folder -> what it links to
    for dist in dists:
        for f in dist.files or []:  # its metadata too: packages read their own version (importlib.metadata)
            if f.name in ("METADATA", "PKG-INFO") and f.parent.name.endswith((".dist-info", ".egg-info")):
                meta = Path(str(dist.locate_file(f))).parent
                links[meta.name] = meta
                break
        for top in _top_level_names(dist):
            spec = importlib.util.find_spec(top) if top.isidentifier() else None
            if spec is None or spec.origin in ("built-in", "frozen"):
                continue
            if spec.origin is None:  # a namespace package (google.*): its parts of this distribution only
                for f in dist.files or []:
                    parts = Path(str(f)).parts
                    if len(parts) >= 2 and parts[0] == top and parts[1] != "__pycache__":
                        links.setdefault(f"{top}/{parts[1]}", Path(str(dist.locate_file(Path(top, parts[1])))))
            elif spec.submodule_search_locations:
                for location in spec.submodule_search_locations:
                    links.setdefault(top, Path(location))
            else:
                links.setdefault(Path(str(spec.origin)).name, Path(str(spec.origin)))
    return links


def _top_level_names(dist: importlib.metadata.Distribution) -> list[str]:
    text = dist.read_text("top_level.txt")
    if text:
        return [t.strip() for t in text.split() if t.strip() and "/" not in t]
    names: set[str] = set()
    for f in dist.files or []:
        parts = Path(str(f)).parts
        if not parts or parts[0] == ".." or parts[0].endswith((".dist-info", ".egg-info", ".pth")):
            continue
        if parts[0].startswith("__editable__"):
            continue
        first = parts[0]
        if len(parts) == 1:
            first = first.split(".", 1)[0]
        if first.isidentifier() and first != "__pycache__":
            names.add(first)
    if not names and dist.metadata["Name"]:
        names.add(str(dist.metadata["Name"]).replace("-", "_"))
    return sorted(names)


def _cache_dir() -> Path:
    folder = settings.get("env_cache_dir")
    return Path(folder).expanduser() if folder else Path.home() / ".cache" / "expboard" / "envs"


def _site_packages(venv: Path) -> Path:
    found = sorted(venv.glob("lib/python*/site-packages"))
    if not found:
        raise EnvironmentBuildError(f"the virtual environment {venv} has no lib/python*/site-packages")
    return found[0]


def _venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _conda_error(packages: Sequence[str]) -> EnvironmentBuildError:
    have = next((c for c in ("conda", "mamba", "micromamba") if shutil.which(c)), None)
    where = f"{have} is on this machine, but " if have else "there is no conda on this machine, and "
    return EnvironmentBuildError(
        f"the environment asks for conda packages {', '.join(packages)}: {where}the local target builds "
        "environments with pip into a virtual environment. List them as pip packages instead "
        "(CondaDependencies.create(pip_packages=[...]) or add_pip_package), or make the conda environment "
        "yourself and run in it: env.python.user_managed_dependencies = True; "
        "env.python.interpreter_path = '/path/to/env/bin/python'"
    )


def check_buildable(definition: Mapping[str, Any] | None) -> None:
    """Raise EnvironmentBuildError when a target that builds with pip cannot make this environment."""
    if not definition or (definition.get("python") or {}).get("userManagedDependencies"):
        return
    spec = _build_spec(definition)
    if spec["conda"]:
        raise _conda_error(spec["conda"])
    if (definition.get("docker") or {}).get("enabled"):
        raise EnvironmentBuildError(
            "docker.enabled is True: runs on this target do not use containers; leave docker.enabled False"
        )


def prepare_environment(
    definition: Mapping[str, Any] | None,
    log: Callable[[bytes], None],
    should_stop: Callable[[], bool] = lambda: False,
) -> PreparedEnvironment:
    """The interpreter a run uses: ``interpreter_path`` (or this one) for a user-managed environment or none;
    else the cached virtual environment of the definition, built first (under a lock) if it is not yet.
    ``log`` gets the build's progress; ``should_stop`` ends a build early (the run was canceled)."""
    if not definition or (definition.get("python") or {}).get("userManagedDependencies"):
        path = ((definition or {}).get("python") or {}).get("interpreterPath")
        python = shutil.which(path) if path else sys.executable
        if not python:
            raise EnvironmentBuildError(f"python.interpreter_path {path!r} is not an interpreter on this machine")
        return PreparedEnvironment(python, str(Path(python).parent))
    check_buildable(definition)
    spec = _build_spec(definition)
    key = environment_key(definition)
    cache = _cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    venv = cache / key
    name = str(definition.get("name") or "environment")
    if (venv / _COMPLETE).is_file():
        log(f"[expboard] environment {name!r}: using the one built before ({venv})\n".encode())
        return PreparedEnvironment(str(_venv_python(venv)), str(venv / "bin"), built=True)
    with open(cache / f"{key}.lock", "a+b") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"[expboard] environment {name!r}: another run is building it; waiting\n".encode())
            while True:
                if should_stop():
                    raise EnvironmentBuildError("canceled while waiting for the environment's build") from None
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    time.sleep(0.2)
        try:
            if (venv / _COMPLETE).is_file():
                log(f"[expboard] environment {name!r}: built by another run ({venv})\n".encode())
                return PreparedEnvironment(str(_venv_python(venv)), str(venv / "bin"), built=True)
            shutil.rmtree(venv, ignore_errors=True)  # what a failed or killed build left
            try:
                _build(venv, spec, name, log, should_stop)
            except BaseException:
                shutil.rmtree(venv, ignore_errors=True)  # a failed build is never reused
                raise
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return PreparedEnvironment(str(_venv_python(venv)), str(venv / "bin"), built=True)


def _run_logged(
    argv: list[str], log: Callable[[bytes], None], should_stop: Callable[[], bool], what: str, tail: bytearray
) -> None:
    env = dict(os.environ)
    env.update({"PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1", "PYTHONUNBUFFERED": "1"})
    env.pop("PYTHONPATH", None)
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    assert proc.stdout is not None

    def pump() -> None:
        assert proc.stdout is not None
        for line in iter(proc.stdout.readline, b""):
            log(line)
            tail.extend(line)
            del tail[:-4000]

    reader = threading.Thread(target=pump, name="expboard-env-build", daemon=True)
    reader.start()
    while proc.poll() is None:
        if should_stop():
            proc.kill()
            proc.wait()
            reader.join(timeout=5)
            raise EnvironmentBuildError(f"canceled while {what}")
        time.sleep(0.1)
    reader.join(timeout=5)
    if proc.returncode != 0:
        text = bytes(tail).decode("utf-8", "replace").strip()
        raise EnvironmentBuildError(f"{what} failed (exit code {proc.returncode}); the end of its output:\n{text}")


def _build(
    venv: Path, spec: Mapping[str, Any], name: str, log: Callable[[bytes], None], should_stop: Callable[[], bool]
) -> None:
    started = time.monotonic()
    log(f"[expboard] environment {name!r}: building a virtual environment in {venv}\n".encode())
    tail = bytearray()
    _run_logged([sys.executable, "-m", "venv", "--without-pip", str(venv)], log, should_stop, "creating it", tail)
    python = _venv_python(venv)
    if spec["pip"]:
        requirements = venv / "expboard-requirements.txt"
        requirements.write_text("\n".join([*spec["pip_options"], *spec["pip"]]) + "\n")
        log(f"[expboard] pip install {' '.join(spec['pip'])}\n".encode())
        _run_logged(
            [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-input", "-r", str(requirements)],
            log,
            should_stop,
            "installing its pip packages",
            tail,
        )
    # expboard and its own dependencies, after the environment's site-packages on sys.path (a .pth file)
    host = venv / _HOST_FOLDER
    host.mkdir()
    for link_name, target in _needed_modules().items():
        link = host / link_name
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists() and not link.is_symlink():
            link.symlink_to(target)
    (_site_packages(venv) / "zz-expboard-host.pth").write_text(str(host) + "\n")
    (venv / _COMPLETE).write_text(json.dumps({"name": name, **spec, "built": time.time()}, indent=2) + "\n")
    log(f"[expboard] environment {name!r} ready in {time.monotonic() - started:.1f} s\n".encode())


# --- Ray ---------------------------------------------------------------------------------------------
def ray_runtime_env(definition: Mapping[str, Any] | None) -> dict[str, Any]:
    """The part of a Ray job's ``runtime_env`` that makes an environment: ``pip`` (packages and pip options,
    Ray builds and caches the virtual environment on each node, on top of the node's interpreter) and
    ``env_vars`` (the environment's variables). A user-managed environment adds only its variables (its
    ``interpreter_path`` must exist on the nodes: set RayCompute's ``python``); conda packages are refused."""
    if not definition:
        return {}
    out: dict[str, Any] = {}
    variables = {str(k): str(v) for k, v in (definition.get("environmentVariables") or {}).items()}
    if variables:
        out["env_vars"] = variables
    if (definition.get("python") or {}).get("userManagedDependencies"):
        return out
    spec = _build_spec(definition)
    if spec["conda"]:
        raise _conda_error(spec["conda"])
    if spec["pip"]:
        out["pip"] = {"packages": [*spec["pip_options"], *spec["pip"]], "pip_check": False}
    return out
