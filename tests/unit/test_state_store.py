"""The one state store: per-corpus rows, one set of pragmas, and data dirs of the earlier two-table layout kept."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from ml.index.state import FileState, StateStore
from ml.sources.selection import is_indexed


def test_rows_are_scoped_to_their_corpus_and_meta_to_the_data_dir(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.sqlite", "a")
    other = store.for_corpus("b")
    store.record_files([FileState("x.py", "v1", ["1"])])
    other.record_files([FileState("x.py", "v2", ["2"])])
    store.set("head", "abc")
    store.set_meta({"corpus": "a"})
    assert store.files()["x.py"].version == "v1" and other.files()["x.py"].version == "v2"
    assert other.get("head") is None and other.get_meta("corpus") == "a"
    other.close()  # a scoped view closes nothing
    assert store.files()
    store.close()
    reopened = StateStore(tmp_path / "state.sqlite", "a")
    assert reopened.get("head") == "abc"
    assert reopened._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    reopened.close()


def test_a_data_dir_of_the_earlier_layout_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE files (path TEXT PRIMARY KEY, sha256 TEXT NOT NULL, chunk_ids TEXT NOT NULL);
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE history_files (corpus TEXT NOT NULL, path TEXT NOT NULL, blob TEXT NOT NULL,
            chunk_ids TEXT NOT NULL, PRIMARY KEY (corpus, path));
        """
    )
    db.execute("INSERT INTO meta VALUES ('corpus', 'transformers')")
    db.execute("INSERT INTO files VALUES ('transformers/a.py', 'h1', ?)", (json.dumps(["i1", "i2"]),))
    db.execute("INSERT INTO history_files VALUES ('minitf', 'src/b.py', 'blob', ?)", (json.dumps(["i3"]),))
    db.commit()
    db.close()

    store = StateStore(path, "transformers")
    assert store.files() == {"transformers/a.py": FileState("transformers/a.py", "h1", ["i1", "i2"])}
    assert store.for_corpus("minitf").files()["src/b.py"].chunk_ids == ["i3"]
    assert store.get_meta("corpus") == "transformers"
    tables = {r[0] for r in store._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert not tables & {"files", "history_files"}
    store.close()


def test_one_selection_rule_for_trees_and_git_paths() -> None:
    assert is_indexed("src/transformers/models/llama/modeling_llama.py")
    assert is_indexed("docs/source/en/quicktour.md")
    assert not is_indexed("docs/source/fr/quicktour.md")
    assert is_indexed("docs/source/fr/quicktour.md", doc_languages=("en", "fr"))
    assert not is_indexed("src/transformers/__pycache__/x.py")
    assert not is_indexed(".github/workflows/README.md")
    assert not is_indexed("setup.cfg")
    # The generated modeling file is indexed, not the modular source it is generated from.
    assert not is_indexed("src/transformers/models/llava/modular_llava.py")
    assert is_indexed("src/transformers/models/llava/modeling_llava.py")
    assert is_indexed("utils/modular_model_converter.py")
