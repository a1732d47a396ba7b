"""Where upper layers plug into the client API: compute targets fill these slots when imported.

The client (Workspace, Experiment, Run) never imports :mod:`expboard.compute`; ``import expboard`` does, and
:mod:`expboard.compute` registers how a run is submitted and which compute targets a workspace has.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .errors import ExpboardError

__all__ = ["compute_targets", "register_compute", "register_snapshot", "snapshot", "submitter"]

# submit(experiment, config, tags) -> Run;  targets(workspace) -> ComputeTargets
_submit: Callable[..., Any] | None = None
_targets: Callable[[Any], Any] | None = None
# snapshot(source_folder) -> zip bytes (what a submitted run stores as snapshot.zip)
_snapshot: Callable[[Any], bytes] | None = None

_MISSING = "no compute support is loaded: `import expboard.compute` (``import expboard`` does it)"


def register_compute(submit: Callable[..., Any], targets: Callable[[Any], Any]) -> None:
    """Install the function that submits a run config and the factory of a workspace's compute targets."""
    global _submit, _targets
    _submit, _targets = submit, targets


def submitter() -> Callable[..., Any]:
    if _submit is None:
        raise ExpboardError(_MISSING)
    return _submit


def compute_targets(workspace: Any) -> Any:
    if _targets is None:
        raise ExpboardError(_MISSING)
    return _targets(workspace)


def register_snapshot(build: Callable[[Any], bytes]) -> None:
    """Install the function that zips a source folder (honouring its ignore files) into a snapshot."""
    global _snapshot
    _snapshot = build


def snapshot(source: Any) -> bytes:
    if _snapshot is None:
        raise ExpboardError(_MISSING)
    return _snapshot(source)
