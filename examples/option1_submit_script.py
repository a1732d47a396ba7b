"""Option 1: a training script that writes TensorBoard files itself, submitted to a compute target.

Everything the script writes under ./logs is streamed into the run while it trains; Tensorboard([run]) shows
it live. Run from this folder: python option1_submit_script.py   (Ctrl-C stops TensorBoard)
"""

import os

from expboard import Experiment, ScriptRunConfig, Workspace
from expboard.tensorboard import Tensorboard

experiment_name = "tensorboard-demo"

# the project folder with train.py (a small neural network on scikit-learn's digits)
exp_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sample_projects", experiment_name)

ws = Workspace.init(".")  # or Workspace.from_config() in a folder where `expboard init` was run

# Writing logs to ./logs results in their being uploaded to the run, and thus made accessible to TensorBoard.
logs_dir = os.path.join(os.curdir, "logs")
arguments_list = ["--log_dir", logs_dir]

exp = Experiment(ws, experiment_name)

# "local" runs the script here, supervised; the name of an attached cluster runs it there
config = ScriptRunConfig(source_directory=exp_dir, script="train.py", arguments=arguments_list, compute_target="local")
run = exp.submit(config)

# the Tensorboard constructor takes a list of runs
tb = Tensorboard([run])

# If successful, start() returns a string with the URI of the instance.
print(tb.start())

try:
    run.wait_for_completion(show_output=True)
    input("The run has ended. Press Enter to stop TensorBoard.\n")
except (KeyboardInterrupt, EOFError):
    run.cancel()  # a no-op once the run has ended
finally:
    # After your job completes, be sure to stop() the streaming otherwise it will continue to run.
    tb.stop()
