"""Embedding throughput per backend on real chunk texts of the installed transformers package, and their agreement.

Samples chunks the way ingest makes them (`chunk_file` + `embedding_text`, files in a fixed shuffled order), then
for each backend, twice and interleaved so a busy machine slows both alike: chunks/s through
`Embedder.embed_documents`, and chunks per CPU second of this process, which other load on a shared machine
changes far less than wall-clock time (two idle cores give about twice that per wall-clock second). Also prints
the tokenizer's own speed on the same texts, the cosine of the ONNX vectors to the torch vectors (min and mean),
and with --int8 the speed and cosine of the int8 ONNX model the product uses by default (TQA_EMBEDDING_INT8).

    .venv/bin/python -m bench.embed_speed --chunks 2000
"""

from __future__ import annotations

import argparse
import os
import random
import time

import numpy as np

from bench.common import machine
from ml.index.embed import CHARS_PER_TOKEN_BOUND, Embedder, OnnxEncoder, embedding_text
from ml.sources.corpus import chunk_file, resolve_corpus


def sample_texts(count: int, seed: int = 0) -> list[str]:
    """`count` embedding texts of chunks from files of the installed transformers package, in a seeded order."""
    corpus = resolve_corpus()
    files = list(corpus.iter_files())
    random.Random(seed).shuffle(files)
    texts: list[str] = []
    for path in files:
        texts += [embedding_text(c) for c in chunk_file(corpus, corpus.rel(path), path.read_bytes()).chunks]
        if len(texts) >= count:
            break
    return texts[:count]


def throughput(embedder: Embedder, texts: list[str]) -> tuple[float, float, np.ndarray]:
    """Chunks per wall-clock second and per CPU second of this process (all its threads), and the vectors."""
    started, cpu = time.monotonic(), time.process_time()
    vectors = embedder.embed_documents(texts)
    return len(texts) / (time.monotonic() - started), len(texts) / (time.process_time() - cpu), vectors


def tokenizer_rate(embedder: Embedder, texts: list[str]) -> float:
    """Chunks/s of the tokenizer alone, with the window and batches the ONNX backend uses."""
    encoder = embedder.encoder
    assert isinstance(encoder, OnnxEncoder)
    cut = [t[: embedder.max_tokens * CHARS_PER_TOKEN_BOUND] for t in texts]
    started = time.monotonic()
    for start in range(0, len(cut), embedder.batch_size):
        encoder.tokenizer(
            cut[start : start + embedder.batch_size],
            padding=True,
            truncation=True,
            max_length=embedder.max_tokens,
            return_tensors="np",
        )
    return len(cut) / (time.monotonic() - started)


def int8_embedder(onnx: Embedder) -> Embedder:
    """The product's int8 ONNX model (`ml.index.embed.quantized_model`), from the same export."""
    return Embedder(backend="onnx", cache_dir=onnx.cache_dir, int8=True)


def cosine(a: np.ndarray, b: np.ndarray) -> str:
    c = (a * b).sum(axis=1)
    return f"min {c.min():.5f}, mean {c.mean():.5f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, default=2000, help="Chunks in the sample (default 2000).")
    parser.add_argument("--int8", action="store_true", help="Also measure the int8 ONNX model.")
    args = parser.parse_args()

    texts = sample_texts(args.chunks)
    print(f"embedding speed on {len(texts)} chunks of transformers ({machine()})")
    print(
        f"  load average {os.getloadavg()[0]:.1f}; OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}"
    )
    import torch

    print(f"  torch threads {torch.get_num_threads()}, interop {torch.get_num_interop_threads()}")
    started = time.monotonic()
    backends = {"torch": Embedder(backend="torch"), "onnx": Embedder(backend="onnx", int8=False)}
    for embedder in backends.values():
        embedder.embed_query("warm up")
    print(f"  models loaded in {time.monotonic() - started:.1f} s (an ONNX export on first use included)")
    if args.int8:
        backends["onnx-int8"] = int8_embedder(backends["onnx"])
        backends["onnx-int8"].embed_query("warm up")
    vectors: dict[str, np.ndarray] = {}
    for run in (1, 2):
        for name, embedder in backends.items():
            rate, per_cpu, vectors[name] = throughput(embedder, texts)
            print(f"  run {run}: {name:9s} {rate:6.1f} chunks/s, {per_cpu:6.1f} chunks per CPU second")
    print(f"  tokenizer alone: {tokenizer_rate(backends['onnx'], texts):.0f} chunks/s")
    for name in backends:
        if name != "torch":
            print(f"  cosine {name} to torch: {cosine(vectors[name], vectors['torch'])}")
    print(f"  load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
