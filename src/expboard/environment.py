"""Azure ML's ``azureml.core.environment``: ``from expboard.environment import Environment``."""

from .compute.environment import CondaDependencies, DockerSection, Environment, PythonSection

__all__ = ["CondaDependencies", "DockerSection", "Environment", "PythonSection"]
