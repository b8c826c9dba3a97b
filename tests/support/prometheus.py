"""Reading one sample out of a Prometheus `/metrics` page, so tests can assert how much a counter moved."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families


def sample(text: str, name: str, **labels: str) -> float:
    """The value of sample `name` with exactly `labels` in the exposition `text`; 0.0 when absent (never touched).

    `name` is the sample's name as exposed, e.g. ``tqa_abstentions_total`` or ``tqa_ask_seconds_count``.
    """
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return float(s.value)
    return 0.0


def scrape(base_url: str) -> str:
    """The `/metrics` page of the service at `base_url`."""
    response = httpx.get(f"{base_url}/metrics", timeout=10)
    response.raise_for_status()
    return response.text
