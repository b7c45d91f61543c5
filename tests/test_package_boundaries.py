"""Import boundaries between the packages (README "How it fits together"), read from the sources."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PRODUCT = ("cache", "extract", "heads", "finetune")
#: package -> top-level packages of this repository it must never import
FORBIDDEN = {
    "cache": {"extract", "heads", "finetune", "demo", "testkit"},
    "extract": {"heads", "finetune", "demo", "testkit"},
    "heads": {"extract", "finetune", "demo", "testkit"},
    "finetune": {"demo", "testkit"},
}


def _imported_top_levels(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", PRODUCT)
def test_product_packages_keep_their_import_boundaries(package):
    bad = {f"{p.relative_to(REPO)}: {sorted(_imported_top_levels(p) & FORBIDDEN[package])}"
           for p in sorted((REPO / package).rglob("*.py")) if _imported_top_levels(p) & FORBIDDEN[package]}
    assert not bad, f"{package} imports packages it must not:\n" + "\n".join(sorted(bad))
