"""The LLM runner's state as the RAG service sees it: a background probe, the `tqa_llm_runner_up` gauge, /healthz.

The service stays ready (`/readyz`) while the runner is down: every answer then comes from the extractive answerer
(`ml/answer/fallback.py`), which needs only the index. Readiness that followed the runner would take a working service
out of the load balancer and turn a degraded answer into no answer. The runner's state is reported instead: the gauge
for alerts and dashboards, and a `runner` object in `/healthz` for an operator. Without an LLM answerer configured
there is no probe, no gauge series and no `runner` field.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import bentoml
import httpx

from ml.settings import Settings

logger = logging.getLogger(__name__)

RUNNER_UP = bentoml.metrics.Gauge(
    name="tqa_llm_runner_up",
    documentation="1 while the LLM runner answers its model list (GET <TQA_LLM_URL>/models), 0 while it does not.",
    # One series per service, not one per worker: the most recent probe of a live worker wins.
    multiprocess_mode="livemostrecent",
)


@dataclass
class RunnerState:
    """The last probe's outcome."""

    up: bool | None = None  # None until the first probe has finished
    checked: float | None = None  # time.time() of that probe
    error: str = ""
    up_since: float | None = None
    down_since: float | None = None


class RunnerProbe:
    """GETs `<llm_url>/models` every `interval_s` (the route every OpenAI-compatible server has, vLLM included).

    `breaker` (the `FallbackAnswerer`, when there is one) adds its circuit state to the report.
    """

    def __init__(self, settings: Settings, interval_s: float, breaker: Any = None) -> None:
        assert settings.llm_url is not None
        self.url = settings.llm_url.rstrip("/") + "/models"
        key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else None
        self.client = httpx.Client(
            timeout=httpx.Timeout(settings.llm_connect_timeout_s * 2, connect=settings.llm_connect_timeout_s),
            headers={"Authorization": f"Bearer {key}"} if key else {},
        )
        self.interval_s = interval_s
        self.breaker = breaker
        self.state = RunnerState()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="llm-runner-probe", daemon=True)

    def start(self) -> RunnerProbe:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.interval_s + 5)
        self.client.close()

    def check(self) -> bool:
        """One probe: updates the state and the gauge; returns whether the runner answered."""
        try:
            code = self.client.get(self.url).status_code
            up, error = code == 200, "" if code == 200 else f"HTTP {code}"
        except httpx.HTTPError as exc:
            up, error = False, exc.__class__.__name__
        now = time.time()
        with self._lock:
            was = self.state.up
            self.state.up, self.state.checked, self.state.error = up, now, error
            if up and was is not True:
                self.state.up_since, self.state.down_since = now, None
            elif not up and was is not False:
                self.state.down_since, self.state.up_since = now, None
        if was is not None and was != up:
            logger.warning("LLM runner %s is %s%s", self.url, "up" if up else "down", f" ({error})" if error else "")
        RUNNER_UP.set(1 if up else 0)
        return up

    def report(self) -> dict[str, Any]:
        """The `runner` object of /healthz."""
        with self._lock:
            s = RunnerState(**vars(self.state))
        out: dict[str, Any] = {
            "url": self.url.removesuffix("/models"),
            "up": s.up,
            "checked_s_ago": None if s.checked is None else round(time.time() - s.checked, 1),
            "error": s.error or None,
            "since": _iso(s.up_since if s.up else s.down_since),
        }
        state = getattr(self.breaker, "state", None)
        if isinstance(state, str):
            out["circuit"] = state
        return out

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.check()
            except Exception:  # a probe bug must not silently freeze the gauge at its last value
                logger.exception("LLM runner probe failed")
                RUNNER_UP.set(0)
            self._stop.wait(self.interval_s)


def _iso(when: float | None) -> str | None:
    return None if when is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))


_probe: RunnerProbe | None = None


def start_runner_probe(settings: Settings, breaker: Any = None, interval_s: float = 5.0) -> RunnerProbe | None:
    """This worker's probe, started once, when the answerer is the LLM; None with the extractive answerer."""
    global _probe
    if settings.answerer != "llm" or not settings.llm_url:
        return None
    if _probe is None:
        _probe = RunnerProbe(settings, interval_s, breaker).start()
    return _probe


def stop_runner_probe() -> None:
    global _probe
    if _probe is not None:
        _probe.stop()
        _probe = None


class RunnerHealth:
    """ASGI middleware: with a runner probe running, GET /healthz also carries `runner` (the rest stays as it was).

    Added before `ReleaseHeaders`, so it wraps that middleware's JSON /healthz and BentoML's plain one alike.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        probe = _probe
        if probe is None or scope["type"] != "http" or scope["path"] != "/healthz" or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        start: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def capture(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, capture)
        body = b"".join(chunks)
        status = start.get("status", 500)
        try:
            health = json.loads(body) if body.strip() else {}
        except ValueError:
            health = {}
        if not isinstance(health, dict):
            health = {}
        health.setdefault("status", "ok" if status == 200 else "failing")
        health["runner"] = probe.report()
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() not in (b"content-type", b"content-length")]
        out = json.dumps(health).encode()
        headers += [(b"content-type", b"application/json"), (b"content-length", str(len(out)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": out})
