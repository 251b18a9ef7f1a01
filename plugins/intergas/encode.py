"""Encoders: decoded dicts back to 32-byte blocks, the inverse of :mod:`.reference`.

The simulator answers with blocks built here, and the round-trip tests check
``encode(decode(block)) == block`` for every block whose undocumented bytes hold the filler
below, so encoder and decoder pin each other down without any captured data.
Bytes the spec does not define are written as the filler seen in real captures.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .reference import FLAGS1, FLAGS2, PARAMETERS

#: Undocumented bytes and the filler we write there (S? 25/30/31 as in the captures).
STATUS_FILLER = {25: 0x00, 30: 0x00, 31: 0xFF}
STATUS2_UNKNOWN = range(20, 32)
CRC_UNKNOWN = range(10, 24)
PARAMETERS_UNUSED = 31


def _i16(value: int) -> bytes:
    v = int(value)
    if not -32768 <= v <= 32767:
        raise ValueError(f"{value} does not fit int16")
    return (v & 0xFFFF).to_bytes(2, "little")


def _u16(value: int) -> bytes:
    v = int(value)
    if not 0 <= v <= 0xFFFF:
        raise ValueError(f"{value} does not fit uint16")
    return v.to_bytes(2, "little")


def _f100(value: float) -> bytes:
    return _i16(round(value * 100))


def _byte(value: int) -> int:
    v = int(value)
    if not 0 <= v <= 255:
        raise ValueError(f"{value} does not fit a byte")
    return v


def flag_bytes(flags: Mapping[str, int]) -> tuple[int, int]:
    """Bytes 26 and 28 from a normative (LSB-first) flag map; absent flags are 0."""
    b26 = sum(1 << i for i, name in enumerate(FLAGS1) if flags.get(name))
    b28 = sum(1 << i for i, name in enumerate(FLAGS2) if flags.get(name))
    return b26, b28


def encode_status(v: Mapping[str, Any]) -> bytes:
    """``S?`` block. Flags come from ``status_flags1/2`` if given, else from ``flags`` (normative)."""
    d = bytearray(32)
    for i, b in STATUS_FILLER.items():
        d[i] = b
    for at, key in ((0, "t1_aanvoer"), (2, "t2_flow"), (4, "t3_retour"), (6, "t4_warmwater"),
                    (8, "t5_boiler"), (10, "t6_buiten"), (12, "ch_pressure"), (14, "temp_set"),
                    (22, "io_curr_uA")):
        d[at:at + 2] = _f100(v[key])
    d[16:18] = _i16(v["fanspeed_set_rpm"])
    d[18:20] = _i16(v["fanspeed_rpm"])
    d[20:22] = _i16(round(v["fan_pwm_pct"] * 10))
    if "status_flags1" in v:
        b26, b28 = _byte(v["status_flags1"]), _byte(v["status_flags2"])
    else:
        b26, b28 = flag_bytes(v.get("flags", {}))
    d[26], d[28] = b26, b28
    fault_active = bool(v.get("fault_active", False))
    d[27] = _byte(v.get("fault_indicator", 0x80 if fault_active else 0x40))
    d[29] = _byte(v.get("fault_code", 0xFF))
    d[24] = _byte(v.get("display_raw", v.get("displ_code", 126) if not fault_active else 126))
    return bytes(d)


def encode_status2(v: Mapping[str, Any]) -> bytes:
    """``S2`` block; bytes 20–31 are zero."""
    d = bytearray(32)
    d[0:2] = _f100(v["tapflow_lpm"])
    d[2] = _byte(200 - round(v["pump_pwm_pct"] * 2))
    d[3] = _byte(v["ot_master_member_id"])
    for at, key in ((4, "room_override_zone1"), (6, "room_set_zone1"), (8, "room_temp_zone1"),
                    (10, "room_override_zone2"), (12, "room_set_zone2"), (14, "room_temp_zone2"),
                    (16, "override_outside_temp")):
        d[at:at + 2] = _f100(v[key])
    d[18] = _byte(v["ot_product_version"])
    d[19] = _byte(v["ot_product_type"])
    return bytes(d)


def encode_crc(v: Mapping[str, Any]) -> bytes:
    """``CRC`` block; bytes 10–23 are zero."""
    d = bytearray(32)
    d[0:2] = _u16(round(v["interrupt_time"] * 5))
    d[2:4] = _u16(round(v["interrupt_load_pct"] * 6.25))
    d[4:6] = _u16(round(v["main_load_pct"] * 8))
    hz = v["net_frequency_hz"]
    d[6:8] = _u16(round(2000 / hz) if hz else 0)
    d[8:10] = _u16(round(v["voltage_reference_v"] * 1024 / 5))
    d[24:28] = bytes.fromhex(v["checksum1"])
    d[28:32] = bytes.fromhex(v["checksum2"])
    return bytes(d)


def encode_counters(v: Mapping[str, Any]) -> bytes:
    """``HN`` block from the raw counters (every byte of HN is defined)."""
    d = bytearray(32)
    line = int(v["line_power_connected_hours"])
    starts = int(v["burnerstarts"])
    water = int(v["watermeter_raw"])
    dhw_starts = int(v["burnerstarts_dhw"])
    d[0:2] = _u16(line & 0xFFFF)
    d[30] = _byte(line >> 16)
    d[2:4] = _u16(v["line_power_disconnect"])
    d[4:6] = _u16(v["ch_function_hours"])
    d[6:8] = _u16(v["dhw_function_hours"])
    d[8:10] = _u16(starts & 0xFFFF)
    d[31] = _byte(starts >> 16)
    d[10:12] = _u16(v["ignition_failed"])
    d[12:14] = _u16(v["flame_lost"])
    d[14:16] = _u16(v["reset"])
    d[16:20] = int(v["gasmeter_ch_raw"]).to_bytes(4, "little")
    d[20:24] = int(v["gasmeter_dhw_raw"]).to_bytes(4, "little")
    d[24:26] = _u16(water & 0xFFFF)
    d[28] = _byte(water >> 16)
    d[26:28] = _u16(dhw_starts & 0xFFFF)
    d[29] = _byte(dhw_starts >> 16)
    return bytes(d)


def encode_parameters(v: Mapping[str, Any]) -> bytes:
    """``V?`` block; byte 31 is zero."""
    d = bytearray(32)
    for i, name in enumerate(PARAMETERS):
        x = int(v[name])
        if not -128 <= x <= 127:
            raise ValueError(f"{name}={x} does not fit a signed byte")
        d[i] = x & 0xFF
    return bytes(d)


def encode_revision(v: Mapping[str, Any]) -> bytes:
    """``REV`` block; text is padded/truncated to its field width."""
    def text(s: str, width: int) -> bytes:
        return s.encode("latin-1")[:width].ljust(width, b" ")

    out = (text(v["hardware_release"], 18) + text(v["software_release"], 5) + text(v["separator"], 1)
           + bytes.fromhex(v["rom_checksum1"]) + bytes.fromhex(v["rom_checksum2"]))
    if len(out) != 32:
        raise ValueError("REV checksums must be 4 bytes each")
    return out


ENCODERS = {
    "S?": encode_status, "S2": encode_status2, "CRC": encode_crc,
    "HN": encode_counters, "V?": encode_parameters, "REV": encode_revision,
}


def encode_block(kind: str, values: Mapping[str, Any]) -> bytes:
    return ENCODERS[kind](values)
