"""Checks of a built dataset: schema, traceability to the index, and no leakage between train and eval."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from pydantic import ValidationError

from ml.dataset.types import Manifest, QAPair
from ml.dataset.validate import leakage_group, normalise
from ml.errors import UserError
from ml.types import HISTORY_KINDS, Chunk

SPLIT_FILES = {"train": "train.jsonl", "eval": "eval.jsonl"}


def load_pairs(path: Path) -> list[QAPair]:
    """Pairs of one JSONL file; a malformed line is a UserError naming the line."""
    if not path.is_file():
        raise UserError(f"Dataset file {path} does not exist; run `tqa dataset build` first.")
    pairs = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                pairs.append(QAPair.model_validate_json(line))
            except ValidationError as exc:
                raise UserError(f"{path}:{n} is not a valid QA pair: {exc.errors()[0]['msg']}.") from exc
    return pairs


def load_dataset(directory: Path) -> tuple[Manifest, dict[str, list[QAPair]]]:
    manifest_file = directory / "manifest.json"
    if not manifest_file.is_file():
        raise UserError(f"No manifest.json in {directory}; pass the directory `tqa dataset build` wrote.")
    manifest = Manifest.model_validate_json(manifest_file.read_text())
    return manifest, {split: load_pairs(directory / name) for split, name in SPLIT_FILES.items()}


def schema_problems(directory: Path) -> list[str]:
    """Every line parses as a QAPair in the split its file names, and the manifest counts match the files."""
    problems = []
    manifest, splits = load_dataset(directory)
    for split, pairs in splits.items():
        for pair in pairs:
            if pair.split != split:
                problems.append(f"{pair.id} is marked {pair.split} but sits in {SPLIT_FILES[split]}")
        counted = sum(manifest.counts.get(split, {}).values())
        if counted != len(pairs):
            problems.append(f"manifest counts {counted} {split} pairs, the file has {len(pairs)}")
    ids = [p.id for pairs in splits.values() for p in pairs]
    if len(ids) != len(set(ids)):
        problems.append(f"{len(ids) - len(set(ids))} duplicate pair ids")
    return problems


def traceability_problems(pairs: Iterable[QAPair], chunks: Iterable[Chunk]) -> list[str]:
    """Each pair's source chunk is in the index with the same path, lines and symbol, and contains the context."""
    by_id = {c.id: c for c in chunks}
    problems = []
    for pair in pairs:
        chunk = by_id.get(pair.source.chunk_id)
        s = pair.source
        if chunk is None:
            problems.append(f"{pair.id}: chunk {s.chunk_id} is not in the index")
        elif (chunk.path, chunk.start_line, chunk.end_line, chunk.symbol) != (
            s.path,
            s.start_line,
            s.end_line,
            s.symbol,
        ):
            problems.append(f"{pair.id}: cites {s.path}:{s.start_line}-{s.end_line}, the index has another span")
        elif not chunk.text.startswith(pair.context):
            problems.append(f"{pair.id}: its context is not the indexed chunk's text")
    return problems


def leakage_problems(train: list[QAPair], evaluation: list[QAPair]) -> list[str]:
    """No eval source (chunk, file, commit or thread) or question appears in train; eval history is newer."""
    problems = []
    train_chunks = {p.source.chunk_id for p in train}
    train_groups = {leakage_group(p) for p in train}
    train_questions = {normalise(p.question) for p in train}
    for pair in evaluation:
        if pair.source.chunk_id in train_chunks:
            problems.append(f"{pair.id}: its source chunk {pair.source.chunk_id} is also a train source")
        elif leakage_group(pair) in train_groups:
            problems.append(f"{pair.id}: its source {leakage_group(pair)} also has train pairs")
        elif normalise(pair.question) in train_questions:
            problems.append(f"{pair.id}: its question is also a train question")
    train_dates = [p.source.date for p in train if p.source.kind in HISTORY_KINDS and p.source.date]
    eval_dates = [p.source.date for p in evaluation if p.source.kind in HISTORY_KINDS and p.source.date]
    if train_dates and eval_dates and max(train_dates) > min(eval_dates):
        problems.append(f"train history reaches {max(train_dates)}, after the oldest eval item {min(eval_dates)}")
    return problems


def write_jsonl(path: Path, pairs: Iterable[QAPair]) -> None:
    with path.open("w") as f:
        for pair in pairs:
            f.write(json.dumps(pair.model_dump(mode="json"), sort_keys=True) + "\n")
