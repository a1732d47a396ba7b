"""Submitted script runs end to end: real agents, real scripts, a real SQLite workspace."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from compute_helpers import alive, read, wait_until

from expboard import Experiment, Run, RunFailedError, RunStatus, Workspace
from expboard.compute import ScriptRunConfig
from expboard.errors import NotFoundError

TRAIN_OK = """
    import os, sys
    from expboard import Run
    run = Run.get_context()
    print("run id", run.id, "args", sys.argv[1:])
    for i in range(5):
        run.log("loss", 1.0 / (i + 1))
    run.log("rank", os.environ.get("MY_SETTING"))
    os.makedirs("outputs/model", exist_ok=True)
    with open("outputs/model/weights.txt", "w") as f:
        f.write("w=1")
    print("a warning", file=sys.stderr)
"""


def test_submit_returns_queued_at_once_and_completes(
    ws: Workspace, project: Callable[..., Path], pids: list[int]
) -> None:
    src = project(**{"train.py": TRAIN_OK, "helper.txt": "data"})
    config = ScriptRunConfig(src, "train.py", ["--lr", 0.1], environment={"MY_SETTING": "seven"})
    run = Experiment(ws, "script-runs").submit(config, tags={"kind": "test"})
    assert run.get_status() in (RunStatus.QUEUED, RunStatus.STARTING, RunStatus.RUNNING)
    assert run.record.status == RunStatus.QUEUED  # the record returned by submit
    details = run.wait_for_completion(timeout=60)
    assert details["status"] == "Completed"
    assert details["runType"] == "script" and details["target"] == "local"
    assert details["tags"] == {"kind": "test"}
    assert "system_logs/driver.log" in details["logFiles"]
    log = read(run, "system_logs/driver.log").decode()
    assert f"run id {run.id} args ['--lr', '0.1']" in log
    assert "a warning" in log
    # Run.get_context() in the script returned this run: what it logged is here
    metrics = run.get_metrics()
    assert metrics["loss"] == [1.0, 0.5, 1 / 3, 0.25, 0.2]
    assert metrics["rank"] == "seven"
    assert read(run, "outputs/model/weights.txt") == b"w=1"
    names = run.get_file_names()
    assert "snapshot.zip" in names and "runconfig.json" in names
    assert details["startTimeUtc"] and details["endTimeUtc"]


def test_failed_script_records_exit_code_and_stderr(
    ws: Workspace, project: Callable[..., Path], pids: list[int]
) -> None:
    src = project(**{"train.py": "print('starting')\nraise ValueError('the learning rate is negative')\n"})
    run = Experiment(ws, "script-runs").submit(ScriptRunConfig(src, "train.py"))
    with pytest.raises(RunFailedError) as info:
        run.wait_for_completion(timeout=60)
    message = str(info.value)
    assert "exited with code 1" in message and "ValueError: the learning rate is negative" in message
    details = run.wait_for_completion(raise_on_error=False)
    assert details["status"] == "Failed"
    assert details["error"]["exitCode"] == 1
    assert "Traceback" in details["error"]["stderrTail"]
    assert "starting" in read(run, "system_logs/driver.log").decode()


def test_logs_are_uploaded_while_the_script_runs(
    ws: Workspace, project: Callable[..., Path], tmp_path: Path, pids: list[int]
) -> None:
    flag1, flag2 = tmp_path / "flag1", tmp_path / "flag2"
    src = project(
        **{
            "train.py": f"""
            import os, time
            os.makedirs("logs/train", exist_ok=True)
            def wait(p):
                while not os.path.exists(p):
                    time.sleep(0.02)
            with open("logs/train/events.out.tfevents.1", "wb") as f:
                f.write(b"first-record;")
                f.flush()
                with open("logs/notes.txt", "w") as g:
                    g.write("a long first version of the notes")
                wait({str(flag1)!r})
                f.write(b"second-record;")
                f.flush()
                with open("logs/notes.txt", "w") as g:   # truncated and rewritten: uploaded whole again
                    g.write("short")
                wait({str(flag2)!r})
            """
        }
    )
    run = Experiment(ws, "script-runs").submit(ScriptRunConfig(src, "train.py"))
    store = ws.store

    def stored(name: str) -> bytes:
        try:
            return store.read_file(run.id, name)
        except NotFoundError:
            return b""

    wait_until(lambda: stored("logs/train/events.out.tfevents.1") == b"first-record;", what="the first bytes")
    wait_until(lambda: stored("logs/notes.txt") == b"a long first version of the notes", what="notes v1")
    assert run.get_status() == RunStatus.RUNNING
    flag1.touch()
    wait_until(
        lambda: stored("logs/train/events.out.tfevents.1") == b"first-record;second-record;", what="appended bytes"
    )
    wait_until(lambda: stored("logs/notes.txt") == b"short", what="the rewritten file")
    assert run.get_status() == RunStatus.RUNNING
    flag2.touch()
    assert run.wait_for_completion(timeout=60)["status"] == "Completed"


def test_cancel_stops_the_script_and_its_children(
    ws: Workspace, project: Callable[..., Path], tmp_path: Path, pids: list[int]
) -> None:
    pid_file = tmp_path / "grandchild.pid"
    src = project(
        **{
            "train.py": f"""
            import subprocess, sys, time
            # a grandchild that ignores SIGTERM: only SIGKILL after the grace period ends it
            child = subprocess.Popen([sys.executable, "-c",
                "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"])
            with open({str(pid_file)!r}, "w") as f:
                f.write(str(child.pid))
            print("training forever", flush=True)
            time.sleep(600)
            """
        }
    )
    run = Experiment(ws, "script-runs").submit(ScriptRunConfig(src, "train.py"))
    wait_until(lambda: pid_file.exists() and pid_file.read_text(), what="the grandchild")
    grandchild = int(pid_file.read_text())
    pids.append(grandchild)
    wait_until(lambda: run.get_status() == RunStatus.RUNNING, what="Running")
    started = time.monotonic()
    run.cancel()
    assert run.get_status() in (RunStatus.CANCEL_REQUESTED, RunStatus.CANCELED)
    details = run.wait_for_completion(timeout=30)
    assert details["status"] == "Canceled"
    assert time.monotonic() - started < 15
    wait_until(lambda: not alive(grandchild), timeout=5, what="the grandchild to die")
    assert "training forever" in read(run, "system_logs/driver.log").decode()


def test_script_killed_with_sigkill_ends_failed(ws: Workspace, project: Callable[..., Path], pids: list[int]) -> None:
    src = project(**{"train.py": "import time\nprint('up', flush=True)\ntime.sleep(600)\n"})
    run = Experiment(ws, "script-runs").submit(ScriptRunConfig(src, "train.py"))
    wait_until(lambda: "expboard.script_pid" in run.get_properties(), what="the script to start")
    os.kill(int(run.get_properties()["expboard.script_pid"]), signal.SIGKILL)
    with pytest.raises(RunFailedError, match="killed by signal SIGKILL"):
        run.wait_for_completion(timeout=30)
    assert run.get_status() == RunStatus.FAILED


def test_agent_killed_with_sigkill_ends_not_responding(
    ws: Workspace, project: Callable[..., Path], pids: list[int]
) -> None:
    src = project(**{"train.py": "import time\nprint('up', flush=True)\ntime.sleep(600)\n"})
    run = Experiment(ws, "script-runs").submit(ScriptRunConfig(src, "train.py"))
    wait_until(lambda: run.get_status() == RunStatus.RUNNING, what="Running")
    wait_until(lambda: "expboard.script_pid" in run.get_properties(), what="the script to start")
    agent = int(run.get_properties()["expboard.agent_pid"])
    os.kill(agent, signal.SIGKILL)
    started = time.monotonic()
    with pytest.raises(RunFailedError, match="stopped responding"):
        run.wait_for_completion(timeout=30)
    assert run.get_status() == RunStatus.NOT_RESPONDING
    assert time.monotonic() - started < 15  # heartbeat timeout is 4 s in these tests
    assert "no heartbeat" in run.get_details()["error"]["message"]
    # what its agent could not clean up: its own log file and the working copy
    Path(tempfile.gettempdir(), f"expboard-agent-{run.id}.log").unlink(missing_ok=True)
    workdir = re.search(r"working copy (\S+)", read(run, "system_logs/agent.log").decode())
    assert workdir and Path(workdir.group(1)).name.startswith("expboard-run-")
    shutil.rmtree(workdir.group(1), ignore_errors=True)
    if sys.platform.startswith("linux"):  # the script dies with its agent (PR_SET_PDEATHSIG)
        script = int(run.get_properties()["expboard.script_pid"])
        wait_until(lambda: not alive(script), timeout=5, what="the orphaned script to die")


def test_show_output_streams_the_driver_log(
    ws: Workspace, project: Callable[..., Path], pids: list[int], capsys: pytest.CaptureFixture[str]
) -> None:
    src = project(**{"train.py": "import time\nfor i in range(3):\n    print('epoch', i)\n    time.sleep(0.2)\n"})
    run = Experiment(ws, "script-runs").submit(ScriptRunConfig(src, "train.py"))
    run.wait_for_completion(show_output=True, timeout=60)
    out = capsys.readouterr().out
    assert "epoch 0\nepoch 1\nepoch 2\n" in out
    assert f"RunId: {run.id}" in out and "Status: Completed" in out


def test_missing_script_and_bad_config_are_clear_errors(ws: Workspace, project: Callable[..., Path]) -> None:
    from expboard import ValidationError

    src = project(**{"train.py": "print(1)\n"})
    exp = Experiment(ws, "script-runs")
    with pytest.raises(ValidationError, match="no script 'nope.py'"):
        exp.submit(ScriptRunConfig(src, "nope.py"))
    with pytest.raises(ValidationError, match="inside source_directory"):
        exp.submit(ScriptRunConfig(src, "../outside.py"))
    with pytest.raises(NotFoundError, match="no compute target 'gpu'"):
        exp.submit(ScriptRunConfig(src, "train.py", compute_target="gpu"))
    with pytest.raises(ValidationError, match="ScriptRunConfig"):
        exp.submit({"script": "train.py"})
    assert list(exp.get_runs()) == []


def test_get_context_outside_a_submitted_run_is_offline(ws: Workspace) -> None:
    run = Run.get_context()
    run.log("compute_offline_check", 1)  # accepted, kept in a temporary history (shared by this process)
    assert run.experiment.name == "offline"


def test_the_run_outlives_the_submitting_process(
    ws: Workspace, project: Callable[..., Path], tmp_path: Path, pids: list[int]
) -> None:
    src = project(**{"train.py": "import time\ntime.sleep(1)\nprint('still here')\n"})
    submitter = tmp_path / "submit.py"
    submitter.write_text(
        "import sys\n"
        "from expboard import Experiment, Workspace\n"
        "from expboard.compute import ScriptRunConfig\n"
        f"run = Experiment(Workspace({str(ws.path)!r}), 'detached').submit(ScriptRunConfig({str(src)!r}, 'train.py'))\n"
        "print(run.id)\n"
    )
    proc = subprocess.run([sys.executable, str(submitter)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    run = Run.get(ws, proc.stdout.strip())
    assert run.wait_for_completion(timeout=60)["status"] == "Completed"
    assert read(run, "system_logs/driver.log") == b"still here\n"


def test_stdout_and_stderr_lines_stay_whole_in_the_driver_log(ws: Workspace, project: Callable[..., Path]) -> None:
    # Unbuffered (as the agent runs scripts), print() writes a line and its newline separately: the two
    # streams' lines must still not cut into each other in the driver log.
    script = (
        "import sys\n"
        "for i in range(300):\n"
        "    print('out', i, 'x' * 40)\n"
        "    print('err', i, 'y' * 40, file=sys.stderr)\n"
        "print('done, no newline', end='')\n"
    )
    run = Experiment(ws, "script-runs").submit(ScriptRunConfig(project(**{"train.py": script}), "train.py"))
    assert run.wait_for_completion(timeout=60)["status"] == "Completed"
    lines = read(run, "system_logs/driver.log").decode().splitlines()
    expected = {f"out {i} {'x' * 40}" for i in range(300)} | {f"err {i} {'y' * 40}" for i in range(300)}
    assert expected <= set(lines), sorted(set(lines) - expected)[:5]
    assert "done, no newline" in lines
