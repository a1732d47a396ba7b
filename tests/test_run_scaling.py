"""Client calls whose cost depends on the new work only, never on the history already stored."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from expboard import Experiment, Run, Workspace


class _Counting:
    """Counts the store calls made by name (wrapping the real store's bound methods)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, store: Any, names: list[str]) -> None:
        self.calls: dict[str, int] = dict.fromkeys(names, 0)
        for name in names:
            real = getattr(store, name)

            def wrapper(*args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
                self.calls[_name] += 1
                return _real(*args, **kwargs)

            monkeypatch.setattr(store, name, wrapper)


def test_first_log_to_a_long_series_reads_no_points(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    exp = Experiment(ws, "scale")
    run = exp.start_logging()
    run.log_array("loss", np.arange(100_000, dtype=np.float64))
    run.log("loss", 1.0)
    run.log_list("loss_list", [1, 2, 3])
    run.flush()
    other = Workspace(ws.path)  # a second store and buffer, as in another process
    counting = _Counting(monkeypatch, other.store, ["get_metrics", "count_metric_points"])
    again = Run.get(other, run.id)
    again.log("loss", 2.0)
    again.log_list("loss_list", [4])
    again.flush()
    assert counting.calls == {"get_metrics": 0, "count_metric_points": 2}
    series = again.get_metric_series("loss")[0]
    assert len(series) == 100_002 and int(series.steps[-1]) == 100_001
    assert again.get_metric_series("loss_list")[0].steps.tolist() == [0, 1, 2, 3]
    other.close()


def test_log_array_longer_than_a_stored_chunk_is_split(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlite3

    from expboard.stores import sql

    monkeypatch.setattr(sql, "MAX_CHUNK_POINTS", 1_000)
    monkeypatch.setattr(sql, "MAX_CHUNK_BYTES", 4_000)  # 166 float points a row
    run = Experiment(ws, "scale").start_logging()
    run.log_array("loss", np.arange(2_500, dtype=np.float64))
    run.log_array("flag", np.arange(2_500) % 2 == 0)
    run.flush()
    series = {s.name: s for s in run.get_metric_series()}
    assert series["loss"].values.tolist() == list(range(2_500))
    assert series["loss"].steps.tolist() == list(range(2_500))
    assert series["flag"].values.tolist() == [i % 2 == 0 for i in range(2_500)]
    if ws.tracking_uri.startswith("sqlite:"):
        db = sqlite3.connect(ws.tracking_uri[len("sqlite:///") :])
        sizes = [n for (n,) in db.execute("SELECT n FROM metric_chunks WHERE name = 'loss' ORDER BY id")]
        db.close()
        assert sum(sizes) == 2_500 and len(sizes) >= 15 and max(sizes) <= 166


def test_a_refused_log_array_does_not_advance_the_steps(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    from expboard import ValidationError

    run = Experiment(ws, "scale").start_logging()
    run.log_array("loss", np.zeros(10))
    real = ws.store.log_metrics

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise ValidationError("refused")

    monkeypatch.setattr(ws.store, "log_metrics", refuse)
    with pytest.raises(ValidationError, match="refused"):
        run.log_array("loss", np.ones(5))
    monkeypatch.setattr(ws.store, "log_metrics", real)
    run.log_array("loss", np.full(3, 2.0))
    run.log("loss", 3.0)
    run.flush()
    series = run.get_metric_series("loss")[0]
    assert series.steps.tolist() == list(range(14))
    assert series.values.tolist() == [0.0] * 10 + [2.0] * 3 + [3.0]
