"""Benchmark: dataset build (twice, same hash?) and `tqa eval run` with 500 generated pairs on the configured index.

Uses the index of the current settings (TQA_DATA_DIR, default .tqa), starts its own MLflow server on a free
127.0.0.1 port, logs the eval there and registers it. Prints and writes bench/results/eval_speed.json.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    from ml.dataset.build import build_from_index
    from ml.eval.gate import load_config
    from ml.eval.report import write_report
    from ml.eval.suite import run_eval
    from ml.settings import Settings
    from ml.tracking.log import log_eval
    from ml.tracking.registry import register_candidate
    from ml.tracking.server import MlflowServer
    from tests.support.ports import free_port

    settings = Settings()
    work = Path(tempfile.mkdtemp(prefix="tqa-eval-bench-"))
    out: dict = {"data_dir": str(settings.data_dir.resolve())}

    t0 = time.perf_counter()
    first = build_from_index(settings, settings.data_dir / "dataset", say=print)
    out["build_s"] = round(time.perf_counter() - t0, 1)
    second = build_from_index(settings, work / "dataset-again")
    out["dataset"] = {
        "hash": first.manifest.dataset_hash,
        "hash_again": second.manifest.dataset_hash,
        "same_hash": first.manifest.dataset_hash == second.manifest.dataset_hash,
        "records": first.manifest.records,
        "counts": first.manifest.counts,
        "rejected": first.manifest.rejected,
        "chunks": first.manifest.corpus.get("chunks"),
    }

    config = load_config()
    t0 = time.perf_counter()
    report = run_eval(settings, config, first.directory)
    out["eval_s"] = round(time.perf_counter() - t0, 1)
    out["eval_items"] = report["meta"]["by_set"]
    out["metrics"] = report["metrics"]
    out["thresholds"] = report["thresholds"]
    paths = write_report(report, ROOT / "bench" / "results" / "eval_report")

    with MlflowServer(work / "mlflow", port=free_port()) as server:
        tracked = settings.model_copy(update={"mlflow_tracking_uri": server.uri})
        t0 = time.perf_counter()
        run_id = log_eval(tracked, report, paths["json"].parent, first.directory)
        out["mlflow_log_s"] = round(time.perf_counter() - t0, 1)
        decision = register_candidate(tracked, config.gate, run_id)
        out["register"] = {"version": decision.version, "accepted": decision.accepted, "reason": decision.reason}

    target = ROOT / "bench" / "results" / "eval_speed.json"
    target.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
