"""The `tqa` command tree as a user meets it: every command in `--help`, an instant help, errors on stderr."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

TOP_LEVEL = {
    "setup", "ingest", "status", "sync", "watch", "search", "ask", "serve",
    "eval", "register", "train", "dataset", "mlflow", "infra", "release", "feedback", "dashboard", "ct",
}  # fmt: skip
HEAVY = {"torch", "transformers", "sentence_transformers", "weaviate", "llama_index", "bentoml", "mlflow"}


def tqa(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run `tqa` as a user does, with `-X importtime` reporting every module it imports on stderr."""
    return subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "ops.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200", **env},
    )


def listed_commands(help_text: str) -> set[str]:
    """Names in the help's command panel (a row starts with the name; wrapped rows start with spaces).

    Typer forces a styled terminal when GITHUB_ACTIONS (or FORCE_COLOR) is set, so on a CI runner the piped help
    carries ANSI escapes between the border and the name: the names are read from the text a reader sees.
    """
    plain = re.sub(r"\x1b\[[0-9;]*m", "", help_text)
    return set(re.findall(r"^│ ([a-z][\w-]*) ", plain, re.MULTILINE))


def imported_packages(importtime: str) -> set[str]:
    return {line.split("|")[-1].strip().split(".")[0] for line in importtime.splitlines() if "|" in line}


def test_help_lists_every_command_without_loading_models_or_clients() -> None:
    shown = tqa("--help")
    assert shown.returncode == 0, shown.stderr
    assert listed_commands(shown.stdout) == TOP_LEVEL
    # `tqa --help` stays instant: no ML framework, vector store client or server is imported for it.
    assert not imported_packages(shown.stderr) & HEAVY


def test_eval_help_lists_retrieval_and_run() -> None:
    shown = tqa("eval", "--help")
    assert shown.returncode == 0, shown.stderr
    assert listed_commands(shown.stdout) == {"retrieval", "run"}


def test_train_and_ct_help_list_their_commands() -> None:
    assert listed_commands(tqa("train", "--help").stdout) == {"ranker", "generator"}
    assert listed_commands(tqa("ct", "--help").stdout) == {"run", "status"}


def test_release_help_lists_the_rollout_commands() -> None:
    shown = tqa("release", "--help")
    assert shown.returncode == 0, shown.stderr
    assert listed_commands(shown.stdout) == {"deploy", "canary", "promote", "status", "rollback", "down"}


def test_status_without_an_index_is_one_sentence_on_stderr_and_nothing_on_stdout(tmp_path: Path) -> None:
    shown = tqa("status", TQA_DATA_DIR=str(tmp_path / "data"))
    assert shown.returncode == 2
    assert shown.stdout == ""
    errors = [line for line in shown.stderr.splitlines() if not line.startswith("import time:")]
    assert errors == [f"Error: No index in {tmp_path / 'data'}; run `tqa ingest` first."]
