"""Release logic without servers: canary verdicts, the load-test gate, the rollout lock and state, the proxy config."""

from __future__ import annotations

from pathlib import Path

import pytest

from ml.errors import UserError
from ops.load.gate import Stage, misses
from ops.release.analysis import Thresholds, judge
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
