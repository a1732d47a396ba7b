"""The session's Ray cluster for the Ray target tests (imported by tests/compute/conftest.py, so that one
cluster serves every test module): a head and one worker node on 127.0.0.1, one CPU each, custom resources
``head`` and ``worker0`` telling them apart. It starts on first use and ``ray stop`` ends it with the session.
Without Ray installed the tests skip, except under CI=true, where they fail."""

from __future__ import annotations

import fcntl
import importlib.util
import os
from collections.abc import Iterator

import pytest

from expboard.compute.ray_local import LocalRayCluster, ray_command


def _ray_missing() -> str | None:
    if importlib.util.find_spec("ray") is None:
        return "Ray is not installed (pip install -e '.[ray]')"
    try:
        ray_command()
    except FileNotFoundError as exc:
        return str(exc)
    return None


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[LocalRayCluster]:
    missing = _ray_missing()
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and {missing}: the Ray target tests must run in CI", pytrace=False)
        pytest.skip(missing)
    # ``ray stop`` ends every Ray cluster of this user on the machine: two test sessions at once (two checkouts)
    # take turns instead of stopping each other's cluster.
    lock = open(os.path.join("/tmp", f"expboard-ray-tests-{os.getuid()}.lock"), "w")  # noqa: SIM115
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        yield from _session_cluster()
    finally:
        lock.close()


def _session_cluster() -> Iterator[LocalRayCluster]:
    os.environ["RAY_AUTH_MODE"] = "disabled"  # explicit, so no client writes or expects ~/.ray/auth_token
    # Ray fails a job PENDING longer than this (900 s by default): short, so a test sees expboard queue it again.
    cluster = LocalRayCluster(workers=1, cpus_per_node=1, env={"RAY_JOB_START_TIMEOUT_SECONDS": "12"})
    try:
        cluster.start()
    except Exception:
        cluster.stop()
        raise
    yield cluster
    cluster.stop()


@pytest.fixture(autouse=True)
def roomier_heartbeat(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ray's job start and the dashboard's answers take seconds on a loaded machine: 10 s, not 4 s, before a
    run without heartbeat is NotResponding (still short enough for the tests that wait for it)."""
    monkeypatch.setenv("EXPBOARD_HEARTBEAT_TIMEOUT_S", "10")
