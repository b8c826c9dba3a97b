"""Answer metrics, thresholds, the register gate and the report files."""

from __future__ import annotations

import pytest

from ml.errors import UserError
from ml.eval.answers import abstention_scores, citation_support, exact_match, mention_coverage, token_f1
from ml.eval.gate import EvalConfig, Gate, compare, load_config, threshold_failures
from ml.eval.report import write_report


def test_f1_and_exact_match_ignore_citations_and_location_labels():
    answer = "`BitsAndBytesConfig` in transformers/utils/quantization_config.py:10-40: Loads a model in 4-bit. [1]"
    assert exact_match("Loads a model in 4-bit. [1]", "loads the model in 4-bit") == 1.0
    assert 0.5 < token_f1(answer, "Loads a model in 4-bit.") < 1.0
    assert token_f1("nothing shared", "Loads a model") == 0.0


def test_mention_coverage_and_abstention():
    assert mention_coverage("use `BitsAndBytesConfig`", ["BitsAndBytesConfig", "load_in_4bit"]) == 0.5
    assert mention_coverage("anything", []) is None
    scores = abstention_scores([True, True, False, False], [True, False, True, False])
    assert scores == {"abstention_precision": 0.5, "abstention_recall": 0.5}


def test_citation_support_reads_the_cited_span():
    answer = "`LlamaRMSNorm` in m.py:1-9: LlamaRMSNorm is equivalent to T5LayerNorm. [1]\nSee also `rotate_half` [2]"
    spans = {
        1: 'class LlamaRMSNorm(nn.Module):\n    """LlamaRMSNorm is equivalent to T5LayerNorm"""',
        2: "def other(): ...",
    }
    assert citation_support(answer, spans) == (1, 2)


def test_thresholds_and_gate():
    config = EvalConfig(minimum={"answer_f1": 0.3, "missing": 0.1}, maximum={"latency_p95_ms": 100})
    failures = threshold_failures({"answer_f1": 0.2, "latency_p95_ms": 50}, config)
    assert len(failures) == 2 and "answer_f1 = 0.200 is below the minimum 0.3" in failures
    gate = Gate(margins={"answer_f1": 0.0, "citation_support": -0.01})
    assert compare({"answer_f1": 0.4, "citation_support": 0.795}, {"answer_f1": 0.4, "citation_support": 0.8}, gate)[0]
    passed, rows = compare(
        {"answer_f1": 0.39, "citation_support": 0.9}, {"answer_f1": 0.4, "citation_support": 0.8}, gate
    )
    assert not passed and [r["passed"] for r in rows] == [False, True]


def test_packaged_config_loads_and_a_bad_one_is_a_user_error(tmp_path):
    assert load_config().sample == 500
    bad = tmp_path / "bad.yaml"
    bad.write_text("sample: -3\n")
    with pytest.raises(UserError, match="invalid"):
        load_config(bad)


def test_report_files(tmp_path):
    row = {
        "n": 3,
        "answer_f1": 0.5,
        "must_mention": 1.0,
        "citation_support": 0.8,
        "symbol_recall_at_5": 0.66,
        "abstain_rate": 0.0,
        "latency_p50_ms": 40.0,
    }
    report = {
        "meta": {
            "items": 3,
            "by_set": {"dev": 3},
            "seconds": 1.0,
            "corpus": {"name": "transformers", "version": "5"},
            "index": {"chunks": 10, "collection": "Chunk", "data_dir": "d"},
            "retrieval": {"alpha": 0.5, "candidates": 50, "symbol_boost": 0.3},
            "answerer": "extractive",
            "embedding_model": "m",
            "abstain_threshold": 0.5,
            "dataset": {},
            "config": EvalConfig().model_dump(),
        },
        "metrics": {"answer_f1": 0.5, "dev_file_recall_at_10": 0.4},
        "slices": {"category": {"dev": row, "code_purpose": {**row, "answer_f1": None}}, "persona": {"novice": row}},
        "thresholds": {"passed": False, "failures": ["dev_file_recall_at_10 = 0.400 is below the minimum 0.5"]},
        "worst": [],
    }
    paths = write_report(report, tmp_path)
    assert paths["chart"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = paths["markdown"].read_text()
    assert "**Result: FAILED**" in text and "### By category" in text and "| code_purpose |" in text
    from matplotlib import image

    height, width = image.imread(paths["chart"]).shape[:2]
    assert width > 800 and height > 400
