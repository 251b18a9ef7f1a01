"""Prometheus exposition through prometheus-client.

A scrape never talks to a device: :class:`SnapshotCollector` turns the latest batch of
every device into metric families, and prometheus-client does the text / OpenMetrics
encoding and content negotiation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric as PromFamily
from prometheus_client.registry import Collector

from .. import __version__
from ..health import BUILD_INFO
from ..model import Batch, Kind, Metric

_TYPES = {Kind.GAUGE: "gauge", Kind.COUNTER: "counter", Kind.INFO: "info", Kind.STATESET: "stateset"}


def families(batches: Iterable[Batch]) -> list[PromFamily]:
    """Metric families for ``batches``, one per metric name, samples in batch order."""
    by_name: dict[str, PromFamily] = {}
    for batch in batches:
        for metric in batch.labelled():
            _add(by_name, metric, batch.timestamp_ns)
    return list(by_name.values())


def _add(by_name: dict[str, PromFamily], metric: Metric, _ts: int) -> None:
    d = metric.definition
    fam = by_name.get(d.name)
    if fam is None:
        unit = d.unit if d.unit and d.family.endswith("_" + d.unit) else ""
        fam = PromFamily(d.family, d.help, _TYPES[d.kind], unit)
        by_name[d.name] = fam
    labels = dict(metric.labels)
    if d.kind is Kind.STATESET:
        for state in d.states if metric.value in d.states else (*d.states, str(metric.value)):
            fam.add_sample(d.family, {**labels, d.family: state}, 1.0 if state == metric.value else 0.0)
    elif d.kind is Kind.INFO:
        fam.add_sample(d.name, labels, 1.0)
    else:
        fam.add_sample(d.name, labels, float(metric.value))


class SnapshotCollector(Collector):
    """Serves whatever ``snapshot()`` returns; no I/O happens during a scrape."""

    def __init__(self, snapshot: Callable[[], list[Batch]], build_info: bool = True) -> None:
        self._snapshot = snapshot
        self._build_info = build_info

    def collect(self) -> Iterator[PromFamily]:
        if self._build_info:
            fam = PromFamily(BUILD_INFO.family, BUILD_INFO.help, "info")
            fam.add_sample(BUILD_INFO.name, {"version": __version__}, 1.0)
            yield fam
        yield from families(self._snapshot())


def registry_for(snapshot: Callable[[], list[Batch]]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(snapshot))
    return registry


def encode(batches: list[Batch], openmetrics: bool = False, build_info: bool = True) -> bytes:
    """Text exposition (format 0.0.4), or OpenMetrics, of ``batches`` (with
    ``gridtap_build_info`` unless ``build_info`` is False)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(lambda: batches, build_info))
    if openmetrics:
        from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

        return generate_openmetrics(registry)
    return generate_latest(registry)
