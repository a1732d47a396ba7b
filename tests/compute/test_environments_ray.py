"""An Environment on a real Ray cluster: its pip packages become the job's runtime_env (Ray installs them from
a wheel made here, no index), its variables reach the script, and max_run_duration_seconds cancels the run
there too (the same agent)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from compute_helpers import read
from ray_helpers import roomier_heartbeat  # noqa: F401  (autouse)
from test_environments import make_wheel

from expboard import Environment, Experiment, RunStatus, ScriptRunConfig, Workspace
from expboard.compute import ComputeTarget, RayCompute
from expboard.compute.ray_local import LocalRayCluster
from expboard.conda_dependencies import CondaDependencies

IN_RAY_ENV = """
import os, time
import tinyray
from expboard import Run
run = Run.get_context()
run.log("answer", tinyray.ANSWER)
print("tinyray from", tinyray.__file__, "var", os.environ.get("FROM_ENV"), flush=True)
time.sleep(300)
"""


def test_environment_on_ray_and_max_duration(
    ws: Workspace, ray_cluster: LocalRayCluster, project: Callable[..., Path], tmp_path: Path
) -> None:
    wheels = tmp_path / "wheels"
    make_wheel(wheels, "tinyray", "1.0", "ANSWER = 7\n")
    ComputeTarget.attach(
        ws, "ray-cluster", RayCompute.attach_configuration(address=ray_cluster.address, python=sys.executable)
    )
    env = Environment("ray-env")
    deps = CondaDependencies.create(pip_packages=["tinyray==1.0", "azureml-defaults"])
    deps.set_pip_option("--no-index")
    deps.set_pip_option(f"--find-links {wheels}")
    env.python.conda_dependencies = deps
    env.environment_variables["FROM_ENV"] = "ray"
    config = ScriptRunConfig(
        project(**{"train.py": IN_RAY_ENV}),
        "train.py",
        compute_target="ray-cluster",
        environment=env,
        max_run_duration_seconds=6,
    )
    run = Experiment(ws, "ray-envs").submit(config)
    run.wait_for_completion(timeout=240)
    details = run.get_details()
    log = read(run, "system_logs/driver.log").decode()
    assert details["status"] == RunStatus.CANCELED.value, (details, log)
    assert details["error"]["code"] == "MaxRunDurationExceeded"
    assert "var ray" in log and "site-packages/tinyray.py" in log
    assert run.get_metrics()["answer"] == 7
