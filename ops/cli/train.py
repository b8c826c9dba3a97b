"""`tqa train`: fit the learned parts of the pipeline on the configured index."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ml.settings import Settings
from ops.cli._io import console


def ranker(
    docstrings: Annotated[
        int, typer.Option(help="Docstring-derived training questions besides the dev tuning half.")
    ] = 400,
    out: Annotated[
        Path | None, typer.Option(help="Where to write ranker.json and confidence.json (default: the data dir).")
    ] = None,
) -> None:
    """Train the re-ranker and the calibrated confidence on the tuning half of the dev set (never the test half)."""
    from ml.train.ranker import train_all

    written = train_all(Settings(), out, docstrings, say=console.print)
    console.print(f"[green]Wrote[/] {written / 'ranker.json'} and {written / 'confidence.json'}.")


def generator(
    config: Annotated[
        Path, typer.Option(help="Training YAML (ml/train/configs/: tiny-cpu, qwen14b-lora, qwen14b-qlora).")
    ],
    tiny: Annotated[
        bool, typer.Option(help="The same run shrunk to seconds on CPU (a dozen steps, few examples).")
    ] = False,
    base_model: Annotated[str | None, typer.Option(help="Base model name or directory (overrides the config).")] = None,
    dataset: Annotated[Path | None, typer.Option(help="Dataset directory (default: <data dir>/dataset).")] = None,
    out: Annotated[
        Path | None, typer.Option(help="Where the adapter is written (default: <data dir>/generator).")
    ] = None,
    register: Annotated[
        bool, typer.Option(help="Register the adapter through the gate (moves `staging` if it passes).")
    ] = True,
) -> None:
    """LoRA/QLoRA fine-tuning of the generator on the train split; dev loss, MLflow run, gated registration."""
    from ml.train.generator import load_config, train_generator

    settings = Settings()
    cfg = load_config(config)
    if tiny:
        cfg = cfg.tiny()
    result = train_generator(
        settings,
        cfg,
        dataset or settings.data_dir / "dataset",
        out or settings.data_dir / "generator",
        base_model=base_model,
        say=console.print,
    )
    console.print(f"MLflow run {result.run_id}; adapter in {result.adapter_dir}.")
    if register and result.run_id:
        from ml.tracking.generator import register_adapter

        decision = register_adapter(settings, result.run_id, cfg.registered_model, cfg.min_eval_loss_reduction)
        verdict = "[green]accepted: staging ->" if decision.accepted else "[red]refused: staging stays, not"
        console.print(f"{verdict} {decision.model} v{decision.version}[/] ({decision.reason}).")
        if not decision.accepted:
            raise typer.Exit(1)
