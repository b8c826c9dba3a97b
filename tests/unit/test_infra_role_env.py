"""Every variable the tqa_serving role writes for the services is one the code reads (no silently ignored names)."""

from __future__ import annotations

import re
from pathlib import Path

from ml.settings import Settings
from serving.qwen_runner import RunnerSettings

TEMPLATE = Path(__file__).resolve().parents[2] / "ansible/roles/tqa_serving/templates/tqa.env.j2"
# Read by libraries, not by our settings: MLflow's client login, Hugging Face's cache, telemetry switches.
LIBRARY_VARIABLES = {
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "HF_HOME",
    "BENTOML_DO_NOT_TRACK",
    "DO_NOT_TRACK",
}


def _written() -> set[str]:
    return set(re.findall(r"^([A-Z][A-Z0-9_]*)=", TEMPLATE.read_text(), flags=re.M))


def test_every_tqa_variable_is_a_setting_of_the_service_or_the_runner() -> None:
    service = {f"TQA_{name.upper()}" for name in Settings.model_fields}
    runner = {f"TQA_RUNNER_{name.upper()}" for name in RunnerSettings.model_fields}
    unknown = {v for v in _written() - LIBRARY_VARIABLES if v not in service | runner}
    assert unknown == set()


def test_the_service_talks_to_the_runner_and_the_cluster_it_fills() -> None:
    written = _written()
    assert {"TQA_LLM_URL", "TQA_LLM_MODEL", "TQA_RUNNER_MODEL", "TQA_DATA_DIR", "TQA_REPLICATION_FACTOR"} <= written
    text = TEMPLATE.read_text()
    # The runner serves the model the service asks for.
    assert "TQA_LLM_MODEL={{ tqa_serving_model }}" in text and "TQA_RUNNER_MODEL={{ tqa_serving_model }}" in text
    assert "TQA_LLM_URL=http://127.0.0.1:{{ tqa_serving_runner_port }}/v1" in text
