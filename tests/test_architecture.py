"""Dependencies point one way (see the README's layout): this pins it by reading every module's imports,
those inside functions and under ``TYPE_CHECKING`` included."""

from __future__ import annotations

import ast
from pathlib import Path

import expboard

PACKAGE = Path(expboard.__file__).parent
CLIENT = {
    "run",
    "experiment",
    "workspace",
    "buffer",
    "state",
    "liveness",
    "values",
    "transfer",
    "context",
    "model",
    "plugins",
    "snapshots",
    "metric_schemas",
    "widgets",
}
UPPER = {"tensorboard", "compute", "tbimport", "demo", "server", "cli", "model_commands"}

# The deliberate exceptions to "no import circle", each an edge (importer, imported) with why.
ALLOWED_CYCLE_EDGES = {
    # Azure ML's API goes both ways: experiment.start_logging() and get_runs() return Runs, and a Run knows its
    # Experiment (Run.get(ws, id).experiment). Experiment is the lower of the two and reaches Run only inside
    # those methods (and for their return types), never at import time.
    ("expboard.experiment", "expboard.run"): "Experiment.start_logging/get_runs return Runs",
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _resolve(name: str) -> str | None:
    """The module ``name`` is or is inside of (``expboard.x.y.Name`` -> ``expboard.x.y``)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _edges(path: Path, top_level_only: bool = False) -> set[str]:
    """The expboard modules ``path`` imports (anywhere in the file unless ``top_level_only``)."""
    me = _module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    out: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("expboard"):
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found = sub if sub in MODULES else _resolve(target)
                if found:
                    out.add(found)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "expboard":
                    found = _resolve(alias.name)
                    if found:
                        out.add(found)
    out.discard(me)
    return out


GRAPH = {name: _edges(path) for name, path in MODULES.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _first(name: str) -> str:
    """The first component below the package: ``expboard.compute.agent`` -> ``compute``."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _layer(name: str) -> list[tuple[str, set[str]]]:
    return [(m, {_first(d) for d in deps} - {name}) for m, deps in sorted(GRAPH.items()) if _first(m) == name]


def test_no_import_circle_function_level_imports_included() -> None:
    graph = {m: {d for d in deps if (m, d) not in ALLOWED_CYCLE_EDGES} for m, deps in GRAPH.items()}
    assert _cycles(graph) == []


def test_the_cycle_check_finds_a_circle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles(GRAPH) != []  # the allowed edges do close a circle: without them the check would pass anyway


def test_allowed_circle_edges_are_real_and_never_at_import_time() -> None:
    for importer, imported in ALLOWED_CYCLE_EDGES:
        assert imported in GRAPH[importer], f"{importer} no longer imports {imported}: drop the exception"
        assert imported not in _edges(MODULES[importer], top_level_only=True), f"{importer} imports {imported} at once"


def test_records_errors_and_settings_stand_alone() -> None:
    for name in ("records", "errors", "settings"):
        for module, deps in _layer(name):
            assert deps <= {"errors"}, f"{module} imports {deps}"


def test_the_event_codec_stands_alone() -> None:
    for module, deps in _layer("tfevents"):
        assert deps <= {"errors"}, f"{module} imports {deps - {'errors'}}"


def test_stores_do_not_know_the_client() -> None:
    allowed = {"errors", "lazy", "names", "records", "settings"}
    for module, deps in _layer("stores"):
        assert deps <= allowed, f"{module} imports {deps - allowed}"


def test_the_server_depends_on_stores_never_on_the_client() -> None:
    for module, deps in _layer("server"):
        bad = deps & (CLIENT | UPPER)
        assert not bad, f"{module} imports {bad}"


def test_the_client_does_not_import_upper_layers() -> None:
    """The client plugs compute in through expboard.plugins; it never imports it, not even in a function."""
    for name in CLIENT:
        for module, deps in _layer(name):
            assert not deps & UPPER, f"{module} imports {deps & UPPER}"


def test_nothing_imports_the_cli() -> None:
    assert "expboard.cli" in GRAPH["expboard.__main__"]  # the check sees a real import of it
    for module, deps in GRAPH.items():
        if module in ("expboard.cli", "expboard.__main__"):
            continue
        assert "expboard.cli" not in deps, f"{module} imports the CLI"


def test_the_import_reader_sees_relative_absolute_and_function_level_imports() -> None:
    assert {"expboard.errors", "expboard.records", "expboard.stores", "expboard.liveness"} <= GRAPH["expboard.run"]
    assert {"expboard.stores.wire", "expboard.records", "expboard.errors"} <= GRAPH["expboard.server.app"]
    assert "expboard.run" in GRAPH["expboard.experiment"]  # inside Experiment.start_logging
    assert "expboard.run" not in _edges(MODULES["expboard.experiment"], top_level_only=True)


def test_no_module_reaches_into_another_packages_private_names() -> None:
    """``from x import _name`` or a private module of another package (``stores._x``) is not allowed: private
    names are their package's own."""
    for module, path in MODULES.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom) or not (node.level or (node.module or "").startswith("expboard")):
                continue
            for target in _edges_of_node(node, package):
                target_package = target if MODULES[target].name == "__init__.py" else target.rpartition(".")[0]
                if target_package == package:
                    continue
                private = [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
                assert not private, f"{module} imports private names {private} from {target}"
                hidden = [p for p in target.split(".") if p.startswith("_") and not p.startswith("__")]
                assert not hidden, f"{module} imports the private module {target}"


def _edges_of_node(node: ast.ImportFrom, package: str) -> set[str]:
    if node.level:
        base = package.split(".")
        base = base[: len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    found = _resolve(target)
    return {found} if found else set()
