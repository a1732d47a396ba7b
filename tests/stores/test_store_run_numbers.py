"""Run numbers (a sequence per experiment, assigned by the store) and descriptions, on every store; two
processes creating runs at once; and the upgrade of a store whose runs had no number yet."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from expboard.errors import ValidationError
from expboard.records import RunRecord, RunStatus
from expboard.stores import sql as sql_module
from expboard.stores.base import Store
from expboard.stores.sql import SqlStore


def _record(experiment: str, i: int, **kw: object) -> RunRecord:
    return RunRecord(
        run_id=f"{experiment}-{i}-{time.monotonic_ns()}",
        experiment=experiment,
        status=RunStatus.RUNNING,
        created=time.time(),
        **kw,  # type: ignore[arg-type]
    )


def test_numbers_are_a_sequence_per_experiment_and_descriptions_are_stored(store: Store) -> None:
    for name in ("num-a", "num-b"):
        store.get_or_create_experiment(name)
    first = store.create_run(_record("num-a", 0, description="the first", number=99))
    assert (first.number, first.description) == (1, "the first")  # the store numbers, not the caller
    numbers: dict[str, list[int]] = {"num-a": [], "num-b": []}
    errors: list[BaseException] = []

    def create(experiment: str, base: int) -> None:
        try:
            for i in range(5):
                numbers[experiment].append(store.create_run(_record(experiment, base + i)).number or 0)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=create, args=(e, 10 * k)) for k in range(4) for e in ("num-a", "num-b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    assert sorted(numbers["num-a"]) == list(range(2, 22))
    assert sorted(numbers["num-b"]) == list(range(1, 21))
    listed = {r.run_id: r.number for r in store.list_runs(experiment="num-a")}
    assert sorted(listed.values()) == list(range(1, 22))
    assert store.get_run(first.run_id).number == 1

    updated = store.update_run(first.run_id, description="changed")
    assert (updated.description, store.get_run(first.run_id).description) == ("changed", "changed")
    assert store.update_run(first.run_id, status=RunStatus.COMPLETED).description == "changed"
    with pytest.raises(ValidationError):
        store.update_run(first.run_id, description="\ud800")


_CREATE = """
import sys, time
from expboard.records import RunRecord, RunStatus
from expboard.stores.sql import SqlStore
store = SqlStore(sys.argv[1], sys.argv[2])
start = float(sys.argv[3])
while time.time() < start:
    time.sleep(0.005)
numbers = []
for i in range(15):
    rid = f"proc-{sys.argv[4]}-{i}"
    numbers.append(store.create_run(RunRecord(rid, "race", RunStatus.RUNNING, time.time())).number)
print(" ".join(map(str, numbers)))
store.close()
"""


@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
def test_two_processes_creating_runs_at_once_never_share_a_number(
    db: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    uri = (
        f"sqlite:///{tmp_path / 'race.db'}"
        if db == "sqlite"
        else request.getfixturevalue("local_postgres").create_database()
    )
    store = SqlStore(uri, tmp_path / "artifacts")
    store.get_or_create_experiment("race")
    start = time.time() + 3.0  # both interpreters are up by then, and go at once
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(_CREATE), uri, str(tmp_path / "artifacts"), str(start), str(k)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in range(2)
    ]
    outs = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outs]
    got = [int(x) for out, _ in outs for x in out.split()]
    assert sorted(got) == list(range(1, 31))
    assert sorted(r.number or 0 for r in store.list_runs(experiment="race")) == list(range(1, 31))
    store.close()


@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
def test_runs_stored_before_numbers_are_numbered_in_creation_order_by_the_upgrade(
    db: str, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = (
        f"sqlite:///{tmp_path / 'old.db'}"
        if db == "sqlite"
        else request.getfixturevalue("local_postgres").create_database()
    )
    before = [m for m in sql_module.MIGRATIONS if m[0] < 8]
    monkeypatch.setattr(sql_module, "MIGRATIONS", before)
    old = SqlStore(uri, tmp_path / "artifacts")  # the schema before run numbers
    with old._write() as conn:
        for exp in ("old-a", "old-b"):
            old._exec(conn, "INSERT INTO experiments (name, created) VALUES (?, 1.0)", (exp,))
        # created out of id order, two at the same time (ordered by id then)
        for run_id, exp, created in [("r3", "old-a", 3.0), ("r1", "old-a", 1.0), ("r2b", "old-a", 2.0),
                                     ("r2a", "old-a", 2.0), ("b1", "old-b", 5.0)]:  # fmt: skip
            old._exec(
                conn,
                "INSERT INTO runs (run_id, experiment, run_type, status, created) VALUES (?, ?, 'interactive', ?, ?)",
                (run_id, exp, RunStatus.COMPLETED.value, created),
            )
    old.close()
    monkeypatch.undo()
    new = SqlStore(uri, tmp_path / "artifacts")
    try:
        numbers = {r.run_id: r.number for r in new.list_runs()}
        assert numbers == {"r1": 1, "r2a": 2, "r2b": 3, "r3": 4, "b1": 1}
        assert new.get_run("r1").description == ""
        assert new.create_run(_record("old-a", 9)).number == 5  # the sequence goes on after them
        assert new.create_run(_record("old-b", 9)).number == 2
        new.get_or_create_experiment("fresh")
        assert new.create_run(_record("fresh", 1)).number == 1
    finally:
        new.close()
