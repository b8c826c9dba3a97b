"""Runner fault benchmark: `tqa serve` with the LLM answerer over the mini corpus, the tiny Qwen runner SIGKILLed
while /ask is called, then started again on its port. Prints failed answers, why answers fell back while it was
down, their latency, and how long after the runner was ready again the first answer reached it.

    .venv/bin/python -m bench.runner_faults [--down-s 20]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from bench.common import percentile
from ml.index.embed import Embedder
from ml.index.ingest import ingest
from ml.index.state import StateStore
from ml.index.weaviate_index import WeaviateIndex
from ml.settings import Settings
from tests.support.corpus import make_mini_corpus
from tests.support.ports import free_port
from tests.support.runner_faults import run_runner_fault_scenario
from tests.support.tiny_qwen import build_tiny_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--down-s", type=float, default=20.0, help="How long the runner stays down.")
    parser.add_argument("--reset-s", type=float, default=5.0, help="TQA_LLM_BREAKER_RESET_S of the service.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tqa-runner-") as tmp:
        base = Path(tmp)
        settings = Settings(data_dir=base / "data", weaviate_port=free_port(), weaviate_grpc_port=free_port())
        index = WeaviateIndex.open(settings)
        state = StateStore(settings.state_db)
        try:
            ingest(make_mini_corpus(base / "corpus"), index, state, Embedder())
        finally:
            state.close()
            index.close()
        model = build_tiny_model(base / "tiny-qwen")
        r = run_runner_fault_scenario(settings, model, base, down_s=args.down_s, reset_s=args.reset_s)
    print(f"/ask before the kill: {r.asks_before} ({r.reached_before} reached the runner)")
    print(
        f"/ask with the runner down {args.down_s:.0f} s: {r.asks_down}, failed {r.failed}, reached it "
        f"{r.reached_while_down}; fell back because: {dict(r.down_reasons)}"
    )
    print(
        f"latency while down: p50 {percentile(r.down_latencies_ms, 50):.0f} ms, "
        f"p95 {percentile(r.down_latencies_ms, 95):.0f} ms, max {max(r.down_latencies_ms, default=0):.0f} ms"
    )
    print(
        f"runner restarted in {r.runner_restart_s:.1f} s; first answer from it {r.recovered_s:.1f} s after it was "
        f"ready (circuit reset {args.reset_s:.0f} s), {r.asks_after} asks"
    )
    for phase, h in (("before the kill", r.health_before), ("runner down", r.health_down), ("after", r.health_after)):
        print(
            f"health {phase}: /readyz {h.readyz}, /healthz runner up {h.runner.get('up')} "
            f"(circuit {h.runner.get('circuit')}, error {h.runner.get('error')}), tqa_llm_runner_up {h.gauge}, "
            f"seen after {h.seconds:.1f} s"
        )
    for e in r.errors[:5]:
        print("error:", e)


if __name__ == "__main__":
    main()
