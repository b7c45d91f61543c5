"""The layering of the product packages, checked on the source (AST scan of every import).

cache imports no tier; extract and heads never import each other; no product package imports
finetune (the top tier) or the scaffolding packages (demo, testkit).
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ("cache", "extract", "heads", "finetune")
FORBIDDEN = {
    "cache": {"extract", "heads", "finetune", "demo", "testkit"},
    "extract": {"heads", "finetune", "demo", "testkit"},
    "heads": {"extract", "finetune", "demo", "testkit"},
    "finetune": {"demo", "testkit"},
}


def imported_packages(path: Path) -> set[tuple[str, int]]:
    """Top-level package names imported by a module (absolute imports; relative ones stay inside)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {(a.name.split(".")[0], node.lineno) for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add((node.module.split(".")[0], node.lineno))
    return found


def violations(package: str) -> list[str]:
    bad = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for name, line in imported_packages(path):
            if name in FORBIDDEN[package]:
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    return bad


@pytest.mark.parametrize("package", PRODUCT)
def test_package_respects_layering(package):
    assert violations(package) == []


def test_scanner_finds_imports(tmp_path):
    mod = tmp_path / "m.py"
    mod.write_text(
        "import heads.model\nfrom extract.audio import x\nfrom . import y\n"
        "def f():\n    from finetune import run\n"
    )
    assert {n for n, _ in imported_packages(mod)} == {"heads", "extract", "finetune"}
