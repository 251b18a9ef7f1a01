"""collectd ``exec`` plugin encoding: PUTVAL lines (shared/specs/ecosystem.md §2).

identifier = ``host/plugin-device/type-instance``: the collectd type comes from the unit
(types.db's stock types), counters become ``derive``; the type instance is the rest of the
metric name followed by its label values. Strings (state sets) and info metrics have no
collectd form and are left out; their numeric companions (e.g. a display code) are not.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

from ..model import Batch, Kind, Metric

MAX_PART = 127  # DATA_MAX_NAME_LEN - 1
MAX_LINE = 1000  # collectd reads 1200-byte lines; stay well below

TYPE_BY_UNIT = {
    "celsius": "temperature",
    "watts": "power",
    "volts": "voltage",
    "amperes": "current",
    "hertz": "frequency",
    "pascals": "pressure",
    "seconds": "duration",
    "joules": "energy",
    "volt_amperes": "power",
    "bytes": "bytes",
}

_UNSAFE = re.compile(r'[/"\s]+')


def _clean(text: str) -> str:
    return _UNSAFE.sub("_", text)[:MAX_PART]


def collectd_type(metric: Metric) -> str:
    d = metric.definition
    if d.kind is Kind.COUNTER and (d.integer or d.unit in ("joules", "seconds")):
        return "derive"
    if d.name.endswith("_timestamp_seconds"):
        return "gauge"  # a point in time, not a duration (types.db has no timestamp type)
    return TYPE_BY_UNIT.get(d.unit, "gauge") if d.kind is not Kind.COUNTER else "gauge"


def type_instance(plugin: str, metric: Metric, ctype: str) -> str:
    d = metric.definition
    stem = d.name[len(plugin) + 1:] if d.name.startswith(plugin + "_") else d.name
    if d.kind is Kind.COUNTER and ctype != "gauge":
        stem = stem.removesuffix("_total")
    if d.unit and ctype not in ("gauge", "derive"):
        stem = stem.replace("_" + d.unit, "")  # the collectd type already names the quantity
    parts = [] if stem == ctype else [stem]
    parts += [v for k, v in metric.labels if k != "device"]
    return _clean("-".join(parts))


def _value(metric: Metric, ctype: str) -> str:
    v = metric.value
    if ctype == "derive":
        return str(int(round(float(v))))
    v = float(v)
    return "U" if math.isnan(v) else repr(v)


def encode(batches: Iterable[Batch], hostname: str, interval: float) -> str:
    """PUTVAL lines for ``batches``; one value per line, each line under 1000 bytes."""
    out = []
    for batch in batches:
        when = f"{batch.timestamp_ns / 1e9:.3f}"
        plugin = _clean(batch.plugin.replace("-", "_"))
        for metric in batch.metrics:
            if metric.definition.kind in (Kind.INFO, Kind.STATESET) or isinstance(metric.value, str):
                continue
            ctype = collectd_type(metric)
            instance = type_instance(batch.plugin, metric, ctype)
            # A plugin that labels its own devices (one proxy, several inverters) names them.
            device = dict(metric.labels).get("device", batch.device)
            ident = f"{_clean(hostname)}/{plugin}-{_clean(device)}/{ctype}"
            if instance:
                ident += f"-{instance}"
            line = f"PUTVAL {ident} interval={interval:.3f} {when}:{_value(metric, ctype)}\n"
            if len(line) <= MAX_LINE:
                out.append(line)
    return "".join(out)
