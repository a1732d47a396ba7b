"""``ws.get_mlflow_tracking_uri()``: MLflow-instrumented code logs into a workspace with one line changed, and
its runs are first-class: ``expboard runs list``, ``get_metrics()``, ``export_to_tensorboard`` (params as
HParams hyperparameters) and a live ``Tensorboard([run])``."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

mlflow = pytest.importorskip("mlflow")

from expboard import Experiment, Run, Workspace  # noqa: E402
from expboard.errors import ConfigError  # noqa: E402
from expboard.records import RunStatus  # noqa: E402
from expboard.server.mlflow_local import LocalServer  # noqa: E402
from expboard.server.process import ServerProcess  # noqa: E402
from expboard.tensorboard import Tensorboard  # noqa: E402
from expboard.tensorboard.export import export_to_tensorboard  # noqa: E402
from polling import get_json, wait_for  # noqa: E402

TRAIN_SCRIPT = """
import mlflow
from expboard import Workspace

ws = Workspace.from_config()
mlflow.set_tracking_uri(ws.get_mlflow_tracking_uri())   # the one line an MLflow script needs
mlflow.set_experiment("mlflow-script")
with mlflow.start_run(run_name="ridge-sweep"):
    mlflow.log_param("dataset", "diabetes")
    for alpha in (0.1, 0.5):
        with mlflow.start_run(run_name=f"alpha{alpha}", nested=True):
            mlflow.log_param("alpha", alpha)
            for step in range(3):
                mlflow.log_metric("mse", 3000 * alpha + step, step=step)
ws.close()
"""


@pytest.fixture(autouse=True)
def _mlflow_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID", "MLFLOW_TRACKING_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(mlflow.tracking.fluent, "_active_experiment_id", None)  # set_experiment() is global
    yield
    while mlflow.active_run() is not None:
        mlflow.end_run()
    mlflow.set_tracking_uri(None)
    os.environ.pop("MLFLOW_TRACKING_TOKEN", None)


def test_an_mlflow_script_shows_up_in_runs_list_and_exports_with_hparams(tmp_path: Path) -> None:
    project = tmp_path / "project"
    with ServerProcess(f"sqlite:///{tmp_path / 'server.db'}", tmp_path / "artifacts") as server:
        Workspace.init(project, tracking_uri=server.url).close()
        (project / "train.py").write_text(TRAIN_SCRIPT)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("EXPBOARD_", "MLFLOW_"))}
        done = subprocess.run(
            [sys.executable, "train.py"], cwd=project, env=env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stderr
        listed = subprocess.run(
            [sys.executable, "-m", "expboard", "runs", "list", "--all", "--json"],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert listed.returncode == 0, listed.stderr
        text = listed.stdout
        assert "ridge-sweep" in text and "alpha0.1" in text and "alpha0.5" in text and "mlflow-script" in text
        result, _ = _check_and_export(project, tmp_path / "exported")
    _check_hparams(result)


def _check_and_export(project: Path, logdir: Path) -> Any:
    with Workspace.from_config(project) as ws:
        (root,) = [r for r in Experiment.get(ws, "mlflow-script").get_runs() if r.display_name == "ridge-sweep"]
        assert RunStatus(root.get_status()) == RunStatus.COMPLETED
        children = {c.display_name: c for c in root.get_children()}
        assert set(children) == {"alpha0.1", "alpha0.5"}
        assert children["alpha0.1"].get_metrics() == {"mse": [300.0, 301.0, 302.0]}
        assert root.get_metrics(recursive=True)[children["alpha0.5"].id] == {"mse": [1500.0, 1501.0, 1502.0]}

        return export_to_tensorboard(root, logdir), root.id


def _check_hparams(result: Any) -> None:
    from tensorboard.backend.event_processing import plugin_event_accumulator as pea
    from tensorboard.plugins.hparams import plugin_data_pb2

    seen = {}
    for child_id, folder in result.run_dirs.items():
        acc = pea.EventAccumulator(str(folder))
        acc.Reload()
        if "hparams" not in acc.ActivePlugins():
            continue  # the root run, not a session
        content = acc.PluginTagToContent("hparams")
        data = plugin_data_pb2.HParamsPluginData.FromString(next(iter(content.values())))
        hparams = dict(data.session_start_info.hparams)
        assert not any(k.startswith("mlflow.") for k in hparams)  # MLflow's system tags are no hyperparameters
        seen[child_id] = hparams["alpha"].string_value
        steps = [e.step for e in acc.Tensors("mse")]
        assert steps == [0, 1, 2]
    assert sorted(seen.values()) == ["0.1", "0.5"]


def test_an_mlflow_run_is_live_in_tensorboard(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "project")
    with pytest.raises(ConfigError, match="expboard server --backend-store-uri sqlite:///"):
        ws.get_mlflow_tracking_uri()  # embedded: the error says which server to start
    server = LocalServer(ws.store).start()
    tb = None
    try:
        uri = server.mlflow_tracking_uri()
        assert uri.startswith("http://127.0.0.1:") and os.environ["MLFLOW_TRACKING_TOKEN"] == server.token
        mlflow.set_tracking_uri(uri)
        mlflow.set_experiment("live")
        with mlflow.start_run(run_name="training") as active:
            mlflow.log_metric("loss", 1.0, step=0)
            run = Run.get(ws, active.info.run_id)
            tb = Tensorboard([run], local_root=tmp_path / "tb", port=0)
            url = tb.start()

            def points() -> list[Any]:
                for name, tags in get_json(f"{url}data/plugin/scalars/tags").items():
                    if "loss" in tags:
                        query = urllib.parse.urlencode({"run": name, "tag": "loss"})
                        return list(get_json(f"{url}data/plugin/scalars/scalars?{query}"))
                return []

            assert [p[1:] for p in wait_for(points)] == [[0, 1.0]]
            mlflow.log_metric("loss", 0.5, step=1)  # logged while TensorBoard runs: it appears there
            assert [p[1:] for p in wait_for(lambda: len(points()) == 2 and points())] == [[0, 1.0], [1, 0.5]]
    finally:
        if tb is not None:
            tb.stop()
        server.stop()
        ws.close()
    with pytest.raises(urllib.error.URLError):  # stop() ended the in-process server
        urllib.request.urlopen(f"{uri}/api/2.0/mlflow/experiments/get?experiment_id=0", timeout=5)


def test_a_server_workspace_gives_its_url_and_token(tmp_path: Path) -> None:
    token = "workspace-token-0123456789abcdef"
    with ServerProcess(f"sqlite:///{tmp_path / 'e.db'}", tmp_path / "artifacts", tokens=[token]) as server:
        ws = Workspace(tracking_uri=server.url + "/", token=token)
        try:
            assert ws.get_mlflow_tracking_uri() == server.url
            assert os.environ["MLFLOW_TRACKING_TOKEN"] == token
            mlflow.set_tracking_uri(ws.get_mlflow_tracking_uri())
            with mlflow.start_run(run_name="remote") as active:
                mlflow.log_metric("x", 2.0)
            assert Run.get(ws, active.info.run_id).get_metrics() == {"x": 2.0}
        finally:
            ws.close()


def test_embedded_workspace_script_text_is_the_readme_one() -> None:
    """The README shows the same one-line change as the script above."""
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    assert "mlflow.set_tracking_uri(ws.get_mlflow_tracking_uri())" in readme
    assert textwrap.dedent(TRAIN_SCRIPT).count("get_mlflow_tracking_uri") == 1
