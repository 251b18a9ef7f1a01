"""The one metric model every plugin writes and every output reads.

A metric is Prometheus-shaped: ``intergas_temperature_celsius{device="boiler",sensor="flow"}``.
Line protocol, collectd and MQTT are encodings of the same value (see ``outputs/``).

A plugin declares each metric once as a :class:`MetricDef` (name, kind, unit, help) and
produces :class:`Metric` samples from it, so help text and type never drift between samples.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple

NAME_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
LABEL_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")

#: Units a name may carry: Prometheus base units (and their SI compounds). Device units map
#: onto these (bar -> pascals, rpm -> hertz, kWh -> joules, l/min -> cubic_meters_per_second).
UNITS = (
    "watts", "joules", "volts", "amperes", "hertz", "celsius", "seconds", "ratio",
    "pascals", "bytes", "cubic_meters", "cubic_meters_per_second", "volt_amperes", "",
)


@dataclass(frozen=True, slots=True)
class Display:
    """How a person reads a metric: Home Assistant entities (and dashboards) use this; Prometheus,
    line protocol and collectd never do, so it can never rename a series.

    * ``name``: a human name ("Flow temperature"). ``{label}`` placeholders are filled from the
      sample's labels, through ``words`` where a label value has a human word; a state set's
      states have theirs in ``words["state"]``.
    * ``unit``: the unit a person reads ("bar", "rpm", "µA", "h", "kWh", "%", "L/min"); the
      framework converts from the metric's base unit (see ``gridtap.outputs.ha``).
    * ``precision``: digits after the decimal point worth showing, in ``unit``.
    * ``binary``: a 0/1 metric shown as on/off; the value is the HA binary-sensor device class
      ("problem", "running", "power", "heat", "battery_charging", ...) or "" for none.
    * ``diagnostic``: internals and health (HA ``entity_category: diagnostic``).
    * ``enabled``: False for entities few people want (they exist, disabled by default).
    * ``hidden``: not an entity at all (raw registers, duplicates of another entity).
    * ``device_class`` / ``state_class``: override what the unit and kind imply, e.g.
      ``state_class="total_increasing"`` for a "today" energy gauge that drops at midnight;
      ``state_class=""`` for none (codes and settings: no long-term statistics).
    * ``component``: the part of the physical device this metric belongs to ("battery" of a
      hybrid inverter): Home Assistant shows it as its own device, "<device> <component>",
      connected via the physical device.
    * ``codes``: an integer gauge that is a code, not a quantity ({1: "Lock", 2: "Normal"}): Home
      Assistant shows the words as an enum sensor, and a code outside the map as unknown (the
      number stays in every other output).
    * ``state_label``: a gauge that is always 1 and says its state in this label
      (``operation_mode{mode="backup"} 1``, as Prometheus exporters do): Home Assistant shows one
      text sensor whose state is the label's value, in ``words[state_label]`` where it has one
      (the device's own string otherwise: the set of states is the device's, not ours).
    """

    name: str | None = None
    unit: str | None = None
    precision: int | None = None
    binary: str | None = None
    diagnostic: bool = False
    enabled: bool = True
    hidden: bool = False
    device_class: str | None = None
    state_class: str | None = None
    component: str | None = None
    words: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    codes: Mapping[int, str] = field(default_factory=dict)
    state_label: str | None = None

    def for_labels(self, _labels: Mapping[str, str]) -> Display:
        return self

    def title(self, labels: Mapping[str, str]) -> str | None:
        """``name`` with ``{label}`` filled in (human words where known); None without a name."""
        if self.name is None:
            return None

        def word(m: re.Match[str]) -> str:
            key = m.group(1)
            value = labels.get(key, "")
            return self.words.get(key, {}).get(value, value.replace("_", " "))

        text = re.sub(r"\{(\w+)\}", word, self.name).strip()
        return text[:1].upper() + text[1:]

    def __hash__(self) -> int:  # ``words`` is a dict; identity is enough for a declaration
        return id(self)


@dataclass(frozen=True, slots=True)
class DisplayByLabel:
    """Different :class:`Display` per value of one label (flags named by a ``name`` label, say).

    ``DisplayByLabel("name", {"burner_on": Display(name="Burner", binary="heat")}, default=...)``.
    """

    label: str
    choices: Mapping[str, Display]
    default: Display = field(default_factory=Display)

    def for_labels(self, labels: Mapping[str, str]) -> Display:
        return self.choices.get(labels.get(self.label, ""), self.default)

    def __hash__(self) -> int:
        return id(self)


DisplayHint = Display | DisplayByLabel | Callable[[Mapping[str, str]], Display]


def display_of(definition: MetricDef, labels: Mapping[str, str]) -> Display:
    """The :class:`Display` of one sample (a plain default when the plugin declared none)."""
    hint = definition.display
    if hint is None:
        return _NO_DISPLAY
    if isinstance(hint, Display | DisplayByLabel):
        return hint.for_labels(labels)
    return hint(labels)


_NO_DISPLAY = Display()


class Kind(StrEnum):
    GAUGE = "gauge"
    COUNTER = "counter"
    INFO = "info"
    STATESET = "stateset"


@dataclass(frozen=True, slots=True)
class MetricDef:
    """What a metric is, shared by all its samples.

    ``name`` is the full Prometheus name including the plugin prefix and, for counters, the
    ``_total`` suffix; info metrics end in ``_info``. ``integer`` makes line protocol write an
    integer field (counts, codes), so InfluxDB never sees one field change type.
    """

    name: str
    help: str
    kind: Kind = Kind.GAUGE
    unit: str = ""
    integer: bool = False
    states: tuple[str, ...] = ()
    label_names: tuple[str, ...] = ()
    #: How a person reads it (Home Assistant); see :class:`Display`. Never changes a series.
    display: DisplayHint | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not NAME_RE.match(self.name):
            raise ValueError(f"invalid metric name {self.name!r}")
        if self.unit not in UNITS:
            raise ValueError(f"{self.name}: unit {self.unit!r} is not a base unit we know")
        if self.unit and self.unit not in self.name:
            raise ValueError(f"{self.name}: the name must carry its unit {self.unit!r}")
        if (self.kind is Kind.COUNTER) != self.name.endswith("_total"):
            raise ValueError(f"{self.name}: counters and only counters end in _total")
        if self.kind is Kind.INFO and not self.name.endswith("_info"):
            raise ValueError(f"{self.name}: info metrics end in _info")
        if self.kind is Kind.STATESET and not self.states:
            raise ValueError(f"{self.name}: a state set needs its states")

    def __call__(self, value: float | int | str | bool, **labels: str) -> Metric:
        """A sample of this metric: ``TEMPERATURE(47.59, sensor="flow")``."""
        return Metric(self, value, label_set(labels.items()) if labels else ())

    @property
    def family(self) -> str:
        """The OpenMetrics family name: the name without ``_total`` / ``_info``."""
        for suffix in ("_total", "_info"):
            if self.name.endswith(suffix):
                return self.name[: -len(suffix)]
        return self.name


_LABEL_SETS: dict[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]] = {}
_LABEL_SETS_MAX = 50_000


def label_set(pairs: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """The canonical sorted tuple for a set of labels.

    Equal label sets come back as the same tuple object. Devices report the same label
    sets every cycle, so this saves memory, and it lets the line-protocol encoder recognise
    a label set it has already escaped by identity instead of by content.
    """
    key = tuple(sorted(pairs))
    found = _LABEL_SETS.get(key)
    if found is not None:
        return found
    if len(_LABEL_SETS) >= _LABEL_SETS_MAX:  # bound the cache if label values churn
        _LABEL_SETS.clear()
    _LABEL_SETS[key] = key
    return key


class Metric(NamedTuple):
    """One sample: a definition, a value and a sorted tuple of (label, value) pairs.

    Values: float or int for gauges and counters, 1 for info metrics, the current state's
    name for a state set. A tuple, so it is immutable, cheap to make, and the Rust encoder
    reads its three items by position.
    """

    definition: MetricDef
    value: float | int | str | bool
    labels: tuple[tuple[str, str], ...] = ()

    @property
    def name(self) -> str:
        return self.definition.name

    def with_labels(self, extra: Sequence[tuple[str, str]]) -> Metric:
        """This sample with labels added where it does not already have them."""
        have = {k for k, _ in self.labels}
        added = [(k, v) for k, v in extra if k not in have]
        if not added:
            return self
        return Metric(self.definition, self.value, label_set((*self.labels, *added)))


@dataclass(slots=True)
class Batch:
    """All samples one device produced in one collection, with the collection time."""

    plugin: str
    device: str
    timestamp_ns: int
    metrics: list[Metric] = field(default_factory=list)
    ok: bool = True
    #: Why the collection failed (or what it is waiting for); "" when it succeeded.
    error: str = ""
    #: Labels that tell physical devices apart within this batch (``Plugin.subdevice_labels``).
    subdevice_labels: tuple[str, ...] = ()

    def extend(self, metrics: Iterable[Metric]) -> None:
        self.metrics.extend(metrics)

    def labelled(self) -> list[Metric]:
        """Samples with the ``device`` label filled in from the device name."""
        extra = (("device", self.device),)
        return [m.with_labels(extra) for m in self.metrics]
