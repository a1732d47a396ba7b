"""Script runs on compute targets: submit a :class:`ScriptRunConfig`, a run agent supervises it.

>>> config = ScriptRunConfig("./project", "train.py", ["--log_dir", "./logs"])  # doctest: +SKIP
>>> run = Experiment(ws, "tensorboard-demo").submit(config)    # doctest: +SKIP   (Queued, at once)
>>> run.wait_for_completion(show_output=True)                  # doctest: +SKIP

Files a submitted run stores:

    snapshot.zip             the source folder as submitted (see :mod:`.snapshot`)
    runconfig.json           script or command, arguments, environment (variables and definition), target
    system_logs/driver.log   the script's stdout and stderr, streamed
    system_logs/agent.log    what the run agent did
    logs/...                 the script's ./logs, streamed while it grows (TensorBoard files)
    outputs/...              the script's ./outputs, stored when it ends
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_exports

# Imported when first used (see expboard.lazy), so the run agent, ``python -m expboard.compute RUN_ID``,
# loads only what it needs.
if TYPE_CHECKING:
    from .agent import DRIVER_LOG, reap_unresponsive
    from .config import (
        DockerConfiguration,
        Estimator,
        MpiConfiguration,
        PyTorchConfiguration,
        RunConfiguration,
        ScriptRunConfig,
    )
    from .environment import CondaDependencies, Environment, EnvironmentBuildError
    from .ray import RayCompute
    from .submission import submit
    from .targets import (
        AttachConfiguration,
        ComputeTarget,
        ComputeTargets,
        LocalTarget,
        TargetStatus,
        register_target_type,
    )

__all__ = [
    "DRIVER_LOG",
    "DockerConfiguration",
    "AttachConfiguration",
    "ComputeTarget",
    "ComputeTargets",
    "CondaDependencies",
    "Environment",
    "EnvironmentBuildError",
    "Estimator",
    "LocalTarget",
    "MpiConfiguration",
    "PyTorchConfiguration",
    "RayCompute",
    "RunConfiguration",
    "ScriptRunConfig",
    "TargetStatus",
    "reap_unresponsive",
    "register_target_type",
    "submit",
]

if not TYPE_CHECKING:  # type checkers read the imports above; a typo in a name stays an error for them
    __getattr__, __dir__ = lazy_exports(__name__, __file__, __all__)
