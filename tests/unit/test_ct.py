"""Continuous training without services: triggers, dataset versions, config errors and the canary hand-off."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from ml.dataset.build import BuildConfig
from ml.dataset.checks import load_dataset
from ml.dataset.types import QAPair, SourceRef
from ml.dataset.versions import DatasetVersions, add_pairs
from ml.errors import UserError
from ml.feedback.store import Feedback, FeedbackStore
from ml.settings import Settings
from ops.ct.config import CTConfig, load_ct_config
from ops.ct.cycle import hand_to_canary
from ops.ct.state import CTState
from ops.ct.triggers import evaluate, new_changes
from tests.support.generator import tiny_dataset

ROOT = Path(__file__).resolve().parents[2]


def _fired(settings: Settings, config: CTConfig, state: CTState, now: float | None = None) -> dict[str, bool]:
    return {t.name: t.fired for t in evaluate(settings, config, state, now)}


def test_staging_changes_count_whole_lines_after_the_offset(tmp_path: Path) -> None:
    buffer = tmp_path / "changes.jsonl"
    assert new_changes(buffer, 0) == (0, 0)
    buffer.write_text('{"a": 1}\n{"b": 2}\n{"c": ')  # the last line is still being written
    count, end = new_changes(buffer, 0)
    assert (count, end) == (2, len('{"a": 1}\n{"b": 2}\n'))
    assert new_changes(buffer, end) == (0, end)
    buffer.write_text('{"x": 1}\n')  # replaced by a shorter buffer: all of it is new
    assert new_changes(buffer, end)[0] == 1


def test_each_trigger_fires_at_its_threshold_and_zero_turns_it_off(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    config = CTConfig.model_validate(
        {"triggers": {"new_changes": 2, "approved_feedback": 1, "schedule_hours": 24, "min_ratings": 3}}
    )
    now = time.time()
    state = CTState(last_cycle_at=now - 3600)
    assert not any(_fired(settings, config, state, now).values())
    assert _fired(settings, config, CTState(), now)["schedule"], "never run: the schedule fires"
    assert _fired(settings, config, CTState(last_cycle_at=now - 25 * 3600), now)["schedule"]

    settings.staging_file.parent.mkdir(parents=True)
    settings.staging_file.write_text('{"what": "files_changed"}\n' * 2)
    assert _fired(settings, config, state, now)["new_data"]
    off = config.model_copy(update={"triggers": config.triggers.model_copy(update={"new_changes": 0})})
    assert not _fired(settings, off, state, now)["new_data"]

    with FeedbackStore(settings.feedback_db) as store:
        for n, rating in enumerate(["down", "down", "up"]):
            qid = f"{n:032x}"
            store.log_query(qid, "q?", {"answer": "a", "sources": []})
            store.record(Feedback(qid, rating, correction="better" if n == 0 else ""))
        store.decide(f"{0:032x}", "approved")
    fired = _fired(settings, config, state, now)
    assert fired["degradation"], "2 of 3 ratings are thumbs-down, above 0.3"
    assert fired["feedback"]
    assert not _fired(settings, config, state.model_copy(update={"approved_seen": 1}), now)["feedback"]


def _pair(n: int) -> QAPair:
    return QAPair(
        id=f"feedback-{n}",
        category="user_correction",
        question=f"question {n}?",
        answer=f"answer {n}",
        context="",
        source=SourceRef(kind="feedback", chunk_id=f"c{n}"),
        generator="human-review",
        created_at="2026-01-01T00:00:00+00:00",
    )


def test_dataset_versions_are_kept_by_hash_and_corrections_extend_the_train_split(tmp_path: Path) -> None:
    built = tiny_dataset(tmp_path / "build")
    versions = DatasetVersions(tmp_path / "datasets")
    manifest, _ = load_dataset(built)
    first_dir = versions.scratch()
    for f in built.iterdir():
        (first_dir / f.name).write_bytes(f.read_bytes())
    first, new = versions.publish(first_dir, manifest)
    assert new and first.name == manifest.dataset_hash[:16]

    again = versions.scratch()
    for f in built.iterdir():
        (again / f.name).write_bytes(f.read_bytes())
    same, new = versions.publish(again, manifest)
    assert same == first and not new and len(versions.all()) == 1

    grown = versions.scratch()
    for f in built.iterdir():
        (grown / f.name).write_bytes(f.read_bytes())
    extended = add_pairs(grown, [_pair(1), _pair(2)], BuildConfig())
    assert extended.records == manifest.records + 2 and extended.dataset_hash != manifest.dataset_hash
    assert add_pairs(grown, [_pair(1)], BuildConfig()) == extended, "the same correction is added once"
    second, new = versions.publish(grown, extended, previous=manifest.dataset_hash)
    assert new and first.is_dir() and second.is_dir()
    assert [v["dataset_hash"] for v in versions.all()] == [manifest.dataset_hash, extended.dataset_hash]
    assert versions.latest()["previous"] == manifest.dataset_hash
    _, splits = load_dataset(second)
    assert {"feedback-1", "feedback-2"} <= {p.id for p in splits["train"]}


def test_the_checked_in_ct_yaml_is_the_defaults_and_a_bad_one_is_one_sentence(tmp_path: Path) -> None:
    assert load_ct_config(ROOT / "ops" / "ct" / "ct.yaml") == CTConfig()
    bad = tmp_path / "ct.yaml"
    bad.write_text("triggers:\n  new_changes: -1\n")
    with pytest.raises(UserError, match=r"^CT config .* is invalid: triggers.new_changes: .*\.$"):
        load_ct_config(bad)
    with pytest.raises(UserError, match="does not exist"):
        load_ct_config(tmp_path / "missing.yaml")


def test_without_a_deployed_release_the_canary_commands_are_printed(tmp_path: Path) -> None:
    said: list[str] = []
    outcome = hand_to_canary(Settings(data_dir=tmp_path), CTConfig().release, "7", said.append)
    assert outcome["action"] == "printed"
    assert "  tqa release deploy --env canary --version 7" in said
    assert "  tqa release canary --steps 5,25,50,100 --interval 60" in said
    on = CTConfig().release.model_copy(update={"canary": "on"})
    with pytest.raises(UserError, match="nothing serves production"):
        hand_to_canary(Settings(data_dir=tmp_path), on, "7", said.append)
    assert json.dumps(outcome)
