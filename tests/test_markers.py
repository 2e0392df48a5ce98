"""`make test-fast` stays fast: it must not build the Horovod or nnU-Net environments (minutes)."""

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _marks(node: ast.FunctionDef) -> set[str]:
    return {d.attr for d in node.decorator_list if isinstance(d, ast.Attribute)}


@pytest.mark.parametrize("fixture,mark", [("horovod_python", "horovod"), ("nnunet_python", "nnunet")])
def test_every_test_that_needs_a_reference_environment_is_marked_and_test_fast_leaves_them_out(fixture, mark):
    needing = []
    for path in (REPO / "tests").rglob("test_*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_") \
                    and fixture in [a.arg for a in node.args.args]:
                needing.append(node.name)
                assert mark in _marks(node), f"{path.name}::{node.name} uses {fixture}: mark it {mark}"
    assert needing, f"no test uses the {fixture} fixture any more: update this check"
    recipe = re.search(r"^test-fast:.*\n\t(.*)$", (REPO / "Makefile").read_text(), re.M).group(1)
    assert f"not {mark}" in recipe and "not workflow" in recipe, recipe
