"""What every `tqa` command shares: the stderr console, the stdout console, JSON lines and batch files."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console

from ml.errors import UserError

# Progress and messages go to stderr, so stdout carries only the result and `tqa ... | jq` works.
console = Console(stderr=True)
out = Console()


def print_json(obj: Any, indent: int | None = None) -> None:
    """Write `obj` as JSON to stdout: one line, or indented when `indent` is given."""
    sys.stdout.write(json.dumps(obj, indent=indent, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def read_batch(path: Path) -> list[dict[str, Any]]:
    """The `{"id", "question"}` items of a JSONL batch file; blank lines are skipped.

    Raises:
        UserError: the file is missing or a line is not such an object.
    """
    if not path.is_file():
        raise UserError(f"Batch file {path} does not exist.")
    items = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            items.append({"id": item["id"], "question": str(item["question"])})
        except (ValueError, KeyError, TypeError) as exc:
            raise UserError(f'{path}:{n} is not a JSON object with "id" and "question".') from exc
    return items
