"""Experiments: named groups of runs."""

from __future__ import annotations

import html
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from . import plugins, state
from .errors import ValidationError
from .names import check_experiment_name, check_key
from .records import RunStatus
from .workspace import Workspace

if TYPE_CHECKING:
    from .run import Run

__all__ = ["ACTIVE_ONLY", "ALL", "ARCHIVED_ONLY", "Experiment", "matches"]

# Azure ML's ViewType values for Experiment.list
ACTIVE_ONLY, ARCHIVED_ONLY, ALL = "ActiveOnly", "ArchivedOnly", "All"
REPR_RUNS = 10  # runs listed by an experiment's HTML table in Jupyter


def matches(values: Mapping[str, str], wanted: Mapping[str, Any] | str | Sequence[str] | None) -> bool:
    """Whether tags (or properties) match a filter as Azure ML's ``get_runs`` reads it: a name (the run
    has it), a list of names (the run has all of them), or a mapping of names to values (a value of
    None: the run has the name, whatever its value).

    >>> matches({"a": "1", "b": ""}, ["a", "b"]), matches({"a": "1"}, {"a": None}), matches({"a": "1"}, {"a": 2})
    (True, True, False)
    """
    if wanted is None:
        return True
    if isinstance(wanted, str):
        return wanted in values
    if isinstance(wanted, Mapping):
        return all(k in values if v is None else values.get(k) == str(v) for k, v in wanted.items())
    return all(k in values for k in wanted)


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

    def _repr_html_(self) -> str:
        """Tables for Jupyter: name, workspace, number of top-level runs and the TensorBoard serving the
        experiment; then its latest top-level runs (at most ``REPR_RUNS``) with number, id, status, duration
        and the TensorBoard serving each."""
        from .run import Run

        runs = len(self.workspace.store.list_runs(experiment=self.name, parent_id=None))
        url = state.serving_url(experiment=self.name)
        link = f'<a href="{html.escape(url)}" target="_blank">TensorBoard</a>' if url else ""
        head = "<tr><th>Name</th><th>Workspace</th><th>Runs</th><th>Details</th></tr>"
        cells = "".join(f"<td>{html.escape(c)}</td>" for c in (self.name, self.workspace.name, str(runs)))
        out = f"<table>{head}<tr>{cells}<td>{link}</td></tr></table>"
        page = self.workspace.store.query_runs(experiment=self.name, parent_id=None, limit=REPR_RUNS)
        if page.runs:
            now = time.time()
            heads = ("Number", "Id", "Display name", "Type", "Status", "Duration", "Details")
            rows = []
            for r in page.runs:
                end = r.end_time if r.end_time is not None else now
                duration = f"{end - r.start_time:.1f} s" if r.start_time is not None else ""
                number = "" if r.number is None else str(r.number)
                values = (number, r.run_id, r.display_name, r.run_type, r.status.value, duration)
                run_url = Run(self, r.run_id, record=r).get_portal_url()
                run_link = f'<a href="{html.escape(run_url)}" target="_blank">TensorBoard</a>' if run_url else ""
                rows.append("".join(f"<td>{html.escape(v)}</td>" for v in values) + f"<td>{run_link}</td>")
            out += "<table><tr>" + "".join(f"<th>{h}</th>" for h in heads) + "</tr>"
            out += "".join(f"<tr>{row}</tr>" for row in rows) + "</table>"
        return out

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Experiment) and other.name == self.name and other.workspace is self.workspace

    def __hash__(self) -> int:
        return hash(self.name)

    @staticmethod
    def list(
        workspace: Workspace,
        experiment_name: str | None = None,
        view_type: str = ACTIVE_ONLY,
        tags: Mapping[str, Any] | str | Sequence[str] | None = None,
    ) -> list[Experiment]:
        """Experiments of the workspace, newest first, as Azure ML's ``Experiment.list``: active ones unless
        ``view_type`` is ``"ArchivedOnly"`` or ``"All"``; only the one named ``experiment_name`` and those
        with ``tags`` (see :func:`matches`) when given."""
        if view_type not in (ACTIVE_ONLY, ARCHIVED_ONLY, ALL):
            raise ValidationError(f"view_type must be {ACTIVE_ONLY!r}, {ARCHIVED_ONLY!r} or {ALL!r}, got {view_type!r}")
        return [
            Experiment(workspace, e.name, _create=False)
            for e in workspace.store.list_experiments()
            if (experiment_name is None or e.name == experiment_name)
            and (view_type == ALL or e.archived == (view_type == ARCHIVED_ONLY))
            and matches(e.tags, tags)
        ]

    # --- tags and archiving -----------------------------------------------------------------------
    @property
    def tags(self) -> dict[str, str]:
        """The experiment's tags (``exp.tag(k)`` stores the empty string, as Azure ML does)."""
        return dict(self.workspace.store.get_experiment(self.name).tags)

    @property
    def archived(self) -> bool:
        return self.workspace.store.get_experiment(self.name).archived

    def tag(self, key: str, value: Any = None) -> None:
        """Set a tag of the experiment."""
        self.workspace.store.update_experiment(self.name, tags={check_key(key): "" if value is None else str(value)})

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self.workspace.store.update_experiment(self.name, tags={check_key(k): str(v) for k, v in tags.items()})

    def remove_tags(self, tags: Sequence[str]) -> None:
        self.workspace.store.update_experiment(self.name, tags=dict.fromkeys(tags))

    def archive(self) -> None:
        """Hide the experiment from ``Experiment.list`` (its runs stay; ``reactivate`` brings it back)."""
        self.workspace.store.update_experiment(self.name, archived=True)

    def reactivate(self, new_name: str | None = None) -> None:
        """Undo ``archive``. Renaming (Azure's ``new_name``) is not supported: a different name is refused."""
        if new_name is not None and new_name != self.name:
            raise ValidationError(
                f"cannot rename experiment {self.name!r} to {new_name!r}: experiments keep their names; "
                f"call reactivate() without new_name"
            )
        self.workspace.store.update_experiment(self.name, archived=False)

    # A Run belongs to its Experiment and an Experiment makes Runs (Azure ML's API has both directions).
    # Experiment is the lower of the two: it reaches Run only inside the methods below.
    def start_logging(
        self,
        display_name: str | None = None,
        tags: Mapping[str, Any] | None = None,
        properties: Mapping[str, Any] | None = None,
        *,
        snapshot_directory: str | os.PathLike[str] | None = None,
        outputs: str | os.PathLike[str] | None = None,
    ) -> Run:
        """Start an interactive run (Running now); complete it with ``run.complete()`` or use ``with``.

        As in Azure ML, ``snapshot_directory`` is stored with the run (``snapshot.zip``, ignore files
        honoured) and the folder ``outputs`` is uploaded as the run's ``outputs/`` when it ends (Azure
        tracks ``./outputs`` unless told otherwise; expboard only a folder it is given)."""
        from .run import Run

        return Run.create(
            self,
            display_name=display_name or "",
            tags=tags,
            properties=properties,
            snapshot_directory=snapshot_directory,
            outputs=outputs,
        )

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
        type: str | None = None,
    ) -> Iterator[Run]:
        """Runs of this experiment, newest first (top-level runs unless ``include_children``), fetched
        lazily page by page; ``filter`` is evaluated by the store (see :meth:`Run.list`)."""
        from .run import Run

        return Run.list(
            self,
            include_children=include_children,
            tags=tags,
            properties=properties,
            status=status,
            filter=filter,
            type=type,
        )
