"""`tqa ingest --path`, `tqa sync`, `tqa status` and `tqa watch` on a git checkout, as a user runs them."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ml.index.weaviate_index import WeaviateIndex
from ml.settings import Settings
from ml.sources.git_checkout import tree
from tests.integration.conftest import make_settings
from tests.integration.test_core_cli import run_tqa, tqa_env
from tests.integration.test_history_sync_weaviate import read_back
from tests.support import history_repo

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    repo = tmp_path_factory.mktemp("minitf")
    return repo, history_repo.build(repo)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[WeaviateIndex, Settings]]:
    """One embedded Weaviate on free ports; each command below talks to it as an external server (a data dir never
    writes into an embedded server it did not start) with its own data dir and collection."""
    settings = make_settings(tmp_path_factory.mktemp("server"))
    with WeaviateIndex.open(settings) as index:
        yield index, settings


def env_for(server: tuple[WeaviateIndex, Settings], data_dir: Path, collection: str) -> dict[str, str]:
    settings = server[1]
    return {
        **tqa_env(data_dir),
        "TQA_WEAVIATE_URL": f"http://127.0.0.1:{settings.weaviate_port}",
        "TQA_WEAVIATE_GRPC_URL": f"http://127.0.0.1:{settings.weaviate_grpc_port}",
        "TQA_COLLECTION": collection,
        "COLUMNS": "400",  # wide enough that rich prints each summary on one line
    }


def status(env: dict[str, str]) -> dict:
    result = run_tqa("status", env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_ingest_of_a_git_checkout_builds_the_same_index_as_sync(
    built: tuple[Path, list[str]], server: tuple[WeaviateIndex, Settings], tmp_path: Path
) -> None:
    repo, heads = built
    env_ingest = env_for(server, tmp_path / "ingest", "ByIngest")
    env_sync = env_for(server, tmp_path / "sync", "BySync")
    ingested = run_tqa("ingest", "--path", str(repo), env=env_ingest)
    assert ingested.returncode == 0, ingested.stderr
    assert f"and {len(heads)} commits" in ingested.stderr  # the summary counts the history it indexed
    synced = run_tqa("sync", "--path", str(repo), env=env_sync)
    assert synced.returncode == 0, synced.stderr
    assert f"-> {heads[-1][:12]} (from scratch): +{len(heads)} -0 commits" in synced.stderr

    by_ingest, by_sync = status(env_ingest), status(env_sync)
    for shown in (by_ingest, by_sync):
        assert shown["corpus"] == repo.name and shown["commit"] == heads[-1]
        assert shown["history"] == {"head": heads[-1], "commits": len(heads)}
        assert shown["files"] == len(tree(repo, heads[-1])) and shown["by_kind"]["commit"] == len(heads)
    assert by_ingest["by_kind"] == by_sync["by_kind"]

    client = server[0].client
    index_ingest = read_back(WeaviateIndex(client, "ByIngest"))
    assert index_ingest == read_back(WeaviateIndex(client, "BySync")) and len(index_ingest) == by_sync["chunks"]

    again = run_tqa("ingest", "--path", str(repo), env=env_ingest)
    assert again.returncode == 0, again.stderr
    assert "(0 changed, 0 removed): 0 chunks written, 0 deleted" in again.stderr  # nothing new, nothing redone
    rebuilt = run_tqa("ingest", "--path", str(repo), "--rebuild", env=env_ingest)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert read_back(WeaviateIndex(client, "ByIngest")) == index_ingest


def test_watch_one_iteration_brings_the_index_to_the_remote_head(
    built: tuple[Path, list[str]], server: tuple[WeaviateIndex, Settings], tmp_path: Path
) -> None:
    repo, heads = built
    remote, checkout = tmp_path / "remote.git", tmp_path / "checkout"
    subprocess.run(["git", "clone", "-q", "--bare", str(repo), str(remote)], check=True)
    subprocess.run(["git", "clone", "-q", str(remote), str(checkout)], check=True)
    subprocess.run(["git", "-C", str(checkout), "reset", "-q", "--hard", heads[20]], check=True)
    env = env_for(server, tmp_path / "data", "Watched")
    # The checkout's origin is a local path: links come from --repo-url, which watch takes as sync does.
    url = ("--repo-url", f"https://github.com/{history_repo.OWNER_REPO}")

    first = run_tqa("sync", "--path", str(checkout), "--no-github", *url, env=env)
    assert first.returncode == 0, first.stderr
    assert status(env)["history"]["head"] == heads[20]

    watched = run_tqa("watch", "--path", str(checkout), "--iterations", "1", "--interval", "1", *url, env=env)
    assert watched.returncode == 0, watched.stderr
    assert f"{heads[20][:12]} -> {heads[-1][:12]} (fast-forward)" in watched.stderr
    shown = status(env)
    assert shown["history"] == {"head": heads[-1], "commits": len(heads)} and shown["commit"] == heads[-1]

    changes = [json.loads(line) for line in (tmp_path / "data" / "staging" / "changes.jsonl").read_text().splitlines()]
    added = [c for c in changes if c["what"] == "commits_added" and c["to"] == heads[-1]]
    assert [sha for c in added for sha in c["commits"]] == heads[-1:-6:-1]  # the five new commits, newest first
    stored = read_back(WeaviateIndex(server[0].client, "Watched"))
    assert all(url.startswith(f"https://github.com/{history_repo.OWNER_REPO}/") for *_, url, _ in stored.values())
