"""The data tests fail on a planted leak: an eval pair copied into train."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ml.dataset.build import build_dataset
from ml.types import Chunk

ROOT = Path(__file__).resolve().parents[2]


def _dataset(out: Path) -> Path:
    chunks = []
    for i in range(30):
        text = f'def fn{i}(a, b={i}):\n    """Return the {i}th power of a plus b, rounded down."""\n    return a'
        chunks.append(
            Chunk(
                id=f"id{i:03d}",
                kind="function",
                text=text,
                path=f"transformers/m{i % 8}.py",
                symbol=f"fn{i}",
                start_line=1,
                end_line=3,
                signature=f"def fn{i}(a, b={i}):",
            )
        )
    build_dataset(chunks, out, {"corpus": "t"})
    return out


def _leakage_test(dataset: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/data/test_dataset.py::test_no_leakage",
            "--dataset",
            str(dataset),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_leakage_test_passes_clean_and_fails_on_a_planted_leak(tmp_path):
    clean = _dataset(tmp_path / "clean")
    assert _leakage_test(clean).returncode == 0

    leaky = _dataset(tmp_path / "leaky")
    eval_line = (leaky / "eval.jsonl").read_text().splitlines()[0]
    with (leaky / "train.jsonl").open("a") as f:
        f.write(eval_line.replace('"split": "eval"', '"split": "train"') + "\n")
    result = _leakage_test(leaky)
    assert result.returncode == 1, result.stdout
    assert "also a train source" in result.stdout
