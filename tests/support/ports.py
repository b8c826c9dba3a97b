"""Free TCP ports on 127.0.0.1 for the servers tests and benchmarks start.

Under pytest-xdist (`make test`) the workers are separate processes that each pick ports and bind them seconds or
minutes later; the kernel could hand two workers the same free port in that time. So each worker only keeps ports of
its own share: `free_port` the pairs (2k+1, 2k+2) with k mod workers = its index (the kernel gives bind(0) odd ports,
and Weaviate wants p and p + 1), `free_port_range` a slice of 20000-32000 of its own.
"""

from __future__ import annotations

import os
import random
import socket


def worker_share() -> tuple[int, int]:
    """(this process's pytest-xdist worker index, the worker count); (0, 1) outside xdist."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    if not worker.startswith("gw") or count < 2:
        return 0, 1
    return int(worker[2:]) % count, count


def _bound_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_port() -> int:
    """A port nothing listens on right now (the OS picks it; another process could take it before use), from this
    xdist worker's share."""
    index, count = worker_share()
    for _ in range(1000):
        port = _bound_port()
        if ((port - 1) // 2) % count == index:
            return port
    raise RuntimeError(f"no free port of worker {index}'s share (of {count}) in 1000 tries")


def free_port_range(length: int) -> int:
    """A port p such that p .. p+length-1 are all free now, drawn below Linux's ephemeral range (32768+) so that
    outgoing connections do not take the ports before servers started minutes later bind them; from this xdist
    worker's slice of 20000-32000."""
    index, count = worker_share()
    width = (32000 - 20000) // count
    low = 20000 + index * width
    for _ in range(200):
        base = random.randrange(low, low + width - length)
        try:
            for p in range(base, base + length):
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                    s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
    raise RuntimeError(f"no run of {length} free ports in {low}-{low + width}")
