"""The workspace: where run history lives, from ``.expboard/config.json`` plus environment overrides.

Precedence: explicit argument > environment variable > config file > default (see :mod:`.settings`).
A workspace holds its configuration and its store; runs are found with ``Run.get(ws, id)`` and
``Run.list(ws)``, experiments with ``Experiment.list(ws)``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from . import plugins, settings, state
from .errors import ConfigError
from .stores import Store, open_store

__all__ = [
    "CONFIG_DIR",
    "CONFIG_FILE",
    "ENV_ARTIFACT_ROOT",
    "ENV_TOKEN",
    "ENV_TRACKING_URI",
    "ENV_WORKSPACE",
    "Workspace",
]

CONFIG_DIR = ".expboard"
CONFIG_FILE = "config.json"
ENV_TRACKING_URI = settings.env("tracking_uri")
ENV_ARTIFACT_ROOT = settings.env("artifact_root")
ENV_TOKEN = settings.env("token")
ENV_WORKSPACE = settings.env("workspace")

DEFAULT_CONFIG = {"tracking_uri": "sqlite:///expboard.db", "artifact_root": "artifacts"}

_INIT_HINT = "run `expboard init` in your project folder (or Workspace.init(path)) to create one"


def _resolve_uri(uri: str, base: Path) -> str:
    """Relative SQLite paths are relative to the folder that holds config.json."""
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        rel = uri[len("sqlite:///") :]
        if not os.path.isabs(rel):
            return "sqlite:///" + str((base / rel).resolve())
    return uri


class Workspace:
    """A run history: a store (embedded SQLite by default) and a folder or server for run files.

    >>> ws = Workspace.init("my-project")        # doctest: +SKIP
    >>> ws = Workspace.from_config()             # doctest: +SKIP  (walks up from the current folder)
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        tracking_uri: str | None = None,
        artifact_root: str | os.PathLike[str] | None = None,
        token: str | None = None,
        store: Store | None = None,
    ) -> None:
        config: dict[str, Any] = {}
        config_dir: Path | None = None
        if path is not None:
            config_dir = Path(path).resolve() / CONFIG_DIR
            config = _read_config(config_dir / CONFIG_FILE, required=tracking_uri is None and store is None)
        tracking_uri = settings.get("tracking_uri", tracking_uri or None, config)
        artifact_root = settings.get("artifact_root", artifact_root or None, config)
        self.token: str | None = settings.get("token", token or None, config)
        if store is None and not tracking_uri:
            raise ConfigError(f"no tracking URI: {_INIT_HINT}, or set {ENV_TRACKING_URI}")
        base = config_dir if config_dir is not None else Path.cwd()
        self.path: Path | None = config_dir.parent if config_dir is not None else None
        self.tracking_uri: str = _resolve_uri(tracking_uri, base) if tracking_uri else "custom://"
        if artifact_root is not None and "://" in str(artifact_root):
            pass  # s3://bucket/prefix: object storage, kept as given
        elif artifact_root is not None:
            artifact_root = (base / artifact_root).resolve()
        elif self.tracking_uri.startswith("sqlite:"):
            artifact_root = Path(self.tracking_uri[len("sqlite:///") :]).parent / "artifacts"
        self.artifact_root: Path | str | None = None  # a folder, or an s3://bucket/prefix URI
        if artifact_root is not None:
            self.artifact_root = str(artifact_root) if "://" in str(artifact_root) else Path(artifact_root)
        self.store: Store = store or open_store(self.tracking_uri, self.artifact_root, token=self.token)
        state.replay_journals(self.store)  # metric points an ended process could not write, if any
        self._compute_targets: Any = None
        default_name = self.path.name if self.path is not None else "default"
        self.name: str = str(config.get("name") or default_name)

    # --- what Azure ML's sample notebooks print first ---------------------------------------------
    @property
    def location(self) -> str:
        """``"local"`` for a workspace on this machine, else the tracking server's host name."""
        if self.tracking_uri.startswith(("http://", "https://")):
            return urlsplit(self.tracking_uri).hostname or "local"
        return "local"

    @property
    def subscription_id(self) -> None:
        """Always None: no cloud subscription is involved."""
        return None

    @property
    def resource_group(self) -> None:
        """Always None: no cloud resource group is involved."""
        return None

    # --- construction ---------------------------------------------------------------------------
    @classmethod
    def init(
        cls, path: str | os.PathLike[str] = ".", tracking_uri: str | None = None, exist_ok: bool = True
    ) -> Workspace:
        """Create ``path/.expboard/config.json`` (embedded SQLite by default) and open the workspace."""
        config_dir = Path(path).resolve() / CONFIG_DIR
        config_file = config_dir / CONFIG_FILE
        if config_file.exists():
            if not exist_ok:
                raise ConfigError(f"{config_file} already exists")
        else:
            config_dir.mkdir(parents=True, exist_ok=True)
            config = dict(DEFAULT_CONFIG)
            if tracking_uri:
                config["tracking_uri"] = tracking_uri
            tmp = config_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(config, indent=2) + "\n")
            os.replace(tmp, config_file)
        return cls(path)

    @classmethod
    def create(
        cls,
        name: str,
        auth: Any = None,
        subscription_id: str | None = None,
        resource_group: str | None = None,
        location: str | None = None,
        *,
        exist_ok: bool = False,
        tracking_uri: str | None = None,
        **azure_options: Any,
    ) -> Workspace:
        """Azure ML's ``Workspace.create``: the workspace folder ``name`` in the current folder (created with
        ``.expboard/config.json`` naming it). Azure's cloud arguments (``auth``, ``subscription_id``,
        ``resource_group``, ``location``, ``sku``, ...) are accepted and unused."""
        folder = _named_folder(name)
        if (folder / CONFIG_DIR / CONFIG_FILE).exists() and not exist_ok:
            raise ConfigError(f"a workspace named {name!r} already exists in {folder}; pass exist_ok=True to open it")
        ws = cls.init(folder, tracking_uri=tracking_uri, exist_ok=True)
        if ws.name != name:
            config_file = folder / CONFIG_DIR / CONFIG_FILE
            config = _read_config(config_file, required=True)
            config["name"] = name
            tmp = config_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(config, indent=2) + "\n")
            os.replace(tmp, config_file)
            ws.name = name
        return ws

    @classmethod
    def get(
        cls,
        name: str,
        auth: Any = None,
        subscription_id: str | None = None,
        resource_group: str | None = None,
        **azure_options: Any,
    ) -> Workspace:
        """Azure ML's ``Workspace.get``: the workspace found from the current folder (as :meth:`from_config`)
        when its name is ``name``, else the workspace folder ``name`` in the current folder. Azure's cloud
        arguments are accepted and unused."""
        try:
            found = cls.from_config()
        except ConfigError:
            found = None
        if found is not None:
            if found.name == name:
                return found
            found.close()
        folder = _named_folder(name)
        if not (folder / CONFIG_DIR / CONFIG_FILE).is_file():
            raise ConfigError(
                f"no workspace named {name!r}: neither the workspace of {Path.cwd()} nor a folder {folder} "
                f"holding {CONFIG_DIR}/{CONFIG_FILE}; create it with Workspace.create({name!r})"
            )
        return cls(folder)

    @classmethod
    def from_config(cls, path: str | os.PathLike[str] | None = None) -> Workspace:
        """Find ``.expboard/config.json`` in ``path`` (or the current folder) or the nearest parent.

        With no config file anywhere, ``EXPBOARD_TRACKING_URI`` alone is enough.
        """
        start = Path(path).resolve() if path is not None else Path.cwd()
        if start.is_file() and start.name == CONFIG_FILE:
            return cls(start.parent.parent)
        for folder in (start, *start.parents):
            if (folder / CONFIG_DIR / CONFIG_FILE).is_file():
                return cls(folder)
        folder = settings.get("workspace")
        if folder:
            return cls(folder)
        if settings.get("tracking_uri"):
            return cls()
        raise ConfigError(f"no expboard workspace in {start} or any folder above it: {_INIT_HINT}")

    # --- access ---------------------------------------------------------------------------------
    @property
    def compute_targets(self) -> Any:
        """Named compute targets (a :class:`~expboard.compute.ComputeTargets`): ``local`` is built in;
        others are attached by name."""
        if self._compute_targets is None:
            self._compute_targets = plugins.compute_targets(self)
        return self._compute_targets

    def get_mlflow_tracking_uri(self) -> str:
        """A tracking URI for MLflow's client: ``mlflow.set_tracking_uri(ws.get_mlflow_tracking_uri())``
        makes MLflow code log its runs into this workspace's tracking server.

        The server's URL; the workspace's token, if any, goes to MLflow as ``MLFLOW_TRACKING_TOKEN`` (which
        MLflow sends as the bearer token) unless that is set. An embedded workspace has no HTTP endpoint
        for MLflow to reach: a ConfigError says how to start one on the same store."""
        if self.tracking_uri.startswith(("http://", "https://")):
            if self.token and not os.environ.get("MLFLOW_TRACKING_TOKEN"):
                os.environ["MLFLOW_TRACKING_TOKEN"] = self.token
            return self.tracking_uri.rstrip("/")
        root = f" --artifacts-root {self.artifact_root}" if self.artifact_root is not None else ""
        raise ConfigError(
            f"MLflow's client logs over HTTP, and this workspace is embedded ({self.tracking_uri}): start a "
            f"tracking server on it with `expboard server --backend-store-uri {self.tracking_uri}{root} --port "
            "5000` and set the workspace's tracking_uri to http://127.0.0.1:5000 (pip install 'expboard[server]'), "
            "or serve it from this process: `from expboard.server.mlflow_local import LocalServer; "
            "mlflow.set_tracking_uri(LocalServer(ws.store).start().mlflow_tracking_uri())`"
        )

    def env(self) -> dict[str, str]:
        """Environment variables that make a child process open this same workspace."""
        env = {ENV_TRACKING_URI: self.tracking_uri}
        if self.artifact_root is not None:
            env[ENV_ARTIFACT_ROOT] = str(self.artifact_root)
        if self.token:
            env[ENV_TOKEN] = self.token
        if self.path is not None:
            env[ENV_WORKSPACE] = str(self.path)
        return env

    def close(self) -> None:
        """Write every pending point, stop the background writer and close the store."""
        state.release(self.store)
        self.store.close()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Workspace(path={str(self.path)!r}, tracking_uri={self.tracking_uri!r})"


def _named_folder(name: str) -> Path:
    if not name or name in (".", "..") or "/" in name or "\\" in name:
        raise ConfigError(f"a workspace name is a folder name, without '/' or '\\', got {name!r}")
    return Path.cwd() / name


def _read_config(config_file: Path, required: bool) -> dict[str, Any]:
    try:
        text = config_file.read_text()
    except FileNotFoundError:
        if required:
            raise ConfigError(f"no workspace config at {config_file}: {_INIT_HINT}") from None
        return {}
    try:
        config = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{config_file} is not valid JSON ({exc.msg} at line {exc.lineno}); fix it or delete it and "
            f"run `expboard init` again"
        ) from None
    if not isinstance(config, dict) or not isinstance(config.get("tracking_uri", ""), str):
        raise ConfigError(
            f"{config_file} must be a JSON object with a string 'tracking_uri', such as "
            f'{{"tracking_uri": "sqlite:///expboard.db", "artifact_root": "artifacts"}}'
        )
    return config
