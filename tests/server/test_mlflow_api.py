"""The stock MLflow client against a real expboard tracking server on 127.0.0.1: fluent API, MlflowClient,
autologging, searches, artifacts, errors and auth; what it logged is then read back through expboard."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

mlflow = pytest.importorskip("mlflow")

from mlflow import MlflowClient  # noqa: E402
from mlflow.entities import Metric, Param, RunTag, ViewType  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402

from expboard.records import RunStatus  # noqa: E402
from expboard.server.process import ServerProcess  # noqa: E402
from expboard.stores.http import HttpStore  # noqa: E402

TOKEN = "mlflow-test-token-0123456789abcdef"


@pytest.fixture(scope="module")
def sqlite_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("mlflow-server")
    with ServerProcess(f"sqlite:///{root / 'expboard.db'}", root / "artifacts") as server:
        yield server


@pytest.fixture(scope="module")
def pg_server(tmp_path_factory: pytest.TempPathFactory, local_postgres: Any) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("mlflow-server-pg")
    with ServerProcess(local_postgres.create_database(), root / "artifacts") as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest) -> ServerProcess:
    return request.getfixturevalue("sqlite_server" if request.param == "sqlite" else "pg_server")  # type: ignore[no-any-return]


@pytest.fixture(autouse=True)
def _mlflow_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test starts with no active run and no MLflow settings from the environment."""
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID", "MLFLOW_TRACKING_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(mlflow.tracking.fluent, "_active_experiment_id", None)  # set_experiment() is global
    yield
    while mlflow.active_run() is not None:
        mlflow.end_run()
    mlflow.set_tracking_uri(None)


def _unique(prefix: str) -> str:
    return f"{prefix}-{time.time_ns()}"


def test_fluent_api_logs_runs_into_expboard(server: ServerProcess, tmp_path: Path) -> None:
    mlflow.set_tracking_uri(server.url)
    name = _unique("fluent")
    exp = mlflow.set_experiment(name)
    assert exp.experiment_id == name and exp.name == name
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "dir" / "sub").mkdir(parents=True)
    (tmp_path / "dir" / "a.txt").write_text("a")
    (tmp_path / "dir" / "sub" / "b.txt").write_text("bb")
    with mlflow.start_run(run_name="sweep") as parent:
        mlflow.log_param("optimizer", "adam")
        mlflow.log_params({"epochs": 3, "lr": 0.01})
        for step in range(3):
            mlflow.log_metric("loss", 1.0 / (step + 1), step=step, timestamp=1_700_000_000_000 + step)
        mlflow.log_metrics({"acc": 0.9, "f1": 0.8}, step=2)
        mlflow.set_tag("team", "vision")
        mlflow.log_artifact(str(tmp_path / "notes.txt"))
        mlflow.log_artifacts(str(tmp_path / "dir"), artifact_path="data")
        for alpha in (0.1, 0.2):
            with mlflow.start_run(run_name=f"alpha{alpha}", nested=True):
                mlflow.log_param("alpha", alpha)
                mlflow.log_metric("mse", 10 * alpha)

    df = mlflow.search_runs(experiment_names=[name], order_by=["params.alpha ASC"])
    assert len(df) == 3
    assert list(df["params.alpha"][:2]) == ["0.1", "0.2"]
    assert list(df["metrics.mse"][:2]) == pytest.approx([1.0, 2.0])
    assert set(df["status"]) == {"FINISHED"}
    row = df[df["run_id"] == parent.info.run_id].iloc[0]
    assert row["metrics.loss"] == pytest.approx(1 / 3) and row["metrics.acc"] == pytest.approx(0.9)
    assert row["params.lr"] == "0.01" and row["tags.team"] == "vision" and row["tags.mlflow.runName"] == "sweep"
    children = mlflow.search_runs(
        experiment_names=[name], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    assert sorted(children["tags.mlflow.runName"]) == ["alpha0.1", "alpha0.2"]

    # the same runs through expboard: params are properties, nested runs are child runs, artifacts are files
    store = HttpStore(server.url)
    try:
        record = store.get_run(parent.info.run_id)
        assert record.experiment == name and record.display_name == "sweep"
        assert record.status == RunStatus.COMPLETED and record.end_time is not None
        assert record.properties == {"epochs": "3", "lr": "0.01", "optimizer": "adam"}
        assert record.tags["team"] == "vision"
        kids = store.list_runs(parent_id=parent.info.run_id)
        assert sorted(k.display_name for k in kids) == ["alpha0.1", "alpha0.2"]
        assert all(k.properties["alpha"] in ("0.1", "0.2") for k in kids)
        (loss,) = store.get_metrics(parent.info.run_id, "loss")
        assert loss.steps.tolist() == [0, 1, 2]
        assert loss.values.tolist() == pytest.approx([1.0, 0.5, 1 / 3])
        assert (np.round(loss.wall_times * 1000).astype(np.int64) == 1_700_000_000_000 + np.arange(3)).all()
        files = {f.name: f.size for f in store.list_files(parent.info.run_id)}
        assert files["notes.txt"] == 5 and files["data/a.txt"] == 1 and files["data/sub/b.txt"] == 2
        assert store.read_file(parent.info.run_id, "data/sub/b.txt") == b"bb"
    finally:
        store.close()

    client = MlflowClient()
    assert [f.path for f in client.list_artifacts(parent.info.run_id)] == ["data", "notes.txt"]
    assert [(f.path, f.is_dir) for f in client.list_artifacts(parent.info.run_id, "data")] == [
        ("data/a.txt", False),
        ("data/sub", True),
    ]
    local = mlflow.artifacts.download_artifacts(
        run_id=parent.info.run_id, artifact_path="data", dst_path=str(tmp_path / "dl")
    )
    assert (Path(local) / "sub" / "b.txt").read_text() == "bb"


def test_mlflow_client_calls(sqlite_server: ServerProcess) -> None:
    client = MlflowClient(tracking_uri=sqlite_server.url)
    name = _unique("client")
    exp_id = client.create_experiment(name)
    assert exp_id == name
    with pytest.raises(MlflowException) as exc:
        client.create_experiment(name)
    assert exc.value.error_code == "RESOURCE_ALREADY_EXISTS"
    found = client.get_experiment_by_name(name)
    assert found is not None and found.experiment_id == exp_id
    assert client.get_experiment_by_name(_unique("missing")) is None
    assert name in [e.name for e in client.search_experiments(filter_string=f"name LIKE '{name[:10]}%'")]

    run = client.create_run(exp_id, run_name="first", tags={"mlflow.user": "ada", "k": "v"})
    rid = run.info.run_id
    assert run.info.status == "RUNNING" and run.info.run_name == "first" and run.info.user_id == "ada"
    # log_batch of 1,000 metrics, params and tags together
    ts = int(time.time() * 1000)
    metrics = [Metric("m", float(i), ts + i, i) for i in range(1000)]
    client.log_batch(rid, metrics=metrics, params=[Param("p", "1")], tags=[RunTag("t", "x")])
    client.log_param(rid, "p", "1")  # the same value again is fine
    with pytest.raises(MlflowException) as exc:
        client.log_param(rid, "p", "2")
    assert exc.value.error_code == "INVALID_PARAMETER_VALUE" and "Changing param values" in exc.value.message
    # a long history comes back whole, across pages
    for start in range(1000, 26_000, 1000):
        client.log_batch(rid, metrics=[Metric("m", float(i), ts + i, i) for i in range(start, start + 1000)])
    history = client.get_metric_history(rid, "m")
    assert len(history) == 26_000 and [h.step for h in history[:3]] == [0, 1, 2] and history[-1].value == 25_999
    assert history[5].timestamp == ts + 5
    got = client.get_run(rid)
    assert got.data.metrics == {"m": 25_999.0} and got.data.params == {"p": "1"}
    assert got.data.tags["t"] == "x" and got.data.tags["k"] == "v"

    client.set_tag(rid, "mlflow.runName", "renamed")
    client.delete_tag(rid, "k")
    client.update_run(rid, status="FAILED")
    got = client.get_run(rid)
    assert got.info.run_name == "renamed" and "k" not in got.data.tags and got.info.status == "FAILED"
    client.set_terminated(rid, "KILLED")
    assert client.get_run(rid).info.status == "KILLED" and client.get_run(rid).info.end_time is not None

    for i in range(2):  # MLflow 2 clients record a model logged as run artifacts like this
        status, _ = _raw(
            sqlite_server.url,
            "POST",
            "/api/2.0/mlflow/runs/log-model",
            {"run_id": rid, "model_json": json.dumps({"artifact_path": f"m{i}"})},
        )
        assert status == 200
    history = json.loads(client.get_run(rid).data.tags["mlflow.log-model.history"])
    assert [m["artifact_path"] for m in history] == ["m0", "m1"]

    client.delete_run(rid)
    assert client.get_run(rid).info.lifecycle_stage == "deleted"
    assert client.search_runs([exp_id]) == []
    assert [r.info.run_id for r in client.search_runs([exp_id], run_view_type=ViewType.DELETED_ONLY)] == [rid]
    client.restore_run(rid)
    assert [r.info.run_id for r in client.search_runs([exp_id])] == [rid]

    client.delete_experiment(exp_id)
    assert client.get_experiment(exp_id).lifecycle_stage == "deleted"
    assert name not in [e.name for e in client.search_experiments()]
    client.restore_experiment(exp_id)
    assert client.get_experiment(exp_id).lifecycle_stage == "active"
    with pytest.raises(MlflowException) as exc:
        client.rename_experiment(exp_id, "other")
    assert exc.value.error_code == "NOT_IMPLEMENTED"


def test_search_runs_filter_order_and_paging(server: ServerProcess) -> None:
    client = MlflowClient(tracking_uri=server.url)
    exp_id = client.create_experiment(_unique("search"))
    ids = {}
    for i, (name, opt) in enumerate([("Alpha", "adam"), ("alpha", "sgd"), ("beta", "adam"), ("gamma", "sgd")]):
        run = client.create_run(exp_id, run_name=name, start_time=1_700_000_000_000 + i * 1000)
        client.log_batch(
            run.info.run_id,
            metrics=[Metric("loss", 10.0 - i, 0, 0), Metric("loss", float(i), 1, 1)],  # latest = step 1
            params=[Param("opt", opt)],
            tags=[RunTag("group", "g1" if i < 2 else "g2")],
        )
        ids[name] = run.info.run_id
    client.set_terminated(ids["beta"])

    def names(filter_string: str = "", order_by: list[str] | None = None) -> list[str]:
        runs = client.search_runs([exp_id], filter_string, order_by=order_by or ["attributes.start_time ASC"])
        return [r.info.run_name for r in runs]

    assert names() == ["Alpha", "alpha", "beta", "gamma"]
    assert names("metrics.loss >= 2") == ["beta", "gamma"]  # the latest value, not the first
    assert names("metrics.loss < 2 and params.opt = 'sgd'") == ["alpha"]
    assert names("params.opt != 'adam'") == ["alpha", "gamma"]
    assert names("attributes.run_name LIKE 'a%'") == ["alpha"]  # LIKE is case-sensitive
    assert names("run_name ILIKE 'a%'") == ["Alpha", "alpha"]
    assert names("tags.group = 'g2' AND attributes.status = 'FINISHED'") == ["beta"]
    assert names("attributes.status != 'FINISHED'") == ["Alpha", "alpha", "gamma"]
    assert names(f"attributes.run_id IN ('{ids['gamma']}', '{ids['Alpha']}')") == ["Alpha", "gamma"]
    assert names("attributes.start_time > 1700000001500") == ["beta", "gamma"]
    assert names("params.missing IS NULL") == ["Alpha", "alpha", "beta", "gamma"]
    assert names("tags.`group` IS NOT NULL and metrics.loss = 3") == ["gamma"]
    assert names(order_by=["metrics.loss DESC"]) == ["gamma", "beta", "alpha", "Alpha"]
    assert names(order_by=["params.opt ASC", "run_name DESC"]) == ["beta", "Alpha", "gamma", "alpha"]

    page = client.search_runs([exp_id], max_results=3, order_by=["start_time DESC"])
    assert [r.info.run_name for r in page] == ["gamma", "beta", "alpha"] and page.token
    rest = client.search_runs([exp_id], max_results=3, order_by=["start_time DESC"], page_token=page.token)
    assert [r.info.run_name for r in rest] == ["Alpha"] and not rest.token

    for bad in ("metrics.loss > 'x'", "params.opt > 'a'", "foo.bar = 1", "metrics.loss < 1 OR metrics.loss > 2"):
        with pytest.raises(MlflowException) as exc:
            client.search_runs([exp_id], bad)
        assert exc.value.error_code == "INVALID_PARAMETER_VALUE", bad


# MLflow's model signature inference warns about a type hint of its own pyfunc wrapper
@pytest.mark.filterwarnings("ignore:.*Any type hint is inferred as AnyType:UserWarning")
def test_sklearn_autolog_logs_params_metrics_and_model(sqlite_server: ServerProcess) -> None:
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge

    mlflow.set_tracking_uri(sqlite_server.url)
    mlflow.set_experiment(_unique("autolog"))
    X, y = load_diabetes(return_X_y=True)
    mlflow.sklearn.autolog()
    try:
        with mlflow.start_run() as run:
            model = Ridge(alpha=0.5).fit(X, y)
    finally:
        mlflow.sklearn.autolog(disable=True)
    got = MlflowClient().get_run(run.info.run_id)
    assert got.data.params["alpha"] == "0.5"
    assert got.data.metrics["training_r2_score"] == pytest.approx(model.score(X, y))
    assert got.data.tags["estimator_name"] == "Ridge"
    (logged,) = mlflow.search_logged_models(experiment_ids=[run.info.experiment_id], output_format="list")
    assert logged.source_run_id == run.info.run_id
    loaded = mlflow.sklearn.load_model(logged.model_uri)
    assert np.allclose(loaded.predict(X[:5]), model.predict(X[:5]))


def _raw(url: str, method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_unsupported_and_bad_calls_get_mlflow_shaped_errors(sqlite_server: ServerProcess) -> None:
    client = MlflowClient(tracking_uri=sqlite_server.url)
    with pytest.raises(MlflowException) as exc:
        client.search_traces(locations=["0"])
    assert exc.value.error_code == "NOT_IMPLEMENTED" and "does not store MLflow traces" in exc.value.message
    for path in ("/api/2.0/mlflow/traces", "/api/3.0/mlflow/traces/search", "/ajax-api/2.0/mlflow/traces/tr-1"):
        status, body = _raw(sqlite_server.url, "POST", path, {})
        assert status == 501 and body["error_code"] == "NOT_IMPLEMENTED", path
    status, body = _raw(sqlite_server.url, "POST", "/api/2.0/mlflow/prompts/create", {"name": "m"})
    assert status == 404 and body["error_code"] == "ENDPOINT_NOT_FOUND" and "does not serve" in body["message"]
    status, body = _raw(sqlite_server.url, "GET", "/api/2.0/mlflow/runs/get?run_id=" + "0" * 32)
    assert status == 404 and body["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    status, body = _raw(sqlite_server.url, "POST", "/ajax-api/2.0/mlflow/runs/search", {"filter": "metrics.x ~ 1"})
    assert status == 400 and body["error_code"] == "INVALID_PARAMETER_VALUE"
    status, body = _raw(sqlite_server.url, "POST", "/api/2.0/mlflow/experiments/create", {"name": "has space"})
    assert status == 400 and body["error_code"] == "INVALID_PARAMETER_VALUE" and "experiment name" in body["message"]
    req = urllib.request.Request(sqlite_server.url + "/api/2.0/mlflow/runs/create", data=b"{not json", method="POST")
    with pytest.raises(urllib.error.HTTPError) as http:
        urllib.request.urlopen(req, timeout=30)
    assert http.value.code == 400 and json.loads(http.value.read())["error_code"] == "MALFORMED_REQUEST"
    status, body = _raw(sqlite_server.url, "GET", "/api/3.0/mlflow/server-info")
    assert status == 200 and body["multipart_uploads_enabled"] is False


def test_mlflow_tracking_token_is_the_bearer_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with ServerProcess(f"sqlite:///{tmp_path / 'e.db'}", tmp_path / "artifacts", tokens=[TOKEN]) as server:
        status, body = _raw(server.url, "GET", "/api/2.0/mlflow/experiments/get?experiment_id=0")
        assert status == 401 and body["error_code"] == "UNAUTHENTICATED"
        assert "MLFLOW_TRACKING_TOKEN" in body["message"]
        with pytest.raises(MlflowException) as unauthenticated:
            MlflowClient(tracking_uri=server.url).get_experiment("0")
        assert unauthenticated.value.error_code == "UNAUTHENTICATED"
        monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", TOKEN)
        client = MlflowClient(tracking_uri=server.url)
        run = client.create_run("0", run_name="secured")
        client.log_metric(run.info.run_id, "x", 1.0)
        (tmp_path / "f.txt").write_text("x")
        client.log_artifact(run.info.run_id, str(tmp_path / "f.txt"))
        assert [f.path for f in client.list_artifacts(run.info.run_id)] == ["f.txt"]
        assert client.get_experiment("0").name == "Default"
        monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "wrong-token-0123456789abcdef")
        with pytest.raises(MlflowException):
            MlflowClient(tracking_uri=server.url).get_run(run.info.run_id)


def test_log_batch_is_one_transaction(server: ServerProcess) -> None:
    """A batch whose param would change is refused whole: none of its metrics, tags or params are stored."""
    client = MlflowClient(tracking_uri=server.url)
    run = client.create_run("0", run_name="batched")
    run_id = run.info.run_id
    client.log_batch(run_id, params=[Param("lr", "0.1")], metrics=[Metric("loss", 1.0, 1_700_000_000_000, 0)])
    with pytest.raises(MlflowException, match="Changing param values") as refused:
        client.log_batch(
            run_id,
            metrics=[Metric("loss", 0.5, 1_700_000_000_001, 1), Metric("acc", 0.9, 1_700_000_000_001, 1)],
            params=[Param("epochs", "3"), Param("lr", "0.2")],
            tags=[RunTag("team", "vision"), RunTag("mlflow.runName", "renamed")],
        )
    assert refused.value.error_code == "INVALID_PARAMETER_VALUE"
    got = client.get_run(run_id)
    assert got.data.params == {"lr": "0.1"} and got.data.metrics == {"loss": 1.0}
    assert "team" not in got.data.tags and got.info.run_name == "batched"
    assert [m.step for m in client.get_metric_history(run_id, "loss")] == [0]
    client.log_batch(run_id, metrics=[Metric("loss", 0.5, 1_700_000_000_002, 1)], tags=[RunTag("mlflow.runName", "b2")])
    got = client.get_run(run_id)
    assert got.data.metrics == {"loss": 0.5} and got.info.run_name == "b2"
