"""The HTTP client spools file appends like metric batches while the server is unreachable."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from expboard.errors import StoreUnavailableError
from expboard.records import MetricKind, RunRecord, RunStatus
from expboard.server.process import ServerProcess
from expboard.stores.base import MetricChunk
from expboard.stores.http import HttpStore


def test_appends_spooled_while_down_are_sent_in_order_even_by_the_next_process(tmp_path: Path) -> None:
    with ServerProcess(f"sqlite:///{tmp_path / 'expboard.db'}", tmp_path / "artifacts") as server:
        base = tmp_path / "spool"
        first = HttpStore(server.url, spool_dir=base, retry_for=2, metrics_retry_for=0.5)
        exp = first.get_or_create_experiment("spool-files").name
        rid = first.create_run(RunRecord(uuid.uuid4().hex, exp, RunStatus.RUNNING, time.time())).run_id
        offset = first.append_file(rid, "logs/driver.log", b"up 0\n", 0).size
        server.stop()
        expected = b"up 0\n"
        for i in range(5):
            line = f"down {i}\n".encode()
            offset = first.append_file(rid, "logs/driver.log", line, offset).size
            first.log_metrics([MetricChunk(rid, "m", MetricKind.SCALAR, np.array([i]), np.array([1.0]), [float(i)])])
            expected += line
        assert first.pending()[0] == 10
        with pytest.raises(StoreUnavailableError):
            first.close(timeout=0.5)
        (folder,) = [p for p in base.iterdir() if p.is_dir()]
        folder.rename(base / f"99999999-{folder.name.split('-', 1)[1]}")  # as if its process had ended
        server.start()
        second = HttpStore(server.url, spool_dir=base)
        second.flush(timeout=60)
        assert second.read_file(rid, "logs/driver.log") == expected
        (series,) = second.get_metrics(rid, "m")
        assert list(series.steps) == [0, 1, 2, 3, 4]
        second.close()
