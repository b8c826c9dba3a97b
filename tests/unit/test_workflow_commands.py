"""Every `tqa` command a workflow reaches through a make target exists, with every option the recipe passes it."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import typer
import yaml

from ops.cli import app

REPO = Path(__file__).resolve().parents[2]


def _recipes() -> dict[str, list[str]]:
    """Make target -> its recipe lines."""
    recipes: dict[str, list[str]] = {}
    target = None
    for line in (REPO / "Makefile").read_text().splitlines():
        found = re.match(r"^([a-zA-Z][\w-]*):", line)
        if found:
            target = found.group(1)
            recipes[target] = []
        elif line.startswith("\t") and target:
            recipes[target].append(line.strip())
        elif line and not line.startswith("#"):
            target = None
    return recipes


def _workflow_targets() -> set[str]:
    used = set()
    for workflow in (REPO / ".github" / "workflows").glob("*.yml"):
        for job in yaml.safe_load(workflow.read_text())["jobs"].values():
            for step in job.get("steps", []):
                used |= set(re.findall(r"\bmake ([a-z][\w-]*)", step.get("run", "")))
    return used


def _tqa_calls(recipe: list[str]) -> list[list[str]]:
    """Words after `$(BIN)/tqa` in each recipe line, with make's `$(if $(X),--opt $(X))` reduced to `--opt X`."""
    calls = []
    for line in recipe:
        if "$(BIN)/tqa " not in line:
            continue
        line = re.sub(r"\$\(if \$\(\w+\),([^)]*?)(\$\(\w+\))?\)", r"\1 VALUE", line)
        words = shlex.split(line.split("$(BIN)/tqa ", 1)[1].split("&&")[0])
        calls.append(words)
    return calls


def _resolve(words: list[str]) -> tuple[Any, list[str]]:
    """The click command the words name and the options given to it; fails if a command does not exist."""
    command = typer.main.get_command(app)
    rest = list(words)
    # Duck-typed: the click that typer builds on may be its own copy, not the `click` importable here.
    while hasattr(command, "list_commands") and rest and not rest[0].startswith("-"):
        sub = command.get_command(command.context_class(command), rest[0])
        assert sub is not None, f"`tqa {' '.join(words)}`: no command '{rest[0]}'"
        command, rest = sub, rest[1:]
    return command, [w for w in rest if w.startswith("--")]


def test_workflow_targets_call_tqa_commands_that_exist_with_their_options() -> None:
    recipes = _recipes()
    checked = []
    for target in sorted(_workflow_targets()):
        for words in _tqa_calls(recipes.get(target, [])):
            command, options = _resolve(words)
            known = {o for p in command.params for o in (*p.opts, *p.secondary_opts)}
            assert set(options) <= known, f"make {target}: `tqa {' '.join(words)}` passes {set(options) - known}"
            checked.append(f"{target}: tqa {' '.join(words)}")
    # The release path the CD workflow drives: register the bento's version, deploy it, canary, promote, roll back.
    for expected in ("register: tqa register", "release-deploy: tqa release deploy", "canary: tqa release canary"):
        assert any(c.startswith(expected) for c in checked), checked


def test_the_check_catches_a_command_that_does_not_exist() -> None:
    try:
        _resolve(["release", "launch", "--now"])
    except AssertionError as exc:
        assert "no command 'launch'" in str(exc)
    else:
        raise AssertionError("an unknown command was accepted")
    command, options = _resolve(["register", "--version-file", "v.txt"])
    assert options == ["--version-file"] and "--version-file" in {o for p in command.params for o in p.opts}


def test_cd_registers_the_built_bento_and_deploys_that_version() -> None:
    jobs = yaml.safe_load((REPO / ".github" / "workflows" / "cd.yml").read_text())["jobs"]
    build = {s.get("id"): s for s in jobs["build"]["steps"] if s.get("id")}
    assert build["register"]["env"]["TQA_BENTO"] == "${{ steps.bento.outputs.tag }}"
    assert "make register" in build["register"]["run"]
    assert jobs["build"]["outputs"]["version"] == "${{ steps.register.outputs.version }}"
    canary = " ".join(s.get("run", "") for s in jobs["canary"]["steps"])
    assert "VERSION=${{ needs.build.outputs.version }}" in canary and "build" in jobs["canary"]["needs"]
    assert canary.index("make release-deploy") < canary.index("make canary")
