"""Builds a dataset version: drafts from chunks, optional self-instruct, validation, split, JSONL and manifest."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ml.dataset.checks import SPLIT_FILES, write_jsonl
from ml.dataset.rules import GENERATOR, generate, to_pair
from ml.dataset.types import Manifest, QAPair
from ml.dataset.validate import assign_splits, validate
from ml.settings import Settings
from ml.types import Chunk

Say = Callable[[str], None]


@dataclass(frozen=True)
class BuildConfig:
    """Generator settings; all of them are part of the dataset hash."""

    eval_fraction: float = 0.2
    min_grounding: float = 0.9
    self_instruct: int = 0


@dataclass
class BuildResult:
    directory: Path
    manifest: Manifest
    pairs: list[QAPair]


def dataset_hash(pairs: list[QAPair], config: BuildConfig) -> str:
    """sha256 over the records without `created_at` (the build time) and over the generator settings."""
    digest = hashlib.sha256(json.dumps(config.__dict__, sort_keys=True).encode())
    for pair in sorted(pairs, key=lambda p: p.id):
        record = pair.model_dump(mode="json", exclude={"created_at"})
        digest.update(json.dumps(record, sort_keys=True).encode() + b"\n")
    return digest.hexdigest()


def build_dataset(
    chunks: Iterable[Chunk],
    out_dir: Path,
    corpus: dict[str, str | int],
    config: BuildConfig | None = None,
    paraphrase: Callable[[list[QAPair]], list[QAPair]] | None = None,
    say: Say = lambda _: None,
) -> BuildResult:
    """Generate, validate, split and write `train.jsonl`, `eval.jsonl` and `manifest.json` under `out_dir`."""
    config = config or BuildConfig()
    built_at = datetime.now(UTC).isoformat(timespec="seconds")
    drafts = list(generate(chunks))
    say(f"{len(drafts)} rule-based drafts")
    pairs = [to_pair(d, built_at) for d in drafts]
    if paraphrase is not None:
        extra = paraphrase(pairs)
        say(f"{len(extra)} self-instruct paraphrases")
        pairs += extra
    # Sorted first, so which of two duplicates is kept never depends on the order chunks were read in.
    valid, rejected = validate(sorted(pairs, key=lambda p: p.id), config.min_grounding)
    final = sorted(assign_splits(valid, config.eval_fraction), key=lambda p: p.id)
    out_dir.mkdir(parents=True, exist_ok=True)
    for split, name in SPLIT_FILES.items():
        write_jsonl(out_dir / name, [p for p in final if p.split == split])
    counts: dict[str, dict[str, int]] = {}
    for split in SPLIT_FILES:
        counter = Counter(p.category for p in final if p.split == split)
        counts[split] = dict(sorted(counter.items()))
    manifest = Manifest(
        dataset_hash=dataset_hash(final, config),
        records=len(final),
        counts=counts,
        by_source_kind=dict(sorted(Counter(p.source.kind for p in final).items())),
        rejected=dict(sorted(rejected.items())),
        corpus=corpus,
        generator={"rules": GENERATOR, **config.__dict__},
        files={name: hashlib.sha256((out_dir / name).read_bytes()).hexdigest() for name in SPLIT_FILES.values()},
        built_at=built_at,
    )
    (out_dir / "manifest.json").write_text(manifest.model_dump_json(indent=2) + "\n")
    return BuildResult(out_dir, manifest, final)


def build_from_index(
    settings: Settings, out_dir: Path, config: BuildConfig | None = None, say: Say = lambda _: None
) -> BuildResult:
    """Build from every chunk in the configured index (so every pair is traceable to what is indexed)."""
    from ml.dataset import self_instruct
    from ml.errors import NoIndexError
    from ml.index.state import StateStore
    from ml.index.weaviate_index import WeaviateIndex

    config = config or BuildConfig()
    corpus: dict[str, str | int] = {}
    if settings.state_db.exists():
        state = StateStore(settings.state_db)
        try:
            for key in ("corpus", "corpus_version", "commit", "embedding_model"):
                corpus[key] = state.get_meta(key) or ""
        finally:
            state.close()
    paraphrase = None
    if config.self_instruct:
        reason = self_instruct.skip_reason(settings)
        if reason:
            say(reason)
            config = BuildConfig(config.eval_fraction, config.min_grounding, 0)
        else:
            paraphrase = self_instruct.paraphraser(settings, config.self_instruct)
    with WeaviateIndex.open(settings) as index:
        if not index.exists():
            raise NoIndexError(settings.data_dir)
        chunks = list(index.iter_chunks())
    corpus["chunks"] = len(chunks)
    say(f"{len(chunks)} chunks read from the index")
    result = build_dataset(chunks, out_dir, corpus, config, paraphrase, say)
    return add_feedback(settings, result, config, say)


def add_feedback(
    settings: Settings, result: BuildResult, config: BuildConfig, say: Say = lambda _: None
) -> BuildResult:
    """Add the feedback pairs `tqa feedback export` staged to the training split of a built dataset.

    Those that overlap held-out questions or sources stay out (see `ml.dataset.validate.overlaps_held_out`).
    """
    from ml.dataset.checks import load_dataset
    from ml.dataset.versions import add_pairs
    from ml.index.staging import feedback_buffer, staged_pairs

    staged = [QAPair.model_validate(p) for p in staged_pairs(feedback_buffer(settings.staging_file)).values()]
    if not staged:
        return result
    manifest = add_pairs(result.directory, staged, config)
    say(f"{len(staged)} feedback pairs staged, {manifest.rejected.get('overlaps_eval', 0)} kept out (overlap eval)")
    _, splits = load_dataset(result.directory)
    pairs = sorted([p for ps in splits.values() for p in ps], key=lambda p: p.id)
    return BuildResult(result.directory, manifest, pairs)
