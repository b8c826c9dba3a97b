"""The indexed tree's vocabulary: which of a question's words no indexed file contains, rebuilt when files change."""

from __future__ import annotations

import json
from pathlib import Path

from ml.index.vocabulary import FILE_NAME, Vocabulary, build, fingerprint, load_or_build


def tree(root: Path) -> None:
    (root / "models").mkdir(parents=True)
    (root / "models" / "trainer.py").write_text("class TrainerCallback:\n    '''Stops training early.'''\n")
    (root / "models" / "llama.py").write_text("def rotate_half(x):\n    return x  # rotary llama\n")
    (root / "notes.txt").write_text("horovod")  # not an indexed file


def test_words_and_whole_names_count_the_files_containing_them(tmp_path: Path) -> None:
    tree(tmp_path)
    vocabulary = build(sorted(p for p in tmp_path.rglob("*.py")))
    assert vocabulary.files["trainer"] == 1 and vocabulary.files["trainercallback"] == 1
    assert vocabulary.files["rotate"] == 1 and "horovod" not in vocabulary.files
    # "TorchServe" splits into words the tree may have, but the whole name is unseen: it counts.
    unseen, rare = vocabulary.foreign("How do I wrap my optimizer with Horovod and TorchServe for llama?")
    assert unseen == 2.0 and 0.0 < rare <= 1.0
    assert vocabulary.foreign("Where is rotate_half for llama?")[0] == 0.0
    # Another library's snake_case name: its words (`rotate`, `half`) are here, the name is not.
    assert vocabulary.files["rotate_half"] == 1
    assert vocabulary.foreign("Where is half_rotate for llama?")[0] == 1.0


def test_load_or_build_reuses_then_rebuilds_when_the_indexed_files_change(tmp_path: Path) -> None:
    root, data = tmp_path / "tree", tmp_path / "data"
    tree(root)
    first = load_or_build(data, root, ["models/trainer.py", "models/llama.py"], ("en",))
    assert first is not None and (data / FILE_NAME).is_file() and first.files["llama"] == 1
    (root / "models" / "llama.py").write_text("def rotate_half(x):\n    return x  # mistral now\n")
    same = load_or_build(data, root, ["models/trainer.py", "models/llama.py"], ("en",))
    assert same is not None and same.files.get("llama") == 1  # same files indexed: the saved one is reused
    again = load_or_build(data, root, ["models/trainer.py", "models/llama.py", "models/new.py"], ("en",))
    assert (
        again is not None
        and "mistral" in again.files
        and again.fingerprint == fingerprint(["models/trainer.py", "models/llama.py", "models/new.py"])
    )
    # No tree on this machine (a remote cluster): the saved vocabulary, or none at all.
    assert load_or_build(data, None, [], ("en",)) is not None
    assert load_or_build(tmp_path / "empty", None, [], ("en",)) is None
    assert isinstance(Vocabulary.load(data / FILE_NAME), Vocabulary)


def test_a_damaged_vocabulary_file_is_rebuilt_not_trusted(tmp_path: Path) -> None:
    root, data = tmp_path / "tree", tmp_path / "data"
    tree(root)
    data.mkdir()
    (data / FILE_NAME).write_text("{not json")
    vocabulary = load_or_build(data, root, ["models/trainer.py"], ("en",))
    assert vocabulary is not None and vocabulary.documents == 2 and vocabulary.files["llama"] == 1
    assert Vocabulary.load(data / FILE_NAME).files == vocabulary.files


def test_a_vocabulary_saved_in_an_older_format_is_rebuilt(tmp_path: Path) -> None:
    root, data = tmp_path / "tree", tmp_path / "data"
    tree(root)
    data.mkdir()
    paths = ["models/trainer.py", "models/llama.py"]
    # The earlier format: same fingerprint, but no snake_case names counted.
    old = {"fingerprint": fingerprint(paths), "documents": 2, "files": {"llama": 1}}
    (data / FILE_NAME).write_text(json.dumps(old))
    vocabulary = load_or_build(data, root, paths, ("en",))
    assert vocabulary is not None and vocabulary.files["rotate_half"] == 1
