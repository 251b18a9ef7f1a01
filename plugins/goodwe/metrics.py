"""Goodwe register maps and exporter counters, turned into gridtap metrics (no I/O).

Why register maps and not offsets: every SEMS upload is a list of Modbus register dumps
whose block set differs between packet types, models and firmware (spec §6), so each metric
here names the register(s) it comes from and is emitted only when they are present. Values
are converted to Prometheus base units (10 Wh -> J, 0.1 V -> V, percent -> ratio).

:class:`GoodweState` is the thread-safe store the proxy writes into and ``collect()`` reads.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass

from gridtap.model import Kind, Metric, MetricDef, label_set

_WH = 3600.0  # joules per watt-hour

# --- definitions ---------------------------------------------------------------------
METER_ENERGY_EXPORT = MetricDef(
    "goodwe_meter_energy_export_joules_total", "Energy exported to the grid (meter reg 0x0801).",
    Kind.COUNTER, "joules")
METER_ENERGY_GENERATION = MetricDef(
    "goodwe_meter_energy_generation_joules_total", "Energy generated (meter reg 0x0804).",
    Kind.COUNTER, "joules")
METER_ENERGY_GENERATION_PLUS_EXPORT = MetricDef(
    "goodwe_meter_energy_generation_plus_export_joules_total",
    "The meter's own 'generation and export' energy sum (reg 0x080a); only roughly the sum.",
    Kind.COUNTER, "joules")
METER_ENERGY_IMPORT = MetricDef(
    "goodwe_meter_energy_import_joules_total", "Energy imported from the grid (meter reg 0x080d).",
    Kind.COUNTER, "joules")
METER_ENERGY_IMPORT_LESS_GENERATION = MetricDef(
    "goodwe_meter_energy_import_less_generation_joules",
    "The meter's 'import less generation' energy (reg 0x0817, 16 bits, not monotonic).",
    Kind.GAUGE, "joules")
METER_POWER_EXPORT = MetricDef(
    "goodwe_meter_power_export_watts", "Power exported to the grid; negative while importing (reg 0x0839).",
    Kind.GAUGE, "watts")
METER_POWER_GENERATION = MetricDef(
    "goodwe_meter_power_generation_watts", "Generation power; small negatives are noise (reg 0x083b).",
    Kind.GAUGE, "watts")
METER_POWER_GENERATION_PLUS_EXPORT = MetricDef(
    "goodwe_meter_power_generation_plus_export_watts", "The meter's own power sum (reg 0x083f).",
    Kind.GAUGE, "watts")
METER_UNKNOWN = MetricDef(
    "goodwe_meter_unknown_value", "Meter registers of unknown meaning (the reference's unknown_int_N).",
    Kind.GAUGE, integer=True)

INPUT_VOLTAGE = MetricDef("goodwe_inverter_input_voltage_dc_volts", "PV string DC voltage.", unit="volts")
INPUT_CURRENT = MetricDef("goodwe_inverter_input_current_dc_amperes", "PV string DC current.", unit="amperes")
OUTPUT_VOLTAGE = MetricDef("goodwe_inverter_output_voltage_ac_volts", "Grid-side AC voltage per phase.",
                           unit="volts")
OUTPUT_CURRENT = MetricDef("goodwe_inverter_output_current_ac_amperes", "Grid-side AC current per phase.",
                           unit="amperes")
OUTPUT_FREQUENCY = MetricDef("goodwe_inverter_output_frequency_ac_hertz", "Grid frequency per phase.",
                             unit="hertz")
POWER_OUTPUT = MetricDef(
    "goodwe_inverter_power_output_watts",
    "Inverter output power (DNS: 32-bit regs 30127-30128, tracks PV DC power; ET: active power 35140).",
    unit="watts")
LOAD_POWER = MetricDef("goodwe_inverter_load_power_watts", "House load power (ET reg 35172).", unit="watts")
TEMPERATURE = MetricDef("goodwe_inverter_temperature_celsius", "Inverter temperature by sensor.",
                        unit="celsius")
ENERGY_TODAY = MetricDef("goodwe_inverter_energy_output_today_joules",
                         "Energy produced today; resets daily.", unit="joules")
ENERGY_TOTAL = MetricDef("goodwe_inverter_energy_output_joules_total", "Energy produced since installation.",
                         Kind.COUNTER, "joules")
OPERATING_TIME = MetricDef("goodwe_inverter_operating_seconds_total", "Total operating time (h_total).",
                           Kind.COUNTER, "seconds")
RSSI = MetricDef("goodwe_inverter_wifi_signal_ratio", "Wi-Fi dongle signal strength (reg 30172, percent/100).",
                 unit="ratio")
BATTERY_VOLTAGE = MetricDef("goodwe_battery_voltage_volts", "Battery voltage (ET reg 35180).", unit="volts")
BATTERY_CURRENT = MetricDef("goodwe_battery_current_amperes", "Battery current (ET reg 35181).",
                            unit="amperes")
BATTERY_POWER = MetricDef("goodwe_battery_power_watts",
                          "Battery power, positive while discharging (ET regs 35182-35183).", unit="watts")
BATTERY_TEMPERATURE = MetricDef("goodwe_battery_temperature_celsius", "Battery temperature (ET reg 37003).",
                                unit="celsius")
BATTERY_SOC = MetricDef("goodwe_battery_state_of_charge_ratio", "Battery state of charge (ET reg 37007).",
                        unit="ratio")
BATTERY_SOH = MetricDef("goodwe_battery_state_of_health_ratio", "Battery state of health (ET reg 37008).",
                        unit="ratio")

DEVICE_INFO = MetricDef("goodwe_device_info", "A device seen on the proxy: model and full serial.", Kind.INFO)
FRAME_TIMESTAMP = MetricDef("goodwe_frame_timestamp_seconds",
                            "When the proxy last decoded a data frame from this device (Unix time).",
                            unit="seconds")
PACKETS = MetricDef("goodwe_packets_total", "Valid frames decoded, by direction and packet type.",
                    Kind.COUNTER, integer=True)
UNKNOWN_PACKETS = MetricDef("goodwe_unknown_packets_total",
                            "Valid frames of a packet type we do not know, by direction.",
                            Kind.COUNTER, integer=True)
DECODE_ERRORS = MetricDef("goodwe_decode_errors_total", "Frames that failed to decode, by direction and error.",
                          Kind.COUNTER, integer=True)
INBOUND_DROPPED = MetricDef("goodwe_inbound_dropped_total",
                            "Cloud-to-device units not forwarded to the device, by reason.",
                            Kind.COUNTER, integer=True)
FORWARDED_BYTES = MetricDef("goodwe_forwarded_bytes_total", "Bytes forwarded by the proxy, by direction.",
                            Kind.COUNTER, "bytes", integer=True)
CONNECTIONS = MetricDef("goodwe_device_connections", "Device connections open on the proxy.", integer=True)
UPSTREAM_FAILURES = MetricDef("goodwe_upstream_dial_failures_total", "Failed dials to the upstream server.",
                              Kind.COUNTER, integer=True)
BATSIGNAL_TOP = MetricDef("goodwe_batsignal_top", "Bat-signal upper curve (kW) written into forwarded frames.")
BATSIGNAL_BOTTOM = MetricDef("goodwe_batsignal_bottom", "Bat-signal lower curve (kW) written into forwarded frames.")

METRICS: tuple[MetricDef, ...] = tuple(v for v in list(globals().values()) if isinstance(v, MetricDef))

# --- register maps -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Field:
    """One value: register, width/sign ('u16','i16','u32','i32'), scale, extra labels."""

    definition: MetricDef
    register: int
    kind: str
    scale: float = 1.0
    labels: tuple[tuple[str, str], ...] = ()
    sentinels: tuple[int, ...] = ()


def _f(d: MetricDef, reg: int, kind: str, scale: float = 1.0, sentinels: tuple[int, ...] = (),
       **labels: str) -> Field:
    return Field(d, reg, kind, scale, tuple(sorted(labels.items())), sentinels)


_DA = 10 * _WH       # decawatt-hour
_HWH = 100 * _WH     # hectowatt-hour (0.1 kWh)
_NA16 = (0xFFFF,)    # "not available" for unsigned 16-bit DT/ET registers
_NA_T = (-1, 32767)  # temperature not available

METER_FIELDS: tuple[Field, ...] = (
    _f(METER_ENERGY_EXPORT, 0x0801, "i32", _DA),
    _f(METER_ENERGY_GENERATION, 0x0804, "i32", _DA),
    _f(METER_ENERGY_GENERATION_PLUS_EXPORT, 0x080A, "i32", _DA),
    _f(METER_ENERGY_IMPORT, 0x080D, "i32", _DA),
    _f(METER_ENERGY_IMPORT_LESS_GENERATION, 0x0817, "i16", _DA),
    _f(METER_POWER_EXPORT, 0x0839, "i32"),
    _f(METER_POWER_GENERATION, 0x083B, "i32"),
    _f(METER_POWER_GENERATION_PLUS_EXPORT, 0x083F, "i32"),
    *(_f(METER_UNKNOWN, r, "i16", register=f"0x{r:04x}") for r in (0x0830, 0x0831, 0x0832)),
    *(_f(METER_UNKNOWN, r, "i32", register=f"0x{r:04x}") for r in (0x0833, 0x0835, 0x0837, 0x083D)),
)

DT_FIELDS: tuple[Field, ...] = (
    _f(INPUT_VOLTAGE, 30103, "u16", 0.1, _NA16, input="pv1"),
    _f(INPUT_CURRENT, 30104, "u16", 0.1, _NA16, input="pv1"),
    _f(OUTPUT_VOLTAGE, 30118, "u16", 0.1, _NA16, phase="L1"),
    _f(OUTPUT_CURRENT, 30121, "u16", 0.1, _NA16, phase="L1"),
    _f(OUTPUT_FREQUENCY, 30124, "i16", 0.01, (-1,), phase="L1"),
    _f(POWER_OUTPUT, 30127, "i32"),
    _f(TEMPERATURE, 30141, "i16", 0.1, _NA_T, sensor="internal"),
    _f(ENERGY_TODAY, 30144, "u16", _HWH),
    _f(ENERGY_TOTAL, 30145, "u32", _HWH, (0xFFFFFFFF,)),
    _f(OPERATING_TIME, 30147, "u32", 3600.0, (0xFFFFFFFF,)),
    _f(RSSI, 30172, "u16", 0.01, _NA16),
)

ET_FIELDS: tuple[Field, ...] = (
    _f(INPUT_VOLTAGE, 35103, "u16", 0.1, _NA16, input="pv1"),
    _f(INPUT_CURRENT, 35104, "u16", 0.1, _NA16, input="pv1"),
    _f(INPUT_VOLTAGE, 35107, "u16", 0.1, _NA16, input="pv2"),
    _f(INPUT_CURRENT, 35108, "u16", 0.1, _NA16, input="pv2"),
    *(f for i, ph in enumerate(("L1", "L2", "L3")) for f in (
        _f(OUTPUT_VOLTAGE, 35121 + 5 * i, "u16", 0.1, _NA16, phase=ph),
        _f(OUTPUT_CURRENT, 35122 + 5 * i, "u16", 0.1, _NA16, phase=ph),
        _f(OUTPUT_FREQUENCY, 35123 + 5 * i, "i16", 0.01, (-1,), phase=ph),
    )),
    _f(POWER_OUTPUT, 35140, "i16"),
    _f(LOAD_POWER, 35172, "i16"),
    _f(TEMPERATURE, 35174, "i16", 0.1, _NA_T, sensor="air"),
    _f(TEMPERATURE, 35176, "i16", 0.1, _NA_T, sensor="radiator"),
    _f(BATTERY_VOLTAGE, 35180, "u16", 0.1, _NA16),
    _f(BATTERY_CURRENT, 35181, "i16", 0.1),
    _f(BATTERY_POWER, 35182, "i32"),
    _f(ENERGY_TOTAL, 35191, "u32", _HWH, (0xFFFFFFFF,)),
    _f(ENERGY_TODAY, 35193, "u32", _HWH, (0xFFFFFFFF,)),
    _f(BATTERY_TEMPERATURE, 37003, "i16", 0.1, _NA_T),
    _f(BATTERY_SOC, 37007, "u16", 0.01, _NA16),
    _f(BATTERY_SOH, 37008, "u16", 0.01, _NA16),
)

#: Family (first byte of the packet type) -> (device label, register map).
FAMILIES: dict[int, tuple[str, tuple[Field, ...]]] = {
    0x01: ("inverter", DT_FIELDS),
    0x02: ("inverter", ET_FIELDS),
    0x03: ("meter", METER_FIELDS),
}

#: The reference's fixed DeviceID table; only a fallback when the payload names no model.
KNOWN_MODELS = {"91000HKU": "HomeKit 1000 Smart Meter", "53000DSC": "GW3000-DNS-30"}

#: Registers holding the model name as ASCII: DT 40173.. (in 0x0103), ET 35011..35015.
MODEL_REGISTERS = ((40173, 16), (35011, 5))

OUTBOUND_KNOWN = frozenset({0x0303, 0x0304, 0x0345, 0x0310, 0x0103, 0x0104, 0x0145, 0x0110,
                            0x0203, 0x0204, 0x0245, 0x0210})
DROP_REASONS = ("checksum", "length", "format", "unknown_type", "junk", "device_mismatch")
INBOUND_KNOWN = frozenset({0x0303, 0x0304, 0x0345, 0x0103, 0x0104, 0x0145, 0x0203, 0x0204, 0x0245, 0x0116})


def read_register(regs: dict[int, int], register: int, kind: str) -> int | None:
    """A raw value from consecutive registers, or None if any is missing."""
    hi = regs.get(register)
    if hi is None:
        return None
    if kind == "u16":
        return hi
    if kind == "i16":
        return hi - 0x10000 if hi & 0x8000 else hi
    lo = regs.get(register + 1)
    if lo is None:
        return None
    v = (hi << 16) | lo
    if kind == "i32" and v & 0x80000000:
        v -= 1 << 32
    return v


def register_string(regs: dict[int, int], register: int, count: int) -> str | None:
    """ASCII held in ``count`` registers, NULs and spaces stripped; None if absent/empty."""
    raw = bytearray()
    for r in range(register, register + count):
        v = regs.get(r)
        if v is None:
            return None
        raw += v.to_bytes(2, "big")
    text = raw.split(b"\x00")[0].decode("ascii", "replace").strip()
    return text or None


def model_from_registers(regs: dict[int, int]) -> str | None:
    for reg, count in MODEL_REGISTERS:
        m = register_string(regs, reg, count)
        if m:
            return m
    return None


def device_label(packet_type: int) -> str:
    return FAMILIES.get(packet_type >> 8, ("unknown", ()))[0]


def frame_metrics(frame: dict, model: str | None = None) -> list[Metric]:
    """Samples of one decoded outbound frame (a dict from ``goodwe_decode_frame``).

    ``model`` is what an earlier frame of the same device said (DNS names its model only
    in 0x0103); otherwise the payload, then the DeviceID table, then "unknown".
    """
    family = frame["type"] >> 8
    device, fields = FAMILIES.get(family, ("unknown", ()))
    regs = frame["registers"]
    serial = frame["device_id"] + frame["device_serial"]
    model = model_from_registers(regs) or model or KNOWN_MODELS.get(frame["device_id"], "unknown")
    base = (("device", device), ("model", model), ("serial", serial))
    out = [Metric(DEVICE_INFO, 1, base)]
    for f in fields:
        raw = read_register(regs, f.register, f.kind)
        if raw is None or raw in f.sentinels:
            continue
        # Divide for sub-unit scales so 2322 * 0.1 reads 232.2, not 232.20000000000002.
        value = raw / round(1 / f.scale) if f.scale < 1 else raw * f.scale
        if not f.definition.integer:
            value = float(value)
        out.append(Metric(f.definition, value, label_set(base + f.labels)))
    return out


# --- state shared between the proxy thread and collect() ------------------------------

@dataclass
class DeviceSnapshot:
    serial: str
    device: str
    model: str
    metrics: list[Metric]
    received: float


class GoodweState:
    """Latest samples per device plus exporter counters; safe to use from two threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.devices: dict[tuple[str, str], DeviceSnapshot] = {}
        self.models: dict[str, str] = {}
        self.packets: Counter[tuple[str, str]] = Counter()
        self.unknown: Counter[str] = Counter()
        self.errors: Counter[tuple[str, str]] = Counter()
        self.dropped: Counter[str] = Counter()
        self.forwarded: Counter[str] = Counter()
        self.upstream_failures = 0
        self.connections = 0
        self.last_data: float | None = None
        self.batsignal: tuple[float, float] | None = None

    # writers (proxy thread)
    def frame(self, direction: str, frame: dict, now: float | None = None) -> None:
        """Count a valid frame; keep its samples when it is an outbound data upload."""
        now = time.time() if now is None else now
        ptype = frame["type"]
        known = OUTBOUND_KNOWN if direction == "outbound" else INBOUND_KNOWN
        with self._lock:
            self.packets[(direction, f"0x{ptype:04x}")] += 1
            if ptype not in known:
                self.unknown[direction] += 1
            if direction != "outbound" or frame["blocks"] is None or (ptype >> 8) not in FAMILIES:
                return
            serial = frame["device_id"] + frame["device_serial"]
            model = model_from_registers(frame["registers"])
            if model:
                self.models[serial] = model
            samples = frame_metrics(frame, self.models.get(serial))
            labels = dict(samples[0].labels)
            key = (serial, labels["device"])
            old = self.devices.get(key)
            live = (ptype & 0xFF) in (0x04, 0x45)
            if old is not None and not live:
                # Merge: info uploads carry a few values (e_total) but not the live ones.
                merged = {(m.name, m.labels): m for m in old.metrics}
                merged.update({(m.name, m.labels): m for m in samples})
                samples = list(merged.values())
            self.devices[key] = DeviceSnapshot(serial, labels["device"], labels["model"], samples, now)
            if live:
                # Only a data upload makes the proxy "up": a device's info upload comes first,
                # and a collection between the two (`run --once`) would carry no live values.
                self.last_data = now

    def error(self, direction: str, reason: str) -> None:
        with self._lock:
            self.errors[(direction, reason)] += 1

    def drop(self, reason: str) -> None:
        with self._lock:
            self.dropped[reason] += 1

    def forward(self, direction: str, n: int) -> None:
        with self._lock:
            self.forwarded[direction] += n

    def connection(self, delta: int) -> None:
        with self._lock:
            self.connections += delta

    def upstream_failed(self) -> None:
        with self._lock:
            self.upstream_failures += 1

    # reader (collect)
    def metrics(self) -> list[Metric]:
        with self._lock:
            out: list[Metric] = []
            for snap in self.devices.values():
                out.extend(snap.metrics)
                base = (("device", snap.device), ("model", snap.model), ("serial", snap.serial))
                out.append(Metric(FRAME_TIMESTAMP, snap.received, base))
            for (direction, ptype), n in sorted(self.packets.items()):
                out.append(PACKETS(n, direction=direction, type=ptype))
            for direction in ("outbound", "inbound"):
                out.append(UNKNOWN_PACKETS(self.unknown[direction], direction=direction))
                out.append(FORWARDED_BYTES(self.forwarded[direction], direction=direction))
            for (direction, reason), n in sorted(self.errors.items()):
                out.append(DECODE_ERRORS(n, direction=direction, error=reason))
            for reason in DROP_REASONS:
                self.dropped.setdefault(reason, 0)
            for reason, n in sorted(self.dropped.items()):
                out.append(INBOUND_DROPPED(n, reason=reason))
            out.append(CONNECTIONS(self.connections))
            out.append(UPSTREAM_FAILURES(self.upstream_failures))
            if self.batsignal is not None:
                out.append(BATSIGNAL_TOP(self.batsignal[0]))
                out.append(BATSIGNAL_BOTTOM(self.batsignal[1]))
            return out
