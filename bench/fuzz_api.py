"""Fuzz every route of the real service's OpenAPI with schemathesis: requests sent and server errors (must be 0).

Builds a small index (a few files of the installed transformers package) in a temporary data dir, runs `tqa serve`
over it on 127.0.0.1, and runs `schemathesis run <url>/docs.json --checks not_a_server_error` against it.

    .venv/bin/python -m bench.fuzz_api [--max-examples 50]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import served
from ml.index.embed import Embedder
from ml.index.ingest import ingest
from ml.index.state import StateStore
from ml.index.weaviate_index import WeaviateIndex
from ml.settings import Settings
from tests.support.corpus import make_mini_corpus
from tests.support.ports import free_port

FILES = ["models/llama/modeling_llama.py", "generation/logits_process.py"]


def build_index(base: Path) -> Settings:
    settings = Settings(data_dir=base / "data", weaviate_port=free_port(), weaviate_grpc_port=free_port())
    corpus = make_mini_corpus(base / "corpus", FILES)
    with WeaviateIndex.open(settings) as index:
        state = StateStore(settings.state_db)
        try:
            ingest(corpus, index, state, Embedder())
        finally:
            state.close()
    return settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-examples", type=int, default=50, help="Examples per operation.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tqa-fuzz-") as tmp:
        base = Path(tmp)
        settings = build_index(base)
        env = {
            "TQA_DATA_DIR": str(settings.data_dir),
            "TQA_WEAVIATE_PORT": str(settings.weaviate_port),
            "TQA_WEAVIATE_GRPC_PORT": str(settings.weaviate_grpc_port),
        }
        events = base / "events.ndjson"
        with served(free_port(), env=env) as url:
            result = subprocess.run(
                [
                    str(Path(sys.executable).with_name("schemathesis")),
                    "run",
                    f"{url}/docs.json",
                    "--checks",
                    "not_a_server_error",
                    "--max-examples",
                    str(args.max_examples),
                    "--request-timeout",
                    "60",
                    "--report",
                    "ndjson",
                    "--report-ndjson-path",
                    str(events),
                    "--no-color",
                ],
                capture_output=True,
                text=True,
                env={**os.environ, "SCHEMATHESIS_HOOKS": ""},
                timeout=1200,
            )
        summary = [line for line in result.stdout.splitlines() if line.strip()][-25:]
        print("\n".join(summary))
        print(json.dumps({"exit_code": result.returncode, "events_file_lines": len(events.read_text().splitlines())}))


if __name__ == "__main__":
    main()
