"""The layers import one way: ``nowcast_core`` (library) <- ``flows`` (orchestration) <- ``nowcast_app``
(application); inside the library, no two packages import each other, directly or in a ring.

Every import counts, also those inside functions (an import deferred for speed is still a dependency).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _imports(path: Path) -> set[str]:
    """Absolute module names imported anywhere in a file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _unit(module: str) -> str | None:
    """The library unit a module belongs to: ``nowcast_core.<package or module>``."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "nowcast_core" and len(parts) > 1 else None


def _library_files():
    return [p for p in (ROOT / "nowcast_core").rglob("*.py") if "migrations" not in p.parts]


def test_library_imports_neither_orchestration_nor_application():
    offenders = {}
    for path in _library_files():
        bad = {m for m in _imports(path) if m.split(".")[0] in ("flows", "nowcast_app", "typer", "prefect")}
        if bad:
            offenders[str(path.relative_to(ROOT))] = sorted(bad)
    assert not offenders, offenders


def test_orchestration_does_not_import_the_application():
    offenders = {str(p.relative_to(ROOT)): sorted(m for m in _imports(p) if m.startswith("nowcast_app"))
                 for p in (ROOT / "flows").rglob("*.py")}
    assert not {k: v for k, v in offenders.items() if v}


def test_no_import_cycle_between_library_packages():
    graph: dict[str, set[str]] = defaultdict(set)
    units = set()
    for path in _library_files():
        rel = path.relative_to(ROOT).with_suffix("")
        me = _unit(".".join(p for p in rel.parts if p != "__init__"))
        if me is None:
            continue
        units.add(me)
        for module in _imports(path):
            other = _unit(module)
            if other and other != me:
                graph[me].add(other)
    graph = {u: {v for v in deps if v in units} for u, deps in graph.items()}

    # Depth-first search for a ring; report it as a path.
    state: dict[str, int] = {}
    stack: list[str] = []
    rings: list[list[str]] = []

    def visit(u: str) -> None:
        state[u] = 1
        stack.append(u)
        for v in sorted(graph.get(u, ())):
            if state.get(v) == 1:
                rings.append(stack[stack.index(v):] + [v])
            elif v not in state:
                visit(v)
        stack.pop()
        state[u] = 2

    for u in sorted(units):
        if u not in state:
            visit(u)
    assert not rings, "import rings: " + "; ".join(" -> ".join(r) for r in rings)
    assert len(units) >= 10  # the check saw the library's packages
