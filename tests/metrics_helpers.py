"""Scraping companion's `/metrics` in tests: the samples by name and labels."""

from __future__ import annotations

from typing import Any

from flask import Flask
from prometheus_client.parser import text_string_to_metric_families

TOKEN = "metrics-token-of-the-test-suite-0123456789"


class Scrape:
    def __init__(self, text: str):
        self.text = text
        self.samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                self.samples[(sample.name, frozenset(sample.labels.items()))] = sample.value

    def value(self, name: str, **labels: str) -> float:
        """The sample's value; 0 when it has not appeared yet (nothing counted)."""
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def names(self) -> set[str]:
        return {name for name, _ in self.samples}


def scrape(app: Flask, client: Any = None) -> Scrape:
    app.config["METRICS_TOKEN"] = TOKEN
    client = client or app.test_client()
    answer = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.content_type.startswith("text/plain")
    return Scrape(answer.get_data(as_text=True))
