"""What continuous training remembers between cycles: how far the staging buffer was read, what feedback was seen,
the current dataset, and each cycle's decision. One JSON file, replaced atomically after a cycle's last step."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field


class CTState(BaseModel):
    staging_offset: int = Field(default=0, description="Bytes of the staging buffer already in a dataset.")
    approved_seen: int = Field(default=0, description="Approved corrections already in a dataset.")
    last_cycle_at: float | None = None
    dataset_hash: str | None = None
    history: list[dict[str, Any]] = Field(default_factory=list, description="Cycle reports, newest last.")


class StateFile:
    def __init__(self, path: Path):
        self.path = Path(path)

    def load(self) -> CTState:
        if not self.path.is_file():
            return CTState()
        return CTState.model_validate_json(self.path.read_text())

    def save(self, state: CTState) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("w") as fh:
            fh.write(json.dumps(state.model_dump(mode="json"), indent=2, sort_keys=True))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
