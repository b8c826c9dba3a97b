"""Writes an evaluation report three ways: JSON for machines, Markdown for people, one PNG of metrics by slice."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CHART_METRICS = ("symbol_recall_at_5", "answer_f1", "must_mention", "citation_support", "abstain_rate")
EXPLAINED = {
    "dev_file_recall_at_k / dev_symbol_recall_at_k": "share of hand-written dev questions whose gold file / symbol "
    "is in the top k hits (symbol: a hit whose line range holds the definition)",
    "dev_*_mrr_at_10": "mean of 1/rank of the first correct hit in the top 10",
    "gen_*": "the same on the generated eval pairs (gold = the chunk the pair was generated from)",
    "answer_f1 / answer_em": "token F1 and exact match of the answer (citations and location labels removed) against "
    "the generated reference answer, SQuAD normalisation; an abstention scores 0",
    "must_mention": "share of the terms a correct answer names (the symbol, argument names) that the answer contains",
    "citation_support": "share of cited answer sentences whose cited line span, read from the corpus, contains "
    "their identifiers and most of their words",
    "abstention_precision / abstention_recall": "out-of-scope questions are the positives: how many abstentions were "
    "right, and how many out-of-scope questions were declined",
    "injection_resistance": "share of prompt-injection questions whose answer does not contain the injected canary",
    "latency_p50_ms / latency_p95_ms": "retrieval plus answer time per question on this machine",
}


def write_report(report: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """report.json, report.md and slices.png under `out_dir`; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "report.json", "markdown": out_dir / "report.md", "chart": out_dir / "slices.png"}
    paths["json"].write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    paths["markdown"].write_text(markdown(report, chart_name=paths["chart"].name))
    chart(report, paths["chart"])
    return paths


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.0f}"
    return str(value)


def markdown(report: dict[str, Any], chart_name: str = "slices.png") -> str:
    meta, metrics = report["meta"], report["metrics"]
    retrieval = meta["retrieval"]
    gate = report["thresholds"]
    lines = [
        "# Transformers QA: offline evaluation",
        "",
        f"**Result: {'PASSED' if gate['passed'] else 'FAILED'}** the configured thresholds. "
        f"{meta['items']} questions in {meta['seconds']} s against `{meta['corpus']['name']} "
        f"{meta['corpus']['version']}` ({meta['index']['chunks']} indexed chunks).",
        "",
        "## What was evaluated",
        "",
        f"- Answerer: `{meta['answerer']}`; embeddings: `{meta['embedding_model']}`; abstain threshold "
        f"{meta['abstain_threshold']}.",
        f"- Retrieval: hybrid alpha {retrieval['alpha']} (0 = BM25 only, 1 = dense only), {retrieval['candidates']} "
        f"candidates, symbol boost {retrieval['symbol_boost']}.",
        "- Questions: " + ", ".join(f"{n} {name.replace('_', '-')}" for name, n in meta["by_set"].items()) + ".",
    ]
    if meta["dataset"]:
        lines.append(
            f"- Generated set: dataset `{meta['dataset']['dataset_hash'][:12]}` ({meta['dataset']['records']} pairs)."
        )
    lines += ["", "## Headline metrics", "", "| metric | value | bar |", "| --- | ---: | --- |"]
    config = meta["config"]
    for name, value in metrics.items():
        bar = ""
        if name in config["minimum"]:
            bar = f">= {config['minimum'][name]}"
        elif name in config["maximum"]:
            bar = f"<= {config['maximum'][name]}"
        lines.append(f"| {name} | {_fmt(value)} | {bar} |")
    if gate["failures"]:
        lines += ["", "### Missed bars", ""] + [f"- {f}" for f in gate["failures"]]
    lines += ["", "## By slice", "", f"![metrics by slice]({chart_name})", ""]
    for dim, values in report["slices"].items():
        columns = list(next(iter(values.values())))
        lines += [f"### By {dim.replace('_', ' ')}", "", "| " + dim + " | " + " | ".join(columns) + " |"]
        lines.append("| --- |" + " ---: |" * len(columns))
        for value, row in values.items():
            lines.append(f"| {value} | " + " | ".join(_fmt(row[c]) for c in columns) + " |")
        lines.append("")
    if report["worst"]:
        lines += ["## Lowest-scoring generated questions", ""]
        for w in report["worst"]:
            answer = " ".join(w["answer"].split())[:200]
            lines += [
                f"- **{w['question']}** (F1 {_fmt(w['f1'])})",
                f"  - reference: {w['reference'][:200]}",
                f"  - answer: {answer}",
            ]
        lines.append("")
    lines += ["## What the metrics mean", ""] + [f"- **{k}**: {v}." for k, v in EXPLAINED.items()]
    return "\n".join(lines) + "\n"


def chart(report: dict[str, Any], path: Path) -> None:
    """One figure, one panel per slice dimension: grouped bars of the main metrics per slice value."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    dims = list(report["slices"])
    fig, axes = plt.subplots(len(dims), 1, figsize=(12, 3.6 * len(dims)), squeeze=False)
    width = 0.8 / len(CHART_METRICS)
    for ax, dim in zip(axes[:, 0], dims, strict=True):
        values = report["slices"][dim]
        labels = [f"{v}\n(n={row['n']})" for v, row in values.items()]
        x = np.arange(len(labels))
        for i, metric in enumerate(CHART_METRICS):
            heights = [row.get(metric) or 0.0 for row in values.values()]
            ax.bar(x + (i - len(CHART_METRICS) / 2 + 0.5) * width, heights, width, label=metric)
        ax.set_xticks(x, labels, fontsize=8)
        ax.set_ylim(0, 1.05)
        ax.set_title(f"by {dim.replace('_', ' ')}")
        ax.grid(axis="y", alpha=0.3)
    axes[0, 0].legend(ncol=len(CHART_METRICS), fontsize=8, loc="upper center", bbox_to_anchor=(0.5, 1.35))
    fig.suptitle("Transformers QA: metrics by slice", y=1.0)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
