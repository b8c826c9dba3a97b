"""Okapi BM25 baselines every retrieval number is reported beside: per symbol, whole files, and the two combined.

They are deliberately careful, not strawmen: identifiers are split into their parts (and kept whole), English
stopwords are dropped, and the two-stage baseline adds each symbol's file score to its own, which is what a
developer grepping a repository effectively does.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable

from ml.index.tokens import split_identifier

TOKEN = re.compile(r"[A-Za-z0-9_]+")
STOPWORDS = frozenset(
    """a an the and or of to in on for with by from at as is are was were be been being it its this that these those
    how do does did can could should would will i you we they my your our me what which who whom why when where there
    here not no if else so than then just also only into about after before""".split()
)


def tokenize(text: str, split: bool = True) -> list[str]:
    """Lower-cased word tokens; with `split`, compound identifiers also yield their parts and stopwords go."""
    out: list[str] = []
    for token in TOKEN.findall(text):
        lower = token.lower()
        if not split:
            out.extend(t for t in lower.split("_") if t)
            continue
        parts = split_identifier(token)
        if len(parts) > 1:
            out.append(lower)
            out.extend(parts)
        elif lower not in STOPWORDS:
            out.append(lower)
    return [t for t in out if not split or t not in STOPWORDS]


class BM25:
    """BM25 (k1=1.2, b=0.75, Weaviate's defaults) over a fixed set of documents, with an inverted index."""

    def __init__(self, docs: dict[str, str], k1: float = 1.2, b: float = 0.75, split: bool = True):
        self.k1, self.b, self.split = k1, b, split
        self.ids = list(docs)
        postings: dict[str, list[tuple[int, int]]] = defaultdict(list)
        self.lengths: list[int] = []
        for n, doc_id in enumerate(self.ids):
            tf = Counter(tokenize(docs[doc_id], split))
            self.lengths.append(sum(tf.values()))
            for term, count in tf.items():
                postings[term].append((n, count))
        self.postings = dict(postings)
        self.avg = sum(self.lengths) / max(len(self.lengths), 1)
        total = len(self.ids)
        self.idf = {t: math.log(1 + (total - len(p) + 0.5) / (len(p) + 0.5)) for t, p in self.postings.items()}

    def scores(self, query: str) -> dict[str, float]:
        """Every matching document's score."""
        acc: dict[int, float] = defaultdict(float)
        for term in set(tokenize(query, self.split)):
            idf = self.idf.get(term)
            if idf is None:
                continue
            for n, f in self.postings[term]:
                norm = self.k1 * (1 - self.b + self.b * self.lengths[n] / self.avg)
                acc[n] += idf * f * (self.k1 + 1) / (f + norm)
        return {self.ids[n]: s for n, s in acc.items()}

    def search(self, query: str, k: int = 10) -> list[tuple[str, float]]:
        return sorted(self.scores(query).items(), key=lambda x: x[1], reverse=True)[:k]


def two_stage(symbol_scores: dict[str, float], file_of: dict[str, str], file_scores: dict[str, float], weight: float):
    """Symbol score plus `weight` times its file's score, each scaled to the best of its own list."""
    top_symbol = max(symbol_scores.values(), default=0.0) or 1.0
    top_file = max(file_scores.values(), default=0.0) or 1.0
    return {
        doc: s / top_symbol + weight * file_scores.get(file_of[doc], 0.0) / top_file for doc, s in symbol_scores.items()
    }


def top(scores: dict[str, float], k: int) -> list[str]:
    return [doc for doc, _ in sorted(scores.items(), key=lambda x: x[1], reverse=True)[:k]]


def unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))
