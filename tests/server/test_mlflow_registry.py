"""MLflow's model registry with the stock MLflow client against a real expboard server on 127.0.0.1: what
MLflow registers is an expboard Model, and what expboard registers MLflow sees. Also the registry's own
/api/v1 routes under token scopes."""

from __future__ import annotations

import pickle
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from server_http import raw_request

mlflow = pytest.importorskip("mlflow")

from mlflow import MlflowClient  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402

from expboard import Experiment, Model, Workspace  # noqa: E402
from expboard.errors import ForbiddenError  # noqa: E402
from expboard.server.process import ServerProcess  # noqa: E402
from expboard.stores.http import HttpStore  # noqa: E402


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server on SQLite for the module (the registry on PostgreSQL is in tests/stores/test_store_models.py)."""
    root = tmp_path_factory.mktemp("registry-server")
    with ServerProcess(f"sqlite:///{root / 'expboard.db'}", root / "artifacts") as s:
        yield s


@pytest.fixture(autouse=True)
def _mlflow_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_TRACKING_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(mlflow.tracking.fluent, "_active_experiment_id", None)
    yield
    while mlflow.active_run() is not None:
        mlflow.end_run()
    mlflow.set_tracking_uri(None)


def _unique(prefix: str) -> str:
    return f"{prefix}-{time.time_ns()}"


def _ws(server: ServerProcess) -> Workspace:
    return Workspace(tracking_uri=server.url)


@pytest.mark.filterwarnings("ignore:.*Any type hint is inferred as AnyType:UserWarning")
def test_mlflow_registers_and_loads_and_expboard_sees_it(server: ServerProcess, tmp_path: Path) -> None:
    from sklearn.linear_model import Ridge

    mlflow.set_tracking_uri(server.url)
    mlflow.set_experiment(_unique("registry"))
    model = Ridge().fit(np.arange(10.0).reshape(-1, 1), np.arange(10.0))
    _save_sklearn_model(model, tmp_path / "saved")
    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(tmp_path / "saved"), "model")
    name = _unique("ridge")
    v1 = mlflow.register_model(f"runs:/{run.info.run_id}/model", name, tags={"stage": "dev"})
    v2 = mlflow.register_model(f"runs:/{run.info.run_id}/model", name)
    assert (v1.version, v2.version, v1.status, v1.run_id) == ("1", "2", "READY", run.info.run_id)

    client = MlflowClient()
    assert name in [m.name for m in client.search_registered_models()]
    assert [m.name for m in client.search_registered_models(filter_string=f"name = '{name}'")] == [name]
    assert [m.name for m in client.search_registered_models(filter_string=f"name LIKE '{name[:8]}%'")] == [name]
    got = client.get_model_version(name, "1")
    assert got.tags == {"stage": "dev"} and got.source.endswith(f"/{run.info.run_id}/artifacts/model")  # as sent
    assert client.get_registered_model(name).latest_versions[0].version == "2"
    with pytest.warns(FutureWarning, match="stages"):
        assert [v.version for v in client.get_latest_versions(name)] == ["2"]
    assert sorted(v.version for v in client.search_model_versions(f"name = '{name}'")) == ["1", "2"]
    assert [v.version for v in client.search_model_versions(f"name = '{name}' AND tags.stage = 'dev'")] == ["1"]
    assert client.get_model_version_download_uri(name, "1").endswith(f"/{run.info.run_id}/artifacts/model")

    client.set_registered_model_tag(name, "team", "vision")
    client.set_model_version_tag(name, "2", "validated", "yes")
    client.delete_model_version_tag(name, "1", "stage")
    client.update_model_version(name, "2", description="the good one")
    client.update_registered_model(name, description="ridge models")
    client.set_registered_model_alias(name, "champion", "2")
    assert client.get_model_version_by_alias(name, "champion").version == "2"
    registered = client.get_registered_model(name)
    assert registered.tags == {"team": "vision"} and registered.description == "ridge models"
    assert registered.aliases == {"champion": "2"}

    loaded = mlflow.sklearn.load_model(f"models:/{name}@champion")
    assert loaded.predict([[3.0]]) == pytest.approx(model.predict([[3.0]]))
    assert mlflow.pyfunc.load_model(f"models:/{name}/1").predict(np.array([[4.0]])) == pytest.approx(
        model.predict([[4.0]])
    )

    # the same versions through Azure ML's API: files copied into the registry
    with _ws(server) as ws:
        versions = Model.list(ws, name=name)
        assert [m.version for m in versions] == [2, 1]
        assert versions[0].tags == {"validated": "yes"} and versions[0].description == "the good one"
        assert versions[0].run_id == run.info.run_id
        out = Path(versions[1].download(tmp_path / "dl"))
        assert out == tmp_path / "dl" / "model" and (out / "MLmodel").is_file()
        loaded = pickle.loads((out / "model.pkl").read_bytes())
        assert loaded.predict([[3.0]]) == pytest.approx(model.predict([[3.0]]))


def test_expboard_models_show_in_mlflow(server: ServerProcess, tmp_path: Path) -> None:
    name = _unique("azure")
    with _ws(server) as ws:
        r = Experiment(ws, _unique("exp")).start_logging()
        r.upload_file("outputs/m.pkl", _write(tmp_path / "m.pkl", b"weights"))
        r.register_model(name, "outputs/m.pkl", tags={"k": "v"}, description="from Azure code")
        r.complete()
        (tmp_path / "local.bin").write_bytes(b"local")
        Model.register(ws, tmp_path / "local.bin", name)
    mlflow.set_tracking_uri(server.url)
    client = MlflowClient()
    first = client.get_model_version(name, "1")
    assert (first.tags, first.description, first.run_id) == ({"k": "v"}, "from Azure code", r.id)
    assert first.source == f"runs:/{r.id}/outputs/m.pkl"
    assert client.get_registered_model(name).latest_versions[0].version == "2"
    with pytest.raises(MlflowException, match="uploaded without a run"):
        client.get_model_version_download_uri(name, "2")


def test_registry_errors_are_mlflow_shaped(server: ServerProcess) -> None:
    mlflow.set_tracking_uri(server.url)
    client = MlflowClient()
    with pytest.raises(MlflowException) as missing:
        client.get_registered_model(_unique("none"))
    assert missing.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    name = _unique("dup")
    client.create_registered_model(name)
    with pytest.raises(MlflowException) as dup:
        client.create_registered_model(name)
    assert dup.value.error_code == "RESOURCE_ALREADY_EXISTS"
    with pytest.raises(MlflowException, match="keeps every version") as refused:
        client.delete_registered_model(name)
    assert refused.value.error_code == "NOT_IMPLEMENTED"
    with pytest.raises(MlflowException) as bad_source:
        client.create_model_version(name, "/some/local/path")
    assert bad_source.value.error_code == "INVALID_PARAMETER_VALUE" and "runs:/" in str(bad_source.value)
    with pytest.raises(MlflowException) as no_run:
        client.create_model_version(name, "runs:/no-such-run/model")
    assert no_run.value.error_code == "RESOURCE_DOES_NOT_EXIST"


READ, WRITE = "r" * 24, "w" * 24


def test_model_routes_follow_token_scopes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    token_file = tmp_path / "tokens.txt"
    token_file.write_text(f"viewer read {READ}\ntrainer write {WRITE}\n")
    with ServerProcess(
        f"sqlite:///{tmp_path / 'e.db'}", tmp_path / "artifacts", auth_token_file=token_file, max_request_mb=1
    ) as s:
        writer = HttpStore(s.url, token=WRITE, spool_dir=tmp_path / "w")
        reader = HttpStore(s.url, token=READ, spool_dir=tmp_path / "r")
        try:
            pending = writer.create_model_version("scoped")
            # a model file streams past the server's request size limit, as run files do
            big = tmp_path / "big.bin"
            big.write_bytes(np.random.default_rng(0).bytes(3 * 1024 * 1024))
            with big.open("rb") as f:
                assert writer.write_model_file("scoped", pending.version, "big.bin", f).size == big.stat().st_size
            with pytest.raises(ForbiddenError), big.open("rb") as f:
                reader.write_model_file("scoped", pending.version, "other.bin", f)
            assert b"".join(reader.iter_model_file("scoped", pending.version, "big.bin")) == big.read_bytes()
            with pytest.raises(ForbiddenError, match="read-only"):
                reader.create_model_version("scoped")
            assert [m.version for m in reader.list_model_versions("scoped")] == [pending.version]
            answer = raw_request(s.url, "GET", "/api/v1/models")
            assert answer.status == 401
            # MLflow's routes: the refusal in MLflow's shape, raised by the client as its own exception
            monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", READ)
            client = MlflowClient(tracking_uri=s.url, registry_uri=s.url)
            assert [m.name for m in client.search_registered_models()] == ["scoped"]
            with pytest.raises(MlflowException) as denied:
                client.create_registered_model("by-a-viewer")
            assert denied.value.error_code == "PERMISSION_DENIED" and "read-only" in denied.value.message
        finally:
            writer.close()
            reader.close()


def _save_sklearn_model(model: Any, folder: Path) -> None:
    """A model folder in MLflow's format (MLmodel + pickle), as ``mlflow.sklearn.save_model`` writes it, less its
    environment files (writing those takes half a minute on a loaded machine)."""
    import platform

    import sklearn

    folder.mkdir(parents=True)
    (folder / "model.pkl").write_bytes(pickle.dumps(model))
    (folder / "MLmodel").write_text(
        "artifact_path: model\n"
        "flavors:\n"
        "  python_function:\n"
        "    loader_module: mlflow.sklearn\n"
        "    model_path: model.pkl\n"
        "    predict_fn: predict\n"
        f"    python_version: {platform.python_version()}\n"
        "  sklearn:\n"
        "    code: null\n"
        "    pickled_model: model.pkl\n"
        "    serialization_format: pickle\n"
        f"    sklearn_version: {sklearn.__version__}\n"
        f"mlflow_version: {mlflow.__version__}\n"
    )


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
