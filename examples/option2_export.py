"""Option 2: runs that only log metrics; their history exported as TensorBoard files.

A Ridge regression on scikit-learn's diabetes set, one child run per alpha, exported with
export_to_tensorboard() and shown by TensorBoard. Run: python option2_export.py   (Ctrl-C stops TensorBoard)
"""

import os

from sklearn.datasets import load_diabetes
from sklearn.linear_model import Ridge
from sklearn.metrics import mean_squared_error
from sklearn.model_selection import train_test_split
from tqdm import tqdm

from expboard import Experiment, Workspace
from expboard.tensorboard import Tensorboard
from expboard.tensorboard.export import export_to_tensorboard

# set experiment name and run name
ws = Workspace.init(".")  # or Workspace.from_config() in a folder where `expboard init` was run
experiment_name = "export-to-tensorboard"
exp = Experiment(ws, experiment_name)
root_run = exp.start_logging()

X, y = load_diabetes(return_X_y=True)
columns = ["age", "gender", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
x_train, x_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=0)
data = {"train": {"x": x_train, "y": y_train}, "test": {"x": x_test, "y": y_test}}

alphas = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
# try a bunch of alpha values in a Linear Regression (aka Ridge regression) model
for alpha in tqdm(alphas):
    # create child runs and fit lines for the resulting models
    with root_run.child_run("alpha" + str(alpha)) as run:
        reg = Ridge(alpha=alpha)
        reg.fit(data["train"]["x"], data["train"]["y"])

        preds = reg.predict(data["test"]["x"])
        mse = mean_squared_error(preds, data["test"]["y"])
        # End train and eval

        # log alpha and mean_squared_error in run history
        run.log("alpha", alpha)
        run.log("mse", mse)

logdir = "exportedTBlogs"
log_path = os.path.join(os.getcwd(), logdir)
os.makedirs(log_path, exist_ok=True)
print(logdir)

# export run history for the project
export_to_tensorboard(root_run, logdir)

root_run.complete()

# The Tensorboard constructor takes a list of runs; [] with local_root shows that folder as it is
tb = Tensorboard([], local_root=logdir, port=6006)

# If successful, start() returns a string with the URI of the instance.
print(tb.start())
try:
    input("Press Enter to stop TensorBoard.\n")
except (KeyboardInterrupt, EOFError):
    pass
finally:
    tb.stop()
