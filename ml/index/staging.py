"""The staging buffer: one JSON line per change a sync made, for the QA-dataset pipeline to pick up."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ml.index.engine import IngestReport


def append_staging(path: Path, report: IngestReport, source: str) -> int:
    """Append one JSON line per change to the staging buffer, durably; returns lines written."""
    if not report.changes:
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    when = datetime.now(UTC).isoformat(timespec="seconds")
    with path.open("a", encoding="utf-8") as fh:
        for change in report.changes:
            fh.write(json.dumps({"source": source, "at": when, "from": report.old, "to": report.new, **change}) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    return len(report.changes)


# -- dataset pairs from feedback -------------------------------------------------------------------------------------
# Feedback pairs sit beside the index changes, in their own file: `tqa ct run` counts lines of changes.jsonl as new
# index data (its `new_data` trigger) and counts approved feedback from the feedback store (its `feedback` trigger).


def feedback_buffer(staging_file: Path) -> Path:
    """The staging file for feedback pairs, next to the changes buffer."""
    return staging_file.parent / "feedback.jsonl"


def staged_pairs(path: Path) -> dict[str, dict[str, Any]]:
    """The current pair of each query id in a feedback buffer (the last line wins; a withdrawn one is left out)."""
    current: dict[str, dict[str, Any]] = {}
    if not path.is_file():
        return current
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        if record.get("withdrawn"):
            current.pop(record["query_id"], None)
        else:
            current[record["query_id"]] = record["pair"]
    return current


def append_pairs(path: Path, pairs: dict[str, dict[str, Any]], source: str = "feedback") -> dict[str, int]:
    """Bring the buffer to `pairs` (query id -> pair JSON) by appending, durably: new or changed pairs, and a
    withdrawal for each staged pair no longer in `pairs`. Re-running with the same pairs writes nothing."""
    before = staged_pairs(path)
    when = datetime.now(UTC).isoformat(timespec="seconds")
    lines = [
        {"source": source, "at": when, "query_id": qid, "pair": pair}
        for qid, pair in sorted(pairs.items())
        if before.get(qid) != pair
    ]
    gone = sorted(set(before) - set(pairs))
    lines += [{"source": source, "at": when, "query_id": qid, "withdrawn": True} for qid in gone]
    if lines:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as fh:
            for record in lines:
                fh.write(json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
    return {"written": len(lines) - len(gone), "withdrawn": len(gone), "staged": len(pairs)}
