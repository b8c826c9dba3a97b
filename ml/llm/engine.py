"""Generation engines behind the Qwen runner: a batching transformers engine (any device) and vLLM (GPU).

Both take chat messages and stream `TokenEvent`s. The transformers engine gathers concurrent requests into one
batch (left-padded, per-row sampling and stopping) and streams every row token by token from a worker thread;
vLLM does continuous batching itself. Admission is bounded: past ``max_batch_size + max_queue`` requests in
flight, `submit` raises `QueueFull` at once instead of letting callers wait without bound.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

logger = logging.getLogger(__name__)

FinishReason = Literal["stop", "length", "cancelled", "error"]


class QueueFull(Exception):
    """More requests are in flight than the engine admits; the caller should retry later."""


class InputTooLong(ValueError):
    """The prompt has more tokens than the engine accepts."""


@dataclass(frozen=True)
class SamplingParams:
    """Per-request decoding parameters (OpenAI names; ``ignore_eos`` and ``min_tokens`` as in vLLM)."""

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    ignore_eos: bool = False
    min_tokens: int = 0


@dataclass
class TokenEvent:
    """New text of one request; the last event has ``finish_reason`` set."""

    text: str = ""
    finish_reason: FinishReason | None = None
    error: str | None = None


@dataclass
class RequestStats:
    """What a finished request measured, for metrics and the response's usage block."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    submitted: float = field(default_factory=time.perf_counter)
    first_token: float | None = None
    finished: float | None = None

    @property
    def ttft_s(self) -> float | None:
        return None if self.first_token is None else self.first_token - self.submitted

    @property
    def decode_tokens_per_s(self) -> float | None:
        """Output tokens per second after the first token (the decode rate one client sees)."""
        if self.first_token is None or self.finished is None or self.completion_tokens < 2:
            return None
        span = self.finished - self.first_token
        return (self.completion_tokens - 1) / span if span > 0 else None


class Engine(Protocol):
    """Streams a chat completion; `stream` raises `QueueFull` or `InputTooLong` before yielding anything."""

    model_name: str
    max_input_tokens: int

    def count_prompt_tokens(self, messages: list[dict[str, str]]) -> int: ...

    async def stream(
        self, messages: list[dict[str, str]], params: SamplingParams, stats: RequestStats
    ) -> AsyncIterator[TokenEvent]:
        """Admit the request (raising at once if it cannot be), then return its event stream."""
        ...

    def is_ready(self) -> bool: ...

    def close(self) -> None: ...


class _Row:
    """One admitted request inside the transformers engine."""

    def __init__(self, prompt_ids: list[int], params: SamplingParams, stats: RequestStats, loop: Any) -> None:
        self.prompt_ids = prompt_ids
        self.params = params
        self.stats = stats
        self.loop = loop
        self.queue: asyncio.Queue[TokenEvent] = asyncio.Queue()
        self.token_ids: list[int] = []
        self.sent_chars = 0
        self.done = False
        self.cancelled = False

    def emit(self, event: TokenEvent) -> None:
        if self.cancelled:
            return
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, event)
        except RuntimeError:  # the caller's event loop is gone; nobody is listening
            self.cancelled = True


class _RowStream:
    """The events of one request; closing it (or the client going away) frees its batch slot at the next step."""

    def __init__(self, row: _Row) -> None:
        self.row = row
        self.finished = False

    def __aiter__(self) -> _RowStream:
        return self

    async def __anext__(self) -> TokenEvent:
        if self.finished:
            raise StopAsyncIteration
        try:
            event = await self.row.queue.get()
        except BaseException:
            self.row.cancelled = True
            raise
        if event.finish_reason is not None:
            self.finished = True
        return event

    async def aclose(self) -> None:
        if not self.finished:
            self.row.cancelled = True
        self.finished = True


class TransformersEngine:
    """Batched streaming generation with `model.generate` on a worker thread.

    Requests that arrive within ``batch_wait_ms`` of each other share a batch (up to ``max_batch_size``); the
    others wait in a bounded queue for the next batch.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        model_name: str,
        max_input_tokens: int,
        max_batch_size: int = 8,
        max_queue: int = 16,
        batch_wait_ms: float = 10.0,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.model_name = model_name
        self.max_input_tokens = max_input_tokens
        self.max_batch_size = max_batch_size
        self.max_queue = max_queue
        self.batch_wait_s = batch_wait_ms / 1000
        self._pending: deque[_Row] = deque()
        self._running = 0
        self._cond = threading.Condition()
        self._closed = False
        self._eos_ids = self._stop_ids()
        self._vocab = len(tokenizer)
        self._thread = threading.Thread(target=self._loop, name="tqa-generate", daemon=True)
        self._thread.start()

    def _stop_ids(self) -> set[int]:
        ids = {self.tokenizer.eos_token_id}
        for tok in ("<|im_end|>", "<|endoftext|>"):
            tid = self.tokenizer.convert_tokens_to_ids(tok)
            if isinstance(tid, int) and tid != self.tokenizer.unk_token_id:
                ids.add(tid)
        gen_eos = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        ids.update(gen_eos if isinstance(gen_eos, list) else [gen_eos])
        return {i for i in ids if i is not None}

    def count_prompt_tokens(self, messages: list[dict[str, str]]) -> int:
        return len(self._encode(messages))

    def _encode(self, messages: list[dict[str, str]]) -> list[int]:
        enc = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)
        return list(enc["input_ids"])

    def is_ready(self) -> bool:
        return self._thread.is_alive() and not self._closed

    @property
    def in_flight(self) -> int:
        with self._cond:
            return self._running + len(self._pending)

    async def stream(
        self, messages: list[dict[str, str]], params: SamplingParams, stats: RequestStats
    ) -> AsyncIterator[TokenEvent]:
        return _RowStream(self.submit(messages, params, stats))

    def submit(self, messages: list[dict[str, str]], params: SamplingParams, stats: RequestStats) -> _Row:
        """Admit a request or raise `QueueFull` / `InputTooLong` at once."""
        prompt_ids = self._encode(messages)
        if len(prompt_ids) > self.max_input_tokens:
            raise InputTooLong(f"The prompt has {len(prompt_ids)} tokens; this runner accepts {self.max_input_tokens}.")
        stats.prompt_tokens = len(prompt_ids)
        row = _Row(prompt_ids, params, stats, asyncio.get_running_loop())
        with self._cond:
            if self._closed:
                raise QueueFull("The engine is shutting down.")
            if self._running + len(self._pending) >= self.max_batch_size + self.max_queue:
                raise QueueFull(f"{self._running + len(self._pending)} requests in flight; the limit is reached.")
            self._pending.append(row)
            self._cond.notify_all()
        return row

    def close(self) -> None:
        with self._cond:
            self._closed = True
            for row in self._pending:
                row.emit(TokenEvent(finish_reason="error", error="The runner is shutting down."))
            self._pending.clear()
            self._cond.notify_all()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                deadline = time.monotonic() + self.batch_wait_s
                while len(self._pending) < self.max_batch_size and not self._closed:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(timeout=left)
                batch = [self._pending.popleft() for _ in range(min(self.max_batch_size, len(self._pending)))]
                batch = [row for row in batch if not row.cancelled]
                self._running = len(batch)
            if batch:
                try:
                    self._generate(batch)
                except Exception as exc:  # the worker must survive one bad batch; each caller gets the error
                    logger.exception("generation failed for a batch of %d", len(batch))
                    for row in batch:
                        if not row.done:
                            self._finish(row, "error", error=f"{exc.__class__.__name__}: {exc}")
            with self._cond:
                self._running = 0

    def _finish(self, row: _Row, reason: FinishReason, error: str | None = None) -> None:
        row.done = True
        row.stats.finished = time.perf_counter()
        row.emit(TokenEvent(text=self._new_text(row, final=True), finish_reason=reason, error=error))

    def _new_text(self, row: _Row, final: bool = False) -> str:
        text = self.tokenizer.decode(row.token_ids, skip_special_tokens=True)
        # Hold back an incomplete UTF-8 sequence until its remaining bytes arrive.
        if not final and text.endswith("\ufffd"):
            return ""
        new = text[row.sent_chars :]
        row.sent_chars = len(text)
        return new

    def _on_tokens(self, batch: list[_Row], tokens: list[int]) -> None:
        now = time.perf_counter()
        for row, token in zip(batch, tokens, strict=True):
            if row.done:
                continue
            if row.cancelled:
                self._finish(row, "cancelled")
                continue
            if token in self._eos_ids and not row.params.ignore_eos:
                self._finish(row, "stop")
                continue
            row.token_ids.append(token)
            row.stats.completion_tokens = len(row.token_ids)
            if row.stats.first_token is None:
                row.stats.first_token = now
            if len(row.token_ids) >= row.params.max_tokens:
                self._finish(row, "length")
                continue
            text = self._new_text(row)
            if text:
                row.emit(TokenEvent(text=text))

    def _generate(self, batch: list[_Row]) -> None:
        import torch
        from transformers import GenerationConfig, LogitsProcessorList, StoppingCriteriaList

        pad = self.tokenizer.pad_token_id
        width = max(len(r.prompt_ids) for r in batch)
        input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, row in enumerate(batch):
            input_ids[i, width - len(row.prompt_ids) :] = torch.tensor(row.prompt_ids)
            mask[i, width - len(row.prompt_ids) :] = 1
        device = next(self.model.parameters()).device
        config = GenerationConfig(
            max_new_tokens=max(r.params.max_tokens for r in batch) + 1,
            do_sample=True,
            temperature=1.0,
            top_k=0,
            top_p=1.0,
            pad_token_id=pad,
            # Stopping is per row (`_RowsDone`): rows that hit EOS are finished by the streamer, not by generate.
            eos_token_id=None,
        )
        with torch.inference_mode():
            self.model.generate(
                input_ids=input_ids.to(device),
                attention_mask=mask.to(device),
                generation_config=config,
                logits_processor=LogitsProcessorList([_RowSampling(batch, self._vocab, self._eos_ids)]),
                stopping_criteria=StoppingCriteriaList([_RowsDone(batch)]),
                streamer=_BatchStreamer(self, batch),
            )
        for row in batch:
            if not row.done:
                self._finish(row, "cancelled" if row.cancelled else "length")


class _BatchStreamer:
    """Receives each decoding step's tokens (one per row) from `generate` and routes them to their requests."""

    def __init__(self, engine: TransformersEngine, batch: list[_Row]) -> None:
        self.engine = engine
        self.batch = batch
        self.prompt_seen = False

    def put(self, value: Any) -> None:
        if not self.prompt_seen:  # the first call carries the prompt
            self.prompt_seen = True
            return
        self.engine._on_tokens(self.batch, value.reshape(-1).tolist())

    def end(self) -> None:
        pass


class _RowSampling:
    """Per-row temperature / top-p / greedy, EOS suppression, and no ids past the tokenizer's vocabulary.

    Qwen's embedding has more rows than its tokenizer has tokens (152064 vs 151665); those ids decode to nothing.
    """

    def __init__(self, batch: list[_Row], vocab: int, eos_ids: set[int]) -> None:
        self.batch = batch
        self.vocab = vocab
        self.eos_ids = sorted(eos_ids)

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        scores = scores.float()
        if scores.shape[-1] > self.vocab:
            scores[:, self.vocab :] = -float("inf")
        for i, row in enumerate(self.batch):
            p = row.params
            if p.ignore_eos or len(row.token_ids) < p.min_tokens:
                scores[i, self.eos_ids] = -float("inf")
            if p.temperature <= 0:
                best = scores[i].argmax()
                scores[i] = -float("inf")
                scores[i, best] = 0.0
                continue
            scores[i] = scores[i] / p.temperature
            if p.top_p < 1.0:
                sorted_scores, order = torch.sort(scores[i], descending=True)
                cumulative = sorted_scores.softmax(-1).cumsum(-1)
                drop = cumulative - sorted_scores.softmax(-1) > p.top_p
                scores[i, order[drop]] = -float("inf")
        return scores


class _RowsDone:
    """Per-row stop: a row is done when the streamer finished it (EOS, max_tokens) or its client went away."""

    def __init__(self, batch: list[_Row]) -> None:
        self.batch = batch

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        return torch.tensor([row.done or row.cancelled for row in self.batch], device=input_ids.device)


class VLLMEngine:
    """vLLM's async engine (continuous batching, paged KV cache) behind the same interface; GPU only."""

    def __init__(
        self,
        model: str,
        *,
        model_name: str,
        max_input_tokens: int,
        max_num_seqs: int,
        max_queue: int,
        dtype: str,
        random_weights: bool = False,
        adapter: str | None = None,
        quantization: str | None = None,
        max_lora_rank: int = 64,
    ) -> None:
        from vllm import AsyncEngineArgs, AsyncLLMEngine

        self.model_name = model_name
        self.max_input_tokens = max_input_tokens
        self.max_queue = max_queue + max_num_seqs
        args = AsyncEngineArgs(
            model=model,
            dtype="bfloat16" if dtype == "auto" else dtype,
            max_num_seqs=max_num_seqs,
            max_model_len=max_input_tokens + 4096,
            # vLLM's own random initialisation, for benchmarking an architecture without its checkpoint.
            load_format="dummy" if random_weights else "auto",
            quantization=quantization,
            enable_lora=adapter is not None,
            max_lora_rank=max_lora_rank,
        )
        self._engine = AsyncLLMEngine.from_engine_args(args)
        self._lora = None
        if adapter is not None:
            from vllm.lora.request import LoRARequest

            # Every request carries the one adapter; vLLM loads it on first use and keeps it on the GPU.
            self._lora = LoRARequest("tqa-adapter", 1, adapter)
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(model)
        self._in_flight = 0
        self._ids = itertools.count()

    def count_prompt_tokens(self, messages: list[dict[str, str]]) -> int:
        enc = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)
        return len(enc["input_ids"])

    def is_ready(self) -> bool:
        return True

    def close(self) -> None:
        shutdown = getattr(self._engine, "shutdown", None)
        if shutdown is not None:
            shutdown()

    async def stream(
        self, messages: list[dict[str, str]], params: SamplingParams, stats: RequestStats
    ) -> AsyncIterator[TokenEvent]:
        from vllm import SamplingParams as VParams

        prompt = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        n_prompt = self.count_prompt_tokens(messages)
        if n_prompt > self.max_input_tokens:
            raise InputTooLong(f"The prompt has {n_prompt} tokens; this runner accepts {self.max_input_tokens}.")
        if self._in_flight >= self.max_queue:
            raise QueueFull(f"{self._in_flight} requests in flight; the limit is reached.")
        stats.prompt_tokens = n_prompt
        vparams = VParams(
            max_tokens=params.max_tokens,
            temperature=params.temperature,
            top_p=params.top_p,
            ignore_eos=params.ignore_eos,
            min_tokens=params.min_tokens,
        )
        self._in_flight += 1
        return self._drain(prompt, vparams, stats)

    async def _drain(self, prompt: str, vparams: Any, stats: RequestStats) -> AsyncIterator[TokenEvent]:
        sent = 0
        try:
            request_id = f"tqa-{next(self._ids)}"
            async for out in self._engine.generate(prompt, vparams, request_id=request_id, lora_request=self._lora):
                completion = out.outputs[0]
                if stats.first_token is None and completion.token_ids:
                    stats.first_token = time.perf_counter()
                stats.completion_tokens = len(completion.token_ids)
                text = completion.text[sent:]
                sent = len(completion.text)
                if out.finished:
                    stats.finished = time.perf_counter()
                    reason: FinishReason = "length" if completion.finish_reason == "length" else "stop"
                    yield TokenEvent(text=text, finish_reason=reason)
                    return
                if text:
                    yield TokenEvent(text=text)
        finally:
            self._in_flight -= 1


def vllm_available() -> bool:
    """vLLM is installed and a CUDA device is present."""
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        return False
    import torch

    return torch.cuda.is_available()
