"""The package's layers import only downwards (README Layout): no cycles between
packages, the trainer imported by nothing in the library."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.helpers import REPO

# Lower numbers sit lower; a module may import its own package or lower ranks only.
RANK = {"utils": 0, "sharding": 0, "layers": 1, "models": 2, "data": 2, "losses": 2, "margin_losses": 3, "convert": 3,
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
