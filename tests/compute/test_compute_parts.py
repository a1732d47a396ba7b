"""The parts of script runs: configs, snapshots, the target registry, the NotResponding reaper."""

from __future__ import annotations

import io
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from compute_helpers import read

from expboard import Experiment, PayloadTooLargeError, Run, RunStatus, Workspace
from expboard.compute import (
    ComputeTarget,
    Estimator,
    LocalTarget,
    ScriptRunConfig,
    TargetStatus,
    reap_unresponsive,
    register_target_type,
)
from expboard.compute.agent import SETTINGS, agent_command
from expboard.compute.snapshot import IgnoreRules, build_snapshot, extract_snapshot
from expboard.errors import NotFoundError, ValidationError
from expboard.transfer import FolderUpload


def test_estimator_maps_script_params_to_arguments() -> None:
    est = Estimator(
        "proj", entry_script="train.py", script_params={"--log_dir": "./logs", "--verbose": None, "--lr": 0.5}
    )
    assert isinstance(est, ScriptRunConfig)
    assert est.script == "train.py"
    assert est.arguments == ["--log_dir", "./logs", "--verbose", "--lr", "0.5"]
    assert Estimator("p", "t.py", {"--a": True, "--b": False}).arguments == ["--a"]
    assert est.target_name == "local"


def test_script_run_config_validates() -> None:
    with pytest.raises(ValidationError, match="arguments must be a list"):
        ScriptRunConfig("p", "t.py", arguments="--lr 1")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="environment"):
        ScriptRunConfig("p", "t.py", environment=["A=1"])  # type: ignore[arg-type]
    config = ScriptRunConfig("p", "t.py", environment={"N": 1})
    assert config.environment == {"N": "1"}
    assert config.to_dict()["environment"] == {"N": "1"}


def test_ignore_rules() -> None:
    rules = IgnoreRules(["# comment", "", "*.ckpt", "!keep.ckpt", "data/", "/build", "docs/**/*.png", "a?c"])
    assert rules.ignored("m.ckpt", False) and rules.ignored("sub/m.ckpt", False)
    assert not rules.ignored("keep.ckpt", False)
    assert rules.ignored("data", True) and rules.ignored("x/data", True)
    assert not rules.ignored("data", False)  # "data/" matches folders only
    assert rules.ignored("build", True) and not rules.ignored("src/build", True)
    assert rules.ignored("docs/a/b/x.png", False) and rules.ignored("docs/x.png", False)
    assert rules.ignored("abc", False) and not rules.ignored("abbc", False)


def _names(data: bytes) -> set[str]:
    return set(zipfile.ZipFile(io.BytesIO(data)).namelist())


def test_snapshot_leaves_out_ignored_and_run_folders(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for rel in [
        "train.py",
        "pkg/util.py",
        "data/big.bin",
        "model.ckpt",
        "logs/old.tfevents",
        "outputs/old.pkl",
        "pkg/logs/kept.txt",
        ".git/HEAD",
        "pkg/__pycache__/u.pyc",
        ".expboard/config.json",
    ]:
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(rel)
    (src / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (src / "run.sh").chmod(0o755)
    (src / ".gitignore").write_text("data/\n*.ckpt\n")
    snap = build_snapshot(src)
    assert _names(snap.data) == {".gitignore", "train.py", "pkg/util.py", "pkg/logs/kept.txt", "run.sh"}
    assert snap.files == 5
    # .expboardignore replaces .gitignore
    (src / ".expboardignore").write_text("pkg/\n")
    assert _names(build_snapshot(src).data) == {".gitignore", ".expboardignore", "train.py", "model.ckpt", "run.sh"} | {
        "data/big.bin"
    }
    out = tmp_path / "out"
    extract_snapshot(build_snapshot(src).data, out)
    assert (out / "run.sh").stat().st_mode & 0o100
    assert (out / "data/big.bin").read_text() == "data/big.bin"


def test_snapshot_over_the_limit_fails_before_a_run_exists(
    ws: Workspace, project: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    src = project(**{"train.py": "print(1)\n"})
    (src / "weights.bin").write_bytes(b"\0" * 300_000)
    monkeypatch.setenv("EXPBOARD_SNAPSHOT_MAX_MB", "0.1")
    exp = Experiment(ws, "too-big")
    with pytest.raises(PayloadTooLargeError, match=r"limit of 0.1 MB.*expboardignore.*EXPBOARD_SNAPSHOT_MAX_MB"):
        exp.submit(ScriptRunConfig(src, "train.py"))
    assert list(exp.get_runs()) == []
    (src / ".expboardignore").write_text("*.bin\n")
    assert build_snapshot(src).files == 2


class ManualTarget(ComputeTarget):
    """A target that queues runs and starts their agents only when told (like a busy cluster)."""

    type = "manual"

    def __init__(self, name: str, slots: int = 1) -> None:
        super().__init__(name)
        self.slots = slots
        self.queued: list[str] = []

    def submit(self, run: Run, config: ScriptRunConfig) -> None:
        self.queued.append(run.id)

    def start_next(self) -> subprocess.CompletedProcess[bytes]:
        assert self.workspace is not None
        import os

        env = {**os.environ, **self.workspace.env()}
        return subprocess.run(agent_command(self.queued.pop(0)), env=env, capture_output=True, timeout=60)

    def get_status(self) -> TargetStatus:
        return TargetStatus(self.name, self.type, "Succeeded", nodes=1, cpus=self.slots, gpus=0)

    def to_config(self) -> dict[str, Any]:
        return {"slots": self.slots}

    @classmethod
    def from_config(cls, name: str, config: Mapping[str, Any]) -> ManualTarget:
        return cls(name, **config)


def test_compute_target_registry(ws: Workspace) -> None:
    cts = ws.compute_targets
    assert "local" in cts and isinstance(cts["local"], LocalTarget)
    assert cts["local"].type == "local"
    status = cts["local"].get_status().serialize()
    assert status["nodes"] == 1 and status["cpus"] >= 1 and status["state"] == "Succeeded"
    with pytest.raises(NotFoundError, match="no compute target 'cluster'.*local"):
        cts["cluster"]
    register_target_type("manual", ManualTarget.from_config)
    cts.attach("cluster", ManualTarget("x", slots=4))
    assert cts["cluster"].name == "cluster" and [t.name for t in cts.list()] == ["local", "cluster"]
    # saved with the workspace: a new Workspace object finds it again
    again = Workspace(ws.path).compute_targets
    assert isinstance(again["cluster"], ManualTarget) and again["cluster"].slots == 4  # type: ignore[attr-defined]
    cts.detach("cluster")
    assert "cluster" not in Workspace(ws.path).compute_targets


def test_cancel_while_queued_and_a_late_agent(ws: Workspace, project: Callable[..., Path]) -> None:
    target = ManualTarget("queue")
    ws.compute_targets.attach("queue", target, persist=False)
    src = project(**{"train.py": "print('never runs')\n"})
    exp = Experiment(ws, "queued")
    first = exp.submit(ScriptRunConfig(src, "train.py", compute_target="queue"))
    second = exp.submit(ScriptRunConfig(src, "train.py", compute_target=target))
    assert first.get_status() == RunStatus.QUEUED and second.get_status() == RunStatus.QUEUED
    first.cancel()
    assert first.get_status() == RunStatus.CANCELED
    proc = target.start_next()  # the agent finds the run canceled and does nothing
    assert proc.returncode == 0, proc.stderr.decode()
    assert first.get_status() == RunStatus.CANCELED
    assert "system_logs/driver.log" not in first.get_file_names()
    proc = target.start_next()
    assert proc.returncode == 0, proc.stderr.decode()
    assert second.get_status() == RunStatus.COMPLETED
    assert read(second, "system_logs/driver.log") == b"never runs\n"


def test_reap_unresponsive_marks_only_stale_script_runs(ws: Workspace) -> None:
    exp = Experiment(ws, "reaper")
    stale = Run.create(exp, run_type="script", status=RunStatus.RUNNING)
    fresh = Run.create(exp, run_type="script", status=RunStatus.RUNNING)
    interactive = Run.create(exp, run_type="interactive", status=RunStatus.RUNNING)
    queued_unclaimed = Run.create(exp, run_type="script", status=RunStatus.QUEUED)  # no heartbeat promised
    old = time.time() - 100
    ws.store.update_run(stale.id, heartbeat=old)
    ws.store.update_run(interactive.id, heartbeat=old)
    assert reap_unresponsive(ws.store, max_age=10, run_types=["script"]) == [stale.id]
    assert stale.get_status() == RunStatus.NOT_RESPONDING
    for run in (fresh, interactive, queued_unclaimed):
        assert run.get_status() != RunStatus.NOT_RESPONDING
    assert reap_unresponsive(ws.store, max_age=10, run_types=["script"]) == []
    interactive.complete()
    fresh.cancel()  # a script run without an agent: CancelRequested
    assert fresh.get_status() == RunStatus.CANCEL_REQUESTED
    stale.cancel()  # NotResponding: nobody to ask, Canceled at once
    assert stale.get_status() == RunStatus.CANCELED


def test_dirsync_appends_and_rewrites(ws: Workspace, tmp_path: Path) -> None:
    run = Experiment(ws, "sync").start_logging()
    root = tmp_path / "logs"
    (root / "a").mkdir(parents=True)
    sync = FolderUpload(ws.store, run.id, root, "logs")
    (root / "a/ev").write_bytes(b"123")
    (root / "empty").write_bytes(b"")
    assert sync.sync() == 3
    assert sync.sync() == 0
    with open(root / "a/ev", "ab") as f:
        f.write(b"45")
    assert sync.sync() == 2
    assert read(run, "logs/a/ev") == b"12345" and read(run, "logs/empty") == b""
    (root / "a/ev").write_bytes(b"x")  # truncated
    sync.sync()
    assert read(run, "logs/a/ev") == b"x"
    (root / "tmp").write_bytes(b"yy")
    (root / "tmp").replace(root / "a/ev")  # replaced by another file of a different inode
    sync.sync()
    assert read(run, "logs/a/ev") == b"yy"
    run.complete()


def test_settings_are_documented() -> None:
    import expboard.compute.agent as agent

    for s in SETTINGS:
        assert s.help and s.name in (agent.__doc__ or "")


def test_agent_usage() -> None:
    proc = subprocess.run([sys.executable, "-m", "expboard.compute"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "usage" in proc.stderr


def test_the_agent_starts_without_the_client_numpy_or_tensorboard(ws: Workspace) -> None:
    """``python -m expboard.compute RUN_ID`` pays only for what it uses: importing the agent and opening the
    workspace's store loads neither the client's Run/Experiment, nor numpy, nor TensorBoard (the Ray overhead
    target depends on it)."""
    code = (
        "import sys\n"
        "import expboard.compute.agent\n"
        "from expboard.workspace import Workspace\n"
        "Workspace().store.list_experiments()  # what the agent opens, from the workspace's environment\n"
        "heavy = ('numpy', 'tensorboard', 'expboard.run', 'expboard.experiment', 'expboard.compute.submission')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    env = {**ws.env(), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env, check=True)
    assert out.stdout.strip() == "[]"
