"""One continuous-training cycle: sync -> dataset version -> retrain -> eval -> gated registration -> canary.

Order and durability: the MLflow server is checked before anything else, so an unreachable server costs one
sentence and changes nothing. The staging-buffer offset and feedback count advance only in the state file written
after the cycle's last step, so a cycle that fails (or is killed) is retried in full by the next one; a dataset
version published by the failed cycle is found again by its hash, not duplicated. A retrained ranker is evaluated
from a candidate directory (`TQA_RANKER_DIR`) and installed into the data dir only when the gate accepts it.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from ml.errors import UserError
from ml.settings import Settings
from ops.ct.config import CTConfig, Release
from ops.ct.state import CTState, StateFile
from ops.ct.triggers import evaluate, feedback_numbers, new_changes

Say = Callable[[str], None]
HISTORY = 50  # cycle reports kept in the state file


def state_file(settings: Settings) -> StateFile:
    return StateFile(settings.data_dir / "ct" / "state.json")


def status(settings: Settings, config: CTConfig) -> dict[str, Any]:
    """The triggers as they stand, the current dataset and the last cycle with its decision (for `tqa ct status`)."""
    state = state_file(settings).load()
    from ml.dataset.versions import DatasetVersions

    versions = DatasetVersions(settings.data_dir / "datasets").all()
    return {
        "triggers": [t.as_dict() for t in evaluate(settings, config, state)],
        "dataset": versions[-1] if versions else None,
        "dataset_versions": len(versions),
        "last_cycle": state.history[-1] if state.history else None,
    }


def run_cycle(settings: Settings, config: CTConfig, *, force: bool = False, say: Say = print) -> dict[str, Any]:
    """Run one cycle when a trigger fires (or `force`); returns its report, also kept in the state file."""
    from ml.tracking.log import connect

    connect(settings)  # no MLflow, no cycle: nothing below may start without the registry that records it
    files = state_file(settings)
    state = files.load()
    started = time.time()
    triggers = evaluate(settings, config, state, started)
    fired = [t.name for t in triggers if t.fired]
    report: dict[str, Any] = {
        "started_at": started,
        "triggers": [t.as_dict() for t in triggers],
        "fired": fired,
        "forced": force,
    }
    for t in triggers:
        say(f"trigger {t.name}: {t.detail} (threshold {t.threshold:g}){' -> fires' if t.fired else ''}")
    if not fired and not force:
        report.update(decision="skipped", reason="no trigger fired", seconds=round(time.time() - started, 1))
        _remember(files, state, report)
        say("No trigger fired; nothing to retrain.")
        return report

    timings: dict[str, float] = {}
    report["timings_s"] = timings
    clock = time.perf_counter()

    def lap(step: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[step] = round(now - clock, 1)
        clock = now

    if config.sync_path is not None:
        report["sync"] = _sync(settings, config.sync_path, say)
        lap("sync")
    changes, staging_end = new_changes(settings.staging_file, state.staging_offset)
    approved_total = feedback_numbers(settings, config.triggers.window_hours)["approved"]
    report["dataset"] = _dataset(settings, config, changes, say)
    lap("dataset")

    def wants(enabled: bool, on: list[str]) -> bool:
        return enabled and (force or any(name in on for name in fired))

    ranker, generator = (
        wants(config.ranker.enabled, list(config.ranker.on)),
        wants(config.generator.enabled, list(config.generator.on)),
    )
    report["retrained"] = [name for name, yes in (("ranker", ranker), ("generator", generator)) if yes]
    dataset_dir = Path(report["dataset"]["path"])
    candidate = settings.data_dir / "ct" / "candidate"
    eval_settings = settings
    if ranker:
        from ml.train.ranker import train_all

        shutil.rmtree(candidate, ignore_errors=True)
        say("retraining the ranker and confidence")
        train_all(settings, candidate, config.ranker.docstrings, say=say)
        eval_settings = settings.model_copy(update={"ranker_dir": candidate})
        lap("ranker")
    report["pipeline"] = _evaluate_and_register(eval_settings, config, dataset_dir, candidate if ranker else None, say)
    lap("eval_register")
    if ranker and report["pipeline"]["accepted"]:
        live = settings.ranker_dir or settings.data_dir
        for name in ("ranker.json", "confidence.json"):
            shutil.copy2(candidate / name, live / name)
        say(f"installed the retrained ranker in {live}")
    if generator:
        report["generator"] = _train_generator(settings, config, dataset_dir, say)
        lap("generator")
        if report["generator"]["accepted"]:
            # The pipeline version of this cycle names the adapter its runner is to serve (TQA_RUNNER_ADAPTER).
            from mlflow import MlflowClient

            uri = f"models:/{report['generator']['model']}/{report['generator']['version']}"
            MlflowClient(settings.mlflow_tracking_uri).set_model_version_tag(
                report["pipeline"]["model"], report["pipeline"]["version"], "tqa.generator_adapter", uri
            )
            report["generator"]["adapter_uri"] = uri
    accepted = report["pipeline"]["accepted"]
    report["canary"] = (
        hand_to_canary(settings, config.release, report["pipeline"]["version"], say)
        if accepted
        else {"action": "none", "why": "the candidate was refused"}
    )
    lap("canary")
    report.update(decision="accepted" if accepted else "refused", reason=report["pipeline"]["reason"])
    report["seconds"] = round(time.time() - started, 1)
    state.staging_offset = staging_end
    state.approved_seen = approved_total
    state.last_cycle_at = started
    state.dataset_hash = report["dataset"]["dataset_hash"]
    _remember(files, state, report)
    return report


def _remember(files: StateFile, state: CTState, report: dict[str, Any]) -> None:
    state.history = [*state.history, report][-HISTORY:]
    files.save(state)


def _sync(settings: Settings, path: Path, say: Say) -> list[dict[str, Any]]:
    from ml.pipeline import open_syncer

    with ExitStack() as stack:
        syncer = open_syncer(stack, settings, path)
        reports = syncer.run("HEAD", progress=say)
    return [{"old": r.old, "new": r.new, "changes": len(r.changes)} for r in reports]


def _dataset(settings: Settings, config: CTConfig, changes: int, say: Say) -> dict[str, Any]:
    """Build a version from the index plus approved corrections; publish it by hash beside the earlier ones."""
    from ml.dataset.build import BuildConfig, build_from_index
    from ml.dataset.versions import DatasetVersions, add_pairs

    versions = DatasetVersions(settings.data_dir / "datasets")
    previous = versions.latest()
    build = BuildConfig(eval_fraction=config.eval_fraction)
    scratch = versions.scratch()
    manifest = build_from_index(settings, scratch, build, say=say).manifest
    corrections = 0
    if settings.feedback_db.exists():
        from ml.feedback.export import correction_pairs
        from ml.feedback.store import FeedbackStore

        with FeedbackStore(settings.feedback_db) as store:
            pairs = correction_pairs(store)
        corrections = len(pairs)
        manifest = add_pairs(scratch, pairs, build)
    directory, is_new = versions.publish(
        scratch,
        manifest,
        staging_changes=changes,
        corrections=corrections,
        previous=previous["dataset_hash"] if previous else None,
    )
    # `tqa eval run` and `tqa train generator` read <data dir>/dataset by default: it mirrors the newest version.
    current = settings.data_dir / "dataset"
    shutil.rmtree(current, ignore_errors=True)
    shutil.copytree(directory, current)
    grew = manifest.records - (previous["records"] if previous else 0)
    say(
        f"dataset {manifest.dataset_hash[:16]}: {manifest.records} pairs ({grew:+d}), "
        f"{'new version' if is_new else 'same as an earlier version'}, {corrections} corrections"
    )
    return {
        "dataset_hash": manifest.dataset_hash,
        "path": str(directory),
        "records": manifest.records,
        "previous": previous["dataset_hash"] if previous else None,
        "previous_records": previous["records"] if previous else 0,
        "new_version": is_new,
        "staging_changes": changes,
        "corrections": corrections,
        "versions": len(versions.all()),
    }


def _evaluate_and_register(
    settings: Settings, config: CTConfig, dataset_dir: Path, ranker_dir: Path | None, say: Say
) -> dict[str, Any]:
    from ml.eval.gate import load_config
    from ml.eval.report import write_report
    from ml.eval.suite import run_eval
    from ml.tracking.log import connect, log_eval
    from ml.tracking.registry import register_candidate

    cfg = load_config(config.eval_config)
    if config.eval_sample is not None:
        cfg = cfg.model_copy(update={"sample": config.eval_sample})
    say(f"evaluating on {dataset_dir.name} ({cfg.sample} generated pairs and the dev set)")
    report = run_eval(settings, cfg, dataset_dir)
    paths = write_report(report, settings.data_dir / "ct" / "eval")
    run_id = log_eval(settings, report, paths["json"].parent, dataset_dir)
    mlflow = connect(settings)
    client = mlflow.MlflowClient()
    client.set_tag(run_id, "tqa.ct", "true")
    # Every dataset version so far (hash, path, size, what it was built from), beside the one this run evaluated.
    versions_log = settings.data_dir / "datasets" / "versions.jsonl"
    if versions_log.is_file():
        client.log_artifact(run_id, str(versions_log), "datasets")
    if ranker_dir is not None:
        for name in ("ranker.json", "confidence.json"):
            client.log_artifact(run_id, str(ranker_dir / name), "ranker")
    decision = register_candidate(settings, cfg.gate, run_id)
    say(f"{decision.model} v{decision.version}: {'accepted' if decision.accepted else 'refused'} ({decision.reason})")
    return {
        "run_id": run_id,
        "model": decision.model,
        "version": decision.version,
        "accepted": decision.accepted,
        "reason": decision.reason,
        "rows": decision.rows,
        "metrics": report["metrics"],
        "thresholds_passed": report["thresholds"]["passed"],
    }


def _train_generator(settings: Settings, config: CTConfig, dataset_dir: Path, say: Say) -> dict[str, Any]:
    from ml.tracking.generator import register_adapter
    from ml.train.generator import load_config, train_generator

    cfg = load_config(config.generator.config)
    if config.generator.tiny:
        cfg = cfg.tiny()
    result = train_generator(
        settings,
        cfg,
        dataset_dir,
        settings.data_dir / "ct" / "generator",
        base_model=config.generator.base_model,
        say=say,
    )
    if result.run_id is None:
        raise UserError("The generator run was not tracked; CT registers only tracked runs.")
    decision = register_adapter(settings, result.run_id, cfg.registered_model, cfg.min_eval_loss_reduction)
    say(f"{decision.model} v{decision.version}: {'accepted' if decision.accepted else 'refused'} ({decision.reason})")
    return {
        "run_id": result.run_id,
        "model": decision.model,
        "version": decision.version,
        "accepted": decision.accepted,
        "reason": decision.reason,
        "loss_first": result.losses[0],
        "loss_last": result.losses[-1],
        "eval_loss_base": result.eval_loss_base,
        "eval_loss": result.eval_loss,
    }


def release_deployed(settings: Settings) -> bool:
    """A release proxy serves production from this data dir (`tqa release deploy --env production` was run)."""
    from ops.release.state import Store

    store = Store(Path(settings.data_dir).resolve() / "release", settings.proxy_port)
    return store.path.exists() and store.load().production_slot is not None


def hand_to_canary(settings: Settings, release: Release, version: str, say: Say) -> dict[str, Any]:
    """Deploy the accepted version as the canary and run its steps, or print the commands when none is configured."""
    steps = ",".join(str(s) for s in release.steps)
    commands = [
        f"tqa release deploy --env canary --version {version}",
        f"tqa release canary --steps {steps} --interval {release.interval_s:g}",
    ]
    deployed = release_deployed(settings)
    if release.canary == "off" or (release.canary == "auto" and not deployed):
        why = "release.canary is off" if release.canary == "off" else "no release is deployed from this data dir"
        say(f"Would start the canary ({why}):")
        for command in commands:
            say(f"  {command}")
        return {"action": "printed", "why": why, "commands": commands}
    if not deployed:
        raise UserError(
            "release.canary is on but nothing serves production; run `tqa release deploy --env production`."
        )
    from ops.release.controller import ReleaseController

    controller = ReleaseController(settings, say=say)
    controller.deploy("canary", version)
    outcome = controller.canary(list(release.steps), release.interval_s, promote=False)
    return {"action": "started", "outcome": outcome, "commands": commands}
