"""Growatt datalogger records as grott sees them (spec §13): the first step to a no-cloud path.

A ShineWiFi/ShineLAN logger sends records over TCP to ``server.growatt.com:5279``; grott sits
in between. One record::

    0-1 transaction id | 2-3 protocol (0x0002 plain; 0x0005, 0x0006 scrambled + CRC)
    4-5 length (big-endian): bytes 6..end without the CRC | 6 unit id | 7 record type
    8.. payload, XOR-scrambled with the repeating key "Growatt" (protocols 5 and 6)
    last 2: CRC-16/MODBUS of everything before, big-endian (protocols 5 and 6)

Layout ``T060104`` (protocol 6, unit 1, data record 0x04) puts the logger serial at byte 8,
the inverter serial at 38, the time at 68 (yy-2000, mm, dd, hh, mi, ss) and the values from
byte 79 on, big-endian unsigned, with the scales below (offsets are grott's hex positions
halved). Errors are typed (:class:`RecordError`), one line each, never a traceback.

Also the ``gridtap growatt grott FILE`` command: the decoded records as JSON.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from dataclasses import dataclass
from typing import Any

from gridtap.errors import InputError
from gridtap.model import Metric

from . import metrics as m
from .values import denoise as values_denoise

KEY = b"Growatt"


class RecordError(InputError):
    """A datalogger record that cannot be used (what is wrong is in the message)."""


class CrcError(RecordError):
    pass


class LengthError(RecordError):
    pass


@dataclass(frozen=True)
class Value:
    name: str
    offset: int  # byte offset in the record (header included)
    length: int  # bytes, big-endian unsigned
    divide: float


#: Layout T060104 (protocol 06, unit 01, record type 04): grott's value positions / 2.
T060104: tuple[Value, ...] = tuple(Value(n, o, ln, d) for n, o, ln, d in (
    ("pvstatus", 79, 2, 1), ("pvpowerin", 81, 4, 10), ("pv1voltage", 85, 2, 10), ("pv1current", 87, 2, 10),
    ("pv1watt", 89, 4, 10), ("pv2voltage", 93, 2, 10), ("pv2current", 95, 2, 10), ("pv2watt", 97, 4, 10),
    ("pvpowerout", 101, 4, 10), ("pvfrequentie", 105, 2, 100), ("pvgridvoltage", 107, 2, 10),
    ("pvgridcurrent", 109, 2, 10), ("pvgridpower", 111, 4, 10), ("pvgridvoltage2", 115, 2, 10),
    ("pvgridcurrent2", 117, 2, 10), ("pvgridpower2", 119, 4, 10), ("pvgridvoltage3", 123, 2, 10),
    ("pvgridcurrent3", 125, 2, 10), ("pvgridpower3", 127, 4, 10), ("pvenergytoday", 131, 4, 10),
    ("pvenergytotal", 135, 4, 10), ("totworktime", 139, 4, 7200), ("pvtemperature", 143, 2, 10),
    ("isof", 145, 2, 1), ("gfcif", 147, 2, 1), ("dcif", 149, 2, 1), ("vpvfault", 151, 2, 1), ("vacfault", 153, 2, 1),
    ("facfault", 155, 2, 1), ("tmpfault", 157, 2, 1), ("faultcode", 159, 2, 1), ("pvipmtemperature", 161, 2, 10),
    ("pbusvolt", 163, 2, 1), ("nbusvolt", 165, 2, 1), ("epv1today", 179, 4, 10), ("epv1total", 183, 4, 10),
    ("epv2today", 187, 4, 10), ("epv2total", 191, 4, 10), ("epvtotal", 195, 4, 10), ("rac", 199, 4, 1),
    ("eractoday", 203, 4, 1), ("eractotal", 207, 4, 1),
))
LAYOUTS = {"T060104": T060104}
LOGGER_SN = (8, 10)
INVERTER_SN = (38, 10)
TIME_AT = 68


def crc16_modbus(data: bytes) -> int:
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def descramble(data: bytes) -> bytes:
    """The record with its payload (byte 8 to before the CRC) XOR-ed with "Growatt" again."""
    head, payload, crc = data[:8], data[8:-2], data[-2:]
    return head + bytes(b ^ KEY[i % len(KEY)] for i, b in enumerate(payload)) + crc


def split(data: bytes) -> list[bytes]:
    """Records back to back in ``data`` (each one's own length field says where it ends)."""
    out = []
    i = 0
    while i < len(data):
        if len(data) - i < 8:
            raise LengthError(f"grott: {len(data) - i} stray byte(s) at offset {i}: a record has at least 8")
        protocol = int.from_bytes(data[i + 2:i + 4], "big")
        length = int.from_bytes(data[i + 4:i + 6], "big")
        total = 6 + length + (2 if protocol in (5, 6) else 0)
        if protocol not in (2, 5, 6):
            raise RecordError(f"grott: protocol 0x{protocol:04x} at offset {i} is not 0x0002, 0x0005 or 0x0006")
        if i + total > len(data):
            raise LengthError(f"grott: the record at offset {i} declares {length} bytes after the header "
                              f"({total} in all) but only {len(data) - i} are there")
        out.append(data[i:i + total])
        i += total
    if not out:
        raise LengthError("grott: no record (empty input)")
    return out


def decode(record: bytes) -> dict[str, Any]:
    """One record -> header, CRC facts, serials and every value (raw and scaled), shaped like
    shared/fixtures/growatt/grott/*.expected.json."""
    if len(record) < 8:
        raise LengthError(f"grott: {len(record)} bytes is shorter than a record header (8)")
    protocol = int.from_bytes(record[2:4], "big")
    length = int.from_bytes(record[4:6], "big")
    scrambled = protocol in (5, 6)
    expected = len(record) - (8 if scrambled else 6)
    if length != expected:
        raise LengthError(f"grott: the length field says {length} but the record has {expected} bytes after the "
                          f"header{' (CRC excluded)' if scrambled else ''}")
    out: dict[str, Any] = {"total_length_bytes": len(record), "header": {
        "transaction_id": record[0:2].hex(), "protocol_id": record[2:4].hex(), "length_field": length,
        "unit_id": record[6], "function": f"{record[7]:02x}"}}
    if scrambled:
        computed = crc16_modbus(record[:-2])
        trailer = int.from_bytes(record[-2:], "big")
        if computed != trailer:
            raise CrcError(f"grott: CRC mismatch: the record ends in {trailer:04x}, its bytes give {computed:04x}")
        out["crc16_modbus"] = {"value": f"{computed:04x}", "on_wire_trailer": record[-2:].hex(),
                               "byte_order": "big-endian (high byte first)"}
        plain = descramble(record)
    else:
        plain = record
    key = f"T{record[3]:02x}{record[6]:02x}{record[7]:02x}"
    layout = LAYOUTS.get(key)
    if layout is None:
        raise RecordError(f"grott: no layout for {key} (known: {', '.join(LAYOUTS)})")
    need = max(v.offset + v.length for v in layout)
    if len(plain) - (2 if scrambled else 0) < need:
        raise LengthError(f"grott: layout {key} needs {need} bytes, the record has {len(plain)}")
    out["layout"] = key
    out["datalogger_serial"] = {"byte_offset": LOGGER_SN[0], "bytes": LOGGER_SN[1],
                                "value": _ascii(plain[LOGGER_SN[0]:LOGGER_SN[0] + LOGGER_SN[1]])}
    out["inverter_serial"] = {"byte_offset": INVERTER_SN[0], "bytes": INVERTER_SN[1],
                              "value": _ascii(plain[INVERTER_SN[0]:INVERTER_SN[0] + INVERTER_SN[1]])}
    yy, mo, dd, hh, mi, ss = plain[TIME_AT:TIME_AT + 6]
    try:
        when = dt.datetime(2000 + yy, mo, dd, hh, mi, ss).isoformat()
    except ValueError:
        raise RecordError(f"grott: the record time {yy:02d}-{mo:02d}-{dd:02d} {hh:02d}:{mi:02d}:{ss:02d} is not a "
                          "date (wrong layout?)") from None
    values: dict[str, Any] = {"pvserial": out["inverter_serial"]["value"], "date": when}
    for v in layout:
        raw = int.from_bytes(plain[v.offset:v.offset + v.length], "big")
        values[v.name] = {"byte_offset": v.offset, "bytes": v.length, "raw": raw, "scaled": round(raw / v.divide, 6)}
    out["values"] = values
    return out


def decode_all(data: bytes) -> list[dict[str, Any]]:
    return [decode(r) for r in split(data)]


def _ascii(raw: bytes) -> str:
    return raw.decode("ascii", "replace").strip("\x00 ")


#: value name -> (metric, scale from the layout's unit to the metric's, extra labels)
_METRICS: tuple[tuple[str, m.MetricDef, float, dict[str, str]], ...] = (
    ("pvpowerin", m.PV_POWER, 1, {}),
    ("pv1voltage", m.PV_STRING_VOLTAGE, 1, {"string": "1"}), ("pv1current", m.PV_STRING_CURRENT, 1, {"string": "1"}),
    ("pv1watt", m.PV_STRING_POWER, 1, {"string": "1"}),
    ("pv2voltage", m.PV_STRING_VOLTAGE, 1, {"string": "2"}), ("pv2current", m.PV_STRING_CURRENT, 1, {"string": "2"}),
    ("pv2watt", m.PV_STRING_POWER, 1, {"string": "2"}),
    ("pvpowerout", m.AC_POWER, 1, {}), ("pvfrequentie", m.GRID_FREQUENCY, 1, {}),
    ("pvgridvoltage", m.GRID_VOLTAGE, 1, {"phase": "1"}), ("pvgridcurrent", m.GRID_CURRENT, 1, {"phase": "1"}),
    ("pvgridpower", m.AC_PHASE_POWER, 1, {"phase": "1"}),
    ("pvgridvoltage2", m.GRID_VOLTAGE, 1, {"phase": "2"}), ("pvgridcurrent2", m.GRID_CURRENT, 1, {"phase": "2"}),
    ("pvgridpower2", m.AC_PHASE_POWER, 1, {"phase": "2"}),
    ("pvgridvoltage3", m.GRID_VOLTAGE, 1, {"phase": "3"}), ("pvgridcurrent3", m.GRID_CURRENT, 1, {"phase": "3"}),
    ("pvgridpower3", m.AC_PHASE_POWER, 1, {"phase": "3"}),
    ("pvenergytoday", m.AC_ENERGY_TODAY, m.KWH, {}), ("pvenergytotal", m.AC_ENERGY_TOTAL, m.KWH, {}),
    ("totworktime", m.OPERATING_TIME, 3600, {}),
    ("pvtemperature", m.TEMPERATURE, 1, {"sensor": "temperature"}),
    ("pvipmtemperature", m.TEMPERATURE, 1, {"sensor": "ipm"}),
    # grott's layout reads the bus voltages unscaled; the register holds tenths of a volt.
    ("pbusvolt", m.DC_BUS_VOLTAGE, 0.1, {"bus": "p"}), ("nbusvolt", m.DC_BUS_VOLTAGE, 0.1, {"bus": "n"}),
    ("epv1today", m.PV_STRING_ENERGY_TODAY, m.KWH, {"string": "1"}),
    ("epv1total", m.PV_STRING_ENERGY_TOTAL, m.KWH, {"string": "1"}),
    ("epv2today", m.PV_STRING_ENERGY_TODAY, m.KWH, {"string": "2"}),
    ("epv2total", m.PV_STRING_ENERGY_TOTAL, m.KWH, {"string": "2"}),
    ("epvtotal", m.PV_ENERGY_TOTAL, m.KWH, {}),
    ("faultcode", m.FAULT_CODE, 1, {}), ("pvstatus", m.STATUS, 1, {}),
)
#: Values that only mean something when the string or phase is in use (as for the cloud API).
_GROUP_OF = {"pv2voltage": "pv2", "pv2current": "pv2", "pv2watt": "pv2", "epv2today": "pv2", "epv2total": "pv2",
             "pvgridvoltage2": "ph2", "pvgridcurrent2": "ph2", "pvgridpower2": "ph2",
             "pvgridvoltage3": "ph3", "pvgridcurrent3": "ph3", "pvgridpower3": "ph3"}


def record_metrics(record: dict[str, Any], zone: dt.tzinfo | None) -> list[Metric]:
    """The samples of one decoded record, named like the cloud API's (same series either way)."""
    values = record["values"]
    labels = {"device_sn": record["inverter_serial"]["value"]}  # a datalogger record knows no plant
    in_use = {"pv2": values["pv2voltage"]["raw"] > 0, "ph2": values["pvgridvoltage2"]["raw"] > 0,
              "ph3": values["pvgridvoltage3"]["raw"] > 0}
    out: list[Metric] = [m.DEVICE_INFO(1, **labels, family="grott", type="", model="",
                                       datalogger_sn=record["datalogger_serial"]["value"], firmware="",
                                       name=m.device_name(""))]
    for name, metric, scale, extra in _METRICS:
        group = _GROUP_OF.get(name)
        if group is not None and not in_use[group]:
            continue
        scaled = values[name]["scaled"] * scale
        if metric in (m.TEMPERATURE, m.DC_BUS_VOLTAGE) and scaled == 0:
            continue  # no such sensor (as the cloud API's zeros: the same series either way)
        value: float | int = int(scaled) if metric.integer else values_denoise(scaled)
        out.append(metric(value, **labels, **extra))
    out += m.status_metrics(values["pvstatus"]["scaled"], values["faultcode"]["scaled"], False, labels)
    when = dt.datetime.fromisoformat(values["date"]).replace(tzinfo=zone or dt.UTC)
    out.append(m.DATA_TIMESTAMP(when.timestamp(), **labels))
    return out


# --- gridtap growatt grott FILE ------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", nargs="?", default="-", help="hex text or raw bytes of one or more records (- = stdin)")
    parser.add_argument("--input", choices=["auto", "hex", "binary"], default="auto",
                        help="how to read the file (default: guess)")


def _read(path: str, mode: str) -> bytes:
    from gridtap.captures import hex_problem, parse_hex

    try:
        data = sys.stdin.buffer.read() if path == "-" else open(path, "rb").read()  # noqa: SIM115
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror}") from None
    if mode == "binary":
        return data
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        if mode == "hex":
            raise InputError(f"{path}: not hex text") from None
        return data
    parsed = parse_hex(text)
    if parsed is not None:
        return parsed
    problem = hex_problem(text)
    if problem is not None or mode == "hex":
        raise InputError(f"{path}: not hex text: {problem or 'odd length or a non-hex character'}")
    return data


def run(args: argparse.Namespace) -> int:
    data = _read(args.file, args.input)
    records = decode_all(data)
    doc: Any = records[0] if len(records) == 1 else records
    sys.stdout.write(json.dumps(doc, indent=1) + "\n")
    return 0
