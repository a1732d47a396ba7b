"""Dependencies point one way (see the README's layout): this pins it by reading every module's imports."""

from __future__ import annotations

import ast
from pathlib import Path

import expboard

PACKAGE = Path(expboard.__file__).parent
CLIENT = {"run", "experiment", "workspace", "buffer", "liveness", "logs"}
UPPER = {"tensorboard", "compute", "tbimport", "demo", "server", "cli"}


def _imports(path: Path) -> set[str]:
    """The expboard modules (first component below the package) that ``path`` imports."""
    module = path.relative_to(PACKAGE).with_suffix("").parts
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(module[: len(module) - node.level])
                parts = base + (node.module.split(".") if node.module else [])
                if not parts:  # "from .. import x" at the top: x are modules or names of the package
                    out.update(a.name for a in node.names)
                else:
                    out.add(parts[0])
            elif node.module and node.module.split(".")[0] == "expboard":
                parts = node.module.split(".")
                out.add(parts[1] if len(parts) > 1 else "__init__")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "expboard":
                    out.add(parts[1] if len(parts) > 1 else "__init__")
    return out


def _layer(name: str) -> list[tuple[Path, set[str]]]:
    paths = sorted((PACKAGE / name).rglob("*.py")) if (PACKAGE / name).is_dir() else [PACKAGE / f"{name}.py"]
    return [(p, _imports(p) - {name}) for p in paths]


def test_records_and_errors_import_nothing_of_expboard() -> None:
    for name in ("records", "errors"):
        for path, deps in _layer(name):
            assert deps == set(), f"{path.name} imports {deps}"


def test_the_event_codec_stands_alone() -> None:
    for path, deps in _layer("tfevents"):
        assert deps == set(), f"tfevents/{path.name} imports {deps}"


def test_stores_do_not_know_the_client() -> None:
    for path, deps in _layer("stores"):
        assert deps <= {"errors", "names", "records"}, (
            f"stores/{path.name} imports {deps - {'errors', 'names', 'records'}}"
        )


def test_the_server_depends_on_stores_never_on_the_client() -> None:
    for path, deps in _layer("server"):
        bad = deps & (CLIENT | UPPER)
        assert not bad, f"server/{path.name} imports {bad}"


def test_the_client_does_not_import_upper_layers_at_module_level() -> None:
    """run/experiment/workspace may reach compute lazily (inside a function), never at import time."""
    for name in CLIENT:
        path = PACKAGE / f"{name}.py"
        tree = ast.parse(path.read_text())
        top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        for node in top:
            mod = node.module or "" if isinstance(node, ast.ImportFrom) else node.names[0].name
            assert mod.split(".")[0] not in UPPER, f"{name}.py imports {mod} at module level"


def test_nothing_imports_the_cli() -> None:
    assert "cli" in _imports(PACKAGE / "__main__.py")  # the check sees a real import of it
    for path in PACKAGE.rglob("*.py"):
        if path.parent == PACKAGE and path.name in ("cli.py", "__main__.py"):
            continue
        assert "cli" not in _imports(path), f"{path.relative_to(PACKAGE)} imports the CLI"


def test_the_import_reader_sees_relative_and_absolute_imports() -> None:
    assert {"errors", "records", "stores", "liveness"} <= _imports(PACKAGE / "run.py")
    assert {"stores", "records", "errors"} <= _imports(PACKAGE / "server" / "app.py")
