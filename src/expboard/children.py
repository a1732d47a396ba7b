"""Child processes that end with the process that started them, however that one ends (``kill -9`` included).

Two tools, for POSIX systems (elsewhere they do nothing):

- :func:`die_with_parent`, a ``preexec_fn`` for :class:`subprocess.Popen`: on Linux the child gets SIGKILL
  when the thread that started it ends. Use it only where that thread lives as long as the child should.
- :func:`end_group_with_me`: a small watcher (``sh``, in a session of its own) that kills a process group
  once this process is gone, so grandchildren go too. :func:`stop_watcher` ends the watcher when the group
  was ended the normal way (the group id could otherwise be reused by an unrelated process later).
"""

from __future__ import annotations

import ctypes
import os
import shlex
import signal
import subprocess
import sys
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Runs in the child between fork and exec: SIGKILL when the parent thread ends (Linux only)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except Exception:  # not Linux, or no prctl: the child just lives on
        pass


def death_signal_preexec() -> Callable[[], None] | None:
    """:func:`die_with_parent` where it works (Linux), else ``None``: the ``preexec_fn`` to pass."""
    return die_with_parent if sys.platform.startswith("linux") else None


def end_group_with_me(
    pgid: int, poll_s: float = 1.0, remove: str | os.PathLike[str] | None = None
) -> subprocess.Popen[bytes] | None:
    """Start a watcher that sends SIGKILL to process group ``pgid`` within ``poll_s`` seconds after this
    process has ended, then removes the folder ``remove`` (a temporary one the group used), if given;
    ``None`` on Windows. The watcher costs one ``sh`` and a ``sleep`` at a time."""
    if sys.platform == "win32":
        return None
    script = f"while kill -0 {os.getpid()} 2>/dev/null; do sleep {poll_s:g}; done; kill -9 -{int(pgid)} 2>/dev/null"
    if remove is not None:
        script += f"; sleep 0.2; rm -rf -- {shlex.quote(os.fspath(remove))}"
    return subprocess.Popen(
        ["sh", "-c", script],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # Ctrl-C in this terminal does not end it before its work is done
    )


def stop_watcher(watcher: subprocess.Popen[bytes] | None) -> None:
    """End a watcher from :func:`end_group_with_me` (its ``sleep`` too) and reap it."""
    if watcher is None or watcher.poll() is not None:
        return
    try:
        os.killpg(watcher.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    watcher.wait()
