"""``expboard demo``: both TensorBoard workflows of Azure ML's how-to "Visualize experiment runs and metrics with
TensorBoard", live, in a demo workspace, with nothing but the install.

(b) Script logs: ``sample_projects/tensorboard-demo/train.py`` (a small neural network on scikit-learn's digits,
    writing TensorBoard files under ``./logs`` with expboard's SummaryWriter) is submitted to the ``local``
    compute target; TensorBoard mirrors the run's ``logs/`` while it trains.
(a) Exported run history: a Ridge regression on scikit-learn's diabetes set, one child run per alpha in
    0.0 .. 1.0 logging ``alpha`` and ``mse``, exported with ``export_to_tensorboard`` (HParams sessions).

Both appear in one TensorBoard, whose ``local_root`` (``<workdir>/tensorboard``) holds the export and the
live mirror. The demo prints the URL and keeps TensorBoard up until Ctrl-C (``--no-wait``: it stops
everything and exits when the training run has ended).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

__all__ = ["TRAIN_SCRIPT", "run_demo"]

DEMO_EPOCHS = 20
DEMO_EPOCH_SECONDS = 0.5

# The training script that writes TensorBoard files itself, the same as
# examples/sample_projects/tensorboard-demo/train.py (a test keeps them equal); written into the demo's
# project folder and submitted from there.
TRAIN_SCRIPT = r'''"""Train a small neural network on scikit-learn's digits and write TensorBoard files under --log_dir.

Submitted to a compute target with expboard, everything written under ./logs is streamed into
the run while it trains, so TensorBoard shows it live. It runs by hand too: python train.py
"""

import argparse
import os
import pickle
import time

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier

from expboard import Run

try:
    from expboard import SummaryWriter  # expboard's own TensorBoard writer, no TensorFlow needed
except ImportError:
    from torch.utils.tensorboard import SummaryWriter

parser = argparse.ArgumentParser()
parser.add_argument("--log_dir", default="./logs")
parser.add_argument("--epochs", type=int, default=30)
parser.add_argument("--learning_rate", type=float, default=0.01)
parser.add_argument("--hidden_units", type=int, default=64)
parser.add_argument("--epoch_seconds", type=float, default=0.5, help="pause after each epoch, to watch it live")
args = parser.parse_args()

run = Run.get_context()  # the submitted run; an offline run when started by hand

X, y = load_digits(return_X_y=True)
X = X / 16.0
x_train, x_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0)
classes = np.unique(y)

model = MLPClassifier(hidden_layer_sizes=(args.hidden_units,), learning_rate_init=args.learning_rate, random_state=0)
rng = np.random.default_rng(0)

# Writing logs to ./logs results in their being uploaded to the run, and so visible to TensorBoard.
train_writer = SummaryWriter(os.path.join(args.log_dir, "train"))
test_writer = SummaryWriter(os.path.join(args.log_dir, "test"))

for epoch in range(1, args.epochs + 1):
    for batch in np.array_split(rng.permutation(len(x_train)), 10):
        model.partial_fit(x_train[batch], y_train[batch], classes=classes)
    train_accuracy = model.score(x_train, y_train)
    test_accuracy = model.score(x_test, y_test)

    train_writer.add_scalar("loss", model.loss_, epoch)
    train_writer.add_scalar("accuracy", train_accuracy, epoch)
    test_writer.add_scalar("accuracy", test_accuracy, epoch)
    train_writer.add_histogram("hidden_layer/weights", model.coefs_[0], epoch)
    train_writer.flush()
    test_writer.flush()

    run.log("test_accuracy", test_accuracy)  # run history too
    print(f"epoch {epoch:3d}  loss {model.loss_:.4f}  train {train_accuracy:.3f}  test {test_accuracy:.3f}")
    time.sleep(args.epoch_seconds)

train_writer.close()
test_writer.close()

os.makedirs("outputs", exist_ok=True)  # ./outputs is stored with the run when it ends
with open("outputs/model.pkl", "wb") as f:
    pickle.dump(model, f)
'''


def _say(message: str = "") -> None:
    print(message, flush=True)


def _require_sklearn() -> None:
    try:
        import sklearn  # noqa: F401
    except ImportError:
        from .errors import ConfigError

        raise ConfigError(
            "the demo trains scikit-learn models: pip install 'expboard[examples]' (or scikit-learn)"
        ) from None


def export_sweep(ws: Any, logdir: Path) -> Any:
    """A Ridge sweep as child runs, exported to TensorBoard. Returns the root run."""
    import numpy as np
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge
    from sklearn.metrics import mean_squared_error
    from sklearn.model_selection import train_test_split
    from tqdm import tqdm

    from .experiment import Experiment
    from .tensorboard.export import export_to_tensorboard

    exp = Experiment(ws, "export-to-tensorboard")
    root_run = exp.start_logging(display_name="ridge-sweep")
    X, y = load_diabetes(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=0)
    data = {"train": {"x": x_train, "y": y_train}, "test": {"x": x_test, "y": y_test}}
    alphas = [round(a, 1) for a in np.linspace(0.0, 1.0, 11)]
    for alpha in tqdm(alphas, desc="Ridge alphas", file=sys.stdout):
        with root_run.child_run("alpha" + str(alpha)) as run:
            reg = Ridge(alpha=alpha)
            reg.fit(data["train"]["x"], data["train"]["y"])
            preds = reg.predict(data["test"]["x"])
            mse = mean_squared_error(preds, data["test"]["y"])
            run.log("alpha", alpha)
            run.log("mse", mse)
        root_run.log("mse", mse)  # the whole sweep as one series too
    export_to_tensorboard(root_run, logdir, hparams=["alpha"], progress=False)
    root_run.complete()
    return root_run


def _tensorboard_runs(url: str) -> dict[str, list[str]]:
    """What TensorBoard serves now: scalar tags by TensorBoard run (empty if it does not answer)."""
    try:
        with urllib.request.urlopen(url + "data/plugin/scalars/tags", timeout=5) as resp:
            tags = json.loads(resp.read())
    except (OSError, ValueError):
        return {}
    return {run: sorted(t) for run, t in tags.items()}


def run_demo(
    workdir: str | os.PathLike[str] | None = None,
    port: int = 6006,
    wait: bool = True,
    epochs: int = DEMO_EPOCHS,
    epoch_seconds: float = DEMO_EPOCH_SECONDS,
) -> int:
    """Run the demo (see the module docs); returns the exit status for the CLI."""
    _require_sklearn()
    from .compute import ScriptRunConfig
    from .experiment import Experiment
    from .tensorboard import Tensorboard
    from .workspace import Workspace

    root = Path(workdir if workdir is not None else "expboard-demo").resolve()
    ws = Workspace.init(root)
    tb_root = root / "tensorboard"
    shutil.rmtree(tb_root, ignore_errors=True)  # the demo's own folder: a fresh view each time
    exp_dir = root / "sample_projects" / "tensorboard-demo"
    exp_dir.mkdir(parents=True, exist_ok=True)
    (exp_dir / "train.py").write_text(TRAIN_SCRIPT)
    _say(f"expboard demo: workspace {root} (tracking URI {ws.tracking_uri})")

    run = None
    tb = None
    started = time.monotonic()
    try:
        # A script that writes TensorBoard files under ./logs, on the local compute target
        config = ScriptRunConfig(
            source_directory=exp_dir,
            script="train.py",
            arguments=["--log_dir", "./logs", "--epochs", epochs, "--epoch_seconds", epoch_seconds],
            compute_target="local",
        )
        run = Experiment(ws, "tensorboard-demo").submit(config)
        _say(f"Submitted {exp_dir / 'train.py'} as run {run.id} (status {run.get_status().value})")

        tb = Tensorboard([run], local_root=tb_root, port=port)
        url = tb.start()
        _say(f"TensorBoard at {url}  (showing {tb_root}; scalars appear while the run trains)")

        # Run history only, exported to TensorBoard files in the same TensorBoard's folder
        root_run = export_sweep(ws, tb_root / "export-to-tensorboard")
        _say(f"Exported {len(root_run.get_children())} child runs of {root_run.id} exported to {tb_root}")

        _say("The training run's driver log:")
        details = run.wait_for_completion(show_output=True, raise_on_error=False)
        if details["status"] != "Completed":
            message = (details.get("error") or {}).get("message", "")
            _say(f"the training run ended {details['status']}: {message}")
            return 1

        deadline = time.monotonic() + 10  # the last points reach TensorBoard within a reload or two
        served: dict[str, list[str]] = {}
        while time.monotonic() < deadline:
            served = _tensorboard_runs(url)
            if any("test" in r for r in served) and any("export-to-tensorboard" in r for r in served):
                break
            time.sleep(0.5)
        _say(f"TensorBoard serves scalars of {len(served)} runs:")
        for name, tags in sorted(served.items()):
            _say(f"  {name}: {', '.join(tags)}")
        _say(f"Done in {time.monotonic() - started:.0f} s. Files: expboard runs show {run.id}")
        if wait:
            _say(f"TensorBoard stays up at {url} - press Ctrl-C to stop it.")
            try:
                while tb.process is not None and tb.process.poll() is None:
                    time.sleep(0.5)
            except KeyboardInterrupt:
                _say()
        return 0
    finally:
        if run is not None and not run.get_status().is_terminal:
            run.cancel()  # Ctrl-C during training: the agent stops the script
            run.wait_for_completion(raise_on_error=False, timeout=30)
        if tb is not None:
            tb.stop()
            _say("TensorBoard stopped.")
        ws.close()
