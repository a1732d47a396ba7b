"""Where upper layers plug into the client API: compute targets fill these slots when imported.

The client (Workspace, Experiment, Run) never imports :mod:`expboard.compute`. The package's top registers a
loader here (:func:`register_loader`) that imports it the first time a slot is asked for, and
:mod:`expboard.compute.submission` registers how a run is submitted, which compute targets a workspace has and
how a snapshot is built. So ``Experiment.submit`` and ``ws.compute_targets`` find the local and Ray targets
without the user importing :mod:`expboard.compute`, and ``import expboard`` stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .errors import ExpboardError

__all__ = [
    "compute_targets",
    "end_check_markers",
    "end_checks",
    "load",
    "register_compute",
    "register_end_check",
    "register_loader",
    "register_snapshot",
    "snapshot",
    "submitter",
]

# submit(experiment, config, tags) -> Run;  targets(workspace) -> ComputeTargets
_submit: Callable[..., Any] | None = None
_targets: Callable[[Any], Any] | None = None
# snapshot(source_folder) -> zip bytes (what a submitted run stores as snapshot.zip)
_snapshot: Callable[[Any], bytes] | None = None

# end_check(store, records): asked about script runs whose supervisor went silent (NotResponding, or a heartbeat
# several beats late); ends those whose compute target knows they are gone (a Ray job that ended). Each comes
# with its marker: a run property every run it can act on has (None: it may act on any run).
_end_checks: list[tuple[Callable[[Any, list[Any]], None], str | None]] = []
# loaders not run yet: each imports a module that registers itself in the slots above
_loaders: list[Callable[[], None]] = []

_MISSING = "no compute support is loaded: `import expboard.compute.submission` (expboard loads it when asked)"


def register_loader(load_plugins: Callable[[], None]) -> None:
    """Run ``load_plugins`` (once) the first time a slot is asked for and still empty."""
    _loaders.append(load_plugins)


def load() -> None:
    """Run the loaders not run yet (each at most once, in the order registered)."""
    while _loaders:
        _loaders.pop(0)()


def register_compute(submit: Callable[..., Any], targets: Callable[[Any], Any]) -> None:
    """Install the function that submits a run config and the factory of a workspace's compute targets."""
    global _submit, _targets
    _submit, _targets = submit, targets


def submitter() -> Callable[..., Any]:
    if _submit is None:
        load()
    if _submit is None:
        raise ExpboardError(_MISSING)
    return _submit


def compute_targets(workspace: Any) -> Any:
    if _targets is None:
        load()
    if _targets is None:
        raise ExpboardError(_MISSING)
    return _targets(workspace)


def register_end_check(check: Callable[[Any, list[Any]], None], marker: str | None = None) -> None:
    """Install a check the liveness reaper runs on silent script runs (see :mod:`expboard.liveness`).
    ``marker``: a run property that every run the check can act on has (a Ray job id), so that the reaper
    asks the store only for those among the NotResponding runs, however many the history holds."""
    _end_checks.append((check, marker))


def end_checks() -> list[Callable[[Any, list[Any]], None]]:
    load()
    return [check for check, _ in _end_checks]


def end_check_markers() -> set[str] | None:
    """The markers of the end checks; None if one of them has none (it may act on any NotResponding run)."""
    load()
    markers = {marker for _, marker in _end_checks}
    return None if None in markers else {m for m in markers if m is not None}


def register_snapshot(build: Callable[[Any], bytes]) -> None:
    """Install the function that zips a source folder (honouring its ignore files) into a snapshot."""
    global _snapshot
    _snapshot = build


def snapshot(source: Any) -> bytes:
    if _snapshot is None:
        load()
    if _snapshot is None:
        raise ExpboardError(_MISSING)
    return _snapshot(source)
