"""Submitting a script run: :func:`submit` (what ``Experiment.submit`` calls), registered in :mod:`..plugins`
together with the compute targets of a workspace and the snapshot builder when this module is imported
(the package's top loads it the first time a client needs it)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import plugins
from ..errors import ValidationError
from ..experiment import Experiment
from ..records import RunStatus
from ..run import Run
from .agent import RUNCONFIG_FILE
from .config import ScriptRunConfig
from .ray import RayCompute  # registers the "Ray" target type; imports no Ray (that happens on the cluster)
from .snapshot import SNAPSHOT_FILE, build_snapshot
from .targets import ComputeTargets

__all__ = ["RayCompute", "submit"]


def submit(
    experiment: Experiment, config: ScriptRunConfig, tags: Mapping[str, Any] | None = None, parent: Run | None = None
) -> Run:
    """Snapshot the source folder, create a Queued script run (a child of ``parent`` when given), hand it to
    the config's compute target and return the run at once. A snapshot over its size limit raises
    PayloadTooLargeError before any run exists.
    """
    if not isinstance(config, ScriptRunConfig):
        raise ValidationError(f"Experiment.submit takes a ScriptRunConfig or an Estimator, got {type(config).__name__}")
    ws = experiment.workspace
    target = ws.compute_targets.resolve(config.compute_target)
    source = Path(config.source_directory).expanduser().resolve()
    if not source.is_dir():
        raise ValidationError(f"source_directory {str(config.source_directory)!r} is not a folder")
    if config.command is None:  # a command names whatever it runs itself
        script = (source / config.script).resolve()
        if not script.is_relative_to(source):
            raise ValidationError(f"script {config.script!r} must be inside source_directory {str(source)!r}")
        if not script.is_file():
            raise ValidationError(f"no script {config.script!r} in source_directory {str(source)!r}")
    environment = config.run_environment.to_json()
    target.check_environment(environment)  # an environment the target cannot make: refused before any run exists
    snapshot = build_snapshot(source)
    run = Run.create(
        experiment,
        display_name=Path(config.script).stem,
        parent=parent,
        run_type="script",
        status=RunStatus.QUEUED,
        target=target.name,
        tags=tags,
        properties={
            "expboard.script": config.script,
            "expboard.arguments": json.dumps(config.arguments),
            "expboard.source_directory": str(source),
            "expboard.snapshot_files": str(snapshot.files),
            "expboard.environment": f"{environment['name']}:{environment['version'] or 'unregistered'}",
            **({"expboard.command": json.dumps(config.command)} if config.command is not None else {}),
        },
    )
    store = ws.store
    try:
        run_config = config.to_dict()
        run_config["source_directory"] = str(source)
        run_config["compute_target"] = target.name
        run_config["environment_build"] = target.environment_build
        store.write_file(run.id, SNAPSHOT_FILE, snapshot.data)
        store.write_file(run.id, RUNCONFIG_FILE, json.dumps(run_config, indent=2).encode())
        target.submit(run, config)
    except BaseException as exc:
        run.fail(f"could not submit the run to compute target {target.name!r}: {exc}", "SubmitError")
        raise
    run.refresh()
    return run


plugins.register_compute(submit, ComputeTargets)
plugins.register_snapshot(lambda source: build_snapshot(Path(source)).data)
