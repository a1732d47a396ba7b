"""Azure ML's ``azureml.core.runconfig``: ``from expboard.runconfig import RunConfiguration``."""

from .compute.config import DockerConfiguration, MpiConfiguration, PyTorchConfiguration, RunConfiguration

__all__ = ["DockerConfiguration", "MpiConfiguration", "PyTorchConfiguration", "RunConfiguration"]
