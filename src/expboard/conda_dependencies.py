"""Azure ML's ``azureml.core.conda_dependencies``: ``from expboard.conda_dependencies import CondaDependencies``."""

from .compute.environment import CondaDependencies

__all__ = ["CondaDependencies"]
