"""What one process holds for all its runs: the one metric buffer of each store, the hooks that run at
interpreter exit (and on SIGTERM), and the interactive runs it started, finished at exit if left running.

At exit the runs left running get their final status queued, then each buffer gives its store
``close_wait_s`` (30 s at most; less once a try has failed) to take what is pending (points and final
statuses); what it has not taken stays in the store's metric journal and is written by the next process
that opens the store (:func:`replay_journals`, called when a Workspace opens) or by ``expboard journal``.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from types import FrameType

from . import settings
from .buffer import MetricBuffer, journal_base
from .records import RunStatus
from .stores import Store

__all__ = [
    "buffer_for",
    "journals_left",
    "replay_journals",
    "disown",
    "flush_all",
    "on_exit",
    "own",
    "release",
    "serve",
    "serving_url",
    "terminated_by_signal",
    "unserve",
]

_buffers: dict[Store, MetricBuffer] = {}  # by the store object itself (stores compare by identity)
_registry_lock = threading.Lock()
_exit_hooks: list[Callable[[], None]] = []
_owned: dict[str, Callable[[RunStatus], None]] = {}
_handlers_installed = False
_terminated = False


def buffer_for(store: Store) -> MetricBuffer:
    """The one buffer of a store in this process."""
    with _registry_lock:
        buf = _buffers.get(store)
        if buf is None:
            buf = _buffers[store] = MetricBuffer(store, heartbeat_s=settings.get("heartbeat_s"))
            _install_exit_handlers()
        return buf


def journals_left(store: Store) -> int:
    """How many metric journal folders ended processes left for ``store`` (cheap: one folder listing)."""
    from .stores.journal import Journal

    try:
        return len(Journal(journal_base(store), 0).orphans())
    except OSError:
        return 0


def replay_journals(store: Store, wait: float | None = None) -> MetricBuffer | None:
    """Write what ended processes left in the metric journal of ``store``: in the background (the buffer's
    writer), or, with ``wait`` seconds, before returning (raising StoreUnavailableError if the store does
    not take it all by then). Returns the buffer that holds them, None if there were none and this process
    has no buffer for the store."""
    left = journals_left(store)
    with _registry_lock:
        existed = store in _buffers
    if not left and not existed:
        return None
    buf = buffer_for(store)  # a new buffer takes them over as it starts
    if existed and left:
        buf.adopt()
    if wait is not None:
        deadline = time.monotonic() + wait
        while True:
            try:
                buf.flush()
                break
            except Exception:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
    return buf


def release(store: Store, timeout: float | None = None) -> None:
    """Write what is pending for ``store`` (giving it ``timeout`` seconds, default the buffer's close_wait_s;
    the rest is journaled), stop its thread and forget its buffer (before closing the store)."""
    with _registry_lock:
        buf = _buffers.pop(store, None)
    if buf is not None:
        buf.close(timeout)


def flush_all() -> None:
    """Write every pending point of every store in this process."""
    errors = []
    for buf in list(_buffers.values()):
        try:
            buf.flush()
        except Exception as exc:
            errors.append(exc)
    if errors:
        raise errors[0]


def on_exit(hook: Callable[[], None]) -> None:
    """Run ``hook()`` at interpreter exit, after metrics are written and owned runs finished."""
    _exit_hooks.append(hook)


def own(run_id: str, finish: Callable[[RunStatus], None]) -> None:
    """A run this process started: ``finish(status)`` ends it at exit if it is still running then."""
    _owned[run_id] = finish


def disown(run_id: str) -> None:
    _owned.pop(run_id, None)


def terminated_by_signal() -> bool:
    """Whether this process is exiting because of SIGTERM."""
    return _terminated


def _at_exit() -> None:
    # Interactive runs left Running at interpreter exit are completed (Canceled after SIGTERM): their final
    # status queues behind their points, and each buffer's close writes both or leaves them in its journal.
    status = RunStatus.CANCELED if _terminated else RunStatus.COMPLETED
    for finish in list(_owned.values()):
        try:
            finish(status)
        except Exception:
            pass
    for buf in list(_buffers.values()):
        try:
            buf.close()
        except Exception as exc:
            print(f"expboard: could not write logged metrics at exit: {exc}", file=sys.stderr)
    for hook in list(_exit_hooks):
        try:
            hook()
        except Exception as exc:
            print(f"expboard: {exc}", file=sys.stderr)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    global _terminated
    _terminated = True
    # Unwind the main thread like an exit: `with` blocks close, atexit flushes every buffer.
    raise SystemExit(128 + signum)


def _install_exit_handlers() -> None:
    global _handlers_installed
    if _handlers_installed:
        return
    _handlers_installed = True
    atexit.register(_at_exit)
    if threading.current_thread() is threading.main_thread() and os.name == "posix":
        try:
            if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
                signal.signal(signal.SIGTERM, _on_sigterm)
        except ValueError:  # not the main interpreter
            pass


# --- TensorBoards this process serves (run id or experiment -> URL), for run.get_portal_url() -----------
# keys: ("run", run id) and ("experiment", name); values: the URL and a check that the TensorBoard still runs
_serving: dict[tuple[str, str], tuple[str, Callable[[], bool] | None]] = {}
_serving_lock = threading.Lock()


def _keys(run_ids: Sequence[str], experiments: Sequence[str]) -> list[tuple[str, str]]:
    return [("run", r) for r in run_ids] + [("experiment", e) for e in experiments]


def serve(
    run_ids: Sequence[str], url: str, *, experiments: Sequence[str] = (), alive: Callable[[], bool] | None = None
) -> None:
    """Note that a TensorBoard started by this process shows these runs (and every run of these
    experiments) at ``url``; ``alive()`` tells whether it still runs (one that died is not a portal)."""
    with _serving_lock:
        _serving.update(dict.fromkeys(_keys(run_ids, experiments), (url, alive)))


def unserve(run_ids: Sequence[str], url: str, *, experiments: Sequence[str] = ()) -> None:
    """That TensorBoard stopped (a run shown by another one keeps that one's URL)."""
    with _serving_lock:
        for key in _keys(run_ids, experiments):
            if key in _serving and _serving[key][0] == url:
                del _serving[key]


def serving_url(run_id: str | None = None, *, experiment: str | None = None) -> str | None:
    """The URL of a running TensorBoard of this process that shows run ``run_id`` itself (or, given
    ``experiment``, every run of that experiment), else None."""
    key = ("run", run_id) if run_id is not None else ("experiment", experiment or "")
    with _serving_lock:
        found = _serving.get(key)
    if found is None:
        return None
    url, alive = found
    return url if alive is None or alive() else None
