"""The docs stay true: every command they show is checked against the code it names.

Commands come from ```bash blocks and from inline code spans that start with a program. Each is
checked for what can go stale without running a whole workflow: `make` targets exist; Snakemake
options exist, and rule names, profiles and `--config` keys are real; `python -m` modules accept
every option shown (their `--help`). YAML blocks are config snippets and must validate against the
schema, and every `section.key` the docs name must be a key of the schema.
"""

from __future__ import annotations

import functools
import re
import shlex
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
BIN = Path(sys.executable).parent
PROGRAMS = ("make", ".venv/bin/", "python", "snakemake")
# Commands the docs show that no test can run here (other machines' tools, installs).
NOT_CHECKED = {".venv/bin/pip", "squeue"}


def _blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.S | re.M)


def _commands(path: Path) -> list[str]:
    text = path.read_text()
    commands = []
    for block in _blocks(text, "bash"):
        for line in block.replace("\\\n", " ").splitlines():
            for part in line.split("# or:"):
                part = part.split(" #")[0].strip()
                if part and not part.startswith("#"):
                    commands.append(part)
    prose = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)  # fences would shift the pairing
    commands += [span for span in re.findall(r"`([^`\n]+)`", prose)
                 if span.startswith(PROGRAMS) and " " in span and not span.endswith((".py", "/", " -m"))]
    return commands


def _all_commands() -> list[tuple[str, str]]:
    return [(path.relative_to(REPO).as_posix(), cmd) for path in DOCS for cmd in _commands(path)]


def _words(command: str) -> list[str]:
    # `[--folds 0 1]` marks an optional argument: check it like a given one.
    return shlex.split(command.replace("[", " ").replace("]", " "))


@functools.lru_cache
def _schema() -> dict:
    return yaml.safe_load((REPO / "schemas" / "config.schema.yaml").read_text())


@functools.lru_cache
def _rules() -> set[str]:
    names = set()
    for smk in [REPO / "Snakefile", *(REPO / "rules").glob("*.smk")]:
        names |= set(re.findall(r"^(?:rule|checkpoint) (\w+):", smk.read_text(), flags=re.M))
    return names


@functools.lru_cache
def _help(*argv: str) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 0, f"{' '.join(argv)} failed:\n{result.stderr[-2000:]}"
    return result.stdout


def _options(words: list[str]) -> list[str]:
    return [w.split("=")[0] for w in words if w.startswith("--")]


def _check_make(words: list[str]) -> None:
    targets = set(re.findall(r"^([\w-]+):", (REPO / "Makefile").read_text(), flags=re.M))
    for target in words[1:]:
        assert target in targets, f"make {target}: no such target in the Makefile"


def _check_config_override(assignment: str) -> None:
    key, value = assignment.split("=", 1)
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    node = config
    *sections, last = key.split(".")
    for section in sections:
        node = node.setdefault(section, {})
    node[last] = yaml.safe_load(value)
    jsonschema.validate(config, _schema())


def _check_snakemake(words: list[str]) -> None:
    help_text = _help(str(BIN / "snakemake"), "--help")
    for option in _options(words):
        assert re.search(rf"(^|\s){re.escape(option)}[\s,=]", help_text, flags=re.M), \
            f"snakemake has no option {option}"
    args = words[1:]
    for i, word in enumerate(args):
        previous = args[i - 1] if i else ""
        if previous in ("--forcerun", "--until", "-R"):
            assert word in _rules(), f"{previous} {word}: no such rule"
        elif previous in ("--workflow-profile", "--profile"):
            assert (REPO / word / "config.yaml").is_file(), f"{previous} {word}: no such profile"
        elif previous == "--config":
            _check_config_override(word)
        elif previous in ("--cores", "--report", "--configfile", "--snakefile") or word.startswith("-"):
            continue
        elif "/" not in word and "." not in word:
            assert word in _rules(), f"snakemake target {word}: no such rule"


def _check_python_module(words: list[str]) -> None:
    index = words.index("-m")
    module, rest = words[index + 1], words[index + 2:]
    subcommand = [rest[0]] if rest and not rest[0].startswith("-") else []
    help_text = _help(str(BIN / "python"), "-m", module, *subcommand, "--help")
    for option in _options(rest):
        assert option in help_text, f"python -m {module} {' '.join(subcommand)}: no option {option}"


@pytest.mark.parametrize("doc,command", _all_commands())
def test_documented_command_matches_the_code(doc, command):
    words = _words(command)
    program = words[0].removeprefix(".venv/bin/")
    if words[0] in NOT_CHECKED or any(command.startswith(prefix) for prefix in NOT_CHECKED):
        return
    if program == "make":
        _check_make(words)
    elif program == "snakemake":
        _check_snakemake(words)
    elif program == "python" and "-m" in words:
        _check_python_module(words)
    else:
        pytest.fail(f"{doc}: `{command}`: a command this check does not know; teach it, or list it "
                    "in NOT_CHECKED with the reason")


def test_docs_show_commands():
    """The check above must have something to check: the README's two commands at least."""
    commands = [cmd for doc, cmd in _all_commands() if doc == "README.md"]
    assert "make run" in commands and "make test" in commands


@pytest.mark.parametrize("doc", [d.relative_to(REPO).as_posix() for d in DOCS])
def test_yaml_snippets_are_valid_config(doc):
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    for block in _blocks((REPO / doc).read_text(), "yaml"):
        snippet = yaml.safe_load(block)
        jsonschema.validate({**config, **snippet}, _schema())


def _schema_keys() -> set[str]:
    keys = set()
    for section, spec in _schema()["properties"].items():
        keys.add(section)
        for key in spec.get("properties", {}):
            keys.add(f"{section}.{key}")
    return keys


def test_named_config_keys_exist():
    sections = "|".join(s for s, spec in _schema()["properties"].items() if "properties" in spec)
    for doc in DOCS:
        for key in re.findall(rf"`((?:{sections})\.[a-z_]+)", doc.read_text()):
            assert key in _schema_keys(), f"{doc.relative_to(REPO)} names config key {key}, which the schema lacks"


def test_configuration_reference_lists_every_key():
    reference = (REPO / "docs" / "configuration.md").read_text()
    missing = [key for key in sorted(_schema_keys())
               if not {f"`{key}`", f"`{key}.*`", f"`{key.split('.')[-1]}`"} & set(re.findall(r"`[^`]+`", reference))]
    assert not missing, f"docs/configuration.md does not mention {missing}"


def test_links_between_docs_resolve():
    for doc in DOCS:
        for target in re.findall(r"\]\(([^)#:]+\.md)(?:#[^)]*)?\)", doc.read_text()):
            assert (doc.parent / target).is_file(), f"{doc.relative_to(REPO)} links to missing {target}"
