"""Dataset versions kept side by side: `<root>/<hash16>/` per build, an append-only log, and the current one.

Continuous training builds a new version from the index (plus approved corrections) into a scratch directory,
then publishes it under its hash. Older versions stay on disk and in `versions.jsonl`, so any MLflow run that
names a dataset hash can be reproduced from the directory of that name.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ml.dataset.build import BuildConfig, dataset_hash
from ml.dataset.checks import SPLIT_FILES, load_dataset, write_jsonl
from ml.dataset.types import Manifest, QAPair
from ml.dataset.validate import overlaps_held_out


def add_pairs(directory: Path, extra: list[QAPair], config: BuildConfig) -> Manifest:
    """Add `extra` train pairs (feedback) to the dataset in `directory`; rewrites files and manifest.

    Pairs whose id is already in the dataset are left out, so adding the same corrections twice changes nothing;
    pairs that overlap the eval split (its questions or sources) stay out of training and are counted in the
    manifest's `rejected` as `overlaps_eval`.
    """
    manifest, splits = load_dataset(directory)
    known = {p.id for pairs in splits.values() for p in pairs}
    fresh, overlapping = overlaps_held_out([p for p in extra if p.id not in known], splits["eval"])
    new = [p.model_copy(update={"split": "train"}) for p in fresh]
    rejected = dict(manifest.rejected)
    if overlapping:
        rejected["overlaps_eval"] = rejected.get("overlaps_eval", 0) + len(overlapping)
    if not new:
        if overlapping:
            manifest = manifest.model_copy(update={"rejected": dict(sorted(rejected.items()))})
            (directory / "manifest.json").write_text(manifest.model_dump_json(indent=2) + "\n")
        return manifest
    splits["train"] = sorted(splits["train"] + new, key=lambda p: p.id)
    for split, name in SPLIT_FILES.items():
        write_jsonl(directory / name, splits[split])
    every = [p for pairs in splits.values() for p in pairs]
    counts = {split: dict(sorted(Counter(p.category for p in splits[split]).items())) for split in SPLIT_FILES}
    updated = manifest.model_copy(
        update={
            "dataset_hash": dataset_hash(every, config),
            "records": len(every),
            "counts": counts,
            "by_source_kind": dict(sorted(Counter(p.source.kind for p in every).items())),
            "rejected": dict(sorted(rejected.items())),
            "files": {n: hashlib.sha256((directory / n).read_bytes()).hexdigest() for n in SPLIT_FILES.values()},
        }
    )
    (directory / "manifest.json").write_text(updated.model_dump_json(indent=2) + "\n")
    return updated


class DatasetVersions:
    """The versions under `root`: published by hash, listed in `versions.jsonl`, newest last."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.log = self.root / "versions.jsonl"

    def scratch(self) -> Path:
        """An empty directory to build the next version in."""
        path = self.root / ".building"
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path

    def all(self) -> list[dict[str, Any]]:
        if not self.log.is_file():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]

    def latest(self) -> dict[str, Any] | None:
        versions = self.all()
        return versions[-1] if versions else None

    def publish(self, built: Path, manifest: Manifest, **info: Any) -> tuple[Path, bool]:
        """Move `built` to `<root>/<hash16>` and log it; returns its directory and whether it is new.

        A build equal to an existing version (same hash) keeps the existing directory and is not logged twice.
        """
        target = self.root / manifest.dataset_hash[:16]
        if target.exists():
            shutil.rmtree(built, ignore_errors=True)
            return target, False
        os.replace(built, target)
        record = {
            "dataset_hash": manifest.dataset_hash,
            "path": str(target),
            "records": manifest.records,
            "train": sum(manifest.counts.get("train", {}).values()),
            "eval": sum(manifest.counts.get("eval", {}).values()),
            "published_at": datetime.now(UTC).isoformat(timespec="seconds"),
            **info,
        }
        with self.log.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, sort_keys=True) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        return target, True
