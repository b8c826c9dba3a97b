"""A small real corpus: some modules of the installed transformers package, copied and cited like the package."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

from ml.sources.corpus import Corpus

# Files that hold the dev set's gold symbols, plus a few neighbours so ranking has competition.
MINI_CORPUS_FILES = [
    "utils/quantization_config.py",
    "utils/logging.py",
    "utils/doc.py",
    "utils/deprecation.py",
    "generation/logits_process.py",
    "generation/stopping_criteria.py",
    "masking_utils.py",
    "models/llama/modeling_llama.py",
    "models/llama/configuration_llama.py",
    "models/mixtral/modeling_mixtral.py",
    "models/mistral/modeling_mistral.py",
    "loss/loss_utils.py",
    "trainer_callback.py",
    "trainer_utils.py",
    "optimization.py",
    "integrations/bitsandbytes.py",
]


def transformers_root() -> Path:
    spec = importlib.util.find_spec("transformers")
    assert spec is not None and spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations)))


def make_mini_corpus(base: Path, files: list[str] = MINI_CORPUS_FILES) -> Corpus:
    """A copy of some installed transformers files under `base/transformers`, cited like the package."""
    src = transformers_root()
    root = base / "transformers"
    for rel in files:
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / rel, target)
    return Corpus(name="transformers", root=root, base=base, version="test", ref="vtest", repo_prefix="src/")
