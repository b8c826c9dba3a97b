"""Generator fine-tuning without services: RAG examples, configs, and every bad input refused with one sentence."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ml.answer.llm import INSUFFICIENT, SYSTEM_PROMPT, as_data
from ml.errors import UserError
from ml.settings import Settings
from ml.train.generator import GeneratorConfig, load_config, train_generator
from ml.train.generator_data import load_splits, rag_examples
from tests.support.generator import tiny_dataset
from tests.support.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "ml" / "train" / "configs"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_dataset(tmp_path_factory.mktemp("data"))


def _one_sentence(exc: pytest.ExceptionInfo[UserError]) -> str:
    message = str(exc.value)
    assert "\n" not in message and message.endswith(".")
    return message


def test_examples_are_the_served_prompt_with_the_gold_source_cited(dataset: Path) -> None:
    _, train, _ = load_splits(dataset)
    examples = rag_examples(train, sources=3, refusal_share=0.2, seed=5)
    assert examples == rag_examples(train, sources=3, refusal_share=0.2, seed=5), "deterministic"
    by_id = {p.id: p for p in train}
    cited = [e for e in examples if e.gold is not None]
    refused = [e for e in examples if e.gold is None]
    assert cited and refused
    for example in cited:
        system, user = example.messages
        assert system["content"] == SYSTEM_PROMPT
        assert example.answer.endswith(f"[{example.gold}]")
        pair = by_id[example.id]
        block = user["content"].split(f'<source id="{example.gold}"')[1].split("</source>")[0]
        assert as_data(pair.context[:80]) in block
    for example in refused:
        assert example.answer == INSUFFICIENT
        assert as_data(by_id[example.id].context[:80]) not in example.messages[1]["content"]


def test_checked_in_configs_parse_and_tiny_shrinks_to_cpu() -> None:
    lora, qlora, tiny = (load_config(CONFIGS / f"{n}.yaml") for n in ("qwen14b-lora", "qwen14b-qlora", "tiny-cpu"))
    assert lora.base_model == qlora.base_model == "Qwen/Qwen2.5-14B-Instruct"
    assert lora.gradient_checkpointing and qlora.quantization == "4bit"
    assert (CONFIGS / "accelerate" / "ddp.yaml").is_file() and (CONFIGS / "accelerate" / "fsdp.yaml").is_file()
    shrunk = lora.tiny()
    assert (shrunk.device, shrunk.max_steps, shrunk.dtype) == ("cpu", 12, "float32")
    assert tiny.device == "cpu" and load_config(Path("tiny-cpu")) == tiny, "packaged configs load by name"


def test_a_quantized_config_on_cpu_is_invalid(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("quantization: 4bit\ndevice: cpu\n")
    with pytest.raises(UserError) as exc:
        load_config(path)
    assert "CUDA" in _one_sentence(exc)


def test_a_dataset_without_a_train_split_is_one_sentence(dataset: Path, tmp_path: Path) -> None:
    broken = tmp_path / "dataset"
    shutil.copytree(dataset, broken)
    (broken / "train.jsonl").unlink()
    with pytest.raises(UserError) as exc:
        train_generator(Settings(), load_config(CONFIGS / "tiny-cpu.yaml"), broken, tmp_path / "out", base_model="x")
    assert "has no train split" in _one_sentence(exc)
    (broken / "train.jsonl").write_text("")
    with pytest.raises(UserError, match="train split .* is empty"):
        train_generator(Settings(), load_config(CONFIGS / "tiny-cpu.yaml"), broken, tmp_path / "out", base_model="x")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("name", "says"), [("qwen14b-qlora", "4-bit QLoRA"), ("qwen14b-lora", "device cuda")])
def test_a_gpu_config_on_a_cpu_machine_is_one_sentence(name: str, says: str, dataset: Path, tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(UserError) as exc:
        train_generator(Settings(), load_config(CONFIGS / f"{name}.yaml"), dataset, tmp_path / "out")
    assert says in _one_sentence(exc)
    assert not (tmp_path / "out").exists()


def test_an_unreachable_mlflow_is_one_sentence_before_any_training(dataset: Path, tmp_path: Path) -> None:
    settings = Settings(mlflow_tracking_uri=f"http://127.0.0.1:{free_port()}")
    config = GeneratorConfig(base_model=str(tmp_path / "never-loaded"), device="cpu")
    with pytest.raises(UserError) as exc:
        train_generator(settings, config, dataset, tmp_path / "out")
    assert _one_sentence(exc).startswith("No MLflow server answers at")
    assert not (tmp_path / "out").exists()


def test_a_corrupt_or_missing_adapter_is_one_sentence(tmp_path: Path) -> None:
    from ml.llm.generate import apply_adapter
    from ml.tracking.generator import verify_adapter

    with pytest.raises(UserError) as exc:
        verify_adapter(tmp_path)
    assert "is not a LoRA adapter" in _one_sentence(exc)
    (tmp_path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA"}))
    (tmp_path / "adapter_model.safetensors").write_bytes(b"\x20\x00\x00\x00\x00\x00\x00\x00truncated")
    with pytest.raises(UserError) as exc:
        apply_adapter(object(), tmp_path)  # refused before the model is touched
    assert "is corrupt" in _one_sentence(exc)


def test_the_runner_refuses_a_quantized_variant_on_transformers() -> None:
    from serving.qwen_runner import RunnerSettings, build_engine

    with pytest.raises(UserError, match="served by vLLM on a GPU"):
        build_engine(RunnerSettings(engine="transformers", quantization="fp8", model="unused"))
