"""The Qwen runner: a BentoML service serving any causal LM behind an OpenAI-compatible chat completions API.

`bentoml serve serving.qwen_runner:QwenRunner --port 3001` (or `tqa serve-runner`). The model is loaded with
transformers (bf16 on GPU, fp32 on CPU) and batched by `TransformersEngine`; with vLLM installed and a GPU present,
vLLM serves instead. A LoRA adapter from `tqa train generator` (`TQA_RUNNER_ADAPTER`: a directory or an MLflow
`models:/` URI) is merged with peft on the transformers path and sent as a LoRA request on vLLM.
Routes: POST /v1/chat/completions (streaming and not), GET /v1/models, and BentoML's
/healthz, /readyz and /metrics (time-to-first-token, decode tokens/s, token counters, rejections).
"""

from __future__ import annotations

import os

# BentoML reports usage analytics unless told not to; the runner never phones home.
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")

import functools  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from collections.abc import AsyncIterator  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Literal  # noqa: E402

import bentoml  # noqa: E402
from fastapi import FastAPI, Request  # noqa: E402
from fastapi.exceptions import RequestValidationError  # noqa: E402
from fastapi.responses import JSONResponse, StreamingResponse  # noqa: E402
from pydantic import BaseModel, Field  # noqa: E402
from pydantic_settings import BaseSettings, SettingsConfigDict  # noqa: E402

from ml.errors import UserError  # noqa: E402
from ml.llm.engine import Engine, InputTooLong, QueueFull, RequestStats, SamplingParams, TokenEvent  # noqa: E402

logger = logging.getLogger(__name__)


class RunnerSettings(BaseSettings):
    """Configuration of the Qwen runner deployable, from `TQA_RUNNER_*` variables."""

    model_config = SettingsConfigDict(env_prefix="TQA_RUNNER_", env_file=".env", extra="ignore")

    environment: Literal["local", "staging", "canary", "production"] = "local"
    model: str = Field(default="Qwen/Qwen2.5-14B-Instruct", description="Hub name or local model directory.")
    served_model_name: str | None = Field(default=None, description="The `model` name clients see (default: model).")
    engine: Literal["auto", "transformers", "vllm"] = Field(
        default="auto", description="auto: vLLM when installed and a GPU is present, else transformers."
    )
    device: str = "auto"
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    random_weights: bool = Field(default=False, description="Build random weights from the config (benchmarks).")
    max_tokens_limit: int = Field(default=1024, ge=1, description="Largest `max_tokens` a request may ask for.")
    default_max_tokens: int = Field(default=256, ge=1)
    max_input_tokens: int = Field(default=6144, ge=16, description="Longest prompt accepted, in tokens.")
    max_batch_size: int = Field(default=8, ge=1, description="Requests decoded together.")
    max_queue: int = Field(default=16, ge=0, description="Requests waiting beyond the batch; more get 503.")
    batch_wait_ms: float = Field(default=10.0, ge=0, description="How long a batch waits for more requests.")
    retry_after_s: int = Field(default=1, ge=1, description="Retry-After sent with a 503.")
    torch_threads: int | None = Field(default=None, ge=1, description="CPU threads for torch (default: torch's).")
    adapter: str | None = Field(
        default=None,
        description="LoRA adapter: a directory, or models:/tqa-generator/<version>, models:/tqa-generator@<alias>, "
        "runs:/<run>/adapter fetched from MLflow (peft on transformers, a LoRA request on vLLM).",
    )
    mlflow_tracking_uri: str | None = Field(default=None, description="Where models:/ and runs:/ adapters come from.")
    quantization: Literal["none", "fp8", "awq", "gptq"] = Field(
        default="none", description="vLLM weight quantization (fp8 on the fly; awq/gptq need a quantized checkpoint)."
    )
    max_lora_rank: int = Field(default=64, ge=1, description="Largest adapter rank vLLM reserves room for.")

    @property
    def name(self) -> str:
        return self.served_model_name or self.model


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """The OpenAI chat completions request, with vLLM's `ignore_eos` and `min_tokens` extensions."""

    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    n: int = Field(default=1, ge=1, le=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    ignore_eos: bool = False
    min_tokens: int = Field(default=0, ge=0)


@functools.cache
def _metrics() -> dict[str, Any]:
    """Prometheus metrics, created once per process after BentoML has set up its multiprocess directory."""
    from prometheus_client import Counter, Histogram

    return {
        "ttft": Histogram(
            "tqa_runner_time_to_first_token_seconds",
            "Time from admission to the first output token.",
            buckets=(0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0, 30.0),
        ),
        "tps": Histogram(
            "tqa_runner_decode_tokens_per_second",
            "Output tokens per second of one request after its first token.",
            buckets=(1, 5, 10, 20, 40, 60, 80, 100, 150, 200, 400, 1000, 5000),
        ),
        "latency": Histogram(
            "tqa_runner_request_seconds",
            "Time from admission to the last token.",
            buckets=(0.1, 0.25, 0.5, 1.0, 1.5, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0),
        ),
        "output_tokens": Counter("tqa_runner_output_tokens", "Output tokens generated."),
        "prompt_tokens": Counter("tqa_runner_prompt_tokens", "Prompt tokens processed."),
        "rejected": Counter("tqa_runner_rejected_requests", "Requests refused before generation.", ["reason"]),
    }


def _record(stats: RequestStats) -> None:
    m = _metrics()
    m["prompt_tokens"].inc(stats.prompt_tokens)
    m["output_tokens"].inc(stats.completion_tokens)
    if stats.ttft_s is not None:
        m["ttft"].observe(stats.ttft_s)
    if stats.decode_tokens_per_s is not None:
        m["tps"].observe(stats.decode_tokens_per_s)
    if stats.finished is not None:
        m["latency"].observe(stats.finished - stats.submitted)


def _error(status: int, message: str, kind: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "code": status}}, status, headers=headers)


def build_engine(settings: RunnerSettings) -> Engine:
    """vLLM when asked for (or `auto` and available), else the batching transformers engine."""
    from ml.llm.engine import TransformersEngine, VLLMEngine, vllm_available

    if settings.torch_threads:
        import torch

        torch.set_num_threads(settings.torch_threads)
    use_vllm = settings.engine == "vllm" or (settings.engine == "auto" and vllm_available())
    adapter = _adapter_dir(settings)
    if settings.quantization != "none" and not use_vllm:
        raise UserError(
            f"Quantization {settings.quantization} is served by vLLM on a GPU; this runner uses transformers."
        )
    if use_vllm:
        return VLLMEngine(
            settings.model,
            model_name=settings.name,
            max_input_tokens=settings.max_input_tokens,
            max_num_seqs=settings.max_batch_size,
            max_queue=settings.max_queue,
            dtype=settings.dtype,
            random_weights=settings.random_weights,
            adapter=str(adapter) if adapter else None,
            quantization=None if settings.quantization == "none" else settings.quantization,
            max_lora_rank=settings.max_lora_rank,
        )
    from ml.llm.generate import load_model

    loaded = load_model(
        settings.model,
        device=settings.device,
        dtype=settings.dtype,
        random_weights=settings.random_weights,
        adapter=adapter,
    )
    logger.info("loaded %s on %s (%s)", settings.model, loaded.device, loaded.dtype)
    return TransformersEngine(
        loaded.model,
        loaded.tokenizer,
        model_name=settings.name,
        max_input_tokens=settings.max_input_tokens,
        max_batch_size=settings.max_batch_size,
        max_queue=settings.max_queue,
        batch_wait_ms=settings.batch_wait_ms,
    )


def _adapter_dir(settings: RunnerSettings) -> Path | None:
    """The adapter as a local directory: fetched from MLflow for a models:/ or runs:/ URI, then verified."""
    if not settings.adapter:
        return None
    from ml.tracking.generator import fetch_adapter

    # Kept for the life of the process: vLLM reads the adapter when the first request names it.
    return fetch_adapter(settings.adapter, settings.mlflow_tracking_uri, Path(tempfile.mkdtemp(prefix="tqa-adapter-")))


openai_app = FastAPI(title="tqa Qwen runner (OpenAI-compatible)")


@openai_app.exception_handler(RequestValidationError)
async def _invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
    # OpenAI clients expect 400 with an error object, not FastAPI's 422.
    return _error(
        400, "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()), "invalid_request"
    )


@bentoml.asgi_app(openai_app, path="/v1")
@bentoml.service(name="qwen_runner", traffic={"timeout": 600, "concurrency": 64}, workers=1)
class QwenRunner:
    """Loads the model once per worker and serves chat completions from it."""

    def __init__(self) -> None:
        self.settings = RunnerSettings()
        self.engine = build_engine(self.settings)

    def __is_ready__(self) -> bool:
        return self.engine.is_ready()

    @bentoml.on_shutdown
    def close(self) -> None:
        self.engine.close()

    @openai_app.get("/models")
    def list_models(self) -> dict[str, Any]:
        return {"object": "list", "data": [{"id": self.settings.name, "object": "model", "owned_by": "tqa"}]}

    @openai_app.post("/chat/completions")
    async def chat_completions(self, body: ChatCompletionRequest) -> Any:
        s = self.settings
        max_tokens = body.max_completion_tokens or body.max_tokens or min(s.default_max_tokens, s.max_tokens_limit)
        if max_tokens > s.max_tokens_limit:
            _metrics()["rejected"].labels(reason="max_tokens").inc()
            return _error(
                400, f"max_tokens is {max_tokens}; this runner allows at most {s.max_tokens_limit}.", "invalid_request"
            )
        params = SamplingParams(
            max_tokens=max_tokens,
            temperature=body.temperature,
            top_p=body.top_p,
            ignore_eos=body.ignore_eos,
            min_tokens=body.min_tokens,
        )
        messages = [m.model_dump() for m in body.messages]
        stats = RequestStats()
        try:
            events = await self.engine.stream(messages, params, stats)
        except InputTooLong as exc:
            _metrics()["rejected"].labels(reason="input_length").inc()
            return _error(400, str(exc), "invalid_request")
        except QueueFull as exc:
            _metrics()["rejected"].labels(reason="queue_full").inc()
            return _error(503, str(exc), "overloaded", headers={"Retry-After": str(s.retry_after_s)})
        rid = f"chatcmpl-{uuid.uuid4().hex}"
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return StreamingResponse(
                self._sse(rid, events, stats, include_usage),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        parts: list[str] = []
        last = TokenEvent()
        try:
            async for last in events:
                parts.append(last.text)
        finally:
            await events.aclose()  # type: ignore[attr-defined]
            _record(stats)
        if last.finish_reason == "error":
            return _error(500, last.error or "generation failed", "server_error")
        return {
            "id": rid,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": s.name,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "".join(parts)},
                    "finish_reason": last.finish_reason,
                }
            ],
            "usage": _usage(stats),
        }

    async def _sse(
        self, rid: str, events: AsyncIterator[TokenEvent], stats: RequestStats, include_usage: bool
    ) -> AsyncIterator[str]:
        created = int(time.time())
        name = self.settings.name

        def chunk(delta: dict[str, str], finish: str | None, usage: dict[str, int] | None = None) -> str:
            body: dict[str, Any] = {
                "id": rid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": name,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}] if usage is None else [],
            }
            if usage is not None:
                body["usage"] = usage
            return f"data: {json.dumps(body)}\n\n"

        try:
            yield chunk({"role": "assistant", "content": ""}, None)
            async for event in events:
                if event.finish_reason == "error":
                    yield f"data: {json.dumps({'error': {'message': event.error, 'type': 'server_error'}})}\n\n"
                    break
                if event.finish_reason is not None:
                    if event.text:
                        yield chunk({"content": event.text}, None)
                    yield chunk({}, event.finish_reason)
                    break
                yield chunk({"content": event.text}, None)
            if include_usage:
                yield chunk({}, None, usage=_usage(stats))
            yield "data: [DONE]\n\n"
        finally:
            await events.aclose()  # type: ignore[attr-defined]
            _record(stats)


def _usage(stats: RequestStats) -> dict[str, int]:
    return {
        "prompt_tokens": stats.prompt_tokens,
        "completion_tokens": stats.completion_tokens,
        "total_tokens": stats.prompt_tokens + stats.completion_tokens,
    }
