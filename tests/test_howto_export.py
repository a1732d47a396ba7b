"""The export workflow's code from Azure ML's how-to "Visualize experiment runs and metrics with
TensorBoard", with only its imports and workspace set-up changed."""

from __future__ import annotations

import pytest

from expboard import Experiment, RunStatus, Workspace


@pytest.fixture
def data() -> dict[str, dict[str, object]]:
    from sklearn.datasets import load_diabetes
    from sklearn.model_selection import train_test_split

    X, y = load_diabetes(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=0)
    return {"train": {"x": x_train, "y": y_train}, "test": {"x": x_test, "y": y_test}}


def _expected(data: dict, alphas: list[float]) -> dict[float, float]:  # type: ignore[type-arg]
    from sklearn.linear_model import Ridge
    from sklearn.metrics import mean_squared_error

    out = {}
    for alpha in alphas:
        reg = Ridge(alpha=alpha).fit(data["train"]["x"], data["train"]["y"])
        out[alpha] = mean_squared_error(reg.predict(data["test"]["x"]), data["test"]["y"])
    return out


def test_seed_option2_as_written(ws: Workspace, data: dict) -> None:  # type: ignore[type-arg]
    """The how-to logs alpha and mse on root_run inside each child run's block."""
    from sklearn.linear_model import Ridge
    from sklearn.metrics import mean_squared_error
    from tqdm import tqdm

    experiment_name = "export-to-tensorboard"
    exp = Experiment(ws, experiment_name)
    root_run = exp.start_logging()
    alphas = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]
    for alpha in tqdm(alphas, disable=True):
        with root_run.child_run("alpha" + str(alpha)) as run:  # noqa: F841 (as in the how-to)
            reg = Ridge(alpha=alpha)
            reg.fit(data["train"]["x"], data["train"]["y"])
            preds = reg.predict(data["test"]["x"])
            mse = mean_squared_error(preds, data["test"]["y"])
            root_run.log("alpha", alpha)
            root_run.log("mse", mse)
    root_run.complete()

    metrics = root_run.get_metrics(recursive=True)
    assert len(metrics) == 1 + len(alphas)
    assert metrics[root_run.id]["alpha"] == alphas
    expected = _expected(data, alphas)
    assert metrics[root_run.id]["mse"] == pytest.approx([expected[a] for a in alphas])
    children = root_run.get_children()
    assert sorted(c.display_name for c in children) == sorted("alpha" + str(a) for a in alphas)
    assert all(c.get_status() == RunStatus.COMPLETED for c in children)


def test_seed_option2_logging_in_child_runs(ws: Workspace, data: dict) -> None:  # type: ignore[type-arg]
    """product.md's version: each child run logs its own alpha and mse."""
    from sklearn.linear_model import Ridge
    from sklearn.metrics import mean_squared_error

    exp = Experiment(ws, "export-to-tensorboard")
    root_run = exp.start_logging()
    alphas = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]
    for alpha in alphas:
        with root_run.child_run("alpha" + str(alpha)) as run:
            reg = Ridge(alpha=alpha)
            reg.fit(data["train"]["x"], data["train"]["y"])
            mse = mean_squared_error(reg.predict(data["test"]["x"]), data["test"]["y"])
            run.log("alpha", alpha)
            run.log("mse", mse)
    root_run.complete()
    metrics = root_run.get_metrics(recursive=True)
    by_alpha = {m["alpha"]: m["mse"] for rid, m in metrics.items() if rid != root_run.id}
    expected = _expected(data, alphas)
    assert by_alpha.keys() == expected.keys()
    for alpha in alphas:
        assert by_alpha[alpha] == pytest.approx(expected[alpha])


def test_child_failure_leaves_parent_completable(ws: Workspace) -> None:
    root = Experiment(ws, "sweep").start_logging()
    with pytest.raises(ZeroDivisionError), root.child_run("broken"):
        1 / 0  # noqa: B018
    with root.child_run("fine") as ok:
        ok.log("mse", 1.0)
    root.complete()
    statuses = {c.display_name: c.get_status() for c in root.get_children()}
    assert statuses == {"broken": RunStatus.FAILED, "fine": RunStatus.COMPLETED}
    assert root.get_status() == RunStatus.COMPLETED
