"""Experiments: named groups of runs."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from . import plugins
from .names import check_experiment_name
from .records import RunStatus
from .workspace import Workspace

if TYPE_CHECKING:
    from .run import Run

__all__ = ["Experiment"]


class Experiment:
    """A named group of runs, created on first use.

    >>> exp = Experiment(ws, "ridge-sweep")     # doctest: +SKIP
    >>> run = exp.start_logging()               # doctest: +SKIP
    """

    def __init__(self, workspace: Workspace, name: str, *, _create: bool = True) -> None:
        self.workspace = workspace
        self.name = check_experiment_name(name)
        if _create:
            workspace.store.get_or_create_experiment(name)

    @classmethod
    def get(cls, workspace: Workspace, name: str) -> Experiment:
        """An experiment that already exists (or is about to): no record is created."""
        return cls(workspace, name, _create=False)

    def __repr__(self) -> str:
        return f"Experiment(name={self.name!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Experiment) and other.name == self.name and other.workspace is self.workspace

    def __hash__(self) -> int:
        return hash(self.name)

    @staticmethod
    def list(workspace: Workspace) -> list[Experiment]:
        """Every experiment of the workspace, newest first."""
        return [Experiment(workspace, e.name, _create=False) for e in workspace.store.list_experiments()]

    # A Run belongs to its Experiment and an Experiment makes Runs (Azure ML's API has both directions).
    # Experiment is the lower of the two: it reaches Run only inside the methods below.
    def start_logging(
        self,
        display_name: str | None = None,
        tags: Mapping[str, Any] | None = None,
        properties: Mapping[str, Any] | None = None,
    ) -> Run:
        """Start an interactive run (Running now); complete it with ``run.complete()`` or use ``with``."""
        from .run import Run

        return Run.create(self, display_name=display_name or "", tags=tags, properties=properties)

    def submit(self, config: Any, tags: Mapping[str, Any] | None = None) -> Run:
        """Submit a ScriptRunConfig (or Estimator) to its compute target; returns the run at once."""
        return cast("Run", plugins.submitter()(self, config, tags=tags))

    def get_runs(
        self,
        include_children: bool = False,
        tags: Mapping[str, Any] | str | Sequence[str] | None = None,
        properties: Mapping[str, Any] | str | Sequence[str] | None = None,
        status: RunStatus | str | None = None,
        filter: Any = None,
    ) -> Iterator[Run]:
        """Runs of this experiment, newest first (top-level runs unless ``include_children``), fetched
        lazily page by page; ``filter`` is evaluated by the store (see :meth:`Run.list`)."""
        from .run import Run

        return Run.list(
            self, include_children=include_children, tags=tags, properties=properties, status=status, filter=filter
        )
