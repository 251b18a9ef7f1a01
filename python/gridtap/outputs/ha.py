"""Home Assistant entities from the metric model: what an MQTT discovery config says.

Everything here is derived from a :class:`~gridtap.model.MetricDef` (name, kind, unit) and
:func:`~gridtap.model.display_of` (the plugin's :class:`~gridtap.model.Display` hint for a
sample's labels), never from knowledge of a device, so a new plugin gets sensible entities by
declaring hints next to its metrics:

* ``Display.binary`` -> a ``binary_sensor`` (the value is its device class), a state set or
  ``Display.codes`` -> an ``enum`` sensor with the states or codes (in words) as options,
  ``Display.state_label`` -> a text sensor showing that label's value, ``*_timestamp_seconds`` ->
  a timestamp sensor, everything else -> a numeric ``sensor``.
* Units: the state topic carries base units (what Prometheus and line protocol show); the
  entity's ``value_template`` converts to the unit a person reads (:data:`CONVERSIONS`) and
  rounds to the display precision, so HA never shows "171000.0 Pa" or float noise.
* Device class from the display unit (:data:`DEVICE_CLASSES`), state class from the kind
  (counters ``total_increasing``, amounts ``total``, the rest ``measurement``), both
  overridable by the hint.
* ``Display.diagnostic`` -> ``entity_category: diagnostic``; ``enabled=False`` ->
  ``enabled_by_default: false``; ``hidden`` -> no entity at all.
* The framework's health metrics get fixed hints (:func:`health_display`): ``<plugin>_up`` is a
  "Connected" connectivity sensor, the others are diagnostics.

Devices: a sample carrying a value for one of the batch's ``subdevice_labels`` belongs to a
physical device of its own (named by its ``device`` label, e.g. "Meter"), connected via the
configured device (the proxy or cloud account); ``Display.component`` puts it on a part of
that device ("Inverter battery"). See :func:`device_of`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..health import health_defs
from ..model import Display, Kind, Metric, MetricDef, display_of

#: base unit -> {display unit: factor}; the display value is ``base value * factor``.
CONVERSIONS: dict[str, dict[str, float]] = {
    # K: a temperature difference (a spread); it gets no device class, HA would read it as absolute.
    "celsius": {"°C": 1.0, "K": 1.0},
    "watts": {"W": 1.0, "kW": 1e-3, "MW": 1e-6},
    "joules": {"kWh": 1 / 3.6e6, "Wh": 1 / 3600, "MWh": 1 / 3.6e9, "J": 1.0, "kJ": 1e-3, "MJ": 1e-6},
    "volts": {"V": 1.0, "mV": 1e3, "kV": 1e-3},
    "amperes": {"A": 1.0, "mA": 1e3, "µA": 1e6},
    "hertz": {"Hz": 1.0, "rpm": 60.0, "kHz": 1e-3},
    "pascals": {"Pa": 1.0, "hPa": 1e-2, "kPa": 1e-3, "mbar": 1e-2, "bar": 1e-5},
    "ratio": {"%": 100.0},
    "seconds": {"s": 1.0, "ms": 1e3, "min": 1 / 60, "h": 1 / 3600, "d": 1 / 86400},
    "bytes": {"B": 1.0, "kB": 1e-3, "MB": 1e-6, "GB": 1e-9, "KiB": 1 / 1024, "MiB": 1 / 1024**2},
    "cubic_meters": {"m³": 1.0, "L": 1e3},
    "cubic_meters_per_second": {"L/min": 6e4, "m³/h": 3600.0, "mL/s": 1e6},
    # var: reactive power, whose base unit is the volt-ampere too (Prometheus has no var).
    "volt_amperes": {"VA": 1.0, "kVA": 1e-3, "var": 1.0, "kvar": 1e-3},
}
#: What a base unit is shown in when the plugin says nothing (energy in kWh: HA's energy
#: dashboard and every meter speak it; counters of seconds are operating hours).
DEFAULT_UNITS = {
    "celsius": "°C", "watts": "W", "joules": "kWh", "volts": "V", "amperes": "A", "hertz": "Hz",
    "pascals": "bar", "ratio": "%", "seconds": "s", "bytes": "B", "cubic_meters": "m³",
    "cubic_meters_per_second": "L/min", "volt_amperes": "VA",
}
#: Display unit -> HA sensor device class. Units HA has no device class for (rpm, µA, %) get none:
#: a device class with a unit it does not list is rejected by newer HA.
DEVICE_CLASSES = {
    "°C": "temperature",
    **dict.fromkeys(("W", "kW", "MW"), "power"),
    **dict.fromkeys(("Wh", "kWh", "MWh", "J", "kJ", "MJ"), "energy"),
    **dict.fromkeys(("V", "mV", "kV"), "voltage"),
    **dict.fromkeys(("A", "mA"), "current"),
    **dict.fromkeys(("Hz", "kHz"), "frequency"),
    **dict.fromkeys(("Pa", "hPa", "kPa", "mbar", "bar"), "pressure"),
    **dict.fromkeys(("s", "ms", "min", "h", "d"), "duration"),
    **dict.fromkeys(("B", "kB", "MB", "GB", "KiB", "MiB"), "data_size"),
    **dict.fromkeys(("m³", "L"), "volume"),
    **dict.fromkeys(("L/min", "m³/h", "mL/s"), "volume_flow_rate"),
    "VA": "apparent_power",
    "var": "reactive_power",
}
#: Digits worth showing per display unit when the plugin says nothing.
DEFAULT_PRECISION = {
    "°C": 1, "W": 0, "kW": 2, "MW": 3, "Wh": 0, "kWh": 2, "MWh": 3, "J": 0, "kJ": 0, "MJ": 1,
    "V": 1, "mV": 0, "kV": 2, "A": 2, "mA": 0, "µA": 1, "Hz": 2, "kHz": 2, "rpm": 0,
    "Pa": 0, "hPa": 0, "kPa": 1, "mbar": 0, "bar": 2, "%": 0, "s": 1, "ms": 0, "min": 0, "h": 0, "d": 1,
    "B": 0, "kB": 0, "MB": 1, "GB": 2, "KiB": 0, "MiB": 1, "m³": 3, "L": 0, "L/min": 1, "m³/h": 2,
    "mL/s": 0, "VA": 0, "kVA": 2, "var": 0, "kvar": 2, "K": 1,
}
#: Device classes HA accepts only with state class total / total_increasing.
AMOUNT_CLASSES = frozenset({"energy", "volume", "gas", "water"})
#: Device classes without a state class (no statistics).
NO_STATE_CLASS = frozenset({"enum", "timestamp", "date"})
#: Labels that describe the device rather than tell samples apart: never part of a key or name.
METADATA_LABELS = frozenset({"manufacturer", "vendor", "model"})
#: Label names -> HA device fields (on info metrics also the version and serial ones).
DEVICE_LABELS = {"manufacturer": "manufacturer", "vendor": "manufacturer", "model": "model"}
INFO_DEVICE_LABELS = {
    **DEVICE_LABELS,
    "serial": "serial_number", "serial_number": "serial_number", "device_sn": "serial_number",
    "sw_version": "sw_version", "software": "sw_version", "firmware": "sw_version",
    "hw_version": "hw_version", "hardware": "hw_version",
}
DEVICE_FIELDS = ("manufacturer", "model", "sw_version", "hw_version", "serial_number")

_NOT_KEY = re.compile(r"[^a-z0-9_]+")
_WARNED: set[str] = set()
log = logging.getLogger("gridtap.outputs.ha")


def sanitize(text: str) -> str:
    """``text`` lower-cased with every run of characters outside ``[a-z0-9_]`` made one ``_``."""
    return re.sub(r"_+", "_", _NOT_KEY.sub("_", text.lower())).strip("_")


def slug(text: str) -> str:
    """An entity-id part the way Home Assistant makes one from a name (ASCII names)."""
    text = text.replace("µ", "u").replace("³", "3").replace("°", "")
    return sanitize(text) or "unnamed"


def stem(plugin: str, definition: MetricDef) -> str:
    """The metric name without the plugin prefix (``intergas_flow_celsius`` -> ``flow_celsius``)."""
    name = definition.name
    return name[len(plugin) + 1:] if name.startswith(plugin + "_") else name


def health_display(plugin: str, definition: MetricDef) -> Display | None:
    """The fixed hints of the framework's own health metrics (None for any other metric)."""
    up, last_success, duration = health_defs(plugin)
    if definition.name == up.name:
        return Display(name="Connected", binary="connectivity", diagnostic=True)
    if definition.name == last_success.name:
        return Display(name="Last successful read", diagnostic=True)
    if definition.name == duration.name:
        return Display(name="Read duration", unit="s", precision=2, diagnostic=True, enabled=False)
    return None


def display_for(plugin: str, metric: Metric) -> Display:
    return health_display(plugin, metric.definition) or display_of(metric.definition, dict(metric.labels))


def is_health(plugin: str, definition: MetricDef) -> bool:
    return health_display(plugin, definition) is not None


# --- devices ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceRef:
    """The HA device a sample belongs to.

    ``subid`` is None for the configured device itself, else the sanitized subdevice label
    values; ``via`` the identifier of the device it is connected through; ``component`` the
    part (``Display.component``) it stands for.
    """

    ident: str
    name: str
    subid: str | None = None
    via: str | None = None
    component: str | None = None


def device_identifier(plugin: str, device: str) -> str:
    return f"gridtap_{sanitize(plugin)}_{sanitize(device)}"


def subdevice_id(labels: Mapping[str, str], subdevice_labels: tuple[str, ...]) -> str | None:
    """The sanitized values of the subdevice labels a sample carries, or None for none."""
    values = [labels[k] for k in subdevice_labels if labels.get(k)]
    return sanitize("_".join(values)) or None if values else None


def naming_labels(samples: list[Metric]) -> dict[str, str]:
    """The labels that name a physical device, from all its samples: info metrics first (their
    ``name``, ``model``), then the others' ``device`` and ``model``."""
    out: dict[str, str] = {}
    for m in sorted(samples, key=lambda m: (m.definition.kind is not Kind.INFO, m.name, m.labels)):
        for k, v in m.labels:
            if v and k not in out and (k in ("device", "model") or (k == "name" and m.definition.kind is Kind.INFO)):
                out[k] = v
    return out


def physical_name(labels: Mapping[str, str], configured: str) -> str:
    """The name of a physical device behind a configured one, from a sample's labels.

    The ``name`` label of its info metric (a plant), else its own ``device`` label ("meter")
    with its ``model`` ("Inverter GW10KN-ET"; the model alone when it names the kind already:
    "HomeKit 1000 Smart Meter"), so two inverters behind one proxy are told apart by something
    stable rather than by arrival order.
    """
    if labels.get("name"):  # an info metric names it (a plant, a site)
        return labels["name"]
    own = labels.get("device", "")
    kind = humanize(own) if own and own != configured else ""
    model = labels.get("model", "")
    if model in ("", "unknown"):
        return kind or "Device"
    if not kind or kind.lower() in model.lower():
        return model
    return f"{kind} {model}"


def humanize(text: str) -> str:
    words = text.replace("_", " ").strip()
    return words[:1].upper() + words[1:] if words else text


def describes(name: str) -> str:
    """Label name -> HA device field for info metrics (``""`` for none)."""
    return INFO_DEVICE_LABELS.get(name, "")


def device_metadata(metrics: list[Metric]) -> dict[str, str]:
    """manufacturer/model/sw_version/hw_version/serial_number found in label *names*.

    Only :data:`DEVICE_LABELS` on any sample, the fuller :data:`INFO_DEVICE_LABELS` on info
    metrics; the first value found (name/label order) wins.
    """
    found: dict[str, str] = {}
    for m in sorted(metrics, key=lambda m: (m.name, m.labels)):
        table = INFO_DEVICE_LABELS if m.definition.kind is Kind.INFO else DEVICE_LABELS
        for k, v in m.labels:
            field = table.get(k)
            if field and v and field not in found:
                found[field] = v
    return {f: found[f] for f in DEVICE_FIELDS if f in found}


# --- entities --------------------------------------------------------------------------


@dataclass(frozen=True)
class EntityDesign:
    """What HA is told about one sample key, apart from topics, ids and the device."""

    component: str  # "sensor" or "binary_sensor"
    name: str
    fields: dict[str, Any]
    diagnostic: bool
    enabled: bool
    #: Follows the device's availability (measurements), or only the bridge's (diagnostics
    #: and health, which stay visible while the device is down).
    follows_device: bool


def default_name(plugin: str, metric: Metric, key_values: list[str]) -> str:
    """A readable name when the plugin gave none: the stem without unit and suffix, then labels."""
    d = metric.definition
    s = stem(plugin, d).removesuffix("_total").removesuffix("_info")
    if d.unit and s != d.unit:
        s = s.replace("_" + d.unit, "")
    return humanize(" ".join([s.replace("_", " "), *(v.replace("_", " ") for v in key_values)]).strip())


def _num(x: float) -> str:
    """A Jinja number literal: ``3600000`` rather than ``3.6e+06``, ``0.001`` rather than ``1e-3``."""
    r = round(x)
    if abs(x - r) < 1e-9 * max(1.0, abs(x)):
        return str(r)
    text = f"{x:.12f}".rstrip("0")
    return text if float(text) == x else repr(x)


def numeric_template(key: str, factor: float, precision: int | None, integer: bool) -> str:
    """Jinja for a numeric state: convert, round to ``precision``; null -> ``None`` (unknown)."""
    v = f"value_json.{key}"
    if factor == 1.0 and (integer or precision is None):
        return f"{{{{ {v} }}}}"
    if factor == 1.0:
        expr = v
    elif factor > 1 or abs(round(1 / factor) - 1 / factor) > 1e-9 * (1 / factor):
        expr = f"({v} * {_num(factor)})"
    else:
        expr = f"({v} / {_num(1 / factor)})"
    if precision is not None:
        expr = f"{expr} | round({precision})" + (" | int" if precision == 0 else "")
    return f"{{{{ {expr} if {v} is number else None }}}}"


def design(plugin: str, metric: Metric, key: str, key_values: list[str]) -> EntityDesign | None:
    """The entity of one sample key (None: ``Display.hidden``, or an info metric)."""
    d = metric.definition
    if d.kind is Kind.INFO:
        return None
    disp = display_for(plugin, metric)
    if disp.hidden:
        return None
    labels = dict(metric.labels)
    name = disp.title(labels) or default_name(plugin, metric, key_values)
    health = is_health(plugin, d)
    v = f"value_json.{key}"
    fields: dict[str, Any] = {}
    if disp.binary is not None:
        if disp.binary:
            fields["device_class"] = disp.binary
        fields["value_template"] = f"{{{{ ('ON' if {v} else 'OFF') if {v} is number else None }}}}"
        return EntityDesign("binary_sensor", name, fields, disp.diagnostic, disp.enabled,
                            not (disp.diagnostic or health))
    if disp.state_label is not None:
        # The device names its states (a Powerwall's operation mode): a text sensor, in words
        # where the plugin has them, else the device's own string; no options to go stale.
        words = dict(disp.words.get(disp.state_label, {}))
        fields["value_template"] = (f"{{{{ ({words!r}[{v}] if {v} in {list(words)!r} else {v}) "
                                    f"if {v} is string else None }}}}")
        return EntityDesign("sensor", name, fields, disp.diagnostic, disp.enabled,
                            not (disp.diagnostic or health))
    if d.kind is Kind.STATESET:
        # HA shows an enum's options as they are: the human words (``words["state"]``, else the
        # state name with blanks), mapped from the state names in the template.
        words = disp.words.get("state", {})
        shown = {state: words.get(state) or humanize(state) for state in d.states}
        fields["device_class"] = "enum"
        fields["options"] = list(dict.fromkeys(shown.values()))
        fields["value_template"] = f"{{{{ {shown!r}[{v}] if {v} in {list(shown)!r} else None }}}}"
        return EntityDesign("sensor", name, fields, disp.diagnostic, disp.enabled,
                            not (disp.diagnostic or health))
    if disp.codes:
        # A code is a word, not a number (no unit, no statistics); one the map lacks is unknown,
        # because HA refuses an enum state outside its options.
        codes = {int(code): word for code, word in disp.codes.items()}
        fields["device_class"] = "enum"
        fields["options"] = list(dict.fromkeys(codes.values()))
        fields["value_template"] = (f"{{{{ {codes!r}[{v} | int] if {v} is number and {v} == {v} | int "
                                    f"and ({v} | int) in {list(codes)!r} else None }}}}")
        return EntityDesign("sensor", name, fields, disp.diagnostic, disp.enabled,
                            not (disp.diagnostic or health))
    if d.unit == "seconds" and d.kind is Kind.GAUGE and d.name.endswith("_timestamp_seconds"):
        fields["device_class"] = "timestamp"
        fields["value_template"] = (f"{{{{ {v} | timestamp_custom('%Y-%m-%dT%H:%M:%S+00:00', false) "
                                    f"if {v} is number else None }}}}")
        return EntityDesign("sensor", name, fields, disp.diagnostic, disp.enabled,
                            not (disp.diagnostic or health))
    try:
        unit, factor = display_unit(d, disp)
    except ValueError as e:  # never lose the whole batch over one hint: base unit's default, said once
        if d.name not in _WARNED:
            _WARNED.add(d.name)
            log.warning("home assistant: %s; showing %s", e, DEFAULT_UNITS.get(d.unit, d.unit))
        unit, factor = display_unit(d, Display())
    device_class = disp.device_class if disp.device_class is not None else DEVICE_CLASSES.get(unit or "")
    if disp.device_class is None and device_class == "volume" and d.kind is Kind.COUNTER:
        # The energy dashboard takes gas and water meters by their device class.
        words = stem(plugin, d).split("_")
        device_class = "gas" if "gas" in words else "water" if "water" in words else device_class
    precision = disp.precision
    if precision is None:
        precision = 0 if (d.integer and factor == 1.0) else DEFAULT_PRECISION.get(unit or "")
    state_class = disp.state_class
    if state_class is None:
        if d.kind is Kind.COUNTER:
            state_class = "total_increasing"
        elif device_class in AMOUNT_CLASSES:
            state_class = "total"
        else:
            state_class = "measurement"
    if device_class:
        fields["device_class"] = device_class
    if unit:
        fields["unit_of_measurement"] = unit
    if state_class and device_class not in NO_STATE_CLASS:
        fields["state_class"] = state_class
    if precision is not None:
        fields["suggested_display_precision"] = precision
    fields["value_template"] = numeric_template(key, factor, precision, d.integer)
    return EntityDesign("sensor", name, fields, disp.diagnostic, disp.enabled, not (disp.diagnostic or health))


def display_unit(definition: MetricDef, disp: Display) -> tuple[str | None, float]:
    """(unit shown, factor from the base unit). A unit the table cannot reach from the base unit
    is a plugin mistake: ValueError (``check_display`` in a plugin's tests catches it)."""
    base = definition.unit
    if disp.unit is None:
        if not base:
            return None, 1.0
        unit = "h" if base == "seconds" and definition.kind is Kind.COUNTER else DEFAULT_UNITS[base]
        return unit, CONVERSIONS[base][unit]
    if not base:
        return disp.unit or None, 1.0  # a unitless metric the plugin knows the unit of (kW, °C)
    try:
        return disp.unit, CONVERSIONS[base][disp.unit]
    except KeyError:
        raise ValueError(f"{definition.name}: no conversion from {base} to {disp.unit!r}; "
                         f"known: {', '.join(CONVERSIONS.get(base, {}))}") from None


def check_display(definition: MetricDef, labels: Mapping[str, str]) -> None:
    """Raise ValueError when a metric's display hint asks for a unit its base unit cannot reach
    (for plugin tests; the output itself falls back to the default unit and warns once)."""
    display_unit(definition, display_of(definition, labels))
