"""`tqa dataset build|check`: build a versioned QA dataset from the index and check one."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ml.settings import Settings
from ops.cli._io import console, print_json


def build(
    out: Annotated[Path | None, typer.Option(help="Output directory (default: <data dir>/dataset).")] = None,
    self_instruct: Annotated[
        int, typer.Option(help="Paraphrase N questions through the OpenAI-compatible endpoint at TQA_LLM_URL.")
    ] = 0,
    eval_fraction: Annotated[float, typer.Option(help="Share of files (and newest history) held out for eval.")] = 0.2,
) -> None:
    """Rule-based (and optionally self-instruct) QA pairs from every indexed chunk: validated, split, hashed."""
    from ml.dataset.build import BuildConfig, build_from_index

    settings = Settings()
    target = out or settings.data_dir / "dataset"
    result = build_from_index(
        settings, target, BuildConfig(eval_fraction=eval_fraction, self_instruct=self_instruct), say=console.print
    )
    m = result.manifest
    console.print(f"[green]Wrote[/] {m.records} pairs to {target} (hash {m.dataset_hash[:16]}).")
    print_json(m.model_dump(mode="json"), indent=2)


def check(
    directory: Annotated[Path, typer.Argument(help="A directory `tqa dataset build` wrote.")],
    trace: Annotated[bool, typer.Option(help="Also check every source against the configured index.")] = True,
) -> None:
    """Schema, traceability to the index and train/eval leakage; exit code 1 when any check fails."""
    from ml.dataset.checks import leakage_problems, load_dataset, schema_problems, traceability_problems

    _, splits = load_dataset(directory)
    problems = {"schema": schema_problems(directory), "leakage": leakage_problems(splits["train"], splits["eval"])}
    if trace:
        from ml.index.weaviate_index import WeaviateIndex

        with WeaviateIndex.open(Settings()) as index:
            problems["traceability"] = traceability_problems(
                [p for pairs in splits.values() for p in pairs], index.iter_chunks()
            )
    print_json({k: {"problems": len(v), "first": v[:5]} for k, v in problems.items()}, indent=2)
    if any(problems.values()):
        raise typer.Exit(1)
