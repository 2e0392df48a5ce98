"""Nothing in `unet` reaches for a file outside the package by path (DESIGN.md, Layers): the pin
lists in envs/, the virtualenvs under .bench/, the rules, Snakefile and workflow_scripts belong to
the workflow, which passes what the package needs as arguments.

Checked on the source: `parents[N]` with N >= 2, `__file__` climbed above the package, `..` in a
path, and path strings naming the workflow's files. Prose (messages, docstrings) may name them:
a string with whitespace in it is not a path.
"""

import ast
import re
from pathlib import Path

import pytest

import unet

PACKAGE = Path(unet.__file__).parent
WORKFLOW_NAMES = {"envs", ".bench", "workflow_scripts", "Snakefile"}
PATH_CALLS = {"Path", "PurePath", "PosixPath", "joinpath", "join", "with_name", "open"}


def _parents(tree):
    return {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


def _call_name(node) -> str:
    func = node.func
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""


def _levels_above_file(node, parent) -> int:
    """How many folders up from `__file__` (the Name `node`) the expression around it climbs."""
    levels = 0
    while node in parent:
        above = parent[node]
        if isinstance(above, ast.Call) and node in above.args:
            name = _call_name(above)
            if name == "dirname":
                levels += 1
            elif name not in {"Path", "PurePath", "abspath", "realpath", "resolve", "absolute"}:
                break
        elif isinstance(above, ast.Attribute) and above.value is node:
            if above.attr == "parent":
                levels += 1
            elif above.attr == "parents" and isinstance(parent.get(above), ast.Subscript):
                index = parent[above].slice
                if not (isinstance(index, ast.Constant) and isinstance(index.value, int)):
                    return 99  # parents[i]: any level; counted as out of the package
                levels += index.value + 1
                above = parent[above]
            elif above.attr not in {"resolve", "absolute"}:
                break
        elif not (isinstance(above, ast.Call) and above.func is node):  # x.resolve(): the call itself
            break
        node = above
    return levels


def _in_path_context(node, parent) -> bool:
    above = parent.get(node)
    if isinstance(above, ast.BinOp) and isinstance(above.op, ast.Div):
        return True
    return isinstance(above, ast.Call) and node in above.args and _call_name(above) in PATH_CALLS


def _path_string_problem(text: str, in_path: bool) -> str | None:
    if not text or any(ch.isspace() for ch in text):
        return None  # prose, not a path
    segments = [s for s in re.split(r"[\\/]", text) if s]
    named = [s for s in segments if s in WORKFLOW_NAMES or s.startswith(".bench")]
    if named:
        return f"names the workflow's {named[0]!r} as a path ({text!r})"
    if ("/" in text or "\\" in text or in_path) and {"..", "rules"} & set(segments):
        return f"climbs out of the package ({text!r})"
    return None


def outside_references(source: str, depth: int) -> list[str]:
    """`line: what` for each place where `source`, a module `depth` folders inside the package's
    parent folder (1 for unet/x.py, 2 for unet/bench/x.py), refers to a path outside the package."""
    tree = ast.parse(source)
    parent = _parents(tree)
    found = []
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute) \
                and node.value.attr == "parents" and isinstance(node.slice, ast.Constant) \
                and isinstance(node.slice.value, int) and not 0 <= node.slice.value < 2:
            found.append(f"{line}: parents[{node.slice.value}]")
        elif isinstance(node, ast.Name) and node.id == "__file__":
            levels = _levels_above_file(node, parent)
            if levels > depth:
                found.append(f"{line}: __file__ climbed {levels} folders up, out of the package")
        elif isinstance(node, ast.Attribute) and node.attr == "pardir":
            found.append(f"{line}: os.pardir")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            problem = _path_string_problem(node.value, _in_path_context(node, parent))
            if problem:
                found.append(f"{line}: {problem}")
    return found


def test_no_module_in_the_package_refers_to_a_path_outside_it():
    modules = sorted(PACKAGE.rglob("*.py"))
    assert PACKAGE / "bench" / "preprocess.py" in modules and len(modules) > 20  # the walk sees them
    problems = []
    for path in modules:
        depth = len(path.relative_to(PACKAGE.parent).parts) - 1
        problems += [f"{path.relative_to(PACKAGE.parent)}:{p}" for p in outside_references(path.read_text(), depth)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("source", [
    "ROOT = Path(__file__).resolve().parents[2]",
    "ROOT = Path(__file__).parent.parent.parent",
    "ROOT = os.path.dirname(os.path.dirname(os.path.abspath(os.path.dirname(__file__))))",
    "ROOT = some_path.parents[3]",
    "REQUIREMENTS = ROOT / 'envs' / 'jax-bench.txt'",
    "VENV = Path('.bench/nnunet-venv')",
    "RULES = HERE / '..' / 'rules'",
    "SCRIPT = os.path.join(HERE, '../workflow_scripts/train.py')",
    "SNAKEFILE = f'{ROOT}/Snakefile'",
    "UP = os.path.join(HERE, os.pardir)",
])
def test_the_check_finds_a_path_out_of_the_package(source):
    assert outside_references(source, depth=2), source


@pytest.mark.parametrize("source", [
    "TABLE = Path(__file__).with_name('msd_tasks.tsv')",
    "PACKAGE = Path(__file__).resolve().parent.parent / 'io' / 'msd_tasks.tsv'",
    "OUT = case.image.parents[1] / 'out'",
    "PYTHON = Path(venv_dir) / 'bin' / 'python'",
    "raise RuntimeError(f'{venv}: run `make bench-env` (pins in envs/nnunet-bench.txt, builds .bench/x)')",
    "'''Docstring: the rules pass .bench/jax-venv and envs/jax-bench.txt.'''",
    "LABELS = {'rules': 1}",
])
def test_the_check_leaves_package_paths_and_prose_alone(source):
    assert outside_references(source, depth=2) == []
