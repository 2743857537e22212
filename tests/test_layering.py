"""The package's layers import only downwards (README Layout): no cycles between
packages, the trainer imported by nothing in the library."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.helpers import REPO

# Lower numbers sit lower; a module may import its own package or lower ranks only.
RANK = {"utils": 0, "sharding": 0, "registry": 1, "layers": 1, "models": 2, "data": 2, "losses": 2, "convert": 3,
        "evaluation": 3, "tasks": 4, "training": 5, "tools": 6}


def _unit(module: str) -> str:
    """'stra_jax.models.io' -> 'models'."""
    return module.split(".")[1]


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return {n for n in names if n.startswith("stra_jax.")}


FILES = sorted(p for p in (REPO / "stra_jax").rglob("*.py") if p.parent != REPO / "stra_jax" or p.stem != "__init__")


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_imports_go_downwards(path):
    rel = path.relative_to(REPO / "stra_jax")
    unit = rel.parts[0].removesuffix(".py")
    assert unit in RANK, f"{rel}: add its package to RANK (and to the README's Layout)"
    upward = sorted(m for m in _imports(path) if _unit(m) != unit and RANK[_unit(m)] >= RANK[unit])
    assert not upward, f"{rel} imports {upward}: the same or a higher layer than {unit!r}"


def _module_name(path: Path, root: Path) -> str:
    """'<root>/stra_jax/models/io.py' -> 'stra_jax.models.io' (a package's __init__ -> the package)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path, package: str = "stra_jax") -> dict[str, set[str]]:
    """Module -> the package's modules it imports anywhere in its file (top level or
    inside functions: a lazy import still ties the two together). ``from a.b import
    c`` counts as importing ``a.b.c`` when that is a module, else ``a.b``."""
    files = {_module_name(p, root): p for p in (root / package).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in files else node.module
                           for a in node.names]
            else:
                continue
            edges |= {t for t in targets if t in files and t != name}
        graph[name] = edges
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module, packages' ``__init__``
    left out (they re-export their modules, which import each other through them
    only by name)."""
    modules = {m for m in graph if not any(o.startswith(m + ".") for o in graph)}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(node: str) -> None:  # Tarjan's algorithm
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph[node] & modules:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for module in sorted(modules):
        if module not in index:
            visit(module)
    return cycles


def test_no_import_cycles_between_modules():
    cycles = import_cycles(import_graph(REPO))
    assert not cycles, f"modules that import each other (directly or in a ring): {cycles}"


def test_cycle_check_catches_a_ring_added_to_a_package(tmp_path):
    """The mutation check, kept: a copy of the package with one added ring fails."""
    import shutil

    shutil.copytree(REPO / "stra_jax", tmp_path / "stra_jax", ignore=shutil.ignore_patterns("__pycache__"))
    before = import_cycles(import_graph(tmp_path))
    utils = tmp_path / "stra_jax" / "utils.py"
    (tmp_path / "stra_jax" / "ring.py").write_text("from stra_jax.utils import as_path\n")
    utils.write_text(utils.read_text() + "\n\ndef _late():\n    from stra_jax.ring import as_path\n")
    after = import_cycles(import_graph(tmp_path))
    assert [c for c in after if c not in before] == [["stra_jax.ring", "stra_jax.utils"]]
