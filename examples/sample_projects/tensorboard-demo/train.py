"""Train a small neural network on scikit-learn's digits and write TensorBoard files under --log_dir.

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
