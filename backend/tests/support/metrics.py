"""Reading Prometheus' text format the way Prometheus does (prometheus_client's own parser)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True)
class Scrape:
    """One answer of a metrics endpoint, parsed."""

    text: str

    def samples(self) -> list[tuple[str, dict[str, str], float]]:
        """Every sample: (name, labels, value)."""
        return [
            (sample.name, dict(sample.labels), sample.value)
            for family in text_string_to_metric_families(self.text)
            for sample in family.samples
        ]

    def value(self, name: str, **labels: str) -> float | None:
        """The value of the one sample named ``name`` whose labels include ``labels``; None when there is none."""
        found = [v for n, ls, v in self.samples() if n == name and labels.items() <= ls.items()]
        assert len(found) <= 1, f"{len(found)} samples of {name} with {labels}"
        return found[0] if found else None

    def series(self, name: str) -> list[dict[str, str]]:
        """The label sets of every sample named ``name``."""
        return [ls for n, ls, _ in self.samples() if n == name]
