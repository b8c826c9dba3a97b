"""The indexed tree's vocabulary: in how many files each word appears, for telling Transformers questions from others.

A question that names something the repository never mentions ("TorchServe", "Horovod", "LightGBM") is about
another tool, however many of its other words Transformers shares. The confidence model reads two numbers from here:
how many of the question's words (and whole names, before identifier splitting: `TorchServe`, `gpu_memory_utilization`)
no indexed file contains, and the share of its words that almost no file contains (at most one in a thousand of the
files: two in the package, none in a small tree, where every word is in few files).

Built by walking the indexed root with the index's own file selection (`Corpus.iter_files`; about 10 s for the
package on 2 cores), written to the data dir after ingest, and rebuilt when the set of indexed files changes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ml.rank import STOP, words

log = logging.getLogger(__name__)

FILE_NAME = "vocabulary.json"
RARE_SHARE = 0.001
# Whole names as written (`TorchServe`, `gpu_memory_utilization`, `llama.cpp` -> `llama`, `cpp`), before identifier
# splitting. A snake_case name another library defines splits into words every tree has (`gpu`, `memory`); whole, it
# is in no file. In the scope training questions no in-scope question names an identifier the package lacks.
NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*[A-Za-z0-9]")
# Bumped when what is counted changes: a vocabulary saved in another format is rebuilt.
FORMAT = 2


@dataclass
class Vocabulary:
    """Word -> number of indexed files containing it (words as `ml.rank.words` makes them, plus whole names)."""

    files: dict[str, int]
    documents: int
    fingerprint: str = ""

    def foreign(self, question: str) -> tuple[float, float]:
        """(words no file contains, capped at 2; share of the question's words almost no file contains)."""
        split = set(words(question))
        names = {n.lower() for n in NAME.findall(question) if len(n) > 3} - split - STOP
        unseen = sum(self.files.get(w, 0) == 0 for w in split | names)
        limit = int(self.documents * RARE_SHARE)
        rare = sum(self.files.get(w, 0) <= limit for w in split) / len(split) if split else 1.0
        return float(min(unseen, 2)), rare

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        data = {"format": FORMAT, "fingerprint": self.fingerprint, "documents": self.documents, "files": self.files}
        tmp.write_text(json.dumps(data))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> Vocabulary:
        data = json.loads(path.read_text())
        return cls(files=data["files"], documents=data["documents"], fingerprint=data["fingerprint"])


def build(files: Iterable[Path], fingerprint: str = "") -> Vocabulary:
    """Count, for every word, the files that contain it."""
    counts: Counter[str] = Counter()
    documents = 0
    for file in files:
        text = file.read_text(errors="replace")
        counts.update(set(words(text)) | {n.lower() for n in NAME.findall(text)})
        documents += 1
    return Vocabulary(files=dict(counts), documents=documents, fingerprint=fingerprint)


def fingerprint(paths: list[str]) -> str:
    return hashlib.sha256("\n".join(sorted(paths)).encode()).hexdigest()[:16]


def load_or_build(
    data_dir: Path, root: Path | None, paths: list[str], doc_languages: tuple[str, ...]
) -> Vocabulary | None:
    """The data dir's vocabulary, rebuilt first when the indexed files changed; None without an indexed root on disk."""
    path = data_dir / FILE_NAME
    current = fingerprint(paths)
    on_disk = root is not None and root.is_dir()
    saved = Vocabulary.load(path) if _readable(path) else None
    if saved is not None and (saved.fingerprint == current or not on_disk):
        return saved
    if root is None or not on_disk:
        return None
    from ml.sources.corpus import Corpus

    log.info("building the vocabulary of %s", root)
    tree = Corpus(name="", root=root, base=root, version="", doc_languages=doc_languages)
    vocabulary = build(tree.iter_files(), current)
    data_dir.mkdir(parents=True, exist_ok=True)
    vocabulary.save(path)
    return vocabulary


def _readable(path: Path) -> bool:
    """Whether a saved vocabulary is in this version's format (an older or damaged one is rebuilt)."""
    try:
        return json.loads(path.read_text()).get("format") == FORMAT
    except (OSError, ValueError):
        return False
