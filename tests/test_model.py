"""Azure ML's Model API on the run history: run.register_model, Model.register, Model(ws, ...), Model.list,
download, tags. Runs embedded and, in CI, behind a tracking server (EXPBOARD_TEST_TRACKING) and with S3."""

from __future__ import annotations

import datetime as dt
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from expboard import ConflictError, Experiment, Model, NotFoundError, ValidationError, Workspace
from expboard.model import Model as AzurePathModel


def test_register_from_a_run_and_find_it(ws: Workspace, tmp_path: Path) -> None:
    run = Experiment(ws, "models").start_logging()
    run.upload_file("outputs/ridge.pkl", _pickle(tmp_path / "ridge.pkl", {"alpha": 0.1}))
    first = run.register_model(
        "ridge", "outputs/ridge.pkl", tags={"area": "diabetes"}, properties={"mse": "3000"}, description="Ridge"
    )
    assert (first.name, first.version, first.id, first.run_id) == ("ridge", 1, "ridge:1", run.id)
    assert first.tags == {"area": "diabetes"} and first.properties == {"mse": "3000"}
    assert first.description == "Ridge" and first.experiment_name == "models"
    assert isinstance(first.created_time, dt.datetime) and first.created_time.tzinfo is not None
    second = run.register_model("ridge", "outputs/ridge.pkl", tags={"area": "diabetes", "stage": "test"})
    run.complete()
    assert second.version == 2

    assert Model(ws, "ridge") == second  # the latest by default
    assert Model(ws, "ridge", version=1).description == "Ridge"
    assert Model(ws, id="ridge:1") == first
    assert Model(ws, "ridge", tags=[["stage", "test"]]).version == 2
    assert Model(ws, "ridge", tags=["area"]).version == 2
    assert Model(ws, "ridge", properties={"mse": "3000"}).version == 1
    assert [m.version for m in Model.list(ws, name="ridge")] == [2, 1]
    assert [m.version for m in Model.list(ws, tags=[["stage", "test"]])] == [2]
    assert [m.id for m in Model.list(ws, latest=True)] == ["ridge:2"]
    assert [m.version for m in Model.list(ws, run_id=run.id)] == [2, 1]
    assert AzurePathModel is Model  # Azure's import path: azureml.core.model.Model

    out = Path(first.download(tmp_path / "dl"))
    assert out == tmp_path / "dl" / "ridge.pkl" and pickle.loads(out.read_bytes()) == {"alpha": 0.1}
    with pytest.raises(ConflictError, match="exist_ok"):
        first.download(tmp_path / "dl")
    assert first.download(tmp_path / "dl", exist_ok=True) == str(out)

    first.add_tags({"owner": "ana"})
    first.remove_tags(["area"])
    assert Model(ws, "ridge", version=1).tags == {"owner": "ana"}
    with pytest.raises(NotFoundError, match="no version 9"):
        Model(ws, "ridge", version=9)
    with pytest.raises(NotFoundError, match="no file or folder"):
        run.register_model("ridge", "outputs/missing.pkl")


def test_register_a_local_folder(ws: Workspace, tmp_path: Path) -> None:
    folder = tmp_path / "net"
    (folder / "sub").mkdir(parents=True)
    (folder / "weights.bin").write_bytes(os.urandom(300_000))
    (folder / "sub" / "config.json").write_text(json.dumps({"layers": 3}))
    model = Model.register(ws, model_path=folder, model_name="net", tags={"kind": "cnn"}, description="a net")
    assert (model.version, model.run_id, model.status) == (1, None, "READY")
    assert sorted(model.get_files()) == ["net/sub/config.json", "net/weights.bin"]
    out = Path(Model(ws, "net").download(tmp_path / "dl"))
    assert out == tmp_path / "dl" / "net"
    assert (out / "weights.bin").read_bytes() == (folder / "weights.bin").read_bytes()
    assert json.loads((out / "sub" / "config.json").read_text()) == {"layers": 3}
    with pytest.raises(NotFoundError, match="does not exist"):
        Model.register(ws, model_path=tmp_path / "nothing", model_name="net")
    with pytest.raises(ValidationError, match="invalid model name"):
        Model.register(ws, model_path=folder, model_name="a/b")
    assert Model(ws, "net").version == 1  # nothing registered by the refusals


def test_outputs_folder_of_a_live_run(ws: Workspace, tmp_path: Path) -> None:
    """A model written to the run's local outputs folder registers before the run ends (it is uploaded)."""
    outputs = tmp_path / "outputs"
    run = Experiment(ws, "models").start_logging(outputs=str(outputs))
    _pickle(outputs / "model.pkl", [1, 2, 3])
    model = run.register_model("live", "outputs/model.pkl")
    run.complete()
    assert pickle.loads(Path(model.download(tmp_path / "dl")).read_bytes()) == [1, 2, 3]


def test_cli_models(ws: Workspace, tmp_path: Path) -> None:
    Model.register(ws, model_path=_pickle(tmp_path / "m.pkl", "x"), model_name="cli-model", tags={"a": "1"})
    Model.register(ws, model_path=_pickle(tmp_path / "m.pkl", "y"), model_name="cli-model")
    root = ws.path

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "expboard", "models", *args], cwd=root, capture_output=True, text=True, timeout=120
        )

    listed = cli("list")
    assert listed.returncode == 0, listed.stderr
    assert "cli-model" in listed.stdout and "2" in listed.stdout
    shown = cli("show", "cli-model", "--version", "1", "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["kvTags"] == {"a": "1"}
    got = cli("download", "cli-model", str(tmp_path / "out"))
    assert got.returncode == 0, got.stderr
    assert pickle.loads((tmp_path / "out" / "m.pkl").read_bytes()) == "y"
    missing = cli("show", "no-such-model")
    assert missing.returncode != 0 and "no-such-model" in missing.stderr


def _pickle(path: Path, value: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(value))
    return path
