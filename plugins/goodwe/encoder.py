"""Our own Goodwe SEMS frame encoder: builds device uploads and server replies from values.

Why: the simulator, the tests and the no-forward mode need fresh frames (new IV, new CRC,
changing values) that were not produced by the decoder under test. Everything here is
plain Python on top of :mod:`reference` (AES, CRC, framing); the register layouts mirror
the captured fixtures (block sets of the HomeKit 1000 0x0304, DNS 0x0104/0x0103 and ET 0x0204).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence

from . import reference

BEIJING = dt.timezone(dt.timedelta(hours=8))

#: Block = (start register, values).
Block = tuple[int, Sequence[int]]


def _u16(v: int) -> int:
    return v & 0xFFFF


def split32(v: int) -> list[int]:
    """A (signed or unsigned) 32-bit value as two big-endian registers."""
    v &= 0xFFFFFFFF
    return [v >> 16, v & 0xFFFF]


def ascii_registers(text: str, count: int) -> list[int]:
    raw = text.encode("ascii").ljust(2 * count, b"\x00")[: 2 * count]
    return [int.from_bytes(raw[i:i + 2], "big") for i in range(0, len(raw), 2)]


def timestamp_bytes(when: dt.datetime) -> bytes:
    """YY MM DD hh mm ss."""
    return bytes((when.year - 2000, when.month, when.day, when.hour, when.minute, when.second))


def register_dump(blocks: Iterable[Block], pad: int = 0xFF) -> bytes:
    """``count, (start, end, values...)*`` padded with ``pad`` to a multiple of 16."""
    blocks = list(blocks)
    out = bytearray([len(blocks)])
    for start, values in blocks:
        out += start.to_bytes(2, "big") + (start + len(values) - 1).to_bytes(2, "big")
        for v in values:
            out += _u16(v).to_bytes(2, "big")
    return pad16(bytes(out), pad)


def pad16(data: bytes, pad: int) -> bytes:
    return data + bytes([pad]) * (-len(data) % 16)


def outbound_frame(packet_type: int, serial: str, cleartext: bytes, when: dt.datetime,
                   envelope_pad: int = 0) -> bytes:
    """A POSTGW frame; IV = device timestamp + 10 zero bytes, as real dongles do."""
    if len(serial) != 16:
        raise ValueError("serial must be the full 16-character Goodwe serial")
    ts = timestamp_bytes(when)
    iv = ts + bytes(10)
    ident = serial.encode("latin-1")
    if reference.has_timestamp_envelope("outbound", packet_type):
        envelope = envelope_pad.to_bytes(2, "big") + ident + iv + ts
    else:
        envelope = ident + iv
    body = envelope + reference.encrypt(iv, pad16(cleartext, 0xFF))
    return reference.build_frame("outbound", packet_type, body)


#: AES-128-CBC primitive: (iv, cleartext) -> ciphertext.
Encrypt = Callable[[bytes, bytes], bytes]


def inbound_frame(packet_type: int, serial: str, cleartext: bytes, when: dt.datetime,
                  encrypt: Encrypt = reference.encrypt) -> bytes:
    """A GW frame; IV = server time reversed (ss mm hh DD MM YY) + 10 zero bytes.

    ``encrypt`` may be swapped for ``gridtap._native.goodwe_encrypt`` where many replies are
    needed fast (the SEMS simulator, the no-forward proxy).
    """
    iv = timestamp_bytes(when)[::-1] + bytes(10)
    body = serial.encode("latin-1") + iv + encrypt(iv, pad16(cleartext, 0x00))
    return reference.build_frame("inbound", packet_type, body)


def ack(packet_type: int, serial: str, when: dt.datetime | None = None, nack: bool = False,
        encrypt: Encrypt = reference.encrypt) -> bytes:
    """The server's ACK (16 x 00) or NACK (02 + 15 x 00) of an upload, same packet type."""
    when = when or dt.datetime.now(BEIJING)
    return inbound_frame(packet_type, serial, (b"\x02" if nack else b"\x00") + bytes(15), when, encrypt)


def set_time(serial: str, when: dt.datetime | None = None, encrypt: Encrypt = reference.encrypt) -> bytes:
    """The server's 0x0116 set-clock command (regs 0x1216-0x1218, time in UTC+08:00)."""
    when = (when or dt.datetime.now(dt.UTC)).astimezone(BEIJING)
    return inbound_frame(0x0116, serial, b"\x12\x16\x12\x18" + timestamp_bytes(when), when, encrypt)


def time_sync_ack(family: int, serial: str, when: dt.datetime) -> bytes:
    """The device's 0x?310 answer to a set-clock command."""
    regs = {0x01: b"\x9d\x79\x9d\x7b", 0x02: b"\x9d\x79\x9d\x7b", 0x03: b"\x12\x16\x12\x18"}[family]
    return outbound_frame((family << 8) | 0x10, serial, regs + b"\x00", when)


# --- register layouts ----------------------------------------------------------------

def meter_blocks(*, energy_export: int, energy_generation: int, energy_import: int,
                 power_export: int, power_generation: int, voltage: int = 2400) -> list[Block]:
    """The HomeKit 1000 0x0304 block set (0800-0817, 0830-0840, 1500-1503, 1600); energies in 10 Wh."""
    b0800 = [0] * 24
    b0800[1:3] = split32(energy_export)
    b0800[4:6] = split32(energy_generation)
    b0800[10:12] = split32(energy_export + energy_generation)
    b0800[13:15] = split32(energy_import)
    b0800[23] = _u16(energy_import - energy_generation)
    b0830 = [voltage, voltage + 2, 0, *split32(660), *split32(1092), *split32(0),
             *split32(power_export), *split32(power_generation), *split32(0),
             *split32(power_export + power_generation)]
    return [(0x0800, b0800), (0x0830, b0830), (0x1500, [0x1500, 0x1503, 0x6400, 0]), (0x1600, [2])]


def meter_info_blocks() -> list[Block]:
    """The HomeKit 1000 0x0303 info upload: server string, part number, firmware."""
    return [(0x1200, [0x000C, *ascii_registers("20001,tcp.goodwe-power.com", 21)]),
            (0x1300, ascii_registers("02053-05-000Me05", 10)),
            (0x131B, ascii_registers("V18\r\nV4\r\n", 5))]


def dt_blocks(when: dt.datetime, *, vpv: int, ipv: int, vgrid: int, igrid: int, fgrid: int, power: int,
              temperature: int, e_day: int, e_total: int, h_total: int, rssi: int) -> list[Block]:
    """A DNS G3 0x0104-like dump; values in register units (0.1 V, 0.1 A, 0.01 Hz, 0.1 kWh, h)."""
    ts = timestamp_bytes(when)
    running = [0xFFFF] * 50  # 30100..30149
    running[0:3] = [int.from_bytes(ts[i:i + 2], "big") for i in (0, 2, 4)]
    running[3:9] = [vpv, ipv, 0, 0, 0, 0]
    running[18] = vgrid
    running[21] = igrid
    running[24] = fgrid
    running[27:29] = split32(power)
    running[41] = temperature
    running[44] = e_day
    running[45:47] = split32(e_total)
    running[47:49] = split32(h_total)
    tail = [0xFFFF] * 40  # 30162..30201
    tail[10] = rssi
    return [(30034, [0, 0, 4, 436, 35, 1]), (30100, running), (30162, tail),
            (30221, ascii_registers("410-02065-04", 6))]


def dt_info_blocks(model: str, *, e_total: int, h_total: int) -> list[Block]:
    """A DNS 0x0103-like info upload: model at 40173, e_total/h_total at 30145."""
    return [(30145, [*split32(e_total), *split32(h_total)]),
            (40075, ascii_registers("tcp.goodwe-power.com", 26)),
            (40173, ascii_registers(model, 16))]


def et_blocks(when: dt.datetime, serial: str, model: str, *, vpv1: int, ipv1: int, vpv2: int, ipv2: int,
              vgrid: int, igrid: int, fgrid: int, active_power: int, load_power: int, vbattery: int,
              ibattery: int, pbattery: int, e_total: int, e_day: int, battery_temperature: int,
              soc: int, soh: int) -> list[Block]:
    """An ET hybrid 0x0204-like dump (device info, running data, battery)."""
    ts = timestamp_bytes(when)
    info = [0] * 33  # 35000..35032
    info[3:11] = ascii_registers(serial, 8)
    info[11:16] = ascii_registers(model.ljust(10), 5)
    running = [0] * 100  # 35100..35199
    running[0:3] = [int.from_bytes(ts[i:i + 2], "big") for i in (0, 2, 4)]
    running[3:5] = [vpv1, ipv1]
    running[7:9] = [vpv2, ipv2]
    for ph in range(3):
        running[21 + 5 * ph:24 + 5 * ph] = [vgrid, igrid, fgrid]
    running[40] = active_power
    running[72] = load_power
    running[74] = 449
    running[76] = 399
    running[80:84] = [vbattery, ibattery, *split32(pbattery)]
    running[91:95] = [*split32(e_total), *split32(e_day)]
    battery = [0] * 10  # 37000..37009
    battery[3] = battery_temperature
    battery[7:9] = [soc, soh]
    return [(35000, info), (35100, running), (37000, battery)]
