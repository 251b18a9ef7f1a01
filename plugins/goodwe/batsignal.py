"""The reference's BATSIGNAL easter egg: draw a bat on the SEMS power chart.

Why keep it: it is the one feature of smlx/goodwe-exporters that *changes* forwarded bytes,
so it exercises re-encryption (same IV) and CRC recomputation. Only forwarded meter frames
are rewritten; our own metrics always carry the real values (spec §11).
"""

from __future__ import annotations

import datetime as dt
import math

from gridtap import _native

from . import reference

BEIJING = dt.timezone(dt.timedelta(hours=8))
POWER_EXPORT_REGISTER = 0x0839
POWER_GENERATION_REGISTER = 0x083B


def curves(now: dt.datetime) -> tuple[float, float]:
    """(top, bottom) in kW for ``now`` (aware); x = hours from 12:00 UTC+08:00, seconds ignored."""
    local = now.astimezone(BEIJING)
    x = local.hour + local.minute / 60 - 12
    a = abs(x)
    if 3 < a < 7:
        top = 3 * math.sqrt(1 - (x / 7) ** 2)
    elif 1 < a <= 3:
        top = 6 * math.sqrt(10) / 7 + 1.5 - 0.5 * a - (3 * math.sqrt(10) / 7) * math.sqrt(4 - (a - 1) ** 2)
    elif 0.75 < a <= 1:
        top = 9 - 8 * a
    elif 0.5 < a <= 0.75:
        top = 3 * a + 0.75
    elif a <= 0.5:
        top = 2.25
    else:
        top = 0.0
    if 4 < a < 7:
        bottom = -3 * math.sqrt(1 - (x / 7) ** 2)
    elif a <= 4:
        bottom = a / 2 - ((3 * math.sqrt(33) - 7) / 112) * x * x - 3 + math.sqrt(max(0.0, 1 - (abs(a - 2) - 1) ** 2))
    else:
        bottom = 0.0
    return top, bottom


def watts(now: dt.datetime) -> tuple[int, int]:
    """(generation W, export W) written into frames: trunc(1000 * curve)."""
    top, bottom = curves(now)
    return math.trunc(1000 * top), math.trunc(1000 * bottom)


def rewrite_meter_frame(frame: bytes, decoded: dict, generation: int, export: int) -> bytes:
    """``frame`` with the meter's power registers replaced, same IV and length, new CRC.

    Returns ``frame`` unchanged if the registers are not in its dump.
    """
    clear = bytearray(decoded["cleartext"])
    done = 0
    for start, end, offset in decoded["blocks"] or ():
        for reg, value in ((POWER_EXPORT_REGISTER, export), (POWER_GENERATION_REGISTER, generation)):
            if start <= reg and reg + 1 <= end:
                o = offset + 2 * (reg - start)
                clear[o:o + 4] = (value & 0xFFFFFFFF).to_bytes(4, "big")
                done += 1
    if done != 2:
        return frame
    ciphertext = _native.goodwe_encrypt(decoded["iv"], bytes(clear))
    head = frame[: len(frame) - 2 - len(ciphertext)]
    body = head + ciphertext
    return body + reference.crc_bytes("outbound", reference.crc16_modbus(body))
