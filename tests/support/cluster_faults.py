"""kill -9 one node of a real 3-node Weaviate cluster during continuous QUORUM writes and reads, then restart it.

Shared by the fault test (tests/integration/test_cluster_faults.py) and its benchmark (bench/cluster_faults.py).
The collection is ours (WeaviateIndex.ensure_collection) with replication factor 3.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from ml.index.weaviate_index import WeaviateIndex
from tests.support.weaviate_cluster import WeaviateCluster

COLLECTION = "Chunk"
DIM = 8


@dataclass
class FaultReport:
    writes_acked: int = 0
    writes_failed: int = 0
    writes_found: int = 0
    reads: int = 0
    reads_failed: int = 0
    reads_while_down: int = 0
    restart_ready_s: float = 0.0
    catch_up_s: float = 0.0
    counts_after: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    @property
    def lost(self) -> int:
        return self.writes_acked - self.writes_found


def _objects(n: int) -> list[object]:
    from weaviate.classes.data import DataObject

    return [
        DataObject(
            uuid=str(uuid.uuid4()),
            properties={"text": f"object {i}", "kind": "text", "path": f"fault/{i}.md"},
            vector=[random.random() for _ in range(DIM)],
        )
        for i in range(n)
    ]


def run_fault_scenario(
    base: Path,
    victim: int = 2,
    before_s: float = 6.0,
    down_s: float = 10.0,
    after_s: float = 4.0,
    catch_up_timeout_s: float = 90.0,
    batch: int = 5,
) -> FaultReport:
    """Writers and readers on node 0 at QUORUM; node `victim` is SIGKILLed, kept down, restarted; returns numbers."""
    from weaviate.classes.config import ConsistencyLevel
    from weaviate.classes.query import Filter

    report = FaultReport()
    acked: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()
    down = threading.Event()
    with WeaviateCluster(base) as cluster:
        client = cluster.client(0)
        try:
            WeaviateIndex(client, COLLECTION, replication_factor=3).ensure_collection()
            quorum = client.collections.use(COLLECTION).with_consistency_level(ConsistencyLevel.QUORUM)

            def writer() -> None:
                while not stop.is_set():
                    objs = _objects(batch)
                    try:
                        result = quorum.data.insert_many(objs)
                    except Exception as exc:  # counted: an unacknowledged write is allowed, a lost ack is not
                        report.writes_failed += len(objs)
                        report.errors.append(f"write: {exc}"[:300])
                        continue
                    ok = [str(o.uuid) for i, o in enumerate(objs) if i not in result.errors]  # type: ignore[attr-defined]
                    report.writes_failed += len(objs) - len(ok)
                    for message in list(result.errors.values())[:1]:
                        report.errors.append(f"write: {message.message}"[:300])
                    with lock:
                        acked.extend(ok)

            def reader() -> None:
                while not stop.is_set():
                    with lock:
                        target = random.choice(acked) if acked else None
                    if target is None:
                        time.sleep(0.05)
                        continue
                    report.reads += 1
                    if down.is_set():
                        report.reads_while_down += 1
                    try:
                        found = quorum.query.fetch_object_by_id(target)
                    except Exception as exc:
                        report.reads_failed += 1
                        report.errors.append(f"read: {exc}"[:300])
                        continue
                    if found is None:
                        report.reads_failed += 1
                        report.errors.append(f"read: acknowledged object {target} not found")

            threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
            for t in threads:
                t.start()
            try:
                time.sleep(before_s)
                cluster.kill(victim)
                down.set()
                time.sleep(down_s)
                down.clear()
                cluster.start_node(victim)
                report.restart_ready_s = cluster.wait_ready(victim)
                restarted = time.monotonic()
                time.sleep(after_s)
            finally:
                stop.set()
                for t in threads:
                    t.join(timeout=60)
            report.writes_acked = len(acked)
            # Catch-up: the restarted node's replica holds every object (async replication and read repair).
            victim_name = cluster.nodes[victim].name
            while True:
                report.counts_after = cluster.object_counts(COLLECTION)
                if report.counts_after.get(victim_name, 0) >= len(acked):
                    report.catch_up_s = time.monotonic() - restarted
                    break
                if time.monotonic() - restarted > catch_up_timeout_s:
                    report.catch_up_s = float("inf")
                    break
                time.sleep(0.5)
            found: set[str] = set()
            for start in range(0, len(acked), 500):
                group = acked[start : start + 500]
                response = quorum.query.fetch_objects(filters=Filter.by_id().contains_any(group), limit=len(group))
                found |= {str(o.uuid) for o in response.objects}
            report.writes_found = len(found & set(acked))
        finally:
            client.close()
    return report


# --- The same fault behind the real service --------------------------------------------------------------------------
QUESTIONS = [
    "How do I load a model in 4-bit?",
    "What does the repetition penalty logits processor do?",
    "How is the causal mask built?",
    "How do I stop generation after a maximum time?",
]
SEARCHES = ["apply_rotary_pos_emb", "LlamaRMSNorm", "BitsAndBytesConfig", "get_linear_schedule_with_warmup"]


@dataclass
class ServiceFaultReport:
    """Numbers of a node kill behind `tqa serve`: ingest runs and their chunks, /ask and /search through the API."""

    chunks_initial: int = 0
    ingest_runs_acked: int = 0
    ingest_runs_failed: int = 0
    chunks_acked: int = 0
    chunks_found: int = 0
    markers_found_via_search: int = 0
    requests: int = 0
    requests_failed: int = 0
    requests_while_down: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    restart_ready_s: float = 0.0
    catch_up_s: float = 0.0
    counts_after: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    @property
    def lost(self) -> int:
        return self.chunks_acked - self.chunks_found


def _marker_file(i: int) -> str:
    return (
        f'"""Fault write {i}."""\n\n\n'
        f"def fault_marker_{i}(x):\n"
        f'    """Return x scaled by fault factor {i}; written by ingest run {i} while a node may be down."""\n'
        f"    return x * {i}\n"
    )


def run_service_fault_scenario(
    base: Path,
    victim: int = 2,
    before_s: float = 6.0,
    down_s: float = 10.0,
    after_s: float = 4.0,
    clients: int = 2,
    catch_up_timeout_s: float = 120.0,
) -> ServiceFaultReport:
    """`tqa serve` on a 3-node cluster (replication factor 3) through node 0; incremental `ingest` runs add a file
    each, `clients` threads send /ask and /search; node `victim` is SIGKILLed, kept down, restarted.

    A read fails on any non-200 answer, a /search without results or an /ask without sources. A write is an ingest
    run that returned: every chunk id it recorded in the ingest state must be in the collection at QUORUM after
    recovery, and each run's file must be found by /search through the service.
    """
    import httpx
    from weaviate.classes.config import ConsistencyLevel
    from weaviate.classes.query import Filter

    from ml.index.embed import Embedder
    from ml.index.ingest import ingest
    from ml.index.state import StateStore
    from ml.settings import Settings
    from tests.support.corpus import make_mini_corpus
    from tests.support.serve import start_service
    from tests.support.weaviate_cluster import API_KEY

    report = ServiceFaultReport()
    lock = threading.Lock()
    stop = threading.Event()
    down = threading.Event()
    acked_ids: set[str] = set()
    acked_runs: list[int] = []
    with WeaviateCluster(base / "cluster") as cluster:
        entry = cluster.nodes[0]
        env = {
            "TQA_WEAVIATE_URL": f"http://127.0.0.1:{entry.http_port}",
            "TQA_WEAVIATE_GRPC_URL": f"http://127.0.0.1:{entry.grpc_port}",
            "TQA_WEAVIATE_API_KEY": API_KEY,
            "TQA_REPLICATION_FACTOR": "3",
            "TQA_ANSWERER": "extractive",
        }
        settings = Settings(
            data_dir=base / "data",
            weaviate_url=env["TQA_WEAVIATE_URL"],
            weaviate_grpc_url=env["TQA_WEAVIATE_GRPC_URL"],
            weaviate_api_key=API_KEY,  # type: ignore[arg-type]
            replication_factor=3,
        )
        corpus = make_mini_corpus(base / "corpus")
        writes = corpus.root / "fault_writes"
        writes.mkdir()
        embedder = Embedder()
        index = WeaviateIndex.open(settings)
        state = StateStore(settings.state_db)
        served = None
        try:
            report.chunks_initial = ingest(corpus, index, state, embedder).total_chunks
            served = start_service(settings, base, **env)
            url = served.url

            def writer() -> None:
                i = 0
                while not stop.is_set():
                    i += 1
                    path = writes / f"w{i}.py"
                    path.write_text(_marker_file(i))
                    try:
                        ingest(corpus, index, state, embedder)
                    except Exception as exc:  # an unacknowledged run may fail; one that returned must be kept
                        with lock:
                            report.ingest_runs_failed += 1
                            report.errors.append(f"ingest {i}: {exc}"[:300])
                        continue
                    rel = str(path.relative_to(corpus.base))
                    ids = state.for_corpus(corpus.name).files()[rel].chunk_ids
                    with lock:
                        acked_runs.append(i)
                        acked_ids.update(ids)

            def client(n: int) -> None:
                http = httpx.Client(timeout=60)
                j = n
                while not stop.is_set():
                    j += 1
                    if j % 2:
                        route, body = "/search", {"query": SEARCHES[j % len(SEARCHES)], "k": 5}
                    else:
                        route, body = "/ask", {"question": QUESTIONS[j % len(QUESTIONS)]}
                    was_down = down.is_set()
                    t0 = time.monotonic()
                    problem = ""
                    try:
                        response = http.post(url + route, json=body)
                        if response.status_code != 200:
                            problem = f"{response.status_code} {response.text[:200]}"
                        elif route == "/search" and not response.json()["results"]:
                            problem = "no results"
                        elif route == "/ask" and not response.json()["sources"]:
                            problem = "no sources"
                    except httpx.HTTPError as exc:
                        problem = repr(exc)
                    with lock:
                        report.requests += 1
                        report.requests_while_down += was_down
                        report.latencies_ms.append((time.monotonic() - t0) * 1000)
                        if problem:
                            report.requests_failed += 1
                            report.errors.append(f"{route} {body}: {problem}"[:300])
                http.close()

            threads = [threading.Thread(target=writer)] + [
                threading.Thread(target=client, args=(n,)) for n in range(clients)
            ]
            for t in threads:
                t.start()
            try:
                time.sleep(before_s)
                cluster.kill(victim)
                down.set()
                time.sleep(down_s)
                down.clear()
                cluster.start_node(victim)
                report.restart_ready_s = cluster.wait_ready(victim)
                restarted = time.monotonic()
                time.sleep(after_s)
            finally:
                stop.set()
                for t in threads:
                    t.join(timeout=120)
            report.ingest_runs_acked = len(acked_runs)
            report.chunks_acked = len(acked_ids)
            # Catch-up: the restarted node's replica holds every acknowledged chunk, as many objects as the node that
            # never went down (the nodes API counts lazily, so both must reach what was acknowledged).
            victim_name, entry_name = cluster.nodes[victim].name, entry.name
            expected = report.chunks_initial + len(acked_ids)
            while True:
                report.counts_after = cluster.object_counts(settings.collection)
                victim_count = report.counts_after.get(victim_name, -1)
                if victim_count >= expected and victim_count == report.counts_after.get(entry_name):
                    report.catch_up_s = time.monotonic() - restarted
                    break
                if time.monotonic() - restarted > catch_up_timeout_s:
                    report.catch_up_s = float("inf")
                    break
                time.sleep(0.5)
            quorum = index.client.collections.use(settings.collection).with_consistency_level(ConsistencyLevel.QUORUM)
            wanted = sorted(acked_ids)
            found: set[str] = set()
            for start in range(0, len(wanted), 500):
                group = wanted[start : start + 500]
                response = quorum.query.fetch_objects(filters=Filter.by_id().contains_any(group), limit=len(group))
                found |= {str(o.uuid) for o in response.objects}
            report.chunks_found = len(found & acked_ids)
            with httpx.Client(timeout=60) as http:
                for i in acked_runs:
                    rel = f"transformers/fault_writes/w{i}.py"
                    results = http.post(
                        url + "/search", json={"query": f"fault_marker_{i}", "k": 3, "path_prefix": rel}
                    ).json()["results"]
                    report.markers_found_via_search += any(r["path"] == rel for r in results)
        finally:
            if served is not None:
                served.stop()
            state.close()
            index.close()
    return report
