"""Release logic without servers: canary verdicts, the load-test gate, the rollout lock and state, the proxy config."""

from __future__ import annotations

import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ml.errors import UserError
from ops.load.gate import Stage, misses
from ops.release.analysis import Thresholds, judge
from ops.release.probe import ADVERSARIAL, PERSONAS, ProbeLimits, probe, questions
from ops.release.proxy import Slot, render
from ops.release.state import Rollout, Store

LIMITS = Thresholds(min_requests=5, max_error_rate=0.02, max_p95_ratio=1.5, p95_slack_s=0.25)
PRODUCTION = {"requests": 200.0, "error_rate": 0.0, "p95_s": 0.2, "abstention_rate": 0.1}


def test_a_canary_like_production_passes() -> None:
    assert judge({**PRODUCTION, "requests": 12.0}, PRODUCTION, LIMITS) == []


@pytest.mark.parametrize(
    ("canary", "breach"),
    [
        ({"error_rate": 0.05}, "error rate"),
        ({"p95_s": 0.9}, "p95"),
        ({"abstention_rate": 0.6}, "abstention rate"),
        ({"requests": 2.0}, "fewer than 5"),
        ({"requests": None}, "fewer than 5"),
    ],
)
def test_each_breach_is_named(canary: dict, breach: str) -> None:
    (found,) = judge({**PRODUCTION, "requests": 12.0, **canary}, PRODUCTION, LIMITS)
    assert breach in found


def test_thresholds_file_is_valid() -> None:
    limits = Thresholds.load()
    assert limits.min_requests >= 1 and limits.max_p95_ratio > 1


def test_load_gate_names_each_missed_limit() -> None:
    stage = Stage(users=8, duration_s=10, min_rps=5, max_p95_ms=500, max_error_rate=0.01)
    good = {"users": 8, "requests": 100, "rps": 6.0, "p50_ms": 100, "p95_ms": 300, "error_rate": 0.0}
    assert misses(stage, good) == []
    bad = {**good, "rps": 2.0, "p95_ms": 900, "error_rate": 0.2}
    assert [m.split()[0] for m in misses(stage, bad)] == ["2.00", "p95", "error"]
    assert misses(stage, {**good, "requests": 0}) == ["no request was answered"]


def test_second_rollout_is_refused_while_the_lock_is_held(tmp_path: Path) -> None:
    store = Store(tmp_path, 8080)
    with store.lock():
        with pytest.raises(UserError, match="already running"):
            with Store(tmp_path, 8080).lock():
                pass
    with store.lock():  # released on exit
        pass


def test_state_survives_a_round_trip_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    store = Store(tmp_path, 9000)
    state = store.load()
    assert {s.port for s in state.slots.values()} == {9001, 9002}
    state.production_slot = "blue"
    state.rollout = Rollout(version="3", slot="green", steps=[5, 50, 100], interval_s=30, step=1)
    store.save(state)
    again = Store(tmp_path, 9000).load()
    assert again.rollout is not None and again.rollout.step == 1 and again.canary_slot == "green"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_proxy_config_carries_weights_cookies_and_maintenance(tmp_path: Path) -> None:
    text = render(
        [Slot("blue", "127.0.0.1:9001", 95, False), Slot("green", "127.0.0.1:9002", 5, True)],
        9000,
        tmp_path / "s.sock",
        tmp_path / "p.pid",
    )
    assert "bind 127.0.0.1:9000" in text
    assert "server blue 127.0.0.1:9001 weight 95 cookie blue check" in text
    assert "server green 127.0.0.1:9002 weight 5 cookie green check inter 500 fall 2 rise 2 disabled" in text
    assert "cookie TQA_SLOT insert" in text
    # Users cannot pass for the persona probe, whose answers the canary analysis leaves out.
    assert "http-request del-header X-TQA-Probe" in text.split("frontend tqa")[1].split("backend tqa")[0]


class _Side(BaseHTTPRequestHandler):
    """A stand-in slot answering /ask as its class attributes say (the probe talks HTTP to it for real)."""

    abstain = False
    cite = True
    echo = False
    probe_headers: list[str | None] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        self.probe_headers.append(self.headers.get("X-TQA-Probe"))
        question = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["question"]
        answer = {
            "answer": f"Use it. {question if self.echo else ''}",
            "abstained": self.abstain,
            "sources": [{"n": 1}] if self.cite and not self.abstain else [],
        }
        body = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def _serve(**behaviour: bool) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("Side", (_Side,), {"probe_headers": [], **behaviour}))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _url(server: ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


def test_probe_asks_every_persona_including_the_attacker() -> None:
    asked = questions(2)
    assert Counter(q.persona for q in asked) == {p: 2 for p in (*PERSONAS, ADVERSARIAL)}
    assert all(q.token for q in asked if q.persona == ADVERSARIAL)
    assert Thresholds.load().probe.enabled


@pytest.mark.parametrize(
    ("canary", "breach"),
    [
        ({"abstain": True}, "abstained on 2 of 2 questions production answers"),
        ({"cite": False}, "cite no source"),
        ({"echo": True}, "echoed the injected token"),
    ],
)
def test_probe_names_each_persona_a_bad_canary_fails(canary: dict, breach: str) -> None:
    limits = ProbeLimits(per_persona=2)
    production, good, bad = _serve(), _serve(), _serve(**canary)
    try:
        numbers, breaches = probe(_url(good), _url(production), limits)
        assert breaches == [] and numbers["novice"] == {
            "asked": 2,
            "production_answered": 2,
            "lost": 0,
            "uncited": 0,
            "echoed": 0,
        }
        numbers, breaches = probe(_url(bad), _url(production), limits)
    finally:
        for server in (production, good, bad):
            server.shutdown()
    personas = [ADVERSARIAL] if canary.get("echo") else [*PERSONAS, ADVERSARIAL]
    assert [b.split(":")[0] for b in breaches] == [f"probe {p}" for p in personas]
    assert all(breach in b for b in breaches)
    # Every probe question names its persona, so the slots count it apart from users' requests.
    assert Counter(bad.RequestHandlerClass.probe_headers) == {p: 2 for p in (*PERSONAS, ADVERSARIAL)}


def test_probe_counts_an_unreachable_canary_as_lost() -> None:
    production = _serve()
    try:
        numbers, breaches = probe("http://127.0.0.1:9", _url(production), ProbeLimits(per_persona=1, timeout_s=2))
    finally:
        production.shutdown()
    assert numbers["researcher"]["lost"] == 1 and len(breaches) == 5


def test_a_pinned_bento_is_found_in_the_store_or_named_in_one_sentence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ml.settings import Settings
    from serving.server import bento_path

    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "store"))
    built = tmp_path / "store" / "bentos" / "tqa-rag" / "abc123"
    built.mkdir(parents=True)
    (built / "bento.yaml").write_text("service: serving.rag_service:RAGService\n")
    assert bento_path(Settings(data_dir=tmp_path, bento="tqa-rag:abc123")) == built
    with pytest.raises(UserError, match="is not in the bento store"):
        bento_path(Settings(data_dir=tmp_path, bento="tqa-rag:def456"))
    with pytest.raises(UserError, match="must be name:version"):
        bento_path(Settings(data_dir=tmp_path, bento="tqa-rag"))
