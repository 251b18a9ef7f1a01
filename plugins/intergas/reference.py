"""Pure-Python reference decoder for the Intergas 32-byte blocks.

Written straight from the spec formulas (``intergas.md`` §4–§13), one field per line, so it
can be read against the spec. It is the oracle of the differential test: the Rust decoder in
``gridtap._native`` must return exactly the same dicts for any 32-byte input. It is also what
the benchmark compares against, and a fallback where the native module is missing.
"""

from __future__ import annotations

from typing import Any

from gridtap.errors import InputError

BLOCK_LEN = 32

#: Commands whose reply we decode, as written in the spec (and on the CLI).
BLOCKS = ("S?", "S2", "CRC", "HN", "V?", "REV")

FLAGS1 = ("gp_switch", "tap_switch", "roomtherm", "pump", "dwk", "alarm_status", "ch_cascade_relay", "opentherm")
FLAGS2 = (
    "gasvalve", "spark", "io_signal", "ch_ot_disabled", "low_water_pressure", "pressure_sensor",
    "burner_block", "grad_flag",
)

PARAMETERS = (
    "heater_on", "comfort_mode", "ch_set_max", "dhw_set", "eco_days", "comfort_set", "dhw_at_night",
    "ch_at_night", "param_1", "param_2", "param_3", "param_4", "param_5", "param_6", "param_7", "param_8",
    "param_9", "param_A", "param_b", "param_C", "param_c", "param_d", "param_E", "param_E.", "param_F",
    "param_H", "param_n", "param_o", "param_P", "param_r", "param_F.",
)

#: Display code → state name (spec §7). Codes 256..511 are faults (256 + fault code).
DISPLAY_CODES = {
    0: "opentherm", 15: "boiler_ext", 24: "frost", 37: "central_heating_rf", 51: "tapwater_int",
    85: "sensortest", 102: "central_heating", 103: "central_heating_wait", 104: "central_heating_low",
    106: "hp_error_recovery", 126: "standby", 127: "off", 153: "postrun_boiler", 170: "service",
    204: "tapwater", 230: "starting_ch", 231: "postrun_ch", 240: "boiler_int", 255: "buffer",
}

#: Every state the display-state metric can take.
DISPLAY_STATES = (*dict.fromkeys(DISPLAY_CODES.values()), "fault", "unknown")


class BlockLengthError(InputError, ValueError):
    """A block that is not exactly 32 bytes (mirrors ``gridtap._native.LengthError``)."""

    def __init__(self, what: str, got: int) -> None:
        super().__init__(f"Intergas {what} block must be {BLOCK_LEN} bytes, got {got}")


def display_text(code: int) -> str:
    if 256 <= code <= 511:
        return "fault"
    return DISPLAY_CODES.get(code, "unknown")


def _check(data: bytes, what: str) -> None:
    if len(data) != BLOCK_LEN:
        raise BlockLengthError(what, len(data))


def s8(b: int) -> int:
    return b - 256 if b > 127 else b


def u16(lo: int, hi: int) -> int:
    return lo + 256 * hi


def i16(lo: int, hi: int) -> int:
    v = u16(lo, hi)
    return v - 65536 if v > 32767 else v


def f100(lo: int, hi: int) -> float:
    return i16(lo, hi) / 100


def flags(b26: int, b28: int, reference_order: bool = False) -> dict[str, int]:
    """The 16 status flags; bit 0 (LSB) first unless ``reference_order`` (bit 7 first)."""
    out = {}
    for byte, names in ((b26, FLAGS1), (b28, FLAGS2)):
        for i, name in enumerate(names):
            shift = 7 - i if reference_order else i
            out[name] = (byte >> shift) & 1
    return out


def decode_status(d: bytes, reference_flag_order: bool = False) -> dict[str, Any]:
    """``S?`` main status (§5)."""
    _check(d, "S?")
    fault_active = d[27] == 0x80
    displ_code = 256 + d[29] if fault_active else d[24]
    return {
        "t1_aanvoer": f100(d[0], d[1]),
        "t2_flow": f100(d[2], d[3]),
        "t3_retour": f100(d[4], d[5]),
        "t4_warmwater": f100(d[6], d[7]),
        "t5_boiler": f100(d[8], d[9]),
        "t6_buiten": f100(d[10], d[11]),
        "ch_pressure": f100(d[12], d[13]),
        "temp_set": f100(d[14], d[15]),
        "fanspeed_set_rpm": i16(d[16], d[17]),
        "fanspeed_rpm": i16(d[18], d[19]),
        "fan_pwm_pct": i16(d[20], d[21]) / 10,
        "io_curr_uA": f100(d[22], d[23]),
        "display_raw": d[24],
        "fault_indicator": d[27],
        "fault_active": fault_active,
        "fault_code": d[29],
        "displ_code": displ_code,
        "display_text": display_text(displ_code),
        "status_flags1": d[26],
        "status_flags2": d[28],
        "flags": flags(d[26], d[28], reference_flag_order),
    }


def decode_status2(d: bytes) -> dict[str, Any]:
    """``S2`` extra status (§8)."""
    _check(d, "S2")
    return {
        "tapflow_lpm": f100(d[0], d[1]),
        "pump_pwm_pct": (200 - d[2]) / 2,
        "ot_master_member_id": d[3],
        "room_override_zone1": f100(d[4], d[5]),
        "room_set_zone1": f100(d[6], d[7]),
        "room_temp_zone1": f100(d[8], d[9]),
        "room_override_zone2": f100(d[10], d[11]),
        "room_set_zone2": f100(d[12], d[13]),
        "room_temp_zone2": f100(d[14], d[15]),
        "override_outside_temp": f100(d[16], d[17]),
        "ot_product_version": d[18],
        "ot_product_type": d[19],
    }


def decode_crc(d: bytes) -> dict[str, Any]:
    """``CRC`` burner-controller diagnostics (§9)."""
    _check(d, "CRC")
    freq_raw = u16(d[6], d[7])
    return {
        "interrupt_time": u16(d[0], d[1]) / 5,
        "interrupt_load_pct": u16(d[2], d[3]) / 6.25,
        "main_load_pct": u16(d[4], d[5]) / 8,
        "net_frequency_hz": 2000 / freq_raw if freq_raw else 0.0,
        "voltage_reference_v": u16(d[8], d[9]) * 5 / 1024,
        "checksum1": d[24:28].hex(),
        "checksum2": d[28:32].hex(),
    }


def decode_counters(d: bytes) -> dict[str, Any]:
    """``HN`` hours and counters (§10)."""
    _check(d, "HN")
    gas_ch = d[16] + 256 * d[17] + 65536 * d[18] + 16777216 * d[19]
    gas_dhw = d[20] + 256 * d[21] + 65536 * d[22] + 16777216 * d[23]
    water = d[24] + 256 * d[25] + 65536 * d[28]
    return {
        "line_power_connected_hours": u16(d[0], d[1]) + 65536 * d[30],
        "line_power_disconnect": u16(d[2], d[3]),
        "ch_function_hours": u16(d[4], d[5]),
        "dhw_function_hours": u16(d[6], d[7]),
        "burnerstarts": u16(d[8], d[9]) + 65536 * d[31],
        "ignition_failed": u16(d[10], d[11]),
        "flame_lost": u16(d[12], d[13]),
        "reset": u16(d[14], d[15]),
        "gasmeter_ch_raw": gas_ch,
        "gasmeter_dhw_raw": gas_dhw,
        "watermeter_raw": water,
        "burnerstarts_dhw": d[26] + 256 * d[27] + 65536 * d[29],
        "gasmeter_ch_m3": gas_ch / 10000,
        "gasmeter_dhw_m3": gas_dhw / 10000,
        "watermeter_m3": water / 10000,
    }


def decode_parameters(d: bytes) -> dict[str, Any]:
    """``V?`` parameters (§11): signed bytes 0..30."""
    _check(d, "V?")
    return {name: s8(d[i]) for i, name in enumerate(PARAMETERS)}


def decode_revision(d: bytes) -> dict[str, Any]:
    """``REV`` release strings (§13); text bytes are Latin-1 so any input decodes."""
    _check(d, "REV")
    return {
        "hardware_release": d[0:18].decode("latin-1"),
        "software_release": d[18:23].decode("latin-1"),
        "separator": d[23:24].decode("latin-1"),
        "rom_checksum1": d[24:28].hex(),
        "rom_checksum2": d[28:32].hex(),
        "controller_type": d[2:3].decode("latin-1"),
    }


def decode_block(kind: str, data: bytes, reference_flag_order: bool = False) -> dict[str, Any]:
    """Decode any block by its command name."""
    if kind == "S?":
        return decode_status(data, reference_flag_order)
    decoders = {
        "S2": decode_status2, "CRC": decode_crc, "HN": decode_counters,
        "V?": decode_parameters, "REV": decode_revision,
    }
    if kind not in decoders:
        raise ValueError(f"unknown Intergas block {kind!r}")
    return decoders[kind](data)
