"""Imports flow one way, `ops` -> `serving` -> `ml`, and no product package imports test or benchmark code."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# What each product package must never import (anywhere in it, function-level imports included).
FORBIDDEN = {
    "ml": {"serving", "ops", "tests", "bench"},
    "serving": {"ops", "tests", "bench"},
    "ops": {"tests", "bench"},
}


def imported_packages(path: Path) -> set[str]:
    """Top-level names of the absolute imports in one module."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_product_imports_flow_one_way(package: str) -> None:
    wrong = {
        f"{path.relative_to(REPO)} imports {name}"
        for path in sorted((REPO / package).rglob("*.py"))
        for name in imported_packages(path) & FORBIDDEN[package]
    }
    assert wrong == set()
