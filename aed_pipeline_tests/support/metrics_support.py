"""Scraping the Prometheus endpoint: the exposition over HTTP, its samples parsed by prometheus-client."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families


def fetch(url: str) -> str:
    response = httpx.get(url, timeout=30)
    response.raise_for_status()
    return response.text


def samples_of(text: str) -> dict[tuple[str, frozenset], float]:
    """The samples of an exposition: (sample name, labels) → value, parsed by prometheus-client."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(url: str) -> dict[tuple[str, frozenset], float]:
    return samples_of(fetch(url))


def value(samples: dict, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def series(samples: dict, name: str) -> dict[frozenset, float]:
    return {labels: v for (sample, labels), v in samples.items() if sample == name}


def flower_table(table: str) -> dict[str, str]:
    return {"table": table}
