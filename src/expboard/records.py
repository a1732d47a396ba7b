"""Plain data: statuses, and the frozen records that stores return. Imports nothing from expboard."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

__all__ = [
    "TERMINAL_STATUSES",
    "ExperimentRecord",
    "FileInfo",
    "MetricKind",
    "MetricSeries",
    "ModelRecord",
    "ModelStatus",
    "RegisteredModelRecord",
    "RunRecord",
    "RunStatus",
    "WorkspaceObjectRecord",
]


class RunStatus(str, Enum):
    """The life cycle of a run, with Azure ML's names."""

    NOT_STARTED = "NotStarted"
    QUEUED = "Queued"
    STARTING = "Starting"
    RUNNING = "Running"
    FINALIZING = "Finalizing"
    CANCEL_REQUESTED = "CancelRequested"
    COMPLETED = "Completed"
    FAILED = "Failed"
    CANCELED = "Canceled"
    NOT_RESPONDING = "NotResponding"

    def __str__(self) -> str:
        return self.value

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELED})


class MetricKind(str, Enum):
    """How a metric was logged; decides the shape ``get_metrics`` returns and how export maps it."""

    SCALAR = "scalar"  # run.log: one value per call, a list when logged several times
    LIST = "list"  # run.log_list: one list, element i at step i
    ROW = "row"  # run.log_row: one dict per row; read back as columns
    TABLE = "table"  # run.log_table: a dict of columns
    IMAGE = "image"  # run.log_image: the value is the stored file's name
    CONFUSION_MATRIX = "confusion_matrix"  # run.log_confusion_matrix: a JSON object
    ACCURACY_TABLE = "accuracy_table"  # run.log_accuracy_table: Azure ML's accuracy_table JSON object
    PREDICTIONS = "predictions"  # run.log_predictions: Azure ML's predictions JSON object (binned)
    RESIDUALS = "residuals"  # run.log_residuals: Azure ML's residuals JSON object (a histogram)

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class ExperimentRecord:
    name: str
    created: float
    archived: bool = False
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RunRecord:
    """One run as stored. Times are seconds since the epoch (UTC)."""

    run_id: str
    experiment: str
    status: RunStatus
    created: float
    display_name: str = ""
    parent_id: str | None = None
    run_type: str = "interactive"  # interactive | child | script
    target: str = "local"
    start_time: float | None = None
    end_time: float | None = None
    heartbeat: float | None = None
    error: dict[str, Any] | None = None
    tags: dict[str, str] = field(default_factory=dict)
    properties: dict[str, str] = field(default_factory=dict)
    description: str = ""
    number: int | None = None  # 1, 2, ... per experiment, assigned by the store when the run is created

    def to_json(self) -> dict[str, Any]:
        """The record as JSON data (the tracking server's wire shape; ``status`` as its string)."""
        out = dataclasses.asdict(self)
        out["status"] = self.status.value
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunRecord:
        """The record from :meth:`to_json`'s shape."""
        return cls(**{**data, "status": RunStatus(data["status"])})


@dataclass(frozen=True)
class MetricSeries:
    """The points of one metric of one run, in logging order.

    ``values`` is a numpy array (float64, int64 or bool) when every value is of that type, otherwise a list
    of JSON values (str, None, dicts for rows, tables and confusion matrices).
    """

    run_id: str
    name: str
    kind: MetricKind
    steps: Any  # numpy int64 array
    wall_times: Any  # numpy float64 array
    values: Any

    def __len__(self) -> int:
        return len(self.steps)


@dataclass(frozen=True)
class FileInfo:
    name: str
    size: int
    modified: float


@dataclass(frozen=True)
class WorkspaceObjectRecord:
    """One version of a named, versioned object of a workspace (an environment, say): ``kind`` and
    ``name`` say what it is, ``version`` counts from 1 per name, ``body`` is its JSON definition."""

    kind: str
    name: str
    version: int
    body: Mapping[str, Any]
    created: float

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "version": self.version,
            "body": dict(self.body),
            "created": self.created,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> WorkspaceObjectRecord:
        return cls(
            str(data["kind"]), str(data["name"]), int(data["version"]), dict(data["body"]), float(data["created"])
        )


class ModelStatus(str, Enum):
    """A model version's registration state (MLflow's names): its files are being uploaded, or it is ready."""

    PENDING = "PENDING_REGISTRATION"
    READY = "READY"
    FAILED = "FAILED_REGISTRATION"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class ModelRecord:
    """One version of a registered model as stored. ``run_id`` and ``run_path`` name the run files it was
    copied from (None for a model uploaded from a local path without a run). Times are seconds since 1970."""

    name: str
    version: int
    status: ModelStatus
    created: float
    updated: float
    description: str = ""
    run_id: str | None = None
    run_path: str | None = None
    experiment: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    properties: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["status"] = self.status.value
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ModelRecord:
        return cls(**{**data, "status": ModelStatus(data["status"])})


@dataclass(frozen=True)
class RegisteredModelRecord:
    """A registered model: a name whose versions are numbered 1, 2, ... ``latest_version`` is the highest
    version number given so far (0 before the first); ``aliases`` map an alias to a version."""

    name: str
    created: float
    updated: float
    description: str = ""
    latest_version: int = 0
    tags: dict[str, str] = field(default_factory=dict)
    aliases: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RegisteredModelRecord:
        return cls(**data)
