"""A plain Okapi BM25 over whole files: the baseline every retrieval number is reported beside."""

from __future__ import annotations

import math
import re
from collections import Counter

TOKEN = re.compile(r"[A-Za-z0-9]+")


def tokenize(text: str) -> list[str]:
    """Weaviate's `word` tokenization: alphanumeric runs, lower-cased."""
    return [t.lower() for t in TOKEN.findall(text)]


class BM25:
    """BM25 (k1=1.2, b=0.75, Weaviate's defaults) over a fixed set of documents."""

    def __init__(self, docs: dict[str, str], k1: float = 1.2, b: float = 0.75):
        self.k1, self.b = k1, b
        self.ids = list(docs)
        self.tfs = [Counter(tokenize(docs[i])) for i in self.ids]
        self.lengths = [sum(tf.values()) for tf in self.tfs]
        self.avg = sum(self.lengths) / max(len(self.lengths), 1)
        df: Counter[str] = Counter()
        for tf in self.tfs:
            df.update(tf.keys())
        n = len(self.ids)
        self.idf = {t: math.log(1 + (n - d + 0.5) / (d + 0.5)) for t, d in df.items()}

    def search(self, query: str, k: int = 10) -> list[tuple[str, float]]:
        terms = [t for t in tokenize(query) if t in self.idf]
        scores = []
        for doc_id, tf, length in zip(self.ids, self.tfs, self.lengths, strict=True):
            score = 0.0
            for t in terms:
                f = tf.get(t)
                if f:
                    score += self.idf[t] * f * (self.k1 + 1) / (f + self.k1 * (1 - self.b + self.b * length / self.avg))
            if score:
                scores.append((doc_id, score))
        scores.sort(key=lambda x: x[1], reverse=True)
        return scores[:k]
