"""TensorBoard integration: export run history as event files, and a live TensorBoard over runs.

>>> from expboard.tensorboard import Tensorboard
>>> from expboard.tensorboard.export import export_to_tensorboard
>>> export_to_tensorboard(root_run, "exportedTBlogs")        # doctest: +SKIP
>>> tb = Tensorboard([run])                                  # doctest: +SKIP
>>> url = tb.start()                                         # doctest: +SKIP   'http://127.0.0.1:6006/'
>>> tb.stop()                                                # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_exports

# Imported when first used (see expboard.lazy): the CLI's commands register without loading TensorBoard.
if TYPE_CHECKING:
    from .export import ExportResult, export_to_tensorboard
    from .launcher import PortInUseError, Tensorboard, TensorboardError

__all__ = ["ExportResult", "PortInUseError", "Tensorboard", "TensorboardError", "export_to_tensorboard"]

if not TYPE_CHECKING:  # type checkers read the imports above
    __getattr__, __dir__ = lazy_exports(__name__, __file__, __all__)
