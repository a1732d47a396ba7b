"""Liveness of runs: a run whose process died without a word must not stay Running forever.

Every active run has a heartbeat: a submitted run's agent and an interactive run's background writer write
it every ``EXPBOARD_HEARTBEAT_S`` seconds. A run whose
heartbeat is older than its timeout is marked NotResponding by :func:`reap_unresponsive`, which
``Run.get_status()``, ``wait_for_completion()``, ``expboard runs list`` and TensorBoard's Runs tab call. An
interactive run whose process wakes up again (a laptop back from sleep) is set back to Running by its next
heartbeat.

NotResponding is not where a submitted run stays when its compute target knows more: the reaper also hands
each silent script run (NotResponding, or a heartbeat ``SUSPECT_BEATS`` beats late) to the end checks that
compute targets register in :mod:`.plugins`. A Ray target, for one, ends the run Failed with Ray's reason
once the run's job has ended (a node lost, the agent killed), so any reader sees the final state, whether or
not the submitting process still lives.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from . import plugins, settings
from .errors import NotFoundError
from .records import RunRecord, RunStatus
from .stores import Store
from .stores.query import MAX_PAGE_SIZE, RunFilter

__all__ = [
    "ACTIVE_STATUSES",
    "SUSPECT_BEATS",
    "heartbeat_timeout",
    "is_silent",
    "is_stale",
    "not_responding_with",
    "reap_unresponsive",
]

# A script run whose heartbeat is this many beats late is asked about (its target may know it is gone).
SUSPECT_BEATS = 3

# Statuses of a run whose supervisor is supposed to be alive and writing heartbeats.
ACTIVE_STATUSES = (
    RunStatus.QUEUED,
    RunStatus.STARTING,
    RunStatus.RUNNING,
    RunStatus.FINALIZING,
    RunStatus.CANCEL_REQUESTED,
)


def heartbeat_timeout(record: RunRecord) -> float:
    """Seconds without a heartbeat after which ``record``'s run is NotResponding.

    Submitted runs: ``EXPBOARD_HEARTBEAT_TIMEOUT_S`` (60). Interactive and child runs, whose heartbeat comes
    from a thread that a long GIL-holding call can delay: ``EXPBOARD_INTERACTIVE_TIMEOUT_S`` (300)."""
    timeout: float = settings.get("heartbeat_timeout_s" if record.run_type == "script" else "interactive_timeout_s")
    return timeout


def is_stale(record: RunRecord, now: float | None = None, max_age: float | None = None) -> bool:
    if record.status not in ACTIVE_STATUSES or record.heartbeat is None:
        return False
    now = time.time() if now is None else now
    return now - record.heartbeat > (heartbeat_timeout(record) if max_age is None else max_age)


def is_silent(record: RunRecord, now: float | None = None) -> bool:
    """Whether the end checks of compute targets should look at ``record``: a script run NotResponding, or
    active with a heartbeat ``SUSPECT_BEATS`` beats late."""
    if record.run_type != "script":
        return False
    if record.status == RunStatus.NOT_RESPONDING:
        return True
    late: float = SUSPECT_BEATS * settings.get("heartbeat_s")
    return is_stale(record, now, min(late, heartbeat_timeout(record)))


def _checkable_not_responding(store: Store) -> list[RunRecord]:
    """The NotResponding runs an end check can act on: those with one of the checks' marker properties (each
    a store query: what a history of runs that died long ago holds costs nothing here), or all of them if a
    check has no marker, or none if no check is registered. Without NotResponding runs, the compute targets
    that register the checks are not even imported (a command line that lists runs stays fast)."""
    if not store.query_runs(filter=RunFilter(statuses=(RunStatus.NOT_RESPONDING,)), limit=1).runs:
        return []
    if not plugins.end_checks():
        return []
    markers = plugins.end_check_markers()
    if markers is None:
        return store.list_runs(statuses=[RunStatus.NOT_RESPONDING])
    found = {r.run_id: r for marker in sorted(markers) for r in not_responding_with(store, marker)}
    return list(found.values())


def not_responding_with(store: Store, marker: str) -> list[RunRecord]:
    """The NotResponding runs that have property ``marker`` (any value), asked of the store page by page."""
    wanted = RunFilter(statuses=(RunStatus.NOT_RESPONDING,), properties={marker: None})
    out: list[RunRecord] = []
    token: str | None = None
    while True:
        page = store.query_runs(filter=wanted, limit=MAX_PAGE_SIZE, page_token=token)
        out += page.runs
        token = page.next_page_token
        if not token:
            return out


def reap_unresponsive(
    store: Store,
    max_age: float | None = None,
    run_ids: Iterable[str] | None = None,
    now: float | None = None,
    run_types: Iterable[str] | None = None,
) -> list[str]:
    """Mark NotResponding every active run (or those of ``run_ids``) whose heartbeat is older than
    ``max_age`` (default: :func:`heartbeat_timeout`), then runs the compute targets' end checks on the silent
    script runs (:func:`is_silent`). A compare-and-set, safe to call from anywhere at any time; returns the ids
    it marked NotResponding."""
    now = time.time() if now is None else now
    types = set(run_types) if run_types is not None else None
    if run_ids is None:
        records = store.list_runs(statuses=list(ACTIVE_STATUSES)) + _checkable_not_responding(store)
    else:
        records = []
        for rid in run_ids:
            try:
                records.append(store.get_run(rid))
            except NotFoundError:
                pass
    marked = []
    silent: list[RunRecord] = []
    for r in records:
        if types is not None and r.run_type not in types:
            continue
        if not is_stale(r, now, max_age):
            if is_silent(r, now):
                silent.append(r)
            continue
        who = "agent" if r.run_type == "script" else "process"
        silent_s = now - (r.heartbeat or now)
        after = store.update_run(
            r.run_id,
            status=RunStatus.NOT_RESPONDING,
            error={
                "code": "NotResponding",
                "message": f"the run's {who} stopped responding: no heartbeat for {silent_s:.0f} s "
                f"(while {r.status.value}); its process died or its machine is unreachable",
            },
            only_if_status=[r.status],
        )
        if after.status == RunStatus.NOT_RESPONDING and after.heartbeat == r.heartbeat:
            marked.append(r.run_id)
        if is_silent(after, now):
            silent.append(after)
    if silent:
        for check in plugins.end_checks():
            check(store, silent)
    return marked
