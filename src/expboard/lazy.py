"""Lazy public names of a package (PEP 562): declared once, as imports under ``if TYPE_CHECKING:``.

A package's ``__init__`` writes its public names the usual way, an import and an ``__all__`` entry, with the
imports under ``if TYPE_CHECKING:`` (type checkers and editors see them as they are) and ends with::

    if not TYPE_CHECKING:
        __getattr__, __dir__ = lazy_exports(__name__, __file__, __all__)

At run time nothing is imported until a name is first used: ``from expboard import Run`` imports
``expboard.run`` then, and only it. Where each name lives is read from those ``TYPE_CHECKING`` imports
(relative ones, ``from .module import Name``) the first time any lazy name is asked for.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["lazy_exports", "lazy_import", "read_type_checking_imports"]


def read_type_checking_imports(path: str, package: str) -> dict[str, str]:
    """``{name: absolute module}`` of the relative ``from .x import name`` under ``if TYPE_CHECKING:`` in the
    top level of the file ``path``, the ``__init__`` of ``package``."""
    import ast

    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    found: dict[str, str] = {}
    for node in tree.body:
        if not (isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"):
            continue
        for imp in node.body:
            if not isinstance(imp, ast.ImportFrom) or imp.level == 0:
                continue
            base = package.split(".")
            base = base[: len(base) - (imp.level - 1)]
            module = ".".join(base + ([imp.module] if imp.module else []))
            for alias in imp.names:
                found[alias.asname or alias.name] = module
    return found


def lazy_exports(
    package: str, init_file: str, public: Sequence[str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package`` (see the module's docstring)."""
    table: dict[str, str] = {}
    names = set(public)

    def __getattr__(name: str) -> Any:
        if name in names:
            if not table:
                table.update(read_type_checking_imports(init_file, package))
            module = table.get(name)
            if module is None:
                raise AttributeError(
                    f"{package}.{name} is in __all__ but not imported under `if TYPE_CHECKING:` in {init_file}"
                )
            value = getattr(importlib.import_module(module), name)
            setattr(sys.modules[package], name, value)  # found once; later lookups skip this function
            return value
        if not name.startswith("_"):  # a subpackage used as an attribute (expboard.tensorboard)
            try:
                return importlib.import_module(f"{package}.{name}")
            except ModuleNotFoundError as exc:
                if exc.name != f"{package}.{name}":
                    raise
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *names})

    return __getattr__, __dir__


class _LazyModule:
    """Stands in for a module in another module's globals until its first attribute is used."""

    def __init__(self, name: str, namespace: dict[str, Any], alias: str) -> None:
        self._name, self._namespace, self._alias = name, namespace, alias

    def __getattr__(self, attr: str) -> Any:
        module = importlib.import_module(self._name)
        if self._namespace.get(self._alias) is self:
            self._namespace[self._alias] = module  # later uses find the module itself: no cost per use
        return getattr(module, attr)


def lazy_import(name: str, namespace: dict[str, Any], alias: str) -> Any:
    """``alias = lazy_import("numpy", globals(), "alias")`` for ``import numpy as alias``, with the import
    made on the first use of an attribute (then the module replaces the stand-in in ``namespace``). Under
    ``if not TYPE_CHECKING:``, with the plain import under ``if TYPE_CHECKING:`` for type checkers."""
    return _LazyModule(name, namespace, alias)
