"""Releases for real on 127.0.0.1: two `tqa serve` slots behind HAProxy, scraped by Prometheus, aliases in MLflow.

A canary killed with `kill -9` mid-step is rolled back at once (only the requests it held fail); a canary that keeps
answering but abstains on everything is rolled back by the analysis at the end of its first step; a `tqa release
canary` killed mid-step resumes the recorded step when run again and promotes a healthy candidate under traffic
that sees no failed request; `tqa release rollback` then returns production to the previous version.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from ml.tracking.server import MlflowServer
from tests.support.ports import free_port
from tests.support.release import Traffic, register_version, release_env, tqa

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MODEL = "tqa-release-test"


@pytest.fixture(scope="module")
def release(indexed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """Versions 1 (production: never abstains), 2 (bad: abstains on everything), 3 (good: another hybrid weight),
    4 (bad: half its answers are 500s), 5 (bad: every answer 1.5 s late); 4 and 5 are release drills
    (TQA_FAULT_ERROR_SHARE, TQA_FAULT_DELAY_S pinned in the version).
    """
    mlflow_server = MlflowServer(tmp_path_factory.mktemp("mlflow"), port=free_port())
    with mlflow_server:
        settings = indexed.settings.model_copy(update={"mlflow_tracking_uri": mlflow_server.uri})
        work = tmp_path_factory.mktemp("models")
        versions = {
            "good": register_version(settings, MODEL, work / "v1", abstain_threshold=0.0),
            "bad": register_version(settings, MODEL, work / "v2", abstain_threshold=1.0),
            "next": register_version(settings, MODEL, work / "v3", abstain_threshold=0.0, alpha=0.6),
            "erroring": register_version(settings, MODEL, work / "v4", abstain_threshold=0.0, fault_error_share=0.5),
            "slow": register_version(settings, MODEL, work / "v5", abstain_threshold=0.0, fault_delay_s=1.5),
        }
        env = release_env(
            settings.data_dir, settings.weaviate_port, settings.weaviate_grpc_port, mlflow_server.uri, MODEL
        )
        log = tmp_path_factory.mktemp("release") / "commands.log"
        try:
            yield {
                "env": env,
                "versions": versions,
                "log": log,
                "uri": mlflow_server.uri,
                "settings": settings,
                "work": work,
            }
        finally:
            tqa(env, "release", "down", log=log)


def _ok(result) -> None:  # type: ignore[no-untyped-def]
    assert result.returncode == 0, result.stdout + result.stderr


def _status(release: dict) -> dict:
    result = tqa(release["env"], "release", "status", "--json", log=release["log"])
    _ok(result)
    return json.loads(result.stdout)


def _proxy_url(release: dict) -> str:
    return f"http://127.0.0.1:{release['env']['TQA_PROXY_PORT']}"


def test_unknown_version_changes_nothing(release: dict) -> None:
    result = tqa(release["env"], "release", "deploy", "--env", "production", "--version", "99", log=release["log"])
    assert result.returncode == 2
    assert "has no version 99" in result.stderr
    assert _status(release)["aliases"]["production"] is None


def _nothing_changed(release: dict) -> None:
    status = _status(release)
    assert status["aliases"] == {"staging": None, "canary": None, "production": None}
    assert status["proxy"] is None and not any(s["answering"] for s in status["slots"].values())


def test_an_unknown_alias_is_one_sentence(release: dict) -> None:
    env = {**release["env"], "TQA_MODEL_ALIAS": "nightly"}
    result = tqa(env, "serve", "--port", str(free_port()), log=release["log"], timeout=120)
    assert result.returncode == 2, result.stderr
    assert f"Model '{MODEL}' has no alias 'nightly'" in result.stderr and "Traceback" not in result.stderr
    _nothing_changed(release)


def test_an_unreachable_prometheus_changes_nothing(release: dict) -> None:
    env = {**release["env"], "TQA_PROMETHEUS_URL": "http://192.0.2.10:9090"}  # a documentation address: no server
    result = tqa(env, "release", "deploy", "--env", "production", "--version", release["versions"]["good"])
    assert result.returncode == 2, result.stderr
    assert "No Prometheus answers at http://192.0.2.10:9090" in result.stderr and "Traceback" not in result.stderr
    _nothing_changed(release)


def test_a_proxy_that_does_not_come_up_changes_nothing(release: dict) -> None:
    port = int(release["env"]["TQA_PROXY_PORT"])
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:  # another program holds the proxy's port
        taken.bind(("127.0.0.1", port))
        taken.listen()
        good = release["versions"]["good"]
        result = tqa(release["env"], "release", "deploy", "--env", "production", "--version", good)
    assert result.returncode == 2, result.stderr
    assert f"HAProxy did not come up on 127.0.0.1:{port}" in result.stderr and "Traceback" not in result.stderr
    _nothing_changed(release)


def _events(release: dict) -> Path:
    return Path(release["env"]["TQA_DATA_DIR"]) / "release" / "events.jsonl"


def _start_canary(release: dict, steps: str, interval: str) -> tuple[subprocess.Popen, int]:
    """`tqa release canary` in the background; returns it once its first step has moved traffic."""
    events = _events(release)
    seen = len(events.read_text().splitlines())
    command = [sys.executable, "-m", "ops.cli", "release", "canary", "--steps", steps, "--interval", interval]
    process = subprocess.Popen(command, env=release["env"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not any('"step"' in line for line in events.read_text().splitlines()[seen:]):
        assert process.poll() is None and time.monotonic() < deadline, "the canary never reached its first step"
        time.sleep(0.2)
    return process, seen


def test_a_canary_that_crashes_is_rolled_back_within_its_interval(release: dict) -> None:
    env, versions, log = release["env"], release["versions"], release["log"]
    _ok(tqa(env, "release", "deploy", "--env", "production", "--version", versions["good"], log=log))
    _ok(tqa(env, "release", "deploy", "--env", "canary", "--version", versions["bad"], log=log))
    health = httpx.get(f"{_proxy_url(release)}/healthz").json()
    assert health == {"status": "ok", "version": versions["good"], "alias": "production"}

    with Traffic(_proxy_url(release), users=4) as traffic:
        process, _ = _start_canary(release, "20,50,100", "60")
        moved = time.time()
        # The split is real: some user lands on the canary (bounded wait; sessions are sticky for 5 requests).
        for _ in range(60):
            if traffic.versions(moved)[versions["bad"]] > 0:
                break
            time.sleep(0.5)
        else:
            process.kill()
            pytest.fail("no request reached the canary at 20% within 30 s")
        state = json.loads((Path(env["TQA_DATA_DIR"]) / "release" / "state.json").read_text())
        canary_pid = state["slots"][state["rollout"]["slot"]]["pid"]
        killed = time.time()
        # The whole slot: `tqa serve`, BentoML and its workers (which run in sessions of their own).
        slot = psutil.Process(canary_pid)
        for process_ in [slot, *slot.children(recursive=True)]:
            process_.send_signal(signal.SIGKILL)
        _, stderr = process.communicate(timeout=60)
        rolled_back = time.time()
        time.sleep(2)
    assert process.returncode == 1, stderr
    assert "canary stopped answering" in stderr
    assert rolled_back - killed < 60  # well within the step's 60 s interval

    # Only requests the killed canary held can fail; none after the rollback.
    failed = traffic.failures()
    assert len(failed) <= 4 and all(o.time < rolled_back for o in failed), failed
    assert set(traffic.versions(rolled_back + 1)) == {versions["good"]}

    status = _status(release)
    assert status["aliases"]["production"] == versions["good"]
    assert status["aliases"]["canary"] is None
    slots = {s["version"]: s for s in status["slots"].values()}
    assert slots[versions["good"]]["proxy"] == [100, False]
    assert slots[versions["bad"]]["proxy"] == [0, True]
    assert status["rollout"]["phase"] == "rolled_back"
    assert [e["event"] for e in status["events"]][-1] == "rollback"

    from mlflow import MlflowClient

    tags = MlflowClient(release["uri"]).get_model_version(MODEL, versions["bad"]).tags
    assert tags["rollout.decision"] == "rolled_back"
    assert "stopped answering" in tags["rollout.reason"]


def test_a_canary_that_answers_badly_is_rolled_back_by_the_analysis(release: dict) -> None:
    """Version 2 keeps answering, but abstains on everything: Prometheus' abstention rate and the persona probe
    (asked of both slots on their own ports) both breach at the end of the first step, which rolls it back.
    """
    env, versions, log = release["env"], release["versions"], release["log"]
    _ok(tqa(env, "release", "deploy", "--env", "canary", "--version", versions["bad"], log=log))
    with Traffic(_proxy_url(release), users=4) as traffic:
        time.sleep(2)
        process, seen = _start_canary(release, "20,100", "10")
        _, stderr = process.communicate(timeout=180)
        ended = time.time()
        time.sleep(2)
    assert process.returncode == 1, stderr
    events = [json.loads(line) for line in _events(release).read_text().splitlines()[seen:]]
    assert [e["event"] for e in events] == ["canary", "step", "analysis", "rollback"]
    step, analysis, rollback = events[1:]
    assert step["weight"] == 20 and analysis["step"] == 1
    numbers = rollback["numbers"]
    assert numbers["canary"]["abstention_rate"] > 0.9 and (numbers["production"]["abstention_rate"] or 0.0) < 0.1
    assert numbers["canary"]["error_rate"] == 0.0  # it answered: the analysis, not a crash, caught it
    # The probe's questions to the canary are counted apart: users' requests alone make `requests`. Prometheus may not
    # have scraped the probe's last answers when the step ends, so its count can still read 0 there; the probe's own
    # record says what it asked.
    assert numbers["canary"]["probe_requests"] is not None
    assert sum(n["asked"] for n in numbers["probe"].values()) > 0
    assert any(b.startswith("abstention rate") for b in numbers["breaches"])
    probed = numbers["probe"]
    assert set(probed) == {"novice", "practitioner", "researcher", "contributor", "adversarial"}
    assert all(n["lost"] == n["production_answered"] > 0 for n in probed.values())
    assert any(b.startswith("probe novice:") for b in numbers["breaches"])
    assert "abstention rate" in stderr and "Rolled back version" in stderr

    # Users saw the canary only from its share, only during the step, and saw no error.
    assert traffic.failures() == []
    during = traffic.versions(step["time"], ended)
    total = sum(during.values())
    assert 0 < during[versions["bad"]] <= 0.4 * total, during  # weight 20%, sticky sessions of 5 requests
    assert traffic.versions(0, step["time"])[versions["bad"]] == 0
    assert set(traffic.versions(ended + 1)) == {versions["good"]}

    status = _status(release)
    assert status["aliases"]["production"] == versions["good"] and status["aliases"]["canary"] is None
    slots = {s["version"]: s for s in status["slots"].values()}
    assert slots[versions["good"]]["proxy"] == [100, False]
    assert slots[versions["bad"]]["proxy"] == [0, True]
    assert status["rollout"]["phase"] == "rolled_back"

    from mlflow import MlflowClient

    tags = MlflowClient(release["uri"]).get_model_version(MODEL, versions["bad"]).tags
    assert tags["rollout.decision"] == "rolled_back" and "abstention rate" in tags["rollout.reason"]
    assert json.loads(tags["rollout.numbers"])["canary"]["abstention_rate"] > 0.9


# The slow canary's step is longer: its users wait 1.5 s per answer, and the persona probe's 15 questions queue
# with theirs, so fewer user answers reach the analysis per second (20 s once gave 4.7, under the 5 it needs).
@pytest.mark.parametrize(("kind", "breach", "interval"), [("erroring", "error rate", "10"), ("slow", "p95", "30")])
def test_a_canary_that_errors_or_is_slow_is_rolled_back_by_the_analysis(
    release: dict, kind: str, breach: str, interval: str
) -> None:
    """A version that answers half its requests with a 500, and one that answers every request 1.5 s late: each is
    rolled back at the end of its first step by the Prometheus side of the analysis (users' requests only); users see
    its errors only from its share and only while the step lasts.
    """
    env, versions, log = release["env"], release["versions"], release["log"]
    version = versions[kind]
    _ok(tqa(env, "release", "deploy", "--env", "canary", "--version", version, log=log))
    with Traffic(_proxy_url(release), users=4) as traffic:
        time.sleep(2)
        process, seen = _start_canary(release, "20,100", interval)
        _, stderr = process.communicate(timeout=180)
        ended = time.time()
        time.sleep(6)
    assert process.returncode == 1, stderr
    events = [json.loads(line) for line in _events(release).read_text().splitlines()[seen:]]
    assert [e["event"] for e in events] == ["canary", "step", "analysis", "rollback"]
    step, rollback = events[1], events[3]
    numbers = rollback["numbers"]
    assert any(b.startswith(breach) for b in numbers["breaches"]), numbers
    assert numbers["canary"]["requests"] >= 5
    if kind == "erroring":
        assert numbers["canary"]["error_rate"] > 0.2 and (numbers["production"]["error_rate"] or 0.0) == 0.0
    else:
        assert numbers["canary"]["p95_s"] > 1.4 and numbers["production"]["p95_s"] < 1.0
    # What users saw of it: only during its step, at most about its share, and nothing once it was rolled back.
    during = [o for o in traffic.outcomes if step["time"] <= o.time < rollback["time"]]
    on_canary = [o for o in during if o.version == version]
    assert 0 < len(on_canary) <= 0.5 * len(during), (len(on_canary), len(during))
    assert all(o.version == version and step["time"] <= o.time < rollback["time"] for o in traffic.failures())
    assert (len(traffic.failures()) > 0) == (kind == "erroring")
    # Answers the canary had in flight at the rollback may still finish after it (queued 1.5 s answers of the slow
    # one); no request sent after the rollback reaches it.
    after = [o for o in traffic.outcomes if o.started >= ended and o.status == 200]
    assert after and {o.version for o in after} == {versions["good"]}
    status = _status(release)
    assert status["aliases"]["production"] == versions["good"] and status["aliases"]["canary"] is None
    assert status["rollout"]["phase"] == "rolled_back"


def test_a_killed_canary_command_resumes_and_promotes(release: dict, tmp_path: Path) -> None:
    """`kill -9` of `tqa release canary` mid-step: the re-run resumes the recorded step and promotes, under the load
    gate's Locust users (`make loadtest`'s entry point, persona mix) as well as the tracked users, none failing."""
    env, versions, log = release["env"], release["versions"], release["log"]
    _ok(tqa(env, "release", "deploy", "--env", "canary", "--version", versions["next"], log=log))
    gate = tmp_path / "gate.yaml"
    gate.write_text("stages:\n  - {users: 8, duration_s: 40, max_p95_ms: 60000, max_error_rate: 0.0}\n")
    locust = subprocess.Popen(
        [sys.executable, "-m", "ops.load.gate", "--target", _proxy_url(release), "--config", str(gate)]
        + ["--out", str(tmp_path / "loadtest")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    with Traffic(_proxy_url(release), users=4) as traffic:
        time.sleep(2)
        first, _ = _start_canary(release, "20,100", "10")
        first.kill()
        first.wait()
        interrupted = _status(release)
        assert interrupted["rollout"]["phase"] == "running" and interrupted["rollout"]["step"] == 0
        canary_slot = next(s for s in interrupted["slots"].values() if s["version"] == versions["next"])
        assert canary_slot["proxy"] == [20, False]  # the recorded split is the proxy's split

        again = tqa(env, "release", "canary", "--steps", "20,100", "--interval", "10", log=log)
        promoted = time.time()
        time.sleep(2)
    gated, _ = locust.communicate(timeout=120)
    assert again.returncode == 0, again.stderr
    assert "Resuming the canary of version" in again.stderr
    assert traffic.failures() == []
    # The gate passes with an error-rate limit of 0: no Locust request failed across the kill, resume and promotion.
    assert locust.returncode == 0 and "8 users:" in gated and "-> pass" in gated, gated
    assert (tmp_path / "loadtest" / "users8_stats.csv").is_file() and (tmp_path / "loadtest" / "users8.html").is_file()
    assert set(traffic.versions(promoted + 1)) == {versions["next"]}
    status = _status(release)
    assert status["rollout"]["phase"] == "promoted"
    assert status["aliases"]["production"] == versions["next"] and status["aliases"]["canary"] is None
    slots = {s["version"]: s for s in status["slots"].values()}
    assert slots[versions["next"]]["proxy"] == [100, False]
    assert slots[versions["good"]]["proxy"] == [0, True]


def test_rollback_after_a_promotion_restores_the_previous_production(release: dict) -> None:
    env, versions, log = release["env"], release["versions"], release["log"]
    with Traffic(_proxy_url(release), users=4) as traffic:
        time.sleep(2)
        _ok(tqa(env, "release", "rollback", log=log))
        reverted = time.time()
        time.sleep(2)
    assert traffic.failures() == []
    assert set(traffic.versions(reverted + 1)) == {versions["good"]}
    status = _status(release)
    assert status["aliases"]["production"] == versions["good"]
    assert status["rollout"]["phase"] == "reverted"
    slots = {s["version"]: s for s in status["slots"].values()}
    assert slots[versions["good"]]["proxy"] == [100, False]
    assert slots[versions["next"]]["proxy"] == [0, True]


def test_a_version_pinning_a_bento_runs_that_bento(release: dict) -> None:
    """`make bento`'s script builds both bentos tagged with the git SHA; a version that pins the RAG bento is
    deployed as `bentoml serve <that bento>` (its own copy of the code), and one pinning a bento that was never
    built is refused with one sentence and changes nothing.
    """
    root = Path(__file__).resolve().parents[2]
    work, settings, log = release["work"], release["settings"], release["log"]
    home, out = work / "bentoml", work / "dist"
    env = {**release["env"], "BENTOML_HOME": str(home), "BENTO_OUT": str(out)}
    built = subprocess.run(
        ["bash", "scripts/release/build-bentos.sh"], cwd=root, env=env, capture_output=True, text=True, timeout=900
    )
    assert built.returncode == 0, built.stderr
    sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True, text=True)
    rag, runner = built.stdout.split()
    assert rag.split(":")[0] == "tqa-rag" and rag.split(":")[1].startswith(sha.stdout.strip())
    assert runner == f"tqa-qwen-runner:{rag.split(':')[1]}"
    assert (out / f"{rag.replace(':', '-')}.bento").is_file()

    before = _status(release)
    missing = register_version(settings, MODEL, work / "v5", abstain_threshold=0.0, bento="tqa-rag:nowhere")
    refused = tqa(env, "release", "deploy", "--env", "canary", "--version", missing, log=log)
    assert refused.returncode == 2 and "is not in the bento store" in refused.stderr, refused.stderr
    after = _status(release)
    assert after["aliases"] == before["aliases"] and after["slots"] == before["slots"]

    pinned = register_version(settings, MODEL, work / "v6", abstain_threshold=0.0, bento=rag)
    _ok(tqa(env, "release", "deploy", "--env", "canary", "--version", pinned, log=log))
    slot = next(s for s in _status(release)["slots"].values() if s["version"] == pinned)
    assert slot["answering"] and slot["proxy"] == [0, True]
    health = httpx.get(f"http://127.0.0.1:{slot['port']}/healthz").json()
    assert health == {"status": "ok", "version": pinned, "alias": "canary"}
    state = json.loads((Path(env["TQA_DATA_DIR"]) / "release" / "state.json").read_text())
    pid = next(s["pid"] for s in state["slots"].values() if s["version"] == pinned)
    bento = home / "bentos" / "tqa-rag" / rag.split(":")[1]
    servers = [p for p in psutil.Process(pid).children(recursive=True) if "bentoml" in " ".join(p.cmdline())]
    assert any(str(bento) in p.cmdline() for p in servers), [p.cmdline() for p in servers]
    assert {p.cwd() for p in servers if str(bento) in p.cmdline()} == {str(bento / "src")}
    answer = httpx.post(f"http://127.0.0.1:{slot['port']}/ask", json={"question": "How do I load a model in 4-bit?"})
    assert answer.status_code == 200 and answer.json()["sources"]
