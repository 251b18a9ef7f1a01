"""Prometheus exposition of batches.

:func:`encode` renders in Rust (:mod:`gridtap.outputs.exposition`): byte for byte what
prometheus-client writes for the families below, without importing it. The families
(:func:`families`, :class:`SnapshotCollector`) stay for what needs prometheus-client objects
(the Pushgateway client) and as the oracle the Rust renderer is tested against
(:func:`encode_with_client`); prometheus-client is imported only when they are used.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from ..model import Batch, Kind, Metric
from . import exposition

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric as PromFamily

_TYPES = {Kind.GAUGE: "gauge", Kind.COUNTER: "counter", Kind.INFO: "info", Kind.STATESET: "stateset"}


def encode(batches: Iterable[Batch], openmetrics: bool = False, build_info: bool = True) -> bytes:
    """Text exposition (format 0.0.4), or OpenMetrics, of ``batches`` (with
    ``gridtap_build_info`` unless ``build_info`` is False)."""
    return exposition.render(batches, openmetrics, build_info)


def families(batches: Iterable[Batch]) -> list[PromFamily]:
    """prometheus-client metric families for ``batches``, one per metric name, samples in batch order."""
    by_name: dict[str, Any] = {}
    for batch in batches:
        for metric in batch.labelled():
            _add(by_name, metric)
    return list(by_name.values())


def _add(by_name: dict[str, Any], metric: Metric) -> None:
    from prometheus_client.metrics_core import Metric as PromFamily

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


class SnapshotCollector:
    """A prometheus-client collector serving whatever ``snapshot()`` returns (no I/O)."""

    def __init__(self, snapshot: Callable[[], list[Batch]], build_info: bool = True) -> None:
        self._snapshot = snapshot
        self._build_info = build_info

    def collect(self) -> Iterator[PromFamily]:
        if self._build_info:
            from prometheus_client.metrics_core import Metric as PromFamily

            from .. import __version__
            from ..health import BUILD_INFO

            fam = PromFamily(BUILD_INFO.family, BUILD_INFO.help, "info")
            fam.add_sample(BUILD_INFO.name, {"version": __version__}, 1.0)
            yield fam
        yield from families(self._snapshot())


def registry_for(snapshot: Callable[[], list[Batch]], build_info: bool = True) -> CollectorRegistry:
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(snapshot, build_info))  # type: ignore[arg-type]
    return registry


def encode_with_client(batches: list[Batch], openmetrics: bool = False, build_info: bool = True) -> bytes:
    """:func:`encode` through prometheus-client (what /metrics served before the Rust renderer)."""
    registry = registry_for(lambda: batches, build_info)
    if openmetrics:
        from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

        return generate_openmetrics(registry)
    from prometheus_client import generate_latest

    return generate_latest(registry)
