"""Canary analysis: canary against production in Prometheus (error rate, p95 latency, abstentions, liveness), and
the persona probe's answers of both sides (ops/release/probe.py)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml
from pydantic import BaseModel, Field

from ops.release.metrics import Prometheus
from ops.release.probe import ProbeLimits

CONFIG = Path(__file__).with_name("analysis.yaml")


class Thresholds(BaseModel):
    """Limits of one analysis (ops/release/analysis.yaml)."""

    min_requests: int = Field(default=5, ge=0)
    max_error_rate: float = Field(default=0.02, ge=0)
    max_p95_ratio: float = Field(default=1.5, gt=0)
    p95_slack_s: float = Field(default=0.25, ge=0)
    max_abstention_increase: float = Field(default=0.15, ge=0)
    probe: ProbeLimits = Field(default_factory=ProbeLimits)

    @classmethod
    def load(cls, path: Path = CONFIG) -> Thresholds:
        return cls.model_validate(yaml.safe_load(path.read_text()) or {})


@dataclass
class Verdict:
    """The numbers of one analysis and the breaches found in them (none: the step passes)."""

    canary: dict[str, float | None]
    production: dict[str, float | None]
    breaches: list[str] = field(default_factory=list)
    probe: dict[str, dict[str, int]] = field(default_factory=dict)  # per persona: asked, production_answered, lost, ...

    @property
    def passed(self) -> bool:
        return not self.breaches

    def add_probe(self, probed: tuple[dict[str, dict[str, int]], list[str]]) -> None:
        """The persona probe's numbers and breaches (`probe()`, run during the step)."""
        self.probe, breaches = probed
        self.breaches += breaches

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _window(seconds: float) -> str:
    return f"{max(int(seconds), 1)}s"


def queries(slot: str, window_s: float) -> dict[str, str]:
    """PromQL for one slot over the last `window_s` seconds.

    Users' traffic alone decides: the persona probe's answers (`source="probe"`) are counted apart and kept out of
    the request count, the error rate, the latency and the abstentions (serving/release_info.py).
    """
    w, sel = _window(window_s), f'slot="{slot}",source="user"'
    return {
        "requests": f"sum(increase(tqa_ask_responses_total{{{sel}}}[{w}]))",
        "probe_requests": f'sum(increase(tqa_ask_responses_total{{slot="{slot}",source="probe"}}[{w}]))',
        "error_rate": (
            f'(sum(rate(tqa_ask_responses_total{{{sel},code=~"5.."}}[{w}])) or vector(0)) / '
            f"sum(rate(tqa_ask_responses_total{{{sel}}}[{w}]))"
        ),
        "p95_s": f'histogram_quantile(0.95, sum by (le) (rate(tqa_ask_seconds_bucket{{slot="{slot}"}}[{w}])))',
        "abstention_rate": (
            f'(sum(rate(tqa_abstentions_total{{slot="{slot}"}}[{w}])) or vector(0)) / '
            f'sum(rate(tqa_ask_seconds_count{{slot="{slot}"}}[{w}]))'
        ),
    }


def measure(prometheus: Prometheus, slot: str, window_s: float) -> dict[str, float | None]:
    return {name: prometheus.query(expr) for name, expr in queries(slot, window_s).items()}


def judge(canary: dict[str, float | None], production: dict[str, float | None], limits: Thresholds) -> list[str]:
    """Breaches of `limits` by the canary's numbers against production's; empty when the canary is as good."""
    breaches = []
    requests = canary.get("requests") or 0.0
    if requests < limits.min_requests:
        return [f"canary answered {requests:.1f} user requests in the step, fewer than {limits.min_requests}"]
    c_err, p_err = canary.get("error_rate") or 0.0, production.get("error_rate") or 0.0
    if c_err > p_err + limits.max_error_rate:
        breaches.append(f"error rate {c_err:.3f} > production {p_err:.3f} + {limits.max_error_rate}")
    c_p95, p_p95 = canary.get("p95_s"), production.get("p95_s")
    if c_p95 is not None and p_p95 is not None and c_p95 > p_p95 * limits.max_p95_ratio + limits.p95_slack_s:
        breaches.append(
            f"p95 {c_p95:.3f} s > production {p_p95:.3f} s x {limits.max_p95_ratio} + {limits.p95_slack_s} s"
        )
    c_abs, p_abs = canary.get("abstention_rate") or 0.0, production.get("abstention_rate") or 0.0
    if c_abs > p_abs + limits.max_abstention_increase:
        breaches.append(f"abstention rate {c_abs:.3f} > production {p_abs:.3f} + {limits.max_abstention_increase}")
    return breaches


def analyse(
    prometheus: Prometheus,
    canary_slot: str,
    production_slot: str,
    step_s: float,
    rollout_s: float,
    limits: Thresholds,
    probed: tuple[dict[str, dict[str, int]], list[str]] | None = None,
) -> Verdict:
    """Canary over the step (its last `step_s` seconds) against production over the rollout so far, plus the
    persona probe's numbers and breaches (`probed`, from `probe()` run during the step) when there are some.
    """
    canary = measure(prometheus, canary_slot, step_s)
    production = measure(prometheus, production_slot, max(rollout_s, step_s))
    verdict = Verdict(canary, production, judge(canary, production, limits))
    if probed is not None:
        verdict.add_probe(probed)
    return verdict
