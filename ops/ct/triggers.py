"""The four triggers of continuous training, each measured against its configured threshold."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ml.settings import Settings
from ops.ct.config import CTConfig, TriggerName
from ops.ct.state import CTState


@dataclass
class Trigger:
    name: TriggerName
    value: float
    threshold: float
    fired: bool
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def new_changes(staging_file: Path, offset: int) -> tuple[int, int]:
    """Changes in the staging buffer after byte `offset`, and the buffer's end (a whole line is needed to count)."""
    if not staging_file.is_file():
        return 0, offset
    size = staging_file.stat().st_size
    if size < offset:  # the buffer was replaced: everything in it is new
        offset = 0
    with staging_file.open("rb") as fh:
        fh.seek(offset)
        data = fh.read()
    end = data.rfind(b"\n") + 1  # a line still being written is left for the next cycle
    return data[:end].count(b"\n"), offset + end


def feedback_numbers(settings: Settings, window_hours: float) -> dict[str, int]:
    """Approved corrections in total, and thumbs up/down within the window; zeros when nothing was ever rated."""
    if not settings.feedback_db.exists():
        return {"approved": 0, "up": 0, "down": 0}
    from ml.feedback.store import FeedbackStore

    with FeedbackStore(settings.feedback_db) as store:
        total = store.stats()
        recent = store.stats(since=time.time() - window_hours * 3600)
    return {"approved": total["approved"], "up": recent["up"], "down": recent["down"]}


def evaluate(settings: Settings, config: CTConfig, state: CTState, now: float | None = None) -> list[Trigger]:
    """Every trigger with its current value; `fired` where the threshold is reached (a 0 threshold never fires)."""
    t = config.triggers
    now = time.time() if now is None else now
    changes, _ = new_changes(settings.staging_file, state.staging_offset)
    fb = feedback_numbers(settings, t.window_hours)
    approved = max(0, fb["approved"] - state.approved_seen)
    rated = fb["up"] + fb["down"]
    share = fb["down"] / rated if rated else 0.0
    if state.last_cycle_at is None:
        age_h, age_text = float("inf"), "no cycle has run yet"
    else:
        age_h = (now - state.last_cycle_at) / 3600
        age_text = f"last cycle {age_h:.1f} h ago"
    return [
        Trigger(
            "new_data",
            changes,
            t.new_changes,
            bool(t.new_changes) and changes >= t.new_changes,
            f"{changes} new changes in {settings.staging_file.name}",
        ),
        Trigger(
            "feedback",
            approved,
            t.approved_feedback,
            bool(t.approved_feedback) and approved >= t.approved_feedback,
            f"{approved} corrections approved since the last cycle",
        ),
        Trigger(
            "schedule",
            age_h if age_h != float("inf") else -1,
            t.schedule_hours,
            bool(t.schedule_hours) and age_h >= t.schedule_hours,
            age_text,
        ),
        Trigger(
            "degradation",
            round(share, 4),
            t.thumbs_down_share,
            bool(t.thumbs_down_share) and rated >= t.min_ratings and share >= t.thumbs_down_share,
            f"{fb['down']} of {rated} ratings in {t.window_hours:g} h are thumbs-down (counts from {t.min_ratings})",
        ),
    ]
