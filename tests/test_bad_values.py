"""Values that can never be stored are refused at the call, and never cost another run its points."""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from expboard import Experiment, Workspace, state
from expboard.errors import ValidationError
from expboard.records import MetricKind
from expboard.stores.http import HttpStore
from expboard.values import MAX_TEXT_BYTES

torch = pytest.importorskip("torch")

BAD_CALLS: list[tuple[str, dict[str, Any], str]] = [
    ("datetime64", {"name": "when", "value": np.datetime64("2024-01-01T00:00:00")}, "datetime64"),
    ("complex64", {"name": "z", "value": np.complex64(1 + 2j)}, "complex64"),
    ("complex", {"name": "z", "value": 1 + 2j}, "complex"),
    ("huge step", {"name": "loss", "value": 1.0, "step": 2**70}, "64-bit"),
    ("huge numpy step", {"name": "loss", "value": 1.0, "step": np.uint64(2**63)}, "64-bit"),
    ("surrogate name", {"name": "bad\ud800", "value": 1.0}, "UTF-8"),
    ("surrogate text", {"name": "note", "value": "bad\udc80text"}, "UTF-8"),
    ("long text", {"name": "note", "value": "x" * (MAX_TEXT_BYTES + 1)}, "upload_file"),
    ("complex tensor", {"name": "z", "value": torch.tensor(1 + 2j)}, "complex"),
    ("bytes", {"name": "raw", "value": b"abc"}, "bytes"),
]


@pytest.mark.parametrize(("what", "call", "hint"), BAD_CALLS, ids=[c[0] for c in BAD_CALLS])
def test_an_unstorable_value_is_refused_at_the_call_and_costs_nobody_a_point(
    ws: Workspace, what: str, call: dict[str, Any], hint: str
) -> None:
    exp = Experiment(ws, "bad-values")
    bad, good = exp.start_logging(), exp.start_logging()
    bad.log("before", 1.0)
    with pytest.raises(ValidationError) as info:
        bad.log(**call)
    assert hint in str(info.value)
    for i in range(1000):
        good.log("x", float(i))
    good.complete()  # nothing poisoned: complete() writes every point and does not raise
    bad.log("after", 2.0)
    bad.complete()
    assert good.get_metrics()["x"] == [float(i) for i in range(1000)]
    assert bad.get_metrics() == {"before": 1.0, "after": 2.0}


def test_log_array_refuses_steps_out_of_range_and_infinite_times(ws: Workspace) -> None:
    run = Experiment(ws, "bad-array").start_logging()
    with pytest.raises(ValidationError, match="64-bit"):
        run.log_array("x", np.zeros(2), steps=np.array([0, 2**63], dtype=np.uint64))
    with pytest.raises(ValidationError, match="finite"):
        run.log_array("x", np.zeros(2), wall_times=[1.0, math.inf])
    run.log_array("x", np.arange(3.0))
    run.complete()
    assert run.get_metrics()["x"] == [0.0, 1.0, 2.0]


def test_tags_and_properties_refuse_what_no_database_can_hold(ws: Workspace) -> None:
    run = Experiment(ws, "bad-tags").start_logging()
    with pytest.raises(ValidationError):
        run.tag("bad\ud800", "v")
    with pytest.raises(ValidationError):
        run.tag("k", "bad\ud800")
    with pytest.raises(ValidationError):
        run.add_properties({"p": "bad\ud800"})
    run.tag("k", "fine")
    run.complete()
    assert run.get_tags()["k"] == "fine"


def test_the_writer_isolates_a_refused_chunk(ws: Workspace, caplog: pytest.LogCaptureFixture) -> None:
    """Defence in depth: a point that got past the checks (here appended to the buffer directly) is refused
    by the store; only its chunk is dropped, reported once, and never retried; every other chunk is written."""
    exp = Experiment(ws, "isolated")
    bad, good = exp.start_logging(), exp.start_logging()
    buf = state.buffer_for(ws.store)
    series = buf.series(bad.id, "poison", MetricKind.SCALAR)
    for i in range(3):
        buf.append(series, 1 + 2j, i)  # complex: no store can hold it
    bad.log("fine", 1.0)
    for i in range(1000):
        good.log("x", i)
    with caplog.at_level(logging.WARNING):
        good.flush()
        bad.log_row("later", a=1)
        good.complete()
        bad.complete()
    assert good.get_metrics()["x"] == list(range(1000))
    assert bad.get_metrics() == {"fine": 1.0, "later": {"a": [1]}}
    if isinstance(ws.store, HttpStore):  # the HTTP store isolates it itself (and reports it, once)
        assert buf.refused == []
        logger = "expboard.stores.http"
    else:
        refused = [r for r in buf.refused if r[0] == bad.id]
        assert [(r[1], r[2]) for r in refused] == [("poison", 3)]
        logger = "expboard.buffer"
    warnings = [r for r in caplog.records if "poison" in r.getMessage() and r.name == logger]
    assert len(warnings) == 1 and bad.id in warnings[0].getMessage()


# Any value either is stored and read back equal, or is refused at the call.
_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=20),
    st.complex_numbers(),
    st.datetimes(),
    st.binary(max_size=5),
    hnp.from_dtype(np.dtype("int64")),
    hnp.from_dtype(np.dtype("uint64")),
    hnp.from_dtype(np.dtype("float32")),
    hnp.from_dtype(np.dtype("bool")),
    hnp.from_dtype(np.dtype("complex64")),
    hnp.from_dtype(np.dtype("datetime64[s]")),
    hnp.from_dtype(np.dtype("timedelta64[ms]")),
    hnp.from_dtype(np.dtype("U5")),
)


def _same(stored: Any, expected: Any) -> bool:
    if isinstance(expected, float) and math.isnan(expected):
        return isinstance(stored, float) and math.isnan(stored)
    return type(stored) is type(expected) and stored == expected


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=_values, step=st.one_of(st.none(), st.integers()))
def test_any_value_is_stored_equal_or_refused_at_the_call(ws: Workspace, value: Any, step: int | None) -> None:
    run = Experiment(ws, "property").start_logging()
    try:
        run.log("v", value, step=step)
    except ValidationError:
        run.complete()
        assert run.get_metrics() == {}
        return
    run.complete()
    plain = value.item() if isinstance(value, np.generic) else value
    if isinstance(plain, int) and not isinstance(plain, bool) and not -(2**63) <= plain < 2**63:
        plain = float(plain)  # as documented: ints beyond 64 bits are stored as floats
    stored = run.get_metrics()["v"]
    assert _same(stored, plain), (value, stored)
