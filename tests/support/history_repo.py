"""A small library's development history, built as a real git repository for the history tests and benchmarks.

The series is realistic: adds, modifications, a rename, a deletion, a binary file, a huge generated file, a feature
branch merged with a merge commit, and a revert. Commit and author dates are fixed, so SHAs are the same everywhere.
Questions in `DEVSET` name their gold commit by the PR number in its subject.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

OWNER_REPO = "example/minitf"

CONFIG = '''"""Model configuration."""


class LlamaConfig:
    """Configuration of a Llama model."""

    model_type = "llama"

    def __init__(
        self,
        vocab_size=32000,
        hidden_size=4096,
        num_attention_heads=32,
        use_cache=True,
        rope_theta=10000.0,
        attn_implementation="eager",
        pad_token_id=None,
    ):
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_attention_heads = num_attention_heads
        self.use_cache = use_cache
        self.rope_theta = rope_theta
        self.attn_implementation = attn_implementation
        self.pad_token_id = pad_token_id

    def to_dict(self):
        return dict(self.__dict__)
'''

MODELING = '''"""Llama model."""

import math

from .configuration import LlamaConfig


class LlamaRotaryEmbedding:
    """Rotary position embeddings."""

    def __init__(self, dim, base=10000.0):
        self.dim = dim
        self.base = base

    def forward(self, positions):
        inv_freq = [1.0 / (self.base ** (i / self.dim)) for i in range(0, self.dim, 2)]
        return [[p * f for f in inv_freq] for p in positions]


class LlamaAttention:
    """Multi-head attention."""

    def __init__(self, config: LlamaConfig):
        self.config = config
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.rotary = LlamaRotaryEmbedding(self.head_dim, base=config.rope_theta)

    def forward(self, query, key, value):
        scale = 1.0 / math.sqrt(self.head_dim)
        attn_weights = [[q * k * scale for k in key] for q in query]
        attn_weights = softmax(attn_weights)
        return [[w * v for w, v in zip(row, value)] for row in attn_weights]


class LlamaMLP:
    """Feed-forward block."""

    def __init__(self, config: LlamaConfig):
        self.act = "silu"
        self.hidden_size = config.hidden_size

    def forward(self, x):
        return x


class LlamaModel:
    """The decoder stack."""

    def __init__(self, config: LlamaConfig):
        self.config = config
        self.gradient_checkpointing = False
        self.layers = [LlamaAttention(config) for _ in range(2)]

    def forward(self, input_ids, use_cache=None):
        use_cache = use_cache if use_cache is not None else self.config.use_cache
        hidden = input_ids
        for layer in self.layers:
            hidden = layer.forward(hidden, hidden, hidden)
        return hidden, use_cache


def softmax(rows):
    out = []
    for row in rows:
        m = max(row)
        e = [math.exp(x - m) for x in row]
        s = sum(e)
        out.append([x / s for x in e])
    return out
'''

GENERATION = '''"""Text generation."""


def generate(model, input_ids, max_new_tokens=20, do_sample=False, eos_token_id=None):
    """Greedy or sampled decoding."""
    out = list(input_ids)
    for _ in range(max_new_tokens + 1):
        logits = model.forward(out)[0]
        next_id = pick(logits, do_sample)
        out.append(next_id)
        if eos_token_id is not None and next_id == eos_token_id:
            break
    return out


def pick(logits, do_sample):
    return max(range(len(logits)), key=lambda i: logits[i])
'''

TOKENIZER = '''"""Tokenizer."""


class LlamaTokenizer:
    """Byte-level tokenizer."""

    def __init__(self, vocab=None):
        self.vocab = vocab or {}

    def encode(self, text):
        return [self.vocab.get(t, 0) for t in text.split()]

    def decode(self, ids):
        inverse = {v: k for k, v in self.vocab.items()}
        return " ".join(inverse.get(i, "<unk>") for i in ids)
'''

LEGACY = '''"""Old helpers kept for compatibility."""


def legacy_tokenize(text):
    return text.split()


def legacy_detokenize(tokens):
    return " ".join(tokens)
'''

TRAINER = '''"""Training loop."""


class TrainingArguments:
    """Arguments of the trainer."""

    def __init__(self, learning_rate=5e-5, warmup_steps=0, dtype="fp32"):
        self.learning_rate = learning_rate
        self.warmup_steps = warmup_steps
        self.dtype = dtype


class Trainer:
    """A minimal trainer."""

    def __init__(self, model, args: TrainingArguments):
        self.model = model
        self.args = args

    def lr_at(self, step):
        if self.args.warmup_steps and step < self.args.warmup_steps:
            return self.args.learning_rate * step / self.args.warmup_steps
        return self.args.learning_rate

    def train(self, batches):
        for step, batch in enumerate(batches):
            self.model.forward(batch)
        return step
'''

INIT = '''"""minitf: a tiny transformers-like library."""

from .configuration import LlamaConfig
from .modeling import LlamaModel
from .tokenizer import LlamaTokenizer
'''

README = """# minitf

A tiny transformers-like library.

## Install

pip install minitf (Python 3.8 or later).
"""


@dataclass
class Commit:
    """One step of the series: file edits then a commit (or a merge / revert), on a branch."""

    message: str
    edits: list[tuple[str, str, str]] = field(default_factory=list)  # (op, path, arg)
    branch: str = "main"
    merge: str = ""  # merge this branch into `branch` with a merge commit
    revert: str = ""  # revert the commit whose subject contains this


def _w(path: str, text: str) -> tuple[str, str, str]:
    return ("write", path, text)


def _r(path: str, old: str, new: str) -> tuple[str, str, str]:
    return ("replace", path, old + "\x00" + new)


SERIES: list[Commit] = [
    Commit(
        "Initial import of minitf (#1)",
        [
            _w("src/minitf/__init__.py", INIT),
            _w("src/minitf/configuration.py", CONFIG),
            _w("src/minitf/modeling.py", MODELING),
            _w("src/minitf/generation.py", GENERATION),
            _w("src/minitf/tokenizer.py", TOKENIZER),
            _w("src/minitf/legacy_utils.py", LEGACY),
            _w("README.md", README),
            ("binary", "docs/logo.png", "1"),
        ],
    ),
    Commit(
        "Add top-k sampling to generate (#2)",
        [
            _r("src/minitf/generation.py", "do_sample=False, eos", "do_sample=False, top_k=50, eos"),
            _r("src/minitf/generation.py", "pick(logits, do_sample)\n", "pick(logits, do_sample, top_k)\n"),
            _r(
                "src/minitf/generation.py",
                "def pick(logits, do_sample):\n",
                "def pick(logits, do_sample, top_k=50):\n"
                "    if do_sample:\n"
                "        ranked = sorted(range(len(logits)), key=lambda i: -logits[i])[:top_k]\n"
                "        return ranked[0]\n",
            ),
        ],
    ),
    Commit(
        "Disable use_cache when gradient checkpointing is on (#3)\n\n"
        "Caching past key values is incompatible with recomputing activations in the backward pass.\nFixes #10",
        [
            _r(
                "src/minitf/modeling.py",
                "        hidden = input_ids\n",
                "        if self.gradient_checkpointing and use_cache:\n"
                '            print("use_cache=True is incompatible with gradient checkpointing. "\n'
                "                  'Setting use_cache=False.')\n"
                "            use_cache = False\n"
                "        hidden = input_ids\n",
            )
        ],
    ),
    Commit(
        "Make sdpa the default attention implementation (#4)",
        [_r("src/minitf/configuration.py", 'attn_implementation="eager"', 'attn_implementation="sdpa"')],
    ),
    Commit(
        "Stabilise half-precision inference (#5)\n\nOverflow produced NaNs in fp16 generation.\nFixes #12",
        [
            _r(
                "src/minitf/modeling.py",
                "        attn_weights = softmax(attn_weights)\n",
                "        # upcast to fp32 before the softmax\n"
                "        attn_weights = [[float(w) for w in row] for row in attn_weights]\n"
                "        attn_weights = softmax(attn_weights)\n",
            )
        ],
    ),
    Commit(
        "Move tokenizer into tokenization_llama module (#6)",
        [
            ("rename", "src/minitf/tokenizer.py", "src/minitf/tokenization_llama.py"),
            _r("src/minitf/__init__.py", "from .tokenizer import", "from .tokenization_llama import"),
        ],
    ),
    Commit("Add trainer with linear warmup (#7)", [_w("src/minitf/trainer.py", TRAINER)]),
    Commit("Remove deprecated legacy helpers (#8)", [("delete", "src/minitf/legacy_utils.py", "")]),
    Commit(
        "Add dynamic rope scaling",
        [
            _r(
                "src/minitf/modeling.py",
                "    def __init__(self, dim, base=10000.0):\n        self.dim = dim\n",
                "    def __init__(self, dim, base=10000.0, scaling_factor=1.0):\n"
                "        self.dim = dim\n        self.scaling_factor = scaling_factor\n",
            ),
            _r(
                "src/minitf/modeling.py",
                "        return [[p * f for f in inv_freq] for p in positions]\n",
                "        return [[p / self.scaling_factor * f for f in inv_freq] for p in positions]\n",
            ),
        ],
        branch="rope-scaling",
    ),
    Commit(
        "Fix off-by-one in max_new_tokens (#10)\n\nGenerate produced one token too many.\nFixes #20",
        [_r("src/minitf/generation.py", "range(max_new_tokens + 1)", "range(max_new_tokens)")],
    ),
    Commit(
        "Document rope scaling",
        [
            _r(
                "README.md",
                "## Install\n",
                "## Rope scaling\n\nPass scaling_factor to stretch the context.\n\n## Install\n",
            )
        ],
        branch="rope-scaling",
    ),
    Commit(
        "Merge pull request #9 from dev/rope-scaling\n\nDynamic rope scaling for long contexts", merge="rope-scaling"
    ),
    Commit(
        "Raise default rope_theta to 500000 (#11)",
        [_r("src/minitf/configuration.py", "rope_theta=10000.0", "rope_theta=500000.0")],
    ),
    Commit(
        "Use bf16 for the default trainer dtype (#12)",
        [_r("src/minitf/trainer.py", 'dtype="fp32"', 'dtype="bf16"')],
    ),
    Commit(
        "Add repetition penalty (#13)",
        [
            _r("src/minitf/generation.py", "top_k=50, eos", "top_k=50, repetition_penalty=1.0, eos"),
            _r(
                "src/minitf/generation.py",
                "        logits = model.forward(out)[0]\n",
                "        logits = model.forward(out)[0]\n"
                "        logits = [x / repetition_penalty if i in out else x for i, x in enumerate(logits)]\n",
            ),
        ],
    ),
    Commit("", revert="Use bf16 for the default trainer dtype"),
    Commit(
        "Cache rotary embeddings per device (#15)",
        [
            _r(
                "src/minitf/modeling.py",
                "    def forward(self, positions):\n        inv_freq",
                "    def forward(self, positions):\n"
                "        key = tuple(positions)\n"
                "        if key in getattr(self, '_cache', {}):\n"
                "            return self._cache[key]\n"
                "        inv_freq",
            )
        ],
    ),
    Commit(
        "Warn when pad_token_id is missing in generate (#16)\n\nFixes #33",
        [
            _r(
                "src/minitf/generation.py",
                "    out = list(input_ids)\n",
                "    if getattr(model.config, 'pad_token_id', None) is None:\n"
                "        print('Setting pad_token_id to eos_token_id for open-end generation.')\n"
                "    out = list(input_ids)\n",
            )
        ],
    ),
    Commit("Update logo (#17)", [("binary", "docs/logo.png", "2")]),
    Commit(
        "Add the default vocabulary file (#18)",
        [_w("src/minitf/vocab.txt", "\n".join(f"token_{i:05d} {i}" for i in range(6000)) + "\n")],
    ),
    Commit(
        "Drop Python 3.8 support (#19)",
        [_r("README.md", "(Python 3.8 or later)", "(Python 3.9 or later)")],
    ),
    Commit(
        "Rename the MLP activation attribute (#20)",
        [_r("src/minitf/modeling.py", 'self.act = "silu"', 'self.act_fn = "silu"')],
    ),
    Commit(
        "Set eos_token_id default to 2 (#21)",
        [_r("src/minitf/generation.py", "eos_token_id=None):", "eos_token_id=2):")],
    ),
    Commit(
        "Clip gradient norm at 1.0 by default (#23)",
        [
            _r(
                "src/minitf/trainer.py",
                'warmup_steps=0, dtype="fp32"):',
                'warmup_steps=0, dtype="fp32", max_grad_norm=1.0):',
            ),
            _r(
                "src/minitf/trainer.py",
                "        self.dtype = dtype\n",
                "        self.dtype = dtype\n        self.max_grad_norm = max_grad_norm\n",
            ),
        ],
    ),
    Commit(
        "Fix decoding of unknown ids (#24)\n\nCloses #40",
        [_r("src/minitf/tokenization_llama.py", 'inverse.get(i, "<unk>")', 'inverse.get(i, "")')],
    ),
    Commit(
        "Log the learning rate every step (#25)",
        [
            _r(
                "src/minitf/trainer.py",
                "            self.model.forward(batch)\n",
                "            self.model.forward(batch)\n            print(f'step {step} lr {self.lr_at(step)}')\n",
            )
        ],
    ),
]

# (question, PR numbers whose commit is gold): "why / when / which PR" questions over SERIES.
DEVSET: list[tuple[str, set[int]]] = [
    ("Why was use_cache disabled when gradient checkpointing is enabled?", {3}),
    ("Which issue did turning off the cache under gradient checkpointing fix?", {3}),
    ("When did sdpa become the default attention implementation?", {4}),
    ("Which PR introduced top-k sampling in generate?", {2}),
    ("Why does LlamaAttention.forward convert the attention weights to float before the softmax?", {5}),
    ("Why was the tokenizer module renamed to tokenization_llama?", {6}),
    ("Which PR added the Trainer with linear warmup?", {7}),
    ("When were legacy_tokenize and legacy_detokenize removed?", {8}),
    ("Which PR added dynamic rope scaling with scaling_factor?", {9}),
    ("Why does generate loop range(max_new_tokens) instead of max_new_tokens + 1?", {10}),
    ("When did the default rope_theta change to 500000?", {11}),
    ("Why is the trainer default dtype fp32 and not bf16?", {12, 14}),
    ("Which PR added repetition_penalty to generate?", {13}),
    ("Which commit reverted the bf16 trainer default?", {14}),
    ("Why does LlamaRotaryEmbedding.forward look up self._cache?", {15}),
    ("Why does generate print a message about pad_token_id?", {16}),
    ("When was the logo image updated?", {17}),
    ("Which PR added vocab.txt?", {18}),
    ("When was support for Python 3.8 dropped?", {19}),
    ("Why is the MLP attribute called act_fn?", {20}),
    ("When did eos_token_id default to 2 in generate?", {21}),
    ("Which PR set max_grad_norm to 1.0 in TrainingArguments?", {23}),
    ("Why does LlamaTokenizer.decode return an empty string for unknown ids?", {24}),
    ("Which change made Trainer.train print the learning rate?", {25}),
    ("Which PR fixed the NaNs in fp16 generation?", {5}),
]


def _git(repo: Path, *args: str, env: dict[str, str] | None = None) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True, env=env
    ).stdout.strip()


def _env(n: int) -> dict[str, str]:
    stamp = 1704067200 + n * 86400
    date = f"@{stamp} +0000"
    return {
        **os.environ,
        "GIT_AUTHOR_NAME": "Dev One" if n % 3 else "Dev Two",
        "GIT_AUTHOR_EMAIL": "dev@example.com",
        "GIT_COMMITTER_NAME": "Dev One",
        "GIT_COMMITTER_EMAIL": "dev@example.com",
        "GIT_AUTHOR_DATE": date,
        "GIT_COMMITTER_DATE": date,
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
    }


def init_repo(path: Path) -> Path:
    """An empty repository on branch main."""
    path.mkdir(parents=True, exist_ok=True)
    _git(path, "init", "-q", "-b", "main")
    return path


def apply(repo: Path, step: Commit, n: int) -> str:
    """Make one commit of the series; returns the SHA of main's head afterwards."""
    env = _env(n)
    current = _git(repo, "symbolic-ref", "--short", "HEAD")
    if step.branch != current:
        exists = (
            subprocess.run(
                ["git", "-C", str(repo), "rev-parse", "--verify", "-q", step.branch], capture_output=True
            ).returncode
            == 0
        )
        _git(repo, "checkout", "-q", *([] if exists else ["-b"]), step.branch, env=env)
    if step.merge:
        _git(repo, "merge", "-q", "--no-ff", "-m", step.message, step.merge, env=env)
    elif step.revert:
        target = _git(repo, "log", "--format=%H", "-F", f"--grep={step.revert}", "-n", "1")
        _git(repo, "revert", "--no-edit", target, env=env)
        subject = _git(repo, "log", "-1", "--format=%s")
        body = _git(repo, "log", "-1", "--format=%b")
        msg = f"{subject} (#14)\n\n{body}\nBreaks training on CPUs without bf16, closes #30"
        _git(repo, "commit", "-q", "--amend", "-m", msg, env=env)
    else:
        for op, path, arg in step.edits:
            target = repo / path
            if op == "write":
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(arg)
            elif op == "replace":
                old, new = arg.split("\x00")
                text = target.read_text()
                if old not in text:
                    raise AssertionError(f"{old!r} not in {path}")
                target.write_text(text.replace(old, new, 1))
            elif op == "binary":
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * int(arg))
            elif op == "rename":
                _git(repo, "mv", path, arg)
            elif op == "delete":
                _git(repo, "rm", "-q", path)
        _git(repo, "add", "-A")
        _git(repo, "commit", "-q", "-m", step.message, env=env)
    if step.branch != "main":
        return _git(repo, "rev-parse", "main")
    return _git(repo, "rev-parse", "HEAD")


def build(path: Path, upto: int | None = None) -> list[str]:
    """Build the series (or its first `upto` steps) in `path`; returns main's SHA after each step."""
    init_repo(path)
    heads = []
    for n, step in enumerate(SERIES[:upto]):
        heads.append(apply(path, step, n))
    if _git(path, "symbolic-ref", "--short", "HEAD") != "main":
        _git(path, "checkout", "-q", "main")
    return heads


def gold_shas(repo: Path, prs: set[int]) -> set[str]:
    """The commits whose subject carries one of `prs` (squash `(#N)` or `Merge pull request #N`)."""
    out = set()
    for line in _git(repo, "log", "--all", "--format=%H %s").splitlines():
        sha, subject = line.split(" ", 1)
        for n in prs:
            if f"(#{n})" in subject or subject.startswith(f"Merge pull request #{n} "):
                out.add(sha)
    return out
