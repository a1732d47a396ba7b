"""Azure ML's environments and run configurations on the local target: registration in the run history,
cached virtual environments built offline from a wheel made here, command=, max_run_duration_seconds."""

from __future__ import annotations

import json
import sys
import threading
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from compute_helpers import read

from expboard import Environment, Experiment, Run, RunConfiguration, RunStatus, ScriptRunConfig, Workspace
from expboard.compute import EnvironmentBuildError
from expboard.conda_dependencies import CondaDependencies
from expboard.environment import Environment as EnvironmentByAzurePath
from expboard.errors import NotFoundError, RunFailedError, ValidationError
from expboard.runconfig import RunConfiguration as RunConfigurationByAzurePath


def make_wheel(folder: Path, name: str, version: str, body: str) -> Path:
    """A pure-Python wheel of one module, written by hand (no build backend, no index needed)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-{version}-py3-none-any.whl"
    info = f"{name}-{version}.dist-info"
    files = {
        f"{name}.py": body,
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    files[f"{info}/RECORD"] = "".join(f"{n},,\n" for n in [*files, f"{info}/RECORD"])
    with zipfile.ZipFile(path, "w") as z:
        for n, text in files.items():
            z.writestr(n, text)
    return path


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("wheels")
    make_wheel(folder, "tinypkg", "1.0", "ANSWER = 42\n")
    return folder


@pytest.fixture(scope="module")
def env_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("env-cache")


@pytest.fixture(autouse=True)
def _cache_here(monkeypatch: pytest.MonkeyPatch, env_cache: Path) -> None:
    monkeypatch.setenv("EXPBOARD_ENV_CACHE_DIR", str(env_cache))


def tiny_env(name: str, wheels: Path, *extra: str) -> Environment:
    env = Environment(name)
    deps = CondaDependencies.create(pip_packages=["tinypkg==1.0", *extra], conda_packages=["python=3.8", "pip"])
    deps.set_pip_option("--no-index")
    deps.set_pip_option(f"--find-links {wheels}")
    env.python.conda_dependencies = deps
    env.environment_variables = {"FROM_ENV": "env", "BOTH": "env"}
    return env


IN_ENV = """
import importlib.util, json, sys, os
from expboard import Run
import tinypkg
run = Run.get_context()
run.log("answer", tinypkg.ANSWER)
print(json.dumps({"prefix": sys.prefix, "tinypkg": tinypkg.__file__,
                  "pytest": importlib.util.find_spec("pytest") is not None,
                  "vars": [os.environ.get("FROM_ENV"), os.environ.get("BOTH")]}))
"""


def _report(run_log: bytes) -> dict[str, object]:
    line = next(x for x in run_log.decode().splitlines() if x.startswith("{"))
    result: dict[str, object] = json.loads(line)
    return result


# --- definitions ------------------------------------------------------------------------------------------
def test_conda_dependencies_and_azure_import_paths(tmp_path: Path) -> None:
    assert EnvironmentByAzurePath is Environment and RunConfigurationByAzurePath is RunConfiguration
    deps = CondaDependencies.create(pip_packages=["numpy==1.26.4", "scipy"], conda_packages=["python=3.8"])
    deps.add_pip_package("numpy>=2")  # replaces the numpy entry
    deps.add_conda_package("pip=23")
    assert list(deps.pip_packages) == ["scipy", "numpy>=2"]
    assert list(deps.conda_packages) == ["python=3.8", "pip=23"]
    assert deps.get_python_version() == "3.8"
    spec = tmp_path / "env.yml"
    deps.save(spec)
    env = Environment.from_conda_specification("from-yaml", spec)
    assert env.python.conda_dependencies == deps
    (tmp_path / "base.txt").write_text("scipy  # science\n")
    (tmp_path / "requirements.txt").write_text("-r base.txt\n--find-links ./wheels\ntinypkg==1.0\n# a comment\n")
    env = Environment.from_pip_requirements("from-pip", tmp_path / "requirements.txt")
    assert list(env.python.conda_dependencies.pip_packages) == ["scipy", "tinypkg==1.0"]
    assert list(env.python.conda_dependencies.pip_options) == [f"--find-links {tmp_path / 'wheels'}"]
    with pytest.raises(ValidationError, match="list of packages"):
        CondaDependencies.create(pip_packages="numpy")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="cannot read the pip requirements file"):
        Environment.from_pip_requirements("x", tmp_path / "missing.txt")


def test_register_get_and_list(ws: Workspace, wheels: Path) -> None:
    env = tiny_env("tiny", wheels)
    first = env.register(ws)
    assert first.version == "1" and env.version == "1"
    assert env.register(ws).version == "1"  # the same definition is the same version
    env.python.conda_dependencies.add_pip_package("other==2")
    assert env.register(ws).version == "2"
    latest = Environment.get(ws, "tiny")
    assert latest.version == "2" and "other==2" in list(latest.python.conda_dependencies.pip_packages)
    assert latest.environment_variables == {"FROM_ENV": "env", "BOTH": "env"}
    assert Environment.get(ws, "tiny", version="1") == first
    managed = Environment("managed")
    managed.python.user_managed_dependencies = True
    managed.python.interpreter_path = sys.executable
    managed.register(ws)
    listed = Environment.list(ws)
    assert sorted(listed) == ["managed", "tiny"] and listed["tiny"].version == "2"
    assert listed["managed"].python.user_managed_dependencies is True
    with pytest.raises(NotFoundError, match=r"curated environments.*from_pip_requirements.*Registered: managed, tiny"):
        Environment.get(ws, "AzureML-sklearn-1.0-ubuntu20.04-py38-cpu")
    with pytest.raises(NotFoundError, match="no version 7 of environment 'tiny'"):
        Environment.get(ws, "tiny", version=7)


def test_run_configuration_and_script_run_config(tmp_path: Path, wheels: Path) -> None:
    rc = RunConfiguration()
    rc.target = "gpu-box"
    rc.environment = tiny_env("tiny", wheels)
    rc.environment_variables = {"BOTH": "run_config", "RC": "1"}
    rc.node_count = 2
    rc.max_run_duration_seconds = 30
    config = ScriptRunConfig(tmp_path, "train.py", run_config=rc, environment={"MINE": "dict"})
    assert config.target_name == "gpu-box" and config.node_count == 2 and config.max_run_duration_seconds == 30
    assert config.run_environment.name == "tiny"
    assert config.variables() == {"FROM_ENV": "env", "BOTH": "run_config", "RC": "1", "MINE": "dict"}
    stored = config.to_dict()
    assert stored["environment_definition"]["name"] == "tiny" and stored["max_run_duration_seconds"] == 30
    assert ScriptRunConfig(tmp_path, "t.py", compute_target="local", run_config=rc).target_name == "local"
    assert ScriptRunConfig(tmp_path, command="python t.py --x 1").script == "t.py"
    assert ScriptRunConfig(tmp_path, command=["python", "t.py", 2]).command == ["python", "t.py", "2"]
    assert ScriptRunConfig(tmp_path, "t.py").run_environment.python.user_managed_dependencies is True
    with pytest.raises(ValidationError, match="not both"):
        ScriptRunConfig(tmp_path, "t.py", ["--a"], command=["python", "t.py"])
    with pytest.raises(ValidationError, match="max_run_duration_seconds"):
        ScriptRunConfig(tmp_path, "t.py", max_run_duration_seconds=0)
    with pytest.raises(ValidationError, match="environment must be an Environment"):
        ScriptRunConfig(tmp_path, "t.py", environment=["A=1"])  # type: ignore[arg-type]


def test_conda_packages_are_refused_before_a_run_exists(ws: Workspace, project: Callable[..., Path]) -> None:
    env = Environment("needs-conda")
    env.python.conda_dependencies = CondaDependencies.create(conda_packages=["python=3.8", "scikit-learn"])
    exp = Experiment(ws, "envs")
    with pytest.raises(EnvironmentBuildError, match=r"conda packages scikit-learn.*pip_packages"):
        exp.submit(ScriptRunConfig(project(**{"t.py": "pass"}), "t.py", environment=env))
    assert list(exp.get_runs()) == []


# --- runs -------------------------------------------------------------------------------------------------
def test_built_once_cached_and_isolated(
    ws: Workspace, project: Callable[..., Path], wheels: Path, env_cache: Path, pids: list[int]
) -> None:
    src = project(**{"train.py": IN_ENV})
    env = tiny_env("tiny", wheels)
    exp = Experiment(ws, "envs")
    # two runs at once with an environment not built yet: one builds it, the other waits and reuses it
    runs: list[Run] = []
    threads = [
        threading.Thread(target=lambda: runs.append(exp.submit(ScriptRunConfig(src, "train.py", environment=env))))
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    logs = []
    for run in runs:
        run.wait_for_completion(timeout=180)
        logs.append(read(run, "system_logs/driver.log"))
    assert sum(b"building a virtual environment" in log for log in logs) == 1, logs
    report = _report(logs[0])
    assert Path(str(report["prefix"])).parent == env_cache  # the script ran in the cached environment
    assert str(report["tinypkg"]).startswith(str(report["prefix"]))
    assert report["pytest"] is False  # the agent's other packages are not in it
    assert report["vars"] == ["env", "env"]
    assert runs[0].get_metrics()["answer"] == 42
    # a later run reuses it at once
    started = time.monotonic()
    again = exp.submit(ScriptRunConfig(src, "train.py", environment=env))
    again.wait_for_completion(timeout=120)
    assert b"using the one built before" in read(again, "system_logs/driver.log")
    assert time.monotonic() - started < 60
    assert len([p for p in env_cache.iterdir() if p.is_dir()]) == 1


def test_a_failed_build_fails_the_run_and_is_not_cached(
    ws: Workspace, project: Callable[..., Path], wheels: Path, env_cache: Path, pids: list[int]
) -> None:
    src = project(**{"train.py": "print('never runs')"})
    env = tiny_env("broken", wheels, "not-a-package-anywhere==9")
    run = Experiment(ws, "envs").submit(ScriptRunConfig(src, "train.py", environment=env))
    with pytest.raises(RunFailedError):
        run.wait_for_completion(timeout=120)
    error = run.get_details()["error"]
    assert error["code"] == "EnvironmentBuildError"
    assert "not-a-package-anywhere" in error["message"]
    log = read(run, "system_logs/driver.log")
    assert b"building a virtual environment" in log and b"never runs" not in log
    from expboard.compute.environment import environment_key

    assert not (env_cache / environment_key(env.to_json())).exists()


def test_user_managed_command_and_max_duration(ws: Workspace, project: Callable[..., Path], pids: list[int]) -> None:
    src = project(**{"train.py": "import sys\nprint('python', sys.executable, sys.argv[1:])\n"})
    env = Environment("mine")
    env.python.user_managed_dependencies = True
    env.python.interpreter_path = sys.executable
    exp = Experiment(ws, "envs")
    listed = exp.submit(ScriptRunConfig(src, command=["python", "train.py", "--x", 1], environment=env))
    shell = exp.submit(ScriptRunConfig(src, command="python train.py --y 2 && echo shell-done", environment=env))
    slow = exp.submit(
        ScriptRunConfig(src, command="echo started; sleep 120", environment=env, max_run_duration_seconds=2)
    )
    listed.wait_for_completion(timeout=180)  # generous: three runs start at once on a loaded machine
    shell.wait_for_completion(timeout=180)
    assert f"python {sys.executable} ['--x', '1']" in read(listed, "system_logs/driver.log").decode()
    log = read(shell, "system_logs/driver.log").decode()
    assert f"python {sys.executable} ['--y', '2']" in log and "shell-done" in log
    assert listed.get_details()["properties"]["expboard.environment"] == "mine:unregistered"
    slow.wait_for_completion(timeout=180)  # Canceled does not raise
    details = slow.get_details()
    assert details["status"] == RunStatus.CANCELED.value
    assert details["error"]["code"] == "MaxRunDurationExceeded"
    assert "max_run_duration_seconds (2 s)" in details["error"]["message"]
    assert b"started" in read(slow, "system_logs/driver.log")


def test_ray_runtime_env_mapping(wheels: Path) -> None:
    from expboard.compute.environment import ray_runtime_env

    env = tiny_env("tiny", wheels, "azureml-defaults")
    assert ray_runtime_env(env.to_json()) == {
        "env_vars": {"FROM_ENV": "env", "BOTH": "env"},
        "pip": {"packages": ["--no-index", f"--find-links {wheels}", "tinypkg==1.0"], "pip_check": False},
    }
    env.python.user_managed_dependencies = True
    assert ray_runtime_env(env.to_json()) == {"env_vars": {"FROM_ENV": "env", "BOTH": "env"}}
    env.python.user_managed_dependencies = False
    env.python.conda_dependencies.add_conda_package("cudatoolkit=11")
    with pytest.raises(EnvironmentBuildError, match="cudatoolkit"):
        ray_runtime_env(env.to_json())
