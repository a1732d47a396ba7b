"""The calls Azure ML's sample notebooks for tracking and monitoring make ("Manage runs", "Logging APIs"),
written as a user porting them would run them: only the imports and the workspace set-up differ. Each
step is one notebook cell's calls, in order, with what the notebook shows for Azure checked."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

import expboard
from expboard import Experiment, Run, ScriptRunConfig, Workspace
from expboard.errors import ConflictError

HELLO = "from expboard import Run\nrun = Run.get_context()\nprint('Hello, Azure!')\nrun.log('message', 'Hello')\n"
HELLO_WITH_CHILDREN = """
from expboard import Run
run = Run.get_context()
print("Creating children")
children = run.create_children(count=5)
for i, child in enumerate(children):
    child.log("Hello from child run", i)
    child.complete()
print("Done")
"""
HELLO_WITH_DELAY = "import time\nprint('before the delay')\ntime.sleep(60)\nprint('after the delay')\n"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    """The notebook's folder: a workspace with the sample scripts, the current folder."""
    for name, text in [("hello.py", HELLO), ("hello_with_children.py", HELLO_WITH_CHILDREN),
                       ("hello_with_delay.py", HELLO_WITH_DELAY)]:  # fmt: skip
        (tmp_path / name).write_text(text)
    monkeypatch.chdir(tmp_path)
    ws = Workspace.init(tmp_path)
    yield ws  # type: ignore[misc]
    ws.close()


def test_manage_runs(project: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ws = Workspace.from_config()
    assert isinstance(expboard.VERSION, str)
    exp = Experiment(workspace=ws, name="explore-runs")

    # start, monitor and complete a run
    notebook_run = exp.start_logging()
    notebook_run.log(name="message", value="Hello from run!")
    assert str(notebook_run.get_status()) == "Running"
    assert "Running" in notebook_run._repr_html_()  # "enter the run to get a link"
    details = notebook_run.get_details()
    assert details["runId"] == notebook_run.id and details["status"] == "Running"
    notebook_run.complete()
    assert notebook_run.get_status() == "Completed"
    with exp.start_logging() as notebook_run:
        notebook_run.log(name="message", value="Hello from run!")
        assert notebook_run.get_status() == "Running"
    assert notebook_run.get_status() == "Completed"

    # a script run from the notebook's folder, its .amlignore honoured
    (tmp_path / ".amlignore").write_text(
        "# Exclude the outputs directory automatically created by our earlier runs.\n/outputs\n"
    )
    (tmp_path / "outputs").mkdir()
    (tmp_path / "outputs" / "old.txt").write_text("stale")
    run_config = ScriptRunConfig(source_directory=".", script="hello.py")
    local_script_run = exp.submit(run_config)
    assert str(local_script_run.get_status()) in ("Queued", "Starting", "Running", "Completed")
    assert local_script_run.id in local_script_run._repr_html_()
    local_script_run.wait_for_completion(show_output=True)
    assert "Hello, Azure!" in capsys.readouterr().out
    assert local_script_run.get_status() == "Completed"
    logs = local_script_run.get_details_with_logs()["logFiles"]
    assert "Hello, Azure!" in logs["system_logs/driver.log"]

    # properties and tags
    local_script_run.add_properties({"author": "azureml-user"})
    assert local_script_run.get_properties()["author"] == "azureml-user"
    with pytest.raises(ConflictError):
        local_script_run.add_properties({"author": "different-user"})
    local_script_run.tag("quality", "great run")
    assert local_script_run.get_tags()["quality"] == "great run"
    local_script_run.tag("quality", "fantastic run")
    local_script_run.tag("worth another look")
    assert "worth another look" in local_script_run.get_tags()

    # query properties and tags
    found = list(exp.get_runs(properties={"author": "azureml-user"}, tags={"quality": "fantastic run"}))
    assert found == [local_script_run]
    assert list(exp.get_runs(properties={"author": "azureml-user"}, tags="worth another look")) == [local_script_run]

    # child runs from a submitted script, and one by one
    with_children = exp.submit(ScriptRunConfig(source_directory=".", script="hello_with_children.py"))
    with_children.wait_for_completion(show_output=True)
    assert with_children.get_status() == "Completed" and len(with_children.get_children()) == 5
    with exp.start_logging() as parent_run:
        for c, _count in enumerate(range(5)):
            with parent_run.child_run() as child:
                child.log(name="Hello from child run", value=c)
    children = list(parent_run.get_children())
    assert len(children) == 5 and {str(c.get_status()) for c in children} == {"Completed"}
    assert sorted(c.number for c in children) == [c.number for c in sorted(children, key=lambda r: r.number)]

    # cancel or fail runs
    delayed = exp.submit(ScriptRunConfig(source_directory=".", script="hello_with_delay.py"))
    assert str(delayed.get_status()) in ("Queued", "Starting", "Running")
    delayed.cancel()
    assert str(delayed.get_status()) in ("CancelRequested", "Canceled")
    delayed.wait_for_completion(raise_on_error=False, timeout=120)
    assert delayed.get_status() == "Canceled"
    failing = exp.submit(ScriptRunConfig(source_directory=".", script="hello_with_delay.py"))
    failing.fail()
    assert failing.get_status() == "Failed"

    # reproduce a run: its snapshot as a zip, without what .amlignore leaves out
    path = Path(local_script_run.restore_snapshot(path="snapshots"))
    assert path.resolve().parent == tmp_path / "snapshots" and path.suffix == ".zip"
    names = zipfile.ZipFile(path).namelist()
    assert "hello.py" in names and not any(n.startswith("outputs/") for n in names)
    numbers = [r.number for r in exp.get_runs(include_children=True)]
    assert sorted(numbers) == list(range(1, len(numbers) + 1))


def test_logging_api(project: Workspace, tmp_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ws = Workspace.from_config()
    for value in (ws.name, ws.location):
        assert isinstance(value, str) and value
    assert (ws.subscription_id, ws.resource_group) == (None, None)  # printed with '+' in the notebook: fails
    experiment = Experiment(workspace=ws, name="logging-api-test")
    run = experiment.start_logging()
    run_id = run.id
    scale_factor = 2
    assert run.id in run._repr_html_() and "logging-api-test" in experiment._repr_html_()
    run.log(name="Category", value="Red")
    run.log(name="scale factor", value=scale_factor)
    run.log(name="Magic Number", value=42 * scale_factor)
    fibonacci_values = [0, 1, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89]
    run.log_list(name="Fibonacci", value=(i * scale_factor for i in fibonacci_values))
    for i in range(-10, 10):
        run.log(name="Sigmoid", value=1 / (1 + np.exp(-i)))
    sines: dict[str, list[float]] = {"angle": [], "sine": []}
    for i in range(-10, 10):
        angle = i / 2.0 * scale_factor
        run.log_row(name="Cosine Wave", angle=angle, cos=np.cos(angle))
        sines["angle"].append(angle)
        sines["sine"].append(np.sin(angle))
    run.log_table(name="Sine Wave", value=sines)
    angle_values = np.linspace(-3, 3, 50) * scale_factor
    plt.plot(angle_values, np.tanh(angle_values), label="tanh")
    plt.title("Hyperbolic Tangent", fontsize=16)
    run.log_image(name="Hyperbolic Tangent", plot=plt)
    plt.close("all")
    os.makedirs("outputs", exist_ok=True)
    file_name = "outputs/myfile.txt"
    with open(file_name, "w") as f:
        f.write("This is an output file that will be uploaded.\n")
    run.upload_file(name=file_name, path_or_stream=file_name)
    run.complete()

    fetched_run = Run(experiment, run_id)
    metrics = fetched_run.get_metrics()
    assert metrics["Category"] == "Red" and metrics["Magic Number"] == 84
    assert metrics["Fibonacci"] == [2 * v for v in fibonacci_values] and len(metrics["Sigmoid"]) == 20
    assert len(metrics["Cosine Wave"]["cos"]) == 20 and len(metrics["Sine Wave"]["sine"]) == 20
    assert fetched_run.get_metrics(name="scale factor") == {"scale factor": 2}
    names = fetched_run.get_file_names()
    assert file_name in names and any(n.startswith("logged_images/") for n in names)
    os.makedirs("files", exist_ok=True)
    for name in run.get_file_names():
        fetched_run.download_file(name, os.path.join("files", name.split("/")[-1]))
    assert (tmp_path / "files" / "myfile.txt").read_text().startswith("This is an output file")
    fetched_run.tag("My Favorite Run")
    fetched_run.tag("Competition Rank", 1)
    assert fetched_run.get_tags()["Competition Rank"] == "1" and "My Favorite Run" in fetched_run.get_tags()
