"""MLflow's search syntax into store conditions: every form MLflow documents that maps, and clear errors."""

from __future__ import annotations

import pytest

from expboard.errors import ValidationError
from expboard.server.mlflow_search import parse_filter, parse_order_by, statuses_for
from expboard.stores.base import RunCondition, RunOrder


def test_conditions_map_onto_expboard_fields() -> None:
    assert parse_filter("metrics.loss < 0.5 and params.alpha = '0.1'") == [
        RunCondition("metric", "loss", "<", 0.5),
        RunCondition("property", "alpha", "=", "0.1"),
    ]
    assert parse_filter('tags.`my tag` LIKE \'a%\' AND tag."b.c" != "x"') == [
        RunCondition("tag", "my tag", "LIKE", "a%"),
        RunCondition("tag", "b.c", "!=", "x"),
    ]
    assert parse_filter("attributes.run_name ILIKE '%sweep%'") == [
        RunCondition("attribute", "display_name", "ILIKE", "%sweep%")
    ]
    assert parse_filter("run_id IN ('a', 'b') and params.lr IS NULL and params.x IS NOT NULL") == [
        RunCondition("attribute", "run_id", "IN", ["a", "b"]),
        RunCondition("property", "lr", "IS NULL"),
        RunCondition("property", "x", "IS NOT NULL"),
    ]
    assert parse_filter("attributes.start_time >= 1700000000000") == [
        RunCondition("attribute", "created", ">=", 1_700_000_000.0)
    ]
    assert parse_filter("tags.mlflow.parentRunId = 'p'") == [RunCondition("attribute", "parent_id", "=", "p")]
    assert parse_filter("attributes.user_id = 'ada'") == [RunCondition("tag", "mlflow.user", "=", "ada")]
    assert parse_filter("metrics.`val loss` <= -1e-3") == [RunCondition("metric", "val loss", "<=", -0.001)]
    assert parse_filter("params.name = 'it''s'") == [RunCondition("property", "name", "=", "it's")]
    assert parse_filter("  ") == [] and parse_filter(None) == []


def test_statuses_map_to_every_expboard_status_they_stand_for() -> None:
    (running,) = parse_filter("attributes.status = 'RUNNING'")
    assert running.op == "IN" and set(running.value) == {"Starting", "Running", "Finalizing", "CancelRequested"}
    (not_done,) = parse_filter("status != 'FINISHED'")
    assert not_done.op == "NOT IN" and not_done.value == ["Completed"]
    (ended,) = parse_filter("status IN ('FAILED', 'KILLED')")
    assert set(ended.value) == {"Failed", "NotResponding", "Canceled"}
    (fin,) = parse_filter("status LIKE 'FIN%'")
    assert fin.value == ["Completed"]
    assert statuses_for("scheduled") == ["NotStarted", "Queued"]


def test_order_by() -> None:
    assert parse_order_by(["metrics.loss DESC", "start_time", "params.alpha ASC", "tags.mlflow.runName"]) == [
        RunOrder("metric", "loss", True),
        RunOrder("attribute", "created", False),
        RunOrder("property", "alpha", False),
        RunOrder("attribute", "display_name", False),
    ]
    assert parse_order_by(None) == []


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("metrics.loss < 0.5 OR metrics.loss > 1", "OR is not supported"),
        ("metrics.loss = 'a'", "compare a metric with a number"),
        ("params.alpha > '1'", "quoted string"),
        ("params.alpha = 1", "quoted string"),
        ("foo.bar = 1", "invalid search key"),
        ("attributes.colour = 'red'", "invalid attribute"),
        ("datasets.name = 'x'", "dataset"),
        ("status = 'DONE'", "unknown run status"),
        ("metrics.loss <", "ends too early"),
        ("metrics.loss < 1 metrics.acc > 2", "expected AND"),
        ("metrics.loss ~ 1", "cannot parse"),
        ("run_id IN 'a'", "parenthesized list"),
        ("params.a NOT LIKE 'x'", "NOT LIKE"),
    ],
)
def test_bad_filters_say_what_to_do(text: str, says: str) -> None:
    with pytest.raises(ValidationError, match=says):
        parse_filter(text)


def test_bad_order_by() -> None:
    with pytest.raises(ValidationError, match="ASC or DESC"):
        parse_order_by(["metrics.loss UP"])
    with pytest.raises(ValidationError, match="invalid order_by"):
        parse_order_by(["'x'"])
