"""``expboard.children``: a process group, and a folder it used, end with the process that started them,
even when that one is killed with SIGKILL; a watcher stopped the normal way leaves the group alone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from expboard.children import end_group_with_me, stop_watcher
from polling import alive, wait_for

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="process groups are POSIX")

# A parent that starts a group (a sleep in its own session) watched by end_group_with_me, says its pid,
# then waits to be killed.
PARENT = """
import subprocess, sys, time
from expboard.children import end_group_with_me
child = subprocess.Popen(["sleep", "120"], start_new_session=True)
end_group_with_me(child.pid, poll_s=0.2, remove=sys.argv[1])
print(child.pid, flush=True)
time.sleep(120)
"""


def test_the_group_and_its_folder_go_when_the_parent_is_killed(tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    (scratch / "sub").mkdir(parents=True)
    (scratch / "sub" / "events.out.tfevents.1").write_bytes(b"x")
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(scratch)], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        time.sleep(0.5)  # a few of the watcher's polls: it leaves a living parent's group alone
        assert alive(child) and scratch.exists()
        parent.kill()
        parent.wait()  # reaped: a zombie still answers the watcher's ``kill -0``
        wait_for(lambda: not alive(child), timeout=10)
        wait_for(lambda: not scratch.exists(), timeout=10)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        assert parent.stdout is not None
        parent.stdout.close()


def test_a_stopped_watcher_leaves_the_group_alone() -> None:
    child = subprocess.Popen(["sleep", "120"], start_new_session=True)
    try:
        watcher = end_group_with_me(child.pid, poll_s=0.1)
        assert watcher is not None and watcher.poll() is None
        stop_watcher(watcher)
        assert watcher.returncode is not None  # reaped
        stop_watcher(watcher)  # twice is fine
        time.sleep(0.3)
        assert child.poll() is None
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
