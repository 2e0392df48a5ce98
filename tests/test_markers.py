"""`make test-fast` stays fast: it must not build the Horovod environment (minutes of compiling)."""

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _marks(node: ast.FunctionDef) -> set[str]:
    return {d.attr for d in node.decorator_list if isinstance(d, ast.Attribute)}


def test_every_test_that_needs_horovod_is_marked_and_test_fast_leaves_them_out():
    needing = []
    for path in (REPO / "tests").rglob("test_*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_") \
                    and "horovod_python" in [a.arg for a in node.args.args]:
                needing.append(node.name)
                assert "horovod" in _marks(node), f"{path.name}::{node.name} needs .venv-horovod: mark it horovod"
    assert needing, "no test uses the horovod_python fixture any more: update this check"
    recipe = re.search(r"^test-fast:.*\n\t(.*)$", (REPO / "Makefile").read_text(), re.M).group(1)
    assert "not horovod" in recipe and "not workflow" in recipe, recipe
