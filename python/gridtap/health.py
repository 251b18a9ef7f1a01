"""The metrics the framework adds for every device: is it up, when did it last answer.

Named ``<plugin>_up`` rather than ``up`` so they never clash with the ``up`` series
Prometheus writes for every scrape target.
"""

from __future__ import annotations

from functools import cache

from .model import Kind, MetricDef


@cache
def health_defs(plugin: str) -> tuple[MetricDef, MetricDef, MetricDef]:
    up = MetricDef(
        f"{plugin}_up", "1 if the last collection from the device succeeded, 0 if it failed.", integer=True
    )
    last = MetricDef(
        f"{plugin}_last_success_timestamp_seconds",
        "Unix time of the last successful collection from the device.",
        unit="seconds",
    )
    duration = MetricDef(
        f"{plugin}_collect_duration_seconds", "Time the last collection took.", unit="seconds"
    )
    return up, last, duration


BUILD_INFO = MetricDef("gridtap_build_info", "gridtap version; always 1.", kind=Kind.INFO)
