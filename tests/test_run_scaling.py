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
