"""Fixtures for the TensorBoard tests (helpers are in tbhelpers.py: this folder is not a package, so that
``tensorboard`` still names TensorBoard)."""

from tbhelpers import module_ws  # noqa: F401
