"""Goodwe register maps and exporter counters, turned into gridtap metrics (no I/O).

Why register maps and not offsets: every SEMS upload is a list of Modbus register dumps
whose block set differs between packet types, models and firmware (spec §6), so each metric
here names the register(s) it comes from and is emitted only when they are present. Values
are converted to Prometheus base units (10 Wh -> J, 0.1 V -> V, percent -> ratio).

:class:`GoodweState` is the thread-safe store the proxy writes into and ``collect()`` reads.
"""

from __future__ import annotations

import math
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from gridtap import _native
from gridtap.model import Display, Kind, Metric, MetricDef, label_set

_WH = 3600.0  # joules per watt-hour

# --- definitions ---------------------------------------------------------------------
#: PV inputs as a person writes them.
_PV = {"input": {"pv1": "PV1", "pv2": "PV2", "pv3": "PV3", "pv4": "PV4"}}
#: Internals few people want: diagnostic entities, disabled until someone enables them.
_RARE = {"diagnostic": True, "enabled": False}

METER_ENERGY_EXPORT = MetricDef(
    "goodwe_meter_energy_export_joules_total", "Energy exported to the grid (meter reg 0x0801).",
    Kind.COUNTER, "joules",
    display=Display(name="Energy exported", precision=2))
METER_ENERGY_GENERATION = MetricDef(
    "goodwe_meter_energy_generation_joules_total", "Energy generated (meter reg 0x0804).",
    Kind.COUNTER, "joules",
    display=Display(name="Energy generated", precision=2))
METER_ENERGY_GENERATION_PLUS_EXPORT = MetricDef(
    "goodwe_meter_energy_generation_plus_export_joules_total",
    "The meter's own 'generation and export' energy sum (reg 0x080a); only roughly the sum.",
    Kind.COUNTER, "joules",
    display=Display(name="Energy generated plus exported", precision=2, diagnostic=True, enabled=False))
METER_ENERGY_IMPORT = MetricDef(
    "goodwe_meter_energy_import_joules_total", "Energy imported from the grid (meter reg 0x080d).",
    Kind.COUNTER, "joules",
    display=Display(name="Energy imported", precision=2))
METER_ENERGY_IMPORT_LESS_GENERATION = MetricDef(
    "goodwe_meter_energy_import_less_generation_joules",
    "The meter's 'import less generation' energy (reg 0x0817, 16 bits, not monotonic).",
    Kind.GAUGE, "joules",
    display=Display(name="Energy imported less generated", precision=2, diagnostic=True, enabled=False))
METER_POWER_EXPORT = MetricDef(
    "goodwe_meter_power_export_watts", "Power exported to the grid; negative while importing (reg 0x0839).",
    Kind.GAUGE, "watts",
    display=Display(name="Grid export power", precision=0))
METER_POWER_GENERATION = MetricDef(
    "goodwe_meter_power_generation_watts", "Generation power; small negatives are noise (reg 0x083b).",
    Kind.GAUGE, "watts",
    display=Display(name="Generation power", precision=0))
METER_POWER_GENERATION_PLUS_EXPORT = MetricDef(
    "goodwe_meter_power_generation_plus_export_watts", "The meter's own power sum (reg 0x083f).",
    Kind.GAUGE, "watts",
    display=Display(name="Generation plus export power", precision=0, diagnostic=True, enabled=False))
METER_UNKNOWN = MetricDef(
    "goodwe_meter_unknown_value", "Meter registers of unknown meaning (the reference's unknown_int_N).",
    Kind.GAUGE, integer=True,
    display=Display(name="Register {register}", state_class="", diagnostic=True, enabled=False))

INPUT_VOLTAGE = MetricDef("goodwe_inverter_input_voltage_dc_volts", "PV string DC voltage.", unit="volts",
                          display=Display(name="{input} voltage", precision=1, diagnostic=True, words=_PV))
INPUT_CURRENT = MetricDef("goodwe_inverter_input_current_dc_amperes", "PV string DC current.", unit="amperes",
                          display=Display(name="{input} current", precision=1, diagnostic=True, words=_PV))
OUTPUT_VOLTAGE = MetricDef("goodwe_inverter_output_voltage_ac_volts", "Grid-side AC voltage per phase.",
                           unit="volts",
                           display=Display(name="Grid voltage {phase}", precision=1, diagnostic=True))
OUTPUT_CURRENT = MetricDef("goodwe_inverter_output_current_ac_amperes", "Grid-side AC current per phase.",
                           unit="amperes",
                           display=Display(name="Grid current {phase}", precision=1, diagnostic=True))
OUTPUT_FREQUENCY = MetricDef("goodwe_inverter_output_frequency_ac_hertz", "Grid frequency per phase.",
                             unit="hertz",
                             display=Display(name="Grid frequency {phase}", precision=2, **_RARE))
POWER_OUTPUT = MetricDef(
    "goodwe_inverter_power_output_watts",
    "Inverter output power (DNS: 32-bit regs 30127-30128, tracks PV DC power; ET: active power 35140).",
    unit="watts",
    display=Display(name="Output power", precision=0))
LOAD_POWER = MetricDef("goodwe_inverter_load_power_watts", "House load power (ET reg 35172).", unit="watts",
                       display=Display(name="House load", precision=0))
TEMPERATURE = MetricDef("goodwe_inverter_temperature_celsius", "Inverter temperature by sensor.",
                        unit="celsius",
                        display=Display(name="{sensor} temperature", precision=1, diagnostic=True,
                                        words={"sensor": {"internal": "Internal", "air": "Air",
                                                          "radiator": "Heat sink"}}))
ENERGY_TODAY = MetricDef("goodwe_inverter_energy_output_today_joules",
                         "Energy produced today; resets daily.", unit="joules",
                         display=Display(name="Energy today", precision=1, state_class="total_increasing"))
ENERGY_TOTAL = MetricDef("goodwe_inverter_energy_output_joules_total", "Energy produced since installation.",
                         Kind.COUNTER, "joules",
                         display=Display(name="Energy produced", precision=1))
OPERATING_TIME = MetricDef("goodwe_inverter_operating_seconds_total", "Total operating time (h_total).",
                           Kind.COUNTER, "seconds",
                           display=Display(name="Operating time", unit="h", precision=0, diagnostic=True))
RSSI = MetricDef("goodwe_inverter_wifi_signal_ratio", "Wi-Fi dongle signal strength (reg 30172, percent/100).",
                 unit="ratio",
                 display=Display(name="Wi-Fi signal", unit="%", precision=0, diagnostic=True))
BATTERY_VOLTAGE = MetricDef("goodwe_battery_voltage_volts", "Battery voltage (ET reg 35180).", unit="volts",
                            display=Display(name="Voltage", precision=1, diagnostic=True, component="battery"))
BATTERY_CURRENT = MetricDef("goodwe_battery_current_amperes", "Battery current (ET reg 35181).",
                            unit="amperes",
                            display=Display(name="Current", precision=1, diagnostic=True, component="battery"))
BATTERY_POWER = MetricDef("goodwe_battery_power_watts",
                          "Battery power, positive while discharging (ET regs 35182-35183).", unit="watts",
                          display=Display(name="Power", precision=0, component="battery"))
BATTERY_TEMPERATURE = MetricDef("goodwe_battery_temperature_celsius", "Battery temperature (ET reg 37003).",
                                unit="celsius",
                                display=Display(name="Temperature", precision=1, diagnostic=True,
                                                component="battery"))
BATTERY_SOC = MetricDef("goodwe_battery_state_of_charge_ratio", "Battery state of charge (ET reg 37007).",
                        unit="ratio",
                        display=Display(name="State of charge", unit="%", precision=0, device_class="battery",
                                        component="battery"))
BATTERY_SOH = MetricDef("goodwe_battery_state_of_health_ratio", "Battery state of health (ET reg 37008).",
                        unit="ratio",
                        display=Display(name="State of health", unit="%", precision=0, diagnostic=True,
                                        component="battery"))

DEVICE_INFO = MetricDef("goodwe_device_info", "A device seen on the proxy: model and full serial.", Kind.INFO)
FRAME_TIMESTAMP = MetricDef("goodwe_frame_timestamp_seconds",
                            "When the proxy last decoded a data frame from this device (Unix time).",
                            unit="seconds",
                            display=Display(name="Last upload", diagnostic=True))
PACKETS = MetricDef("goodwe_packets_total", "Valid frames decoded, by direction and packet type.",
                    Kind.COUNTER, integer=True,
                    display=Display(name="Packets {direction} {type}", diagnostic=True, enabled=False))
UNKNOWN_PACKETS = MetricDef("goodwe_unknown_packets_total",
                            "Valid frames of a packet type we do not know, by direction.",
                            Kind.COUNTER, integer=True,
                            display=Display(name="Unknown packets {direction}", diagnostic=True, enabled=False))
DECODE_ERRORS = MetricDef("goodwe_decode_errors_total", "Frames that failed to decode, by direction and error.",
                          Kind.COUNTER, integer=True,
                          display=Display(name="Decode errors {direction} {error}", **_RARE))
INBOUND_DROPPED = MetricDef("goodwe_inbound_dropped_total",
                            "Cloud-to-device units not forwarded to the device, by reason.",
                            Kind.COUNTER, integer=True,
                            display=Display(name="Dropped from the cloud ({reason})", diagnostic=True, enabled=False,
                                            words={"reason": {"unknown_type": "unknown type",
                                                              "device_mismatch": "device mismatch"}}))
FORWARDED_BYTES = MetricDef("goodwe_forwarded_bytes_total", "Bytes forwarded by the proxy, by direction.",
                            Kind.COUNTER, "bytes", integer=True,
                            display=Display(name="Bytes forwarded {direction}", unit="kB", precision=0, **_RARE))
CONNECTIONS = MetricDef("goodwe_device_connections", "Device connections open on the proxy.", integer=True,
                        display=Display(name="Device connections", diagnostic=True))
UPSTREAM_FAILURES = MetricDef("goodwe_upstream_dial_failures_total", "Failed dials to the upstream server.",
                              Kind.COUNTER, integer=True,
                              display=Display(name="Cloud dial failures", diagnostic=True))
BATSIGNAL_TOP = MetricDef("goodwe_batsignal_top", "Bat-signal upper curve (kW) written into forwarded frames.",
                          display=Display(name="Bat signal top", unit="kW", precision=2, **_RARE))
BATSIGNAL_BOTTOM = MetricDef("goodwe_batsignal_bottom", "Bat-signal lower curve (kW) written into forwarded frames.",
                             display=Display(name="Bat signal bottom", unit="kW", precision=2, **_RARE))

# Energy counters a Home Assistant Energy dashboard needs (grid in/out, battery in/out),
# wherever a family's registers hold them.
GRID_ENERGY_EXPORT = MetricDef(
    "goodwe_grid_energy_export_joules_total",
    "Energy exported to the grid, counted by the inverter's grid meter (DT regs 30197-30198 Wh; "
    "ET regs 36015-36016, float Wh).", Kind.COUNTER, "joules",
    display=Display(name="Grid energy exported", precision=2))
GRID_ENERGY_IMPORT = MetricDef(
    "goodwe_grid_energy_import_joules_total",
    "Energy imported from the grid, counted by the inverter's grid meter (DT regs 30199-30200 Wh; "
    "ET regs 36017-36018, float Wh).", Kind.COUNTER, "joules",
    display=Display(name="Grid energy imported", precision=2))
BATTERY_ENERGY_CHARGE = MetricDef(
    "goodwe_battery_energy_charge_joules_total", "Energy charged into the battery (ET regs 35206-35207).",
    Kind.COUNTER, "joules", display=Display(name="Energy charged", precision=2, component="battery"))
BATTERY_ENERGY_DISCHARGE = MetricDef(
    "goodwe_battery_energy_discharge_joules_total", "Energy discharged from the battery (ET regs 35209-35210).",
    Kind.COUNTER, "joules", display=Display(name="Energy discharged", precision=2, component="battery"))
LOAD_ENERGY = MetricDef(
    "goodwe_inverter_load_energy_joules_total", "Energy used by the house load (ET regs 35203-35204).",
    Kind.COUNTER, "joules", display=Display(name="House energy used", precision=2))

METRICS: tuple[MetricDef, ...] = tuple(v for v in list(globals().values()) if isinstance(v, MetricDef))

# --- register maps -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Field:
    """One value: register, width/sign ('u16','i16','u32','i32', 'f32'), scale, extra labels."""

    definition: MetricDef
    register: int
    kind: str
    scale: float = 1.0
    labels: tuple[tuple[str, str], ...] = ()
    sentinels: tuple[int, ...] = ()
    #: For sub-unit scales, divide by this instead (2322 / 10 reads 232.2, 2322 * 0.1 does not).
    divide: int = 0


def _f(d: MetricDef, reg: int, kind: str, scale: float = 1.0, sentinels: tuple[int, ...] = (),
       **labels: str) -> Field:
    return Field(d, reg, kind, scale, tuple(sorted(labels.items())), sentinels, round(1 / scale) if scale < 1 else 0)


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
    # The inverter's own meter (regs 30195+); 0xFFFFFFFF when none is connected.
    _f(GRID_ENERGY_EXPORT, 30197, "u32", _WH, (0xFFFFFFFF,)),
    _f(GRID_ENERGY_IMPORT, 30199, "u32", _WH, (0xFFFFFFFF,)),
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
    _f(OPERATING_TIME, 35197, "u32", 3600.0, (0xFFFFFFFF,)),
    _f(LOAD_ENERGY, 35203, "u32", _HWH, (0xFFFFFFFF,)),
    _f(BATTERY_ENERGY_CHARGE, 35206, "u32", _HWH, (0xFFFFFFFF,)),
    _f(BATTERY_ENERGY_DISCHARGE, 35209, "u32", _HWH, (0xFFFFFFFF,)),
    _f(GRID_ENERGY_EXPORT, 36015, "f32", _WH),
    _f(GRID_ENERGY_IMPORT, 36017, "f32", _WH),
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
ERROR_REASONS = ("checksum", "length", "format")
DROP_REASONS = (*ERROR_REASONS, "unknown_type", "junk", "device_mismatch")
INBOUND_KNOWN = frozenset({0x0303, 0x0304, 0x0345, 0x0103, 0x0104, 0x0145, 0x0203, 0x0204, 0x0245, 0x0116})


def read_register(regs: dict[int, int], register: int, kind: str) -> int | float | None:
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
    elif kind == "f32":
        # IEEE 754 single, high word first (the ET's meter energy registers).
        f = struct.unpack(">f", v.to_bytes(4, "big"))[0]
        # NaN/inf or a negative count is not a reading.
        return f if math.isfinite(f) and f >= 0 else None
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


def frame_metrics(frame: dict, model: str | None = None, *, model_is_final: bool = False) -> list[Metric]:
    """Samples of one decoded outbound frame (a dict from ``goodwe_decode_frame``).

    ``model`` is what an earlier frame of the same device said (DNS names its model only
    in 0x0103); otherwise the payload, then the DeviceID table, then "unknown". With
    ``model_is_final`` the given model is used as is (one device, one model label).
    """
    family = frame["type"] >> 8
    device, fields = FAMILIES.get(family, ("unknown", ()))
    regs = frame["registers"]
    serial = frame["device_id"] + frame["device_serial"]
    if not (model_is_final and model):
        model = model_from_registers(regs) or model or KNOWN_MODELS.get(frame["device_id"], "unknown")
    base = label_set((("device", device), ("model", model), ("serial", serial)))
    out = [Metric(DEVICE_INFO, 1, base)]
    for f, labels in zip(fields, _field_labels(base, fields), strict=True):
        raw = read_register(regs, f.register, f.kind)
        if raw is None or raw in f.sentinels:
            continue
        value = raw / f.divide if f.divide else raw * f.scale
        if not f.definition.integer:
            value = float(value)
        out.append(Metric(f.definition, value, labels))
    return out


Labels = tuple[tuple[str, str], ...]
_FIELD_LABELS: dict[tuple[Labels, int], tuple[Labels, ...]] = {}


def _field_labels(base: Labels, fields: tuple[Field, ...]) -> tuple[Labels, ...]:
    """Each field's label set for one device (made once per device, not per upload)."""
    key = (base, id(fields))
    found = _FIELD_LABELS.get(key)
    if found is None:
        if len(_FIELD_LABELS) >= 4 * MAX_DEVICES:  # bounded, like the devices themselves
            _FIELD_LABELS.clear()
        found = _FIELD_LABELS[key] = tuple(label_set(base + f.labels) for f in fields)
    return found


# --- state shared between the proxy thread and collect() ------------------------------

#: Physical devices remembered; beyond this the one heard from least recently is forgotten
#: (a stream of made-up serials must not grow memory without bound).
MAX_DEVICES = 4096

_TYPE_LABELS: dict[int, str] = {}


def type_label(packet_type: int) -> str:
    """``0x0304``: the ``type`` label value (cached: it is made for every frame)."""
    label = _TYPE_LABELS.get(packet_type)
    if label is None:
        label = _TYPE_LABELS[packet_type] = f"0x{packet_type:04x}"
    return label


def is_data_upload(packet_type: int) -> bool:
    """Live (0x?04) or cached (0x?45) readings, as opposed to the info upload (0x?03)."""
    return (packet_type & 0xFF) in (0x04, 0x45)


def _stamp(upload: bytes | dict) -> bytes:
    """The device's own time of a data upload (YY MM DD hh mm ss, comparable as bytes): in the
    40-byte envelope, after POSTGW, LEN, TYPE, pad, serial and IV."""
    if isinstance(upload, dict):
        return upload.get("timestamp") or b""
    return upload[46:52]


def _decoded(upload: bytes | dict) -> dict:
    """An upload as kept by the state: the raw frame (decoded on first use) or a decoded dict."""
    if isinstance(upload, dict):
        return upload
    return _native.goodwe_decode_frame(upload, "outbound")


class PhysicalDevice:
    """One meter or inverter seen on the proxy: its last data and info uploads.

    Uploads are kept as they came (raw frame bytes) and turned into samples only when a
    collection asks and something changed, so the relay path never builds metrics.
    """

    __slots__ = ("serial", "family", "data", "info", "last_data", "last_heard", "version", "_cache",
                 "_info_decoded")

    def __init__(self, serial: str, family: int) -> None:
        self.serial = serial
        self.family = family
        self.data: tuple[bytes | dict, float] | None = None
        self.info: tuple[bytes | dict, float] | None = None
        self.last_data: float | None = None
        self.last_heard = 0.0
        #: Bumped by every upload (proxy thread); the cache is valid for one version.
        self.version = 0
        self._cache: tuple[int, list[Metric]] | None = None
        self._info_decoded: tuple[tuple[bytes | dict, float], dict] | None = None

    def add(self, upload: bytes | dict, packet_type: int, now: float) -> None:
        if is_data_upload(packet_type):
            # A cached upload (0x?45) may carry a reading older than the one shown: a device
            # catching up after an outage. It proves the device is there; its values do not win.
            late = (packet_type & 0xFF) == 0x45 and self.data is not None and _stamp(upload) < _stamp(self.data[0])
            if not late:
                self.data = (upload, now)
            self.last_data = now
        else:
            self.info = (upload, now)
        self.last_heard = now
        self.version += 1

    def samples(self) -> list[Metric]:
        """Device info, register samples (info upload merged under the newer data upload)
        and the frame timestamp; decoded once per new upload."""
        version = self.version
        cache = self._cache
        if cache is not None and cache[0] == version:
            return cache[1]
        info, data, last_data = self.info, self.data, self.last_data
        info_frame = self._info_frame(info)
        frames = [(when, frame) for when, frame in ((info[1] if info else 0.0, info_frame),
                                                    (data[1] if data else 0.0, _decoded(data[0]) if data else None))
                  if frame is not None]
        frames.sort(key=lambda f: f[0])
        # One model label per device: the payload's (DT names it in the info upload, ET in
        # every upload), else the DeviceID table.
        model = next((m for _, f in reversed(frames) if (m := model_from_registers(f["registers"]))), None)
        if model is None:
            model = KNOWN_MODELS.get(frames[-1][1]["device_id"], "unknown")
        out = frame_metrics(frames[-1][1], model, model_is_final=True)
        if len(frames) == 2:  # the older upload's values where the newer one has none
            newer = {(m[0].name, m[2]) for m in out}
            out = [m for m in frame_metrics(frames[0][1], model, model_is_final=True)
                   if (m[0].name, m[2]) not in newer] + out
        if last_data is not None:
            out.append(Metric(FRAME_TIMESTAMP, last_data, out[0].labels))
        # An upload that came while this was decoded makes the next call decode again.
        self._cache = (version, out)
        return out

    def _info_frame(self, info: tuple[bytes | dict, float] | None) -> dict | None:
        """The info upload decoded (once: it changes rarely, data uploads come every minute)."""
        if info is None:
            return None
        kept = self._info_decoded
        if kept is None or kept[0] is not info:
            kept = self._info_decoded = (info, _decoded(info[0]))
        return kept[1]


class GoodweState:
    """What the proxy saw: the physical devices' last uploads and the proxy's own counters.

    Written by the proxy's event-loop thread, read by the collecting thread. Counters the
    relay path bumps for every read are plain attributes that only the proxy thread writes;
    everything with a changing set of keys is changed under the lock, once per batch.
    """

    def __init__(self, on_data: Callable[[], None] | None = None) -> None:
        self._lock = threading.Lock()
        self.devices: dict[tuple[str, int], PhysicalDevice] = {}
        self.packets: Counter[tuple[str, str]] = Counter()
        self.unknown: Counter[str] = Counter()
        # Every (direction, error) from the start, so rate() and alerts have a series at 0.
        self.errors: Counter[tuple[str, str]] = Counter(
            {(d, e): 0 for d in ("outbound", "inbound") for e in ERROR_REASONS})
        self.dropped: Counter[str] = Counter(dict.fromkeys(DROP_REASONS, 0))
        self.forwarded = {"outbound": 0, "inbound": 0}
        self.upstream_failures = 0
        self.connections = 0
        #: When the first / the latest data upload of any device arrived (Unix time).
        self.first_data: float | None = None
        self.last_data: float | None = None
        self.batsignal: tuple[float, float] | None = None
        #: Called (on the proxy thread) after data uploads were stored: a new reading.
        self.on_data = on_data

    # --- writers (proxy thread) ------------------------------------------------------
    def outbound(self, frames: Iterable[tuple[int, str, bytes | dict | None]], now: float | None = None) -> bool:
        """Count valid outbound frames ``(type, serial, upload)`` and keep the uploads
        (raw frame or decoded dict; None for frames without registers). True when one was
        a data upload (``on_data`` has then been called)."""
        now = time.time() if now is None else now
        data = False
        with self._lock:
            for ptype, serial, upload in frames:
                self.packets[("outbound", type_label(ptype))] += 1
                if ptype not in OUTBOUND_KNOWN:
                    self.unknown["outbound"] += 1
                family = ptype >> 8
                if upload is None or family not in FAMILIES:
                    continue
                key = (serial, family)
                device = self.devices.get(key)
                if device is None:
                    if len(self.devices) >= MAX_DEVICES:
                        oldest = min(self.devices, key=lambda k: self.devices[k].last_heard)
                        del self.devices[oldest]
                    device = self.devices[key] = PhysicalDevice(serial, family)
                device.add(upload, ptype, now)
                if is_data_upload(ptype):
                    data = True
            if data:
                self.last_data = now
                if self.first_data is None:
                    self.first_data = now
        if data and self.on_data is not None:
            self.on_data()
        return data

    def frame(self, direction: str, frame: dict, now: float | None = None) -> None:
        """Count one decoded frame (a ``goodwe_decode_frame`` dict); keep an outbound upload."""
        serial = frame["device_id"] + frame["device_serial"]
        if direction == "outbound":
            self.outbound([(frame["type"], serial, frame if frame["blocks"] is not None else None)], now)
        else:
            self.inbound([(frame["type"], None, 0)])

    def inbound(self, events: Iterable[tuple[int | None, str | None, int]]) -> None:
        """Count SEMS-to-device units: ``(type if it decoded, drop reason or None, length)``."""
        with self._lock:
            for ptype, reason, _ in events:
                if ptype is not None:
                    self.packets[("inbound", type_label(ptype))] += 1
                    if ptype not in INBOUND_KNOWN:
                        self.unknown["inbound"] += 1
                elif reason not in (None, "junk"):
                    self.errors[("inbound", reason)] += 1
                if reason is not None:
                    self.dropped[reason] += 1

    def error(self, direction: str, reason: str) -> None:
        with self._lock:
            self.errors[(direction, reason)] += 1

    def drop(self, reason: str) -> None:
        with self._lock:
            self.dropped[reason] += 1

    def forward(self, direction: str, n: int) -> None:
        self.forwarded[direction] += n

    def connection(self, delta: int) -> None:
        self.connections += delta

    def upstream_failed(self) -> None:
        self.upstream_failures += 1

    # --- readers (collect) ---------------------------------------------------------------
    def seen(self) -> list[PhysicalDevice]:
        with self._lock:
            return list(self.devices.values())

    def measurements(self, now: float | None = None, stale_after: float = float("inf")) -> list[Metric]:
        """Samples of every physical device whose last data upload is at most ``stale_after``
        seconds old; each device goes stale on its own."""
        now = time.time() if now is None else now
        with self._lock:
            fresh = [d for d in self.devices.values()
                     if d.last_data is not None and now - d.last_data <= stale_after]
        out: list[Metric] = []
        for device in fresh:
            # Decoding happens here, on the collecting thread, outside the lock.
            out.extend(device.samples())
        return out

    def fresh_devices(self, now: float | None = None, stale_after: float = float("inf")) -> int:
        now = time.time() if now is None else now
        with self._lock:
            return sum(1 for d in self.devices.values()
                       if d.last_data is not None and now - d.last_data <= stale_after)

    def diagnostics(self) -> list[Metric]:
        """The proxy's own counters: published whether or not any device is fresh."""
        with self._lock:
            packets = sorted(self.packets.items())
            unknown = dict(self.unknown)
            errors = sorted(self.errors.items())
            dropped = sorted(self.dropped.items())
        out: list[Metric] = []
        for (direction, ptype), n in packets:
            out.append(PACKETS(n, direction=direction, type=ptype))
        for direction in ("outbound", "inbound"):
            out.append(UNKNOWN_PACKETS(unknown.get(direction, 0), direction=direction))
            out.append(FORWARDED_BYTES(self.forwarded[direction], direction=direction))
        for (direction, reason), n in errors:
            out.append(DECODE_ERRORS(n, direction=direction, error=reason))
        for reason, n in dropped:
            out.append(INBOUND_DROPPED(n, reason=reason))
        out.append(CONNECTIONS(self.connections))
        out.append(UPSTREAM_FAILURES(self.upstream_failures))
        if self.batsignal is not None:
            out.append(BATSIGNAL_TOP(self.batsignal[0]))
            out.append(BATSIGNAL_BOTTOM(self.batsignal[1]))
        return out

    def metrics(self, now: float | None = None) -> list[Metric]:
        """Everything at once (measurements of fresh-or-not devices, then diagnostics)."""
        return self.measurements(now) + self.diagnostics()
