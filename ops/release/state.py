"""The durable release state (JSON, atomic writes), the one-rollout-at-a-time lock, and the event log."""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from ml.errors import UserError
from ops.release.proxy import atomic_write

SLOTS = ("blue", "green")
Phase = Literal["running", "promoted", "rolled_back", "reverted"]


class SlotState(BaseModel):
    port: int
    pid: int | None = None
    version: str | None = None
    weight: int = 0
    maintenance: bool = True


class Rollout(BaseModel):
    version: str
    slot: str
    steps: list[int]
    interval_s: float
    step: int = 0
    phase: Phase = "running"
    started: float = Field(default_factory=time.time)
    previous_production: str | None = None
    reason: str = ""


class ReleaseState(BaseModel):
    """Who serves what: written before every change to the proxy or the aliases, so a re-run knows where it was."""

    slots: dict[str, SlotState]
    production_slot: str | None = None
    rollout: Rollout | None = None
    staging_pid: int | None = None
    staging_version: str | None = None

    def other(self, slot: str) -> str:
        return SLOTS[1] if slot == SLOTS[0] else SLOTS[0]

    @property
    def canary_slot(self) -> str:
        return self.other(self.production_slot or SLOTS[1])


class Store:
    """Files of one release environment under `<data dir>/release`."""

    def __init__(self, directory: Path, proxy_port: int):
        self.directory = directory
        self.proxy_port = proxy_port
        self.path = directory / "state.json"
        self.events = directory / "events.jsonl"
        self.lock_file = directory / "rollout.lock"

    def load(self) -> ReleaseState:
        if self.path.exists():
            return ReleaseState.model_validate_json(self.path.read_text())
        return ReleaseState(slots={name: SlotState(port=self.proxy_port + 1 + i) for i, name in enumerate(SLOTS)})

    def save(self, state: ReleaseState) -> None:
        atomic_write(self.path, state.model_dump_json(indent=2))

    def record(self, kind: str, **fields: Any) -> dict[str, Any]:
        """Append one decision to the event log (fsynced: the log survives the crash that follows it)."""
        event = {"time": time.time(), "event": kind, **fields}
        self.directory.mkdir(parents=True, exist_ok=True)
        with self.events.open("a") as f:
            f.write(json.dumps(event, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())
        return event

    def last_events(self, n: int = 10) -> list[dict[str, Any]]:
        if not self.events.exists():
            return []
        return [json.loads(line) for line in self.events.read_text().splitlines()[-n:]]

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the release lock; a second rollout (or rollback) at the same time is refused.

        The kernel drops the lock when its holder dies, even by `kill -9`, so a crashed rollout never blocks the next.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        with self.lock_file.open("a+") as f:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                f.seek(0)
                holder = f.read().strip() or "another process"
                raise UserError(f"A release operation is already running (pid {holder}); wait for it to end.") from exc
            f.seek(0)
            f.truncate()
            f.write(str(os.getpid()))
            f.flush()
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)
