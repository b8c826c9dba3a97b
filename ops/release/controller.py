"""Deploy, canary, promote and roll back: one release environment's slots, proxy weights and MLflow aliases."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ml.errors import UserError
from ml.settings import Settings
from ops.release.analysis import Thresholds, Verdict, analyse
from ops.release.metrics import PrometheusServer
from ops.release.probe import probe
from ops.release.proxy import Haproxy, Slot
from ops.release.state import SLOTS, ReleaseState, Rollout, SlotState, Store
from serving.server import bento_path, bento_store

STAGING, CANARY, PRODUCTION = "staging", "canary", "production"
ENVIRONMENTS = (STAGING, CANARY, PRODUCTION)
# Consecutive failed readiness probes (one a second) after which a canary counts as down.
DOWN_AFTER = 2
# How long a rollback the Prometheus analysis decided waits for the persona probe's numbers to record with it.
PROBE_GRACE_S = 10.0


def _ready(url: str, within_s: float = 0.0) -> bool:
    """Whether the slot at `url` answers `/readyz` with 200; with `within_s`, asked again until then (a slot busy
    with traffic on a small machine can miss one 2-second probe and still be serving)."""
    from ml.net import NotReady, wait_until_ready

    try:
        wait_until_ready(f"{url}/readyz", within_s, interval_s=0.5)
    except NotReady:
        return False
    return True


class ReleaseController:
    """Everything `tqa release` does, on this machine: slots are `tqa serve` processes behind HAProxy."""

    def __init__(self, settings: Settings, say: Callable[[str], None] = print, thresholds: Thresholds | None = None):
        self.settings = settings
        self.say = say
        self.thresholds = thresholds or Thresholds.load()
        self.directory = Path(settings.data_dir).resolve() / "release"
        self.store = Store(self.directory, settings.proxy_port)
        self.proxy = Haproxy(self.directory, settings.proxy_port)
        prometheus = urlparse(settings.prometheus_url)
        self.local_prometheus = prometheus.hostname in ("127.0.0.1", "localhost")
        self.prometheus = PrometheusServer(self.directory / "prometheus", prometheus.port or 9090)
        self.prometheus.api.url = settings.prometheus_url.rstrip("/")

    # ---- registry -------------------------------------------------------------------------------------------
    def _client(self) -> Any:
        from ml.tracking.log import connect

        connect(self.settings)
        from mlflow import MlflowClient

        return MlflowClient()

    def _alias(self, alias: str) -> str | None:
        from mlflow.exceptions import MlflowException

        try:
            return str(self._client().get_model_version_by_alias(self.settings.registered_model, alias).version)
        except MlflowException:
            return None

    def _set_alias(self, alias: str, version: str) -> None:
        self._client().set_registered_model_alias(self.settings.registered_model, alias, version)

    def _clear_alias(self, alias: str) -> None:
        if self._alias(alias) is not None:
            self._client().delete_registered_model_alias(self.settings.registered_model, alias)

    def _tag(self, version: str, decision: str, reason: str, numbers: dict[str, Any] | None = None) -> None:
        client = self._client()
        name = self.settings.registered_model
        client.set_model_version_tag(name, version, "rollout.decision", decision)
        client.set_model_version_tag(name, version, "rollout.reason", reason[:4000])
        if numbers is not None:
            client.set_model_version_tag(name, version, "rollout.numbers", json.dumps(numbers)[:4000])

    # ---- processes ------------------------------------------------------------------------------------------
    def _slot_url(self, state: ReleaseState, slot: str) -> str:
        return f"http://127.0.0.1:{state.slots[slot].port}"

    def _proxy_slots(self, state: ReleaseState) -> list[Slot]:
        return [Slot(name, f"127.0.0.1:{s.port}", s.weight, s.maintenance) for name, s in sorted(state.slots.items())]

    def _start_serving(self, port: int, version: str, alias: str, log_name: str, timeout_s: float = 300) -> int:
        """A `tqa serve` for `version` on `port`, detached from this command; returns its pid once it is ready."""
        from ml.net import wait_until_ready

        env = {
            **os.environ,
            **self._index_env(log_name),
            "TQA_MODEL_VERSION": version,
            "TQA_MODEL_ALIAS": alias,
            "BENTOML_DO_NOT_TRACK": "true",
            # The store a pinned bento is run from: this environment's, not the slot's own data dir.
            "BENTOML_HOME": str(bento_store(self.settings)),
        }
        Path(env["TQA_DATA_DIR"]).mkdir(parents=True, exist_ok=True)
        log = self.directory / f"{log_name}.log"
        with log.open("ab") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "ops.cli", "serve", "--port", str(port)],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            wait_until_ready(f"http://127.0.0.1:{port}/readyz", timeout_s, process, log)
        except Exception as exc:
            _stop(process.pid)
            raise UserError(f"Version {version} did not come up on port {port}; see {log}.") from exc
        return process.pid

    def _index_env(self, slot: str) -> dict[str, str]:
        """Each slot has a data dir of its own (one `tqa serve` per data dir) and reads the same index server:
        the external Weaviate when one is configured, else the running embedded server of the main data dir.
        """
        env = {"TQA_DATA_DIR": str(self.directory / slot / "data")}
        if not self.settings.weaviate_url:
            from ml.index.local_server import recorded_server

            own = recorded_server(self.settings)
            if own is None:
                raise UserError(
                    f"No Weaviate runs for data dir {self.settings.data_dir}; start it (`tqa serve`) or set "
                    "TQA_WEAVIATE_URL to the index server the slots should read."
                )
            env["TQA_WEAVIATE_URL"] = f"http://127.0.0.1:{own.http_port}"
            env["TQA_WEAVIATE_GRPC_URL"] = f"http://127.0.0.1:{own.grpc_port}"
        return env

    def _ensure_infra(self, state: ReleaseState) -> None:
        # An external Prometheus that does not answer fails before anything starts.
        if not self.local_prometheus and not self.prometheus.api.reachable():
            raise UserError(f"No Prometheus answers at {self.settings.prometheus_url}; set TQA_PROMETHEUS_URL.")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.prometheus.directory.mkdir(parents=True, exist_ok=True)
        self.proxy.start(self._proxy_slots(state))
        if self.local_prometheus:
            self.prometheus.start(self._proxy_slots(state), self.settings.prometheus_scrape_interval_s)

    def _apply(self, state: ReleaseState) -> None:
        """State first, then the proxy: after a crash between the two, a re-run re-applies the recorded split."""
        self.store.save(state)
        self.proxy.apply(self._proxy_slots(state))

    # ---- commands -------------------------------------------------------------------------------------------
    def deploy(self, env: str, version: str | None = None) -> dict[str, Any]:
        """Start the version for `env` (default: staging's candidate; production keeps its own) and move its alias."""
        if env not in ENVIRONMENTS:
            raise UserError(f"Unknown environment '{env}'; use one of {', '.join(ENVIRONMENTS)}.")
        from ml.tracking.release import resolve

        default = self._alias(PRODUCTION) if env == PRODUCTION else None
        version = version or default or self._alias(STAGING)
        if version is None:
            raise UserError("No version given and no `staging` alias; run `tqa register` or pass --version.")
        # An unknown version, or a bento it pins that is not built here, fails before anything changes.
        pinned = resolve(self.settings, version=version).pinned
        if pinned.get("bento"):
            bento_path(self.settings.model_copy(update={"bento": pinned["bento"]}))
        with self.store.lock():
            state = self.store.load()
            if state.rollout and state.rollout.phase == "running":
                raise UserError(f"A canary of version {state.rollout.version} is in progress; finish or roll it back.")
            if env == STAGING:
                _stop(state.staging_pid)
                state.staging_pid = self._start_serving(self.settings.proxy_port + 3, version, STAGING, "staging")
                state.staging_version = version
                self.store.save(state)
                self._set_alias(STAGING, version)
            elif env == PRODUCTION:
                slot = state.production_slot or SLOTS[0]
                self._ensure_infra(state)  # a proxy or Prometheus that does not come up fails before any change
                self._replace(state, slot, version, PRODUCTION)
                state.production_slot = slot
                state.slots[slot].weight, state.slots[slot].maintenance = 100, False
                other = state.slots[state.other(slot)]
                other.weight, other.maintenance = 0, True
                self._ensure_infra(state)
                self._apply(state)
                self._set_alias(PRODUCTION, version)
            else:
                if state.production_slot is None:
                    raise UserError("Nothing serves production yet; run `tqa release deploy --env production` first.")
                slot = state.canary_slot
                self._ensure_infra(state)
                self._replace(state, slot, version, CANARY)
                state.slots[slot].weight, state.slots[slot].maintenance = 0, True
                state.rollout = None
                self._ensure_infra(state)
                self._apply(state)
                self._set_alias(CANARY, version)
            event = self.store.record("deploy", env=env, version=version)
        self.say(f"Deployed version {version} to {env}.")
        return event

    def _replace(self, state: ReleaseState, slot: str, version: str, alias: str) -> None:
        """Serve `version` in `slot`; the slot is out of rotation while its process is replaced."""
        current = state.slots[slot]
        if current.pid and current.version == version and _ready(self._slot_url(state, slot)):
            return
        if current.weight and self.proxy.running():
            current.weight, current.maintenance = 0, True
            self._apply(state)
        _stop(current.pid)
        pid = self._start_serving(current.port, version, alias, slot)
        state.slots[slot] = SlotState(port=current.port, pid=pid, version=version, weight=0, maintenance=True)
        self.store.save(state)

    def canary(self, steps: list[int], interval_s: float, promote: bool = True) -> str:
        """Shift traffic to the canary step by step; roll back at the first breach, else promote. Resumable.

        With `promote=False` a canary that passed every step holds its last split until `promote()` (CD waits for an
        approval there).
        """
        if not steps or any(not 0 < s <= 100 for s in steps) or steps != sorted(steps):
            raise UserError("Steps must be increasing percentages between 1 and 100, e.g. 5,25,50,100.")
        if interval_s <= 0:
            raise UserError("The analysis interval must be positive.")
        with self.store.lock():
            state = self.store.load()
            rollout = state.rollout
            if rollout is not None and rollout.phase == "running":
                self.say(f"Resuming the canary of version {rollout.version} at step {rollout.step + 1}.")
                self.store.record("resume", version=rollout.version, step=rollout.step)
            else:
                if state.production_slot is None:
                    raise UserError("Nothing serves production yet; run `tqa release deploy --env production` first.")
                slot = state.canary_slot
                version = state.slots[slot].version
                if version is None or not _ready(self._slot_url(state, slot), within_s=15):
                    raise UserError("No canary is deployed and answering; run `tqa release deploy --env canary`.")
                if self._alias(CANARY) != version:
                    raise UserError(f"The `canary` alias does not point at the deployed version {version}; redeploy.")
                self._ensure_infra(state)
                rollout = Rollout(
                    version=version,
                    slot=slot,
                    steps=steps,
                    interval_s=interval_s,
                    previous_production=state.slots[state.production_slot].version,
                )
                state.rollout = rollout
                self.store.save(state)
                self.store.record("canary", version=version, steps=steps, interval_s=interval_s)
            self._ensure_infra(state)
            return self._run(state, rollout, promote)

    def promote(self) -> str:
        """Promote a canary that passed every step and holds its split (`canary(..., promote=False)`)."""
        with self.store.lock():
            state = self.store.load()
            rollout = state.rollout
            if rollout is None or rollout.phase != "running":
                raise UserError("No canary in progress to promote; run `tqa release canary` first.")
            if rollout.step < len(rollout.steps):
                raise UserError(f"The canary has passed {rollout.step} of {len(rollout.steps)} steps; finish it first.")
            return self._promote(state, rollout)

    def _run(self, state: ReleaseState, rollout: Rollout, promote: bool = True) -> str:
        production = state.other(rollout.slot)
        while rollout.step < len(rollout.steps):
            weight = rollout.steps[rollout.step]
            state.slots[rollout.slot].weight, state.slots[rollout.slot].maintenance = weight, False
            state.slots[production].weight, state.slots[production].maintenance = 100 - weight, False
            self._apply(state)
            self.store.record("step", version=rollout.version, step=rollout.step + 1, weight=weight)
            self.say(f"Step {rollout.step + 1}/{len(rollout.steps)}: {weight}% to version {rollout.version}.")
            # The persona probe asks both slots directly while the step's traffic flows; its answers join the analysis.
            # A daemon thread: a canary that stops answering is rolled back without waiting for the probe's timeouts.
            step_started = time.time()
            probing = _Probe(self._slot_url(state, rollout.slot), self._slot_url(state, production), self.thresholds)
            down = self._watch(state, rollout.slot, rollout.interval_s)
            if down:
                return self._roll_back(state, down, None)
            # Prometheus first: a canary that breaches there is rolled back at the end of its interval, without
            # waiting for a probe that a slow or failing canary keeps busy (the probe's numbers join when ready).
            verdict = analyse(
                self.prometheus.api,
                rollout.slot,
                production,
                time.time() - step_started,
                time.time() - rollout.started,
                self.thresholds,
            )
            probed = probing.result(None if verdict.passed else PROBE_GRACE_S)
            if probed is not None:
                verdict.add_probe(probed)
            self.store.record("analysis", version=rollout.version, step=rollout.step + 1, **verdict.as_dict())
            if not verdict.passed:
                return self._roll_back(state, "; ".join(verdict.breaches), verdict)
            asked = sum(n["asked"] for n in verdict.probe.values())
            self.say(
                f"  passed: canary {_fmt(verdict.canary)} | production {_fmt(verdict.production)}"
                + (f" | persona probe: {asked} questions to each side" if asked else "")
            )
            rollout.step += 1
            self.store.save(state)
        if not promote:
            self.say(f"Version {rollout.version} passed every step; holding the split until `tqa release promote`.")
            return "held"
        return self._promote(state, rollout)

    def _watch(self, state: ReleaseState, slot: str, interval_s: float) -> str | None:
        """Wait one interval, probing the canary each second; the reason if it stops answering."""
        url, failures = self._slot_url(state, slot), 0
        deadline = time.monotonic() + interval_s
        while time.monotonic() < deadline:
            failures = 0 if _ready(url) else failures + 1
            if failures >= DOWN_AFTER:
                return f"canary stopped answering ({url}/readyz failed {failures} times in a row)"
            time.sleep(min(1.0, max(deadline - time.monotonic(), 0)))
        return None

    def _roll_back(self, state: ReleaseState, reason: str, verdict: Verdict | None) -> str:
        """Canary to weight 0 and out of rotation, production to 100%, alias `canary` cleared; production unchanged."""
        rollout = state.rollout
        assert rollout is not None
        canary, production = state.slots[rollout.slot], state.slots[state.other(rollout.slot)]
        production.weight, production.maintenance = 100, False
        canary.weight, canary.maintenance = 0, True
        rollout.phase, rollout.reason = "rolled_back", reason
        self._apply(state)
        self._clear_alias(CANARY)
        numbers = verdict.as_dict() if verdict else None
        self._tag(rollout.version, "rolled_back", reason, numbers)
        self.store.record("rollback", version=rollout.version, reason=reason, numbers=numbers)
        self.say(f"Rolled back version {rollout.version}: {reason}.")
        return "rolled_back"

    def _promote(self, state: ReleaseState, rollout: Rollout) -> str:
        old = state.other(rollout.slot)
        state.production_slot = rollout.slot
        state.slots[rollout.slot].weight, state.slots[rollout.slot].maintenance = 100, False
        state.slots[old].weight, state.slots[old].maintenance = 0, True
        rollout.phase, rollout.reason = "promoted", "every step passed"
        self._apply(state)
        self._set_alias(PRODUCTION, rollout.version)
        self._clear_alias(CANARY)
        self._tag(rollout.version, "promoted", f"passed {len(rollout.steps)} steps: {rollout.steps}")
        self.store.record("promote", version=rollout.version, previous=rollout.previous_production)
        self.say(
            f"Promoted version {rollout.version} to production; version {rollout.previous_production} stays warm "
            "for `tqa release rollback`."
        )
        return "promoted"

    def rollback(self) -> str:
        """Now: a canary in progress goes to 0%; after a promotion, production returns to the previous version."""
        with self.store.lock():
            state = self.store.load()
            rollout = state.rollout
            if rollout is not None and rollout.phase == "running":
                return self._roll_back(state, "rolled back by an operator", None)
            if rollout is not None and rollout.phase == "promoted" and rollout.previous_production:
                old = state.other(rollout.slot)
                if state.slots[old].version != rollout.previous_production or not _ready(self._slot_url(state, old)):
                    raise UserError(
                        f"Version {rollout.previous_production} no longer runs; deploy it with "
                        f"`tqa release deploy --env production --version {rollout.previous_production}`."
                    )
                state.production_slot = old
                state.slots[old].weight, state.slots[old].maintenance = 100, False
                state.slots[rollout.slot].weight, state.slots[rollout.slot].maintenance = 0, True
                rollout.phase, rollout.reason = "reverted", "rolled back by an operator after promotion"
                self._apply(state)
                self._set_alias(PRODUCTION, rollout.previous_production)
                self._tag(rollout.version, "reverted", rollout.reason)
                self.store.record("revert", version=rollout.version, production=rollout.previous_production)
                self.say(f"Production is version {rollout.previous_production} again.")
                return "reverted"
            raise UserError("Nothing to roll back: no canary in progress and no promotion to undo.")

    def status(self) -> dict[str, Any]:
        """Who serves what share (recorded and as the proxy sees it), the aliases, and the last decisions."""
        state = self.store.load()
        runtime = self.proxy.weights() if self.proxy.running() else {}
        slots = {}
        for name, slot in state.slots.items():
            slots[name] = {
                "version": slot.version,
                "port": slot.port,
                "weight": slot.weight,
                "maintenance": slot.maintenance,
                "proxy": runtime.get(name),
                "answering": bool(slot.pid) and _ready(self._slot_url(state, name)),
                "role": PRODUCTION if name == state.production_slot else CANARY,
            }
        aliases = {alias: self._alias(alias) for alias in ENVIRONMENTS}
        return {
            "proxy": self.proxy.url if runtime else None,
            "slots": slots,
            "aliases": aliases,
            "rollout": state.rollout.model_dump() if state.rollout else None,
            "events": self.store.last_events(),
        }

    def down(self) -> None:
        """Stop the slots, staging, the proxy and the local Prometheus this environment started."""
        with self.store.lock():
            state = self.store.load()
            for slot in state.slots.values():
                _stop(slot.pid)
                slot.pid = None
            _stop(state.staging_pid)
            state.staging_pid = None
            self.store.save(state)
            self.proxy.stop()
            if self.local_prometheus:
                self.prometheus.stop()


class _Probe:
    """The persona probe (ops/release/probe.py) of one step, in a thread of its own; nothing when it is disabled."""

    def __init__(self, canary_url: str, production_url: str, thresholds: Thresholds):
        self.outcome: tuple[dict[str, dict[str, int]], list[str]] | None = None
        self.error: Exception | None = None
        self.thread: threading.Thread | None = None
        if thresholds.probe.enabled:
            self.thread = threading.Thread(target=self._run, args=(canary_url, production_url, thresholds), daemon=True)
            self.thread.start()

    def _run(self, canary_url: str, production_url: str, thresholds: Thresholds) -> None:
        try:
            self.outcome = probe(canary_url, production_url, thresholds.probe)
        except Exception as exc:  # re-raised in result(), in the controller's thread
            self.error = exc

    def result(self, timeout_s: float | None = None) -> tuple[dict[str, dict[str, int]], list[str]] | None:
        """The probe's numbers and breaches; None when it is disabled or still running after `timeout_s`."""
        if self.thread is None:
            return None
        self.thread.join(timeout_s)
        if self.error is not None:
            raise self.error
        return self.outcome


def _stop(pid: int | None, timeout_s: float = 30) -> None:
    """Stop the process group a detached `tqa serve` leads (its BentoML workers included)."""
    if not pid:
        return
    try:
        os.killpg(pid, signal.SIGINT)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        if _reaped(pid):
            return
        time.sleep(0.2)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _reaped(pid: int) -> bool:
    """Whether `pid` has exited: reaped here if it is our child, or a zombie nobody has reaped yet."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return True
    except ChildProcessError:
        pass
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def _fmt(numbers: dict[str, float | None]) -> str:
    return ", ".join(f"{k} {'-' if v is None else round(v, 3)}" for k, v in numbers.items())
