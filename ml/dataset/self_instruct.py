"""Self-instruct: an OpenAI-compatible model rewrites questions the way a user would ask them, without identifiers."""

from __future__ import annotations

import random
import re
from collections.abc import Callable

from ml.dataset.rules import pair_id
from ml.dataset.types import QAPair
from ml.errors import UserError
from ml.settings import Settings

PROMPT = (
    "Rewrite this question about the HuggingFace Transformers library the way a developer would ask it in their own "
    "words. Do not use the code names {names}; describe what they are instead. Reply with the question only.\n\n"
    "Question: {question}\nWhat the answer says: {answer}"
)
_IDENT = re.compile(r"`([^`]+)`")
PARAPHRASED = ("code_purpose", "docs_section", "commit_why")


def skip_reason(settings: Settings) -> str | None:
    """Why self-instruct cannot run here, or None when an endpoint is configured."""
    if not settings.llm_url:
        return "Self-instruct skipped: no OpenAI-compatible endpoint configured (set TQA_LLM_URL and TQA_LLM_MODEL)."
    return None


def paraphraser(settings: Settings, n: int, seed: int = 7) -> Callable[[list[QAPair]], list[QAPair]]:
    """A function turning rule-based pairs into up to `n` paraphrased pairs through the configured endpoint."""
    if not settings.llm_url:
        raise UserError(skip_reason(settings) or "")

    def run(pairs: list[QAPair]) -> list[QAPair]:
        import httpx

        eligible = [p for p in pairs if p.category in PARAPHRASED]
        chosen = sorted(random.Random(seed).sample(eligible, min(n, len(eligible))), key=lambda p: p.id)
        headers = {}
        if settings.llm_api_key:
            headers["Authorization"] = f"Bearer {settings.llm_api_key.get_secret_value()}"
        out = []
        timeout = httpx.Timeout(settings.llm_timeout_s, connect=settings.llm_connect_timeout_s)
        with httpx.Client(base_url=settings.llm_url.rstrip("/"), headers=headers, timeout=timeout) as client:
            for pair in chosen:
                names = _IDENT.findall(pair.question)
                prompt = PROMPT.format(
                    names=", ".join(names) or "(none)", question=pair.question, answer=pair.answer[:400]
                )
                response = client.post(
                    "/chat/completions",
                    json={
                        "model": settings.llm_model,
                        "messages": [{"role": "user", "content": prompt}],
                        "temperature": 0.0,
                        "max_tokens": 96,
                    },
                )
                if response.status_code != 200:
                    raise UserError(
                        f"The self-instruct endpoint {settings.llm_url} answered HTTP {response.status_code}; "
                        "check TQA_LLM_URL and TQA_LLM_MODEL."
                    )
                text = " ".join(str(response.json()["choices"][0]["message"]["content"]).split()).strip('"')
                if not text or any(name.split(".")[-1] in text for name in names):
                    continue  # still names the identifier: not a paraphrase
                out.append(
                    pair.model_copy(
                        update={
                            "id": pair_id(pair.category, pair.source.chunk_id, text),
                            "question": text,
                            "generator": f"self-instruct:{settings.llm_model}",
                            "persona": "user",
                        }
                    )
                )
        return out

    return run
