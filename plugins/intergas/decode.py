"""Decoding entry points the plugin uses: the native (Rust) block decoder, and LAN2RF JSON.

The serial blocks go to ``gridtap._native`` (fast, the same dicts as :mod:`.reference`).
A wrong length becomes ``gridtap._native.LengthError``, a subclass of ``DecodeError``.
The LAN2RF gateway speaks JSON with lsb/msb pairs (spec §17); that is decoded here in
Python because there is nothing to speed up.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gridtap import _native

from .reference import BLOCKS, display_text

__all__ = [
    "BLOCKS", "DecodeError", "LengthError", "decode_block", "decode_lan2rf", "display_text",
]

DecodeError = _native.DecodeError
LengthError = _native.LengthError

#: 0x7FFF / 100: "not present" on the gateway (and in S2 zone fields).
ABSENT = 327.67


Block = _native.IntergasBlock
Mapping.register(Block)
_KNOWN = frozenset(BLOCKS)


def decode_block(kind: str, data: bytes, reference_flag_order: bool = False) -> Mapping[str, Any]:
    """Decode one 32-byte reply to command ``kind`` (``S?``, ``S2``, ``CRC``, ``HN``, ``V?``, ``REV``).

    Returns an ``IntergasBlock``: a read-only mapping with the keys and values of the
    reference decoder's dict (``.to_dict()`` gives that dict), whose values stay in Rust
    until they are read.
    """
    if kind not in _KNOWN:
        raise ValueError(f"unknown Intergas block {kind!r} (known: {', '.join(BLOCKS)})")
    return _native.intergas_decode_block(kind, data, reference_flag_order)


def _pair(payload: Mapping[str, Any], name: str) -> float:
    """(msb·256 + lsb)/100 read as int16, as on the serial side (identical for values < 327.68)."""
    raw = int(payload[f"{name}_lsb"]) + 256 * int(payload[f"{name}_msb"])
    if raw > 32767:
        raw -= 65536
    return raw / 100


def decode_lan2rf(payload: Mapping[str, Any]) -> dict[str, Any]:
    """Decode a gateway ``data.json?heater=N`` reply (spec §17).

    IO bit 0 = failure (``displ_code`` is then the fault code), 1 = pump, 2 = tap, 3 = burner.
    A room exists only where its temperature is not 327.67.
    """
    try:
        io = int(payload["IO"])
        code = int(payload["displ_code"])
        failed = bool(io & 0x01)
        rooms = []
        for n in (1, 2):
            temp = _pair(payload, f"room_temp_{n}")
            if temp == ABSENT:
                continue
            rooms.append({
                "room": n,
                "room_temp": temp,
                "setpoint": _pair(payload, f"room_temp_set_{n}"),
                "override": _pair(payload, f"room_set_ovr_{n}"),
            })
        display_code = 256 + code if failed else code
        return {
            "display_code": display_code,
            "display_text": display_text(display_code),
            "fault_code": code if failed else None,
            "is_burning": bool(io & 0x08),
            "is_failed": failed,
            "is_pumping": bool(io & 0x02),
            "is_tapping": bool(io & 0x04),
            "heater_temp": _pair(payload, "ch_temp"),
            "tap_temp": _pair(payload, "tap_temp"),
            "pressure": _pair(payload, "ch_pressure"),
            "rooms": rooms,
            "nodenr": int(payload.get("nodenr", 0)),
            "rf_message_rssi": int(payload.get("rf_message_rssi", 0)),
        }
    except (KeyError, TypeError, ValueError) as e:
        raise _native.FormatError(f"LAN2RF data.json lacks or mangles a field: {e}") from None
