"""expboard: self-hosted experiment run history with first-class TensorBoard integration."""

__version__ = "0.1.0"
