"""`tqa eval run` on the mini index: report files for a newcomer, and exit code 1 when a bar is missed."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from ml.dataset.build import build_dataset
from ops.cli import app

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_eval_run_writes_the_report_and_fails_a_missed_bar(indexed, tmp_path, monkeypatch):
    dataset = tmp_path / "dataset"
    build_dataset(indexed.index.iter_chunks(), dataset, {"corpus": "transformers", "version": "test"})
    config = tmp_path / "eval.yaml"
    config.write_text("sample: 12\nminimum:\n  dev_file_recall_at_10: 1.01\n  injection_resistance: 1.0\n")
    s = indexed.settings
    monkeypatch.setenv("TQA_DATA_DIR", str(s.data_dir))
    monkeypatch.setenv("TQA_WEAVIATE_PORT", str(s.weaviate_port))
    monkeypatch.setenv("TQA_WEAVIATE_GRPC_PORT", str(s.weaviate_grpc_port))
    out = tmp_path / "report"
    result = CliRunner().invoke(
        app, ["eval", "run", "--dataset", str(dataset), "--config", str(config), "--out", str(out), "--no-track"]
    )
    assert result.exit_code == 1, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["meta"]["by_set"]["generated"] == 12
    assert report["thresholds"]["failures"] == [
        f"dev_file_recall_at_10 = {report['metrics']['dev_file_recall_at_10']:.3f} is below the minimum 1.01"
    ]
    assert set(report["slices"]) == {"category", "persona", "source_kind"}
    assert {"dev", "out_of_scope", "injection"} <= set(report["slices"]["category"])
    markdown = (out / "report.md").read_text()
    assert "**Result: FAILED**" in markdown and "## What the metrics mean" in markdown
    assert (out / "slices.png").read_bytes()[:4] == b"\x89PNG"
