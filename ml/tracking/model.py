"""The answering pipeline as an MLflow pyfunc model: settings + index reference + answerer, loaded as `QA`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow.pyfunc

from ml.settings import Settings

# What defines the pipeline; secrets (API keys, tokens) are never written into a model.
PIPELINE_FIELDS = (
    "data_dir",
    "weaviate_url",
    "weaviate_grpc_url",
    "weaviate_port",
    "weaviate_grpc_port",
    "collection",
    "embedding_model",
    "embedding_max_tokens",
    "embedding_backend",
    "embedding_int8",
    "ranker",
    "alpha",
    "candidates",
    "abstain_threshold",
    "answerer",
    "llm_url",
    "llm_model",
    "llm_max_tokens",
    "llm_temperature",
    "llm_sources",
    "bento",
    "fault_error_share",
    "fault_delay_s",
)


def pipeline_settings(settings: Settings) -> dict[str, Any]:
    """The settings fields that define the pipeline, JSON-ready (the data dir made absolute)."""
    values = settings.model_dump(mode="json", include=set(PIPELINE_FIELDS))
    values["data_dir"] = str(Path(settings.data_dir).resolve())
    return values


class QAPipelineModel(mlflow.pyfunc.PythonModel):
    """predict(questions) -> one answer dict (text, sources, abstained, timings) per question."""

    def load_context(self, context: Any) -> None:
        from ml.pipeline import QA

        values = json.loads(Path(context.artifacts["settings"]).read_text())
        self.qa = QA(Settings(**values))

    # No type hints on predict: MLflow would turn them into a schema that rejects a plain list of questions.
    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        if isinstance(model_input, str):
            questions = [model_input]
        elif hasattr(model_input, "columns"):
            column = "question" if "question" in model_input.columns else model_input.columns[0]
            questions = [str(q) for q in model_input[column]]
        else:
            questions = [str(q) for q in model_input]
        return [self.qa.ask(q).model_dump(mode="json") for q in questions]


def log_pipeline(settings: Settings, work_dir: Path, name: str = "qa") -> Any:
    """Log the pipeline into the active run; returns MLflow's ModelInfo."""
    work_dir.mkdir(parents=True, exist_ok=True)
    settings_file = work_dir / "pipeline_settings.json"
    settings_file.write_text(json.dumps(pipeline_settings(settings), indent=2, sort_keys=True))
    return mlflow.pyfunc.log_model(
        name=name,
        python_model=QAPipelineModel(),
        artifacts={"settings": str(settings_file)},
        # Listed, not inferred: inference would import and run the model in a subprocess.
        pip_requirements=["transformers-qa"],
    )
