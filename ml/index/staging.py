"""The staging buffer: one JSON line per change a sync made, for the QA-dataset pipeline to pick up."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

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
