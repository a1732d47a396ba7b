"""Experiments: named groups of runs."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from .names import check_experiment_name
from .records import RunStatus
from .run import Run

if TYPE_CHECKING:
    from .workspace import Workspace

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

    def start_logging(
        self,
        display_name: str | None = None,
        tags: Mapping[str, Any] | None = None,
        properties: Mapping[str, Any] | None = None,
    ) -> Run:
        """Start an interactive run (Running now); complete it with ``run.complete()`` or use ``with``."""
        return Run._create(
            self, display_name=display_name or "", tags=tags, properties=properties, run_type="interactive"
        )

    def submit(self, config: Any, tags: Mapping[str, Any] | None = None) -> Run:
        """Submit a ScriptRunConfig (or Estimator) to its compute target; returns the run at once."""
        from .compute import submit  # type: ignore[attr-defined]

        return submit(self, config, tags=tags)  # type: ignore[no-any-return]

    def get_runs(
        self,
        include_children: bool = False,
        tags: Mapping[str, Any] | str | None = None,
        properties: Mapping[str, Any] | None = None,
        status: RunStatus | str | None = None,
    ) -> Iterator[Run]:
        """Runs of this experiment, newest first (top-level runs unless ``include_children``)."""
        from .stores import UNSET

        records = self.workspace.store.list_runs(
            experiment=self.name,
            parent_id=UNSET if include_children else None,
            statuses=[RunStatus(status)] if status is not None else None,
        )
        for record in records:
            if isinstance(tags, str) and tags not in record.tags:
                continue
            if isinstance(tags, Mapping) and any(record.tags.get(k) != str(v) for k, v in tags.items()):
                continue
            if properties and any(record.properties.get(k) != str(v) for k, v in properties.items()):
                continue
            yield Run(self, record.run_id, _record=record)
