"""expboard: self-hosted experiment run history with first-class TensorBoard integration.

>>> from expboard import Workspace, Experiment
>>> ws = Workspace.from_config()                       # doctest: +SKIP
>>> run = Experiment(ws, "demo").start_logging()       # doctest: +SKIP

``import expboard`` loads almost nothing: each public name is imported from its module the first time it is
used (PEP 562, see :mod:`expboard.lazy`), so a run agent or ``expboard --help`` pays only for what it uses.
To add a public name: import it under ``if TYPE_CHECKING:`` below and add it to ``__all__`` (and to
``tests/test_public_api.py``, which pins the list).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import plugins
from .lazy import lazy_exports

if TYPE_CHECKING:
    from .compute.config import Estimator, RunConfiguration, ScriptRunConfig
    from .compute.environment import Environment
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
    from .model import Model
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
    "Model",
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

if not TYPE_CHECKING:  # type checkers read the imports above; a typo in a name stays an error for them
    __getattr__, __dir__ = lazy_exports(__name__, __file__, __all__)


def _load_compute() -> None:
    """Compute targets plug into the client (Experiment.submit, Workspace.compute_targets) when first asked
    for: the package's top, which knows every layer, tells :mod:`.plugins` where they are."""
    from .compute import submission  # noqa: F401  (registers the submitter, the targets and the snapshot)


plugins.register_loader(_load_compute)
