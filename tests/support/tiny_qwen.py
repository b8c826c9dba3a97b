"""Tiny random-weight Qwen2 models with a trained byte-level tokenizer, for tests and benchmarks.

Real weights cannot be downloaded on the development machines, so the loading and serving code is exercised on a
model built here: same architecture class (`Qwen2ForCausalLM`), same chat format (ChatML), random weights.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

# Qwen's chat format (ChatML); the tokenizer renders it with `apply_chat_template`.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

# Qwen2.5-14B-Instruct's config.json, architecture fields only: token ids come from the tokenizer in use, and
# (as in the real model, whose embedding has more rows than its tokenizer) the runner never samples ids past it.
QWEN25_14B = {
    "hidden_size": 5120,
    "intermediate_size": 13824,
    "num_hidden_layers": 48,
    "num_attention_heads": 40,
    "num_key_value_heads": 8,
    "vocab_size": 152064,
    "max_position_embeddings": 32768,
    "rope_theta": 1000000.0,
    "rms_norm_eps": 1e-06,
    "hidden_act": "silu",
    "tie_word_embeddings": False,
    "use_sliding_window": False,
    "sliding_window": 131072,
    "max_window_layers": 48,
    "attention_dropout": 0.0,
}


def training_text() -> Iterator[str]:
    """Lines of real code (a few modules of the installed transformers package): tokenizer training data, prompts."""
    import transformers

    root = Path(transformers.__file__).parent
    for rel in ("models/qwen2/modeling_qwen2.py", "models/llama/modeling_llama.py", "generation/utils.py"):
        path = root / rel
        if path.exists():
            yield from path.read_text(encoding="utf-8").splitlines()


def train_tokenizer(vocab_size: int = 1000) -> Any:
    """A byte-level BPE tokenizer with ChatML special tokens and chat template (a `PreTrainedTokenizerFast`).

    Byte-level, so any text (code, unicode, planted control strings) encodes without unknown tokens.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(training_text(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        padding_side="left",
        model_max_length=32768,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def tiny_config(tokenizer: Any, **overrides: Any) -> Any:
    """A small `Qwen2Config` whose special-token ids match `tokenizer`."""
    from transformers import Qwen2Config

    fields: dict[str, Any] = {
        "vocab_size": len(tokenizer),
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 4096,
        "tie_word_embeddings": True,
        "bos_token_id": None,
        "eos_token_id": tokenizer.convert_tokens_to_ids("<|im_end|>"),
        "pad_token_id": tokenizer.convert_tokens_to_ids("<|endoftext|>"),
    }
    fields.update(overrides)
    return Qwen2Config(**fields)


def build_tiny_model(
    out_dir: Path, *, vocab_size: int = 1000, seed: int = 0, weights: bool = True, **config_overrides: Any
) -> Path:
    """Train the tokenizer, build a random-weight `Qwen2ForCausalLM` and save both to `out_dir`.

    With ``weights=False`` only the config and tokenizer are written: the runner then builds random weights from
    the config (``TQA_RUNNER_RANDOM_WEIGHTS=true``), which is how the benchmark serves a 14B-sized model without
    writing 30 GB to disk.
    """
    import torch
    from transformers import GenerationConfig, Qwen2ForCausalLM

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(vocab_size)
    config = tiny_config(tokenizer, **config_overrides)
    tokenizer.save_pretrained(out_dir)
    if not weights:
        config.save_pretrained(out_dir)
        return out_dir
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(
        eos_token_id=config.eos_token_id, pad_token_id=config.pad_token_id, do_sample=False
    )
    model.save_pretrained(out_dir)
    return out_dir
