"""How the release's persona probe (ops/release/probe.py) names itself to a slot, so its answers are counted apart."""

from __future__ import annotations

from typing import Any

# The release proxy removes this header from users' requests (ops/release/haproxy.cfg.j2): only the probe, which asks
# each slot on its own port, can keep its answers out of the canary analysis.
PROBE_HEADER = "x-tqa-probe"


def is_probe(headers: Any) -> bool:
    """Whether a request (Starlette headers, or an ASGI scope's header pairs) comes from the persona probe."""
    if isinstance(headers, list):
        return any(name.lower() == PROBE_HEADER.encode() for name, _ in headers)
    return PROBE_HEADER in headers
