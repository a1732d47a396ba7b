"""Every setting of expboard in one table, read through one function.

A value comes from, in this order: the argument given in code, the environment variable, the workspace's
``.expboard/config.json`` (when the caller passes it), the default. Adding a setting is one row in
:data:`SETTINGS` (and its row in the README's settings table, which a test keeps equal to this one).

>>> get("heartbeat_timeout_s")                        # doctest: +SKIP
60.0
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError

__all__ = ["SETTINGS", "Setting", "by_env", "by_name", "env", "get", "markdown_table"]


@dataclass(frozen=True)
class Setting:
    """One row: ``name`` (config-file key), ``env`` (environment variable), ``default``, ``help``, ``unit``.

    The type of a value follows ``kind`` ("str", "float", "int" or "bool"); ``aliases`` are older
    environment names still read when ``env`` is unset."""

    name: str
    env: str
    default: Any
    help: str
    unit: str = ""
    kind: str = "str"
    aliases: tuple[str, ...] = ()


S = Setting
# fmt: off
SETTINGS: tuple[Setting, ...] = (
    S("tracking_uri", "EXPBOARD_TRACKING_URI", None, "where run history lives: sqlite:///file, postgresql://..., or a tracking server's http(s):// address"),  # noqa: E501
    S("artifact_root", "EXPBOARD_ARTIFACT_ROOT", None, "folder for run files (default: artifacts/ next to the SQLite file)"),  # noqa: E501
    S("token", "EXPBOARD_TOKEN", None, "bearer token the client sends to a tracking server"),
    S("workspace", "EXPBOARD_WORKSPACE", None, "folder holding .expboard/config.json (set for the processes of a submitted run)"),  # noqa: E501
    S("run_id", "EXPBOARD_RUN_ID", None, "the submitted run a script logs to (set by the run agent; Run.get_context() reads it)"),  # noqa: E501
    S("heartbeat_s", "EXPBOARD_HEARTBEAT_S", 5.0, "seconds between heartbeats of an active run (agent and interactive runs)", "s", "float", ("EXPBOARD_HEARTBEAT_INTERVAL",)),  # noqa: E501
    S("heartbeat_timeout_s", "EXPBOARD_HEARTBEAT_TIMEOUT_S", 60.0, "heartbeat age after which a submitted run is NotResponding", "s", "float"),  # noqa: E501
    S("interactive_timeout_s", "EXPBOARD_INTERACTIVE_TIMEOUT_S", 300.0, "heartbeat age after which an interactive or child run is NotResponding", "s", "float"),  # noqa: E501
    S("log_sync_s", "EXPBOARD_LOG_SYNC_S", 1.0, "seconds between uploads of a submitted run's ./logs and driver log", "s", "float"),  # noqa: E501
    S("cancel_grace_s", "EXPBOARD_CANCEL_GRACE_S", 10.0, "seconds between SIGTERM and SIGKILL when a run is canceled", "s", "float"),  # noqa: E501
    S("keep_workdir", "EXPBOARD_KEEP_WORKDIR", False, "keep a submitted run's working copy after it ends (for debugging)", "", "bool"),  # noqa: E501
    S("snapshot_max_mb", "EXPBOARD_SNAPSHOT_MAX_MB", 300.0, "size limit of a submitted source folder's snapshot", "MB", "float"),  # noqa: E501
    S("ray_plan", "EXPBOARD_RAY_PLAN", None, "what a Ray queue/gang driver job runs: resources, node count, interpreter (set by the Ray target)"),  # noqa: E501
    S("ray_node_id", "EXPBOARD_RAY_NODE_ID", None, "the Ray node a rank of a multi-node run runs on (set for its script)"),  # noqa: E501
    S("agent_log", "EXPBOARD_AGENT_LOG", None, "file a compute target sends the run agent's own output to (set by the target)"),  # noqa: E501
    S("env_cache_dir", "EXPBOARD_ENV_CACHE_DIR", None, "where the local target keeps the virtual environments it builds for runs' environments (default: ~/.cache/expboard/envs)"),  # noqa: E501
    S("spool_dir", "EXPBOARD_SPOOL_DIR", None, "where a client keeps metrics a tracking server has not taken yet (default: ~/.cache/expboard/spool)"),  # noqa: E501
    S("journal_dir", "EXPBOARD_JOURNAL_DIR", None, "where a client keeps metric points the store has not taken past the memory bound, and at exit, until it answers (default: ~/.cache/expboard/journal)"),  # noqa: E501
    S("journal_max_mb", "EXPBOARD_JOURNAL_MAX_MB", 1024.0, "size bound of that journal per store and process; points that do not fit are dropped, counted and reported", "MB", "float"),  # noqa: E501
    S("server_tokens", "EXPBOARD_SERVER_TOKENS", None, "tracking server: accepted bearer tokens, comma-separated TOKEN (scope write) or NAME:SCOPE:TOKEN"),  # noqa: E501
    S("presign_downloads_mb", "EXPBOARD_PRESIGN_DOWNLOADS_MB", None, "tracking server: files in S3 of at least this size are downloaded from presigned URLs (default: through the server)", "MiB", "float"),  # noqa: E501
    S("pg_bindir", "EXPBOARD_PG_BINDIR", None, "folder holding PostgreSQL's initdb and postgres for a development database"),  # noqa: E501
    S("pg_user", "EXPBOARD_PG_USER", "nobody", "unprivileged user a development PostgreSQL runs as when started by root"),  # noqa: E501
)
# fmt: on
del S

_BY_NAME = {s.name: s for s in SETTINGS}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _convert(setting: Setting, raw: Any, where: str) -> Any:
    if not isinstance(raw, str):
        return raw
    if setting.kind == "str":
        return raw
    if setting.kind == "bool":
        if raw.strip().lower() in _TRUE:
            return True
        if raw.strip().lower() in _FALSE:
            return False
        raise ConfigError(f"{where}={raw!r} is not a yes/no value; use 1 or 0")
    try:
        return float(raw) if setting.kind == "float" else int(raw)
    except ValueError:
        unit = f" of {setting.unit}" if setting.unit else ""
        raise ConfigError(f"{where}={raw!r} is not a number{unit}; {setting.help}") from None


def get(name: str, value: Any = None, config: Mapping[str, Any] | None = None) -> Any:
    """The value of setting ``name``: ``value`` if not None, else its environment variable (or an older
    alias) if set and not empty, else ``config[name]``, else the default. Strings are converted to the
    setting's type; a value that does not convert is a ConfigError naming the variable."""
    setting = _BY_NAME[name]
    if value is not None:
        return value
    for env in (setting.env, *setting.aliases):
        raw = os.environ.get(env)
        if raw:
            return _convert(setting, raw, env)
    if config is not None and config.get(name) is not None:
        return _convert(setting, config[name], f"{name} in config.json")
    return setting.default


def env(name: str) -> str:
    """The environment variable of setting ``name`` (for handing a value to a child process)."""
    return _BY_NAME[name].env


def by_name(name: str) -> Setting:
    """The row of setting ``name``."""
    return _BY_NAME[name]


def by_env(env: str) -> Setting:
    """The row whose environment variable is ``env``."""
    for s in SETTINGS:
        if s.env == env:
            return s
    raise KeyError(env)


def markdown_table() -> str:
    """The README's settings table, generated from :data:`SETTINGS`."""
    lines = ["| environment variable | config key | default | unit | what it sets |", "|---|---|---|---|---|"]
    for s in SETTINGS:
        default = "-" if s.default is None else str(s.default)
        also = f" (also read: {', '.join(f'`{a}`' for a in s.aliases)})" if s.aliases else ""
        lines.append(f"| `{s.env}` | `{s.name}` | {default} | {s.unit or '-'} | {s.help}{also} |")
    return "\n".join(lines) + "\n"
