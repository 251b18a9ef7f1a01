"""Our own Goodwe SEMS frame encoder: builds device uploads and server replies from values.

Why: the simulator, the tests and the no-forward mode need fresh frames (new IV, new CRC,
changing values) that were not produced by the decoder under test. Everything here is
plain Python on top of :mod:`reference` (AES, CRC, framing); the register layouts mirror
the captured fixtures (block sets of the HomeKit 1000 0x0304, DNS 0x0104/0x0103 and ET 0x0204).
"""

from __future__ import annotations

import datetime as dt
import struct
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
#
# Each upload type has a fixed block set per model and firmware (spec §6). The simulator
# sends the block sets of the captured devices, so its cleartexts have the real lengths
# (HomeKit 1000 0x0304: 112 bytes, 0x0303: 96; DNS G3 0x0104: 496, 0x0145: 352, 0x0103: 736;
# ET 0x0204: 768) and the register layout a fixed-offset decoder like the reference expects.

#: (first, last) register of each block, in the order the device sends them.
Layout = tuple[tuple[int, int], ...]

METER_DATA: Layout = ((0x0800, 0x0817), (0x0830, 0x0840), (0x1500, 0x1503), (0x1600, 0x1600))
METER_INFO: Layout = ((0x1200, 0x1215), (0x1300, 0x1309), (0x131B, 0x131F))
DNS_DATA: Layout = ((30034, 30039), (30100, 30149), (30162, 30201), (30221, 30226), (30209, 30218),
                    (30203, 30204), (33050, 33087), (37100, 37116), (37130, 37157), (37200, 37210),
                    (37300, 37306), (37331, 37332), (38100, 38100))
DNS_CACHED: Layout = ((30034, 30038), (30100, 30129), (30133, 30149), (30163, 30172), (30174, 30196),
                      (30209, 30219), (35518, 35518), (37100, 37108), (37112, 37113), (37130, 37157),
                      (37200, 37214))
DNS_INFO: Layout = ((30034, 30043), (30054, 30061), (20314, 20314), (28000, 28007), (30062, 30074),
                    (30075, 30082), (30145, 30148), (33050, 33087), (35518, 35518), (37220, 37231),
                    (40075, 40100), (40144, 40149), (40173, 40188), (40264, 40265), (40316, 40353),
                    (40480, 40486), (40500, 40517), (40620, 40630), (40650, 40660), (40680, 40691),
                    (42008, 42057), (43500, 43501), (42500, 42500), (42407, 42407), (42413, 42414),
                    (42823, 42823), (42875, 42875), (43622, 43623))
ET_DATA: Layout = ((35000, 35032), (35060, 35075), (35100, 35110), (35120, 35225), (35250, 35275),
                   (36000, 36057), (36065, 36091), (36167, 36169), (36912, 36913), (37000, 37078))
ET_INFO: Layout = ((35000, 35032),)


class Registers:
    """Register values to be dumped in a :data:`Layout`; unset registers read ``fill``."""

    def __init__(self, layout: Layout, fill: int = 0) -> None:
        self.layout = layout
        self.fill = fill
        self.values: dict[int, int] = {}

    def set(self, register: int, *values: int) -> Registers:
        for i, v in enumerate(values):
            self.values[register + i] = _u16(v)
        return self

    def set32(self, register: int, value: int) -> Registers:
        return self.set(register, *split32(value))

    def set_float(self, register: int, value: float) -> Registers:
        raw = struct.pack(">f", value)
        return self.set(register, int.from_bytes(raw[:2], "big"), int.from_bytes(raw[2:], "big"))

    def text(self, register: int, count: int, text: str, pad: int = 0) -> Registers:
        raw = text.encode("ascii")[: 2 * count]
        raw += bytes([pad]) * (2 * count - len(raw))
        return self.set(register, *(int.from_bytes(raw[i:i + 2], "big") for i in range(0, len(raw), 2)))

    def fill_range(self, first: int, last: int, value: int) -> Registers:
        return self.set(first, *([value] * (last - first + 1)))

    def timestamp(self, register: int, when: dt.datetime) -> Registers:
        ts = timestamp_bytes(when)
        return self.set(register, *(int.from_bytes(ts[i:i + 2], "big") for i in (0, 2, 4)))

    def blocks(self) -> list[Block]:
        return [(first, [self.values.get(r, self.fill) for r in range(first, last + 1)])
                for first, last in self.layout]


def meter_blocks(*, energy_export: int, energy_generation: int, energy_import: int,
                 power_export: int, power_generation: int, voltage: int = 2438) -> list[Block]:
    """The HomeKit 1000 0x0304 block set (0800-0817, 0830-0840, 1500-1503, 1600); energies in 10 Wh."""
    r = Registers(METER_DATA)
    r.set32(0x0801, energy_export).set32(0x0804, energy_generation)
    r.set32(0x080A, energy_export + energy_generation).set32(0x080D, energy_import)
    r.set32(0x0810, 7)
    r.set(0x0817, energy_import - energy_generation)
    r.set(0x0830, voltage, voltage + 2, 0).set32(0x0833, 660).set32(0x0835, 1092).set32(0x0837, 0)
    r.set32(0x0839, power_export).set32(0x083B, power_generation).set32(0x083D, 0)
    r.set32(0x083F, power_export + power_generation)
    r.set(0x1500, 0x6400, 0, 0, 0x41).set(0x1600, 2)
    return r.blocks()


def meter_info_blocks() -> list[Block]:
    """The HomeKit 1000 0x0303 info upload: server string, part number, firmware."""
    r = Registers(METER_INFO)
    r.set(0x1200, 0x000C).fill_range(0x1201, 0x1214, 0xFFFF).text(0x1201, 13, "20001,tcp.goodwe-power.com")
    r.set(0x120E, 0x00FF)  # the server string is NUL-terminated, the rest of its field 0xFF
    r.text(0x1300, 8, "02053-05-000Me05").set(0x1308, 0, 4)
    r.text(0x131B, 5, "V18\r\nV4\r\n")
    return r.blocks()


def dt_blocks(when: dt.datetime, *, vpv: int, ipv: int, vgrid: int, igrid: int, fgrid: int, power: int,
              temperature: int, e_day: int, e_total: int, h_total: int, rssi: int,
              meter_export_wh: int | None = None, meter_import_wh: int | None = None,
              layout: Layout = DNS_DATA) -> list[Block]:
    """A DNS G3 0x0104 upload (or 0x0145 with ``layout=DNS_CACHED``); values in register units
    (0.1 V, 0.1 A, 0.01 Hz, 0.1 kWh, h). Without a grid meter its registers read 0xFFFFFFFF."""
    r = Registers(layout, fill=0xFFFF)
    r.set(30034, 0, 0, 4, 436, 35, 1)  # firmware numbers (dsp1, dsp2, arm, dsp svn, arm svn)
    r.timestamp(30100, when)
    r.set(30103, vpv, ipv, 0, 0, 0, 0)
    r.set(30118, vgrid).set(30121, igrid).set(30124, fgrid)
    r.set32(30127, power).set(30129, 1)  # work mode: normal
    r.set(30133, 0, power + 106).set(30136, -485).set(30139, 907)
    r.set(30141, temperature)
    r.set(30144, e_day).set32(30145, e_total).set32(30147, h_total).set(30149, 85)
    r.set(30163, 3806).set(30172, rssi)
    r.set(30175, 664, 334, 378, 514, 0).set(30181, 0, 1, 0, 1, 1, 401, 1, 3264)
    r.fill_range(30189, 30196, 0).set(30192, 1180)
    r.set32(30195, 0)  # meter active power
    r.set32(30197, 0xFFFFFFFF if meter_export_wh is None else meter_export_wh)
    r.set32(30199, 0xFFFFFFFF if meter_import_wh is None else meter_import_wh)
    r.set(30201, 0).set(30203, 0, 0)
    r.fill_range(30209, 30219, 0).set(30210, 0xFFFF)
    r.text(30221, 6, "410-02065-04")
    r.fill_range(33050, 33086, 0)
    r.fill_range(37100, 37113, 0).set(37116, 0)
    r.fill_range(37130, 37157, 0)
    r.set(37200, 0x0201, 0x1000, 5, 0).set(37209, 0x5803, 0)
    r.fill_range(37300, 37306, 0).set(37331, 0, 0).set(38100, 0)
    r.set(35518, 13)
    return r.blocks()


def dt_info_blocks(model: str, *, e_total: int, h_total: int, firmware: str = "V1.1.3.10\r\n\r\n") -> list[Block]:
    """A DNS G3 0x0103 info upload: model at 40173, server at 40075, Wi-Fi firmware at 30054,
    e_total/h_total at 30145 (and again at 40316)."""
    r = Registers(DNS_INFO)
    r.set(30034, 0, 0, 4, 436, 35, 1)
    r.text(30054, 8, firmware)
    r.set(28002, 0xFFFF).set(28004, 1).set(30064, 4)
    r.set32(30145, e_total).set32(30147, h_total)
    r.set(33087, 0xFFFF).set(35518, 13)
    r.set(37220, 0x151A, 0, 0xD4, 0, 1, 1, 0xFFFF, 0xFFFF)
    r.text(40075, 26, "tcp.goodwe-power.com")
    r.set(40144, 0xF7, 0x30, 0xFFFF, 0xFFFF, 0x3C, 1)
    r.text(40173, 16, model)
    r.set32(40316, e_total).set32(40318, h_total)
    r.set(40321, 0xFFFF, 0x32, 0, 0, 1).set(40329, 0x3B).set(40332, 0xFFFF, 0xFFFF)
    r.set(40336, 2, 1).fill_range(40338, 40344, 0xFFFF).set(40346, 0xFFFF, 0x3C, 0xFFFF, 0xFFFF)
    r.set(40351, 0x1F4, 0, 0x3C)
    r.set(40480, 0x6E, 0x64, 0, 0, 0, 0x1F4, 0x3C)
    r.set(40500, 0x55, 0x480, 0x4B, 0x4AC, 6, 0x30F, 0x20D, 0x130, 0x4B, 0x461, 0x1450, 6, 0, 0, 0x125C, 0x4B)
    r.set(40620, 1, 2, 2, 0x1397, 0x1379, 0x1450, 0x12C0, 0x14, 0x1383, 0x138D, 0xA7)
    r.set(40650, 1, 0, 0, 0x37B, 0x12C, 0x3BD, 0, 0x3FD, 0, 0x44C, 0xFE70)
    r.set(40680, 1, 0, 0, 0x43F, 0x3E8, 0x43F, 0x3E8, 0xFFFF, 0x43F, 0x3E8, 0x46A, 0xC8)
    r.set(42009, 0xFFFF).set(42011, 1, 1, 0, 1).fill_range(42016, 42021, 0xFFFF).set(42025, 1)
    r.fill_range(42026, 42029, 0xFFFF).set(42055, 1)
    r.set(42500, 0x55).set(42407, 0x44C).set(42413, 0x64)
    return r.blocks()


def et_blocks(when: dt.datetime, serial: str, model: str, *, vpv1: int, ipv1: int, vpv2: int, ipv2: int,
              vgrid: int, igrid: int, fgrid: int, active_power: int, load_power: int, vbattery: int,
              ibattery: int, pbattery: int, e_total: int, e_day: int, battery_temperature: int,
              soc: int, soh: int, h_total: int = 1322, e_load_total: int = 15877, e_battery_charge: int = 7806,
              e_battery_discharge: int = 6331, meter_export_wh: float = 1122470.0,
              meter_import_wh: float = 6472970.0, layout: Layout = ET_DATA) -> list[Block]:
    """An ET hybrid 0x0204 upload (device info, running data, meter, battery); values in
    register units (0.1 V, 0.1 A, 0.01 Hz, W, 0.1 kWh, h; the meter's energies in Wh)."""
    r = Registers(layout)
    r.set(35000, 2, 10000, 254).text(35003, 8, serial).text(35011, 5, model.ljust(10))
    r.set(35016, 11, 11, 177, 27, 265).text(35021, 6, "04029-11-S11").text(35027, 6, "02041-27-S00")
    r.fill_range(35060, 35075, 0xFFFF)
    r.timestamp(35100, when)
    r.set(35103, vpv1, ipv1).set32(35105, vpv1 * ipv1 // 100).set(35107, vpv2, ipv2).set32(35109, vpv2 * ipv2 // 100)
    r.set(35120, 0x0202)
    for ph in range(3):
        r.set(35121 + 5 * ph, vgrid, igrid, fgrid).set32(35124 + 5 * ph, active_power // 3)
    r.set(35136, 1).set32(35137, 0x3A9).set32(35139, active_power).set32(35141, 0).set(35143, 0)
    r.set(35145, 2296, 1, fgrid, 1, 0, 12)
    r.set(35151, 2295, 1, fgrid, 1, 0, 3).set(35157, 2293, 2, fgrid, 1, 0, 9)
    r.set32(35163, 54).set32(35165, 194).set32(35167, 52).set32(35169, 21).set32(35171, load_power)
    r.set32(35173, 449).set32(35175, 399)
    r.set(35177, 0x4020, 0x198B, 0x0CAB, vbattery, ibattery).set32(35182, pbattery)
    r.set(35184, 2, 0, 2, 1)
    r.set32(35191, e_total).set32(35193, e_day).set32(35195, e_total - 33).set32(35197, h_total)
    r.set(35199, 430).set32(35200, 777).set(35202, 10).set32(35203, e_load_total).set(35205, 103)
    r.set32(35206, e_battery_charge).set(35208, 112).set32(35209, e_battery_discharge).set(35211, 41)
    r.set(35212, 8).set(35220, 0x0204, 0x0800, 2, 0, 0, 1)
    r.set(35268, 0x138B, 0x137C, 0x0915, 0x090B, 0x091A, 0x090F, 0x091E, 0x0910)
    r.set(36000, 1, 100, 10, 0, 1, 254, 111, 367, 733, 745, 622, 405, 762, 629, fgrid)
    r.set_float(36015, meter_export_wh).set_float(36017, meter_import_wh)
    for i, p in enumerate((254, 111, 367, 733, 290, 182, 272, 745, 407, 279, 481, 1168)):
        r.set32(36019 + 2 * i, p)
    r.set(36043, 1, 0x50).set(36052, 2325, 2326, 2321, 17, 12, 20)
    r.set(36169, 1).set(36912, 0x7243)
    r.set(37000, 0xFF, 0x100, 1, battery_temperature, 0, 25, 0, soc, soh, 8, 0, 0x101)
    r.fill_range(37076, 37078, 0xFFFF)
    return r.blocks()


def et_info_blocks(serial: str, model: str) -> list[Block]:
    """An ET 0x0203 info upload: the device-info block 35000-35032 (serial, model, firmware)."""
    r = Registers(ET_INFO)
    r.set(35000, 2, 10000, 254).text(35003, 8, serial).text(35011, 5, model.ljust(10))
    r.set(35016, 11, 11, 177, 27, 265).text(35021, 6, "04029-11-S11").text(35027, 6, "02041-27-S00")
    return r.blocks()
