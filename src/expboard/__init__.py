"""expboard: self-hosted experiment run history with first-class TensorBoard integration.

>>> from expboard import Workspace, Experiment
>>> ws = Workspace.from_config()                       # doctest: +SKIP
>>> run = Experiment(ws, "demo").start_logging()       # doctest: +SKIP
"""

# Importing compute plugs Experiment.submit and Workspace.compute_targets in (see expboard.plugins).
from .compute import Environment, Estimator, RunConfiguration, ScriptRunConfig
from .errors import (
    AuthError,
    ConfigError,
    ConflictError,
    CorruptEventFileError,
    ExpboardError,
    NotFoundError,
    PayloadTooLargeError,
    RunFailedError,
    StoreUnavailableError,
    ValidationError,
)
from .experiment import Experiment
from .records import MetricKind, RunStatus
from .run import Run
from .tfevents import SummaryWriter
from .workspace import Workspace

__version__ = "0.1.0"
VERSION = __version__  # Azure ML's spelling (azureml.core.VERSION)

__all__ = [
    "AuthError",
    "ConfigError",
    "ConflictError",
    "CorruptEventFileError",
    "Environment",
    "Estimator",
    "ExpboardError",
    "Experiment",
    "MetricKind",
    "NotFoundError",
    "PayloadTooLargeError",
    "Run",
    "RunConfiguration",
    "RunFailedError",
    "RunStatus",
    "ScriptRunConfig",
    "StoreUnavailableError",
    "SummaryWriter",
    "VERSION",
    "ValidationError",
    "Workspace",
    "__version__",
]
