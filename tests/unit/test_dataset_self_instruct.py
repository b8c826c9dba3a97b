"""Self-instruct against a local OpenAI-compatible server, and its clear skip when none is configured."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from ml.dataset import self_instruct
from ml.dataset.types import QAPair, SourceRef
from ml.errors import UserError
from ml.settings import Settings


class _Handler(BaseHTTPRequestHandler):
    replies = ["How can I read a model's weights into memory?", "What does load_model do?"]

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        assert body["model"] == "tiny" and body["temperature"] == 0.0
        reply = self.replies[int(self.server.calls)]  # type: ignore[attr-defined]
        self.server.calls += 1  # type: ignore[attr-defined]
        data = json.dumps({"choices": [{"message": {"role": "assistant", "content": reply}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


def _pair(i: int) -> QAPair:
    return QAPair(
        id=f"p{i}",
        category="code_purpose",
        question="What does `load_model` do?",
        answer="Loads a model.",
        context="def load_model(): '''Loads a model.'''",
        source=SourceRef(kind="function", path=f"t/{i}.py", symbol="load_model", chunk_id=f"c{i}"),
        generator="rules-v1",
        created_at="2024-01-01",
    )


def test_paraphrases_drop_the_identifier_and_keep_the_source():
    server = HTTPServer(("127.0.0.1", 0), _Handler)
    server.calls = 0  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        settings = Settings(llm_url=f"http://127.0.0.1:{server.server_port}/v1", llm_model="tiny")
        out = self_instruct.paraphraser(settings, n=2)([_pair(1), _pair(2)])
    finally:
        server.shutdown()
        server.server_close()
    # The second reply still names `load_model`, so it is not a paraphrase and is dropped.
    assert [p.question for p in out] == ["How can I read a model's weights into memory?"]
    assert out[0].generator == "self-instruct:tiny" and out[0].source.chunk_id in {"c1", "c2"}


def test_no_endpoint_is_a_clear_skip():
    settings = Settings()
    assert "TQA_LLM_URL" in (self_instruct.skip_reason(settings) or "")
    with pytest.raises(UserError):
        self_instruct.paraphraser(settings, n=1)
