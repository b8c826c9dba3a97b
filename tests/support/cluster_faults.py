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
