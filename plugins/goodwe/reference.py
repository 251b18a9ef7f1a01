"""Pure-Python Goodwe SEMS frame codec: the executable spec the Rust decoder is tested against.

Why it exists: ``gridtap._native`` decodes frames fast, but Rust is hard to read next to the
spec. This module does the same job (splitter, CRC-16/MODBUS, AES-128-CBC with the all-0xFF
key, register-block parser) in plain Python with no crypto dependency, returning exactly the
dictionaries the Rust functions return, so a differential test can compare the two and the
simulator can *encode* frames without touching the decoder under test.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import NamedTuple

OUTBOUND_PREFIX = b"POSTGW"
INBOUND_PREFIX = b"GW"
KEEPALIVE = b"\x01\x02"
KEY = b"\xff" * 16
DEFAULT_MAX_LENGTH = 16 * 1024


class DecodeError(ValueError):
    """Pure-Python twin of ``gridtap._native.DecodeError``."""


class LengthError(DecodeError):
    pass


class ChecksumError(DecodeError):
    pass


class FormatError(DecodeError):
    pass


# --- CRC-16/MODBUS -------------------------------------------------------------------

def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0xA001 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_TABLE = _crc_table()


def crc16_modbus(data: bytes) -> int:
    """CRC-16/MODBUS: reflected 0xA001, init 0xFFFF, no final XOR."""
    crc = 0xFFFF
    for b in data:
        crc = (crc >> 8) ^ _CRC_TABLE[(crc ^ b) & 0xFF]
    return crc


def crc_bytes(direction: str, crc: int) -> bytes:
    """The CRC as stored: big-endian outbound, little-endian inbound."""
    return crc.to_bytes(2, "big" if direction == "outbound" else "little")


# --- AES-128 (FIPS-197), only what CBC with one fixed key needs -----------------------

def _xtime(a: int) -> int:
    a <<= 1
    return (a ^ 0x11B) & 0xFF if a & 0x100 else a


def _gmul(a: int, b: int) -> int:
    r = 0
    while b:
        if b & 1:
            r ^= a
        a = _xtime(a)
        b >>= 1
    return r


def _make_sbox() -> tuple[list[int], list[int]]:
    sbox = [0] * 256
    for x in range(256):
        inv = 0 if x == 0 else next(y for y in range(1, 256) if _gmul(x, y) == 1)
        s = inv
        for k in range(1, 5):
            s ^= ((inv << k) | (inv >> (8 - k))) & 0xFF
        sbox[x] = s ^ 0x63
    inv_sbox = [0] * 256
    for i, s in enumerate(sbox):
        inv_sbox[s] = i
    return sbox, inv_sbox


def _expand_key(key: bytes, sbox: list[int]) -> list[list[int]]:
    words = [list(key[i:i + 4]) for i in range(0, 16, 4)]
    rcon = 1
    for i in range(4, 44):
        t = list(words[i - 1])
        if i % 4 == 0:
            t = t[1:] + t[:1]
            t = [sbox[b] for b in t]
            t[0] ^= rcon
            rcon = _xtime(rcon)
        words.append([a ^ b for a, b in zip(words[i - 4], t, strict=True)])
    return [sum(words[4 * r:4 * r + 4], []) for r in range(11)]


class _Tables(NamedTuple):
    sbox: list[int]
    inv_sbox: list[int]
    round_keys: list[list[int]]
    m2: list[int]
    m3: list[int]
    m9: list[int]
    m11: list[int]
    m13: list[int]
    m14: list[int]


@functools.cache
def _aes() -> _Tables:
    """The S-boxes, round keys and GF(2^8) products, built on first use (~25 ms), not at
    import: the proxy imports this module for the CRC and never needs the AES."""
    sbox, inv_sbox = _make_sbox()
    return _Tables(sbox, inv_sbox, _expand_key(KEY, sbox), *([_gmul(x, m) for x in range(256)]
                                                               for m in (2, 3, 9, 11, 13, 14)))


# state index = 4*column + row; ShiftRows moves row r left by r columns.
_SHIFT = [(4 * ((c + r) % 4) + r) for c in range(4) for r in range(4)]
_INV_SHIFT = [(4 * ((c - r) % 4) + r) for c in range(4) for r in range(4)]


def _encrypt_block(block: list[int], t: _Tables) -> list[int]:
    sbox, m2, m3 = t.sbox, t.m2, t.m3
    s = [b ^ k for b, k in zip(block, t.round_keys[0], strict=True)]
    for rnd in range(1, 11):
        s = [sbox[s[i]] for i in _SHIFT]
        if rnd != 10:
            mixed = []
            for c in range(0, 16, 4):
                a0, a1, a2, a3 = s[c:c + 4]
                mixed += [
                    m2[a0] ^ m3[a1] ^ a2 ^ a3,
                    a0 ^ m2[a1] ^ m3[a2] ^ a3,
                    a0 ^ a1 ^ m2[a2] ^ m3[a3],
                    m3[a0] ^ a1 ^ a2 ^ m2[a3],
                ]
            s = mixed
        s = [b ^ k for b, k in zip(s, t.round_keys[rnd], strict=True)]
    return s


def _decrypt_block(block: list[int], t: _Tables) -> list[int]:
    inv_sbox, m9, m11, m13, m14 = t.inv_sbox, t.m9, t.m11, t.m13, t.m14
    s = [b ^ k for b, k in zip(block, t.round_keys[10], strict=True)]
    for rnd in range(9, -1, -1):
        s = [inv_sbox[s[i]] for i in _INV_SHIFT]
        s = [b ^ k for b, k in zip(s, t.round_keys[rnd], strict=True)]
        if rnd != 0:
            mixed = []
            for c in range(0, 16, 4):
                a0, a1, a2, a3 = s[c:c + 4]
                mixed += [
                    m14[a0] ^ m11[a1] ^ m13[a2] ^ m9[a3],
                    m9[a0] ^ m14[a1] ^ m11[a2] ^ m13[a3],
                    m13[a0] ^ m9[a1] ^ m14[a2] ^ m11[a3],
                    m11[a0] ^ m13[a1] ^ m9[a2] ^ m14[a3],
                ]
            s = mixed
    return s


def decrypt(iv: bytes, ciphertext: bytes) -> bytes:
    """AES-128-CBC decrypt with the fixed key, no padding removal."""
    if not ciphertext or len(ciphertext) % 16:
        raise LengthError(f"ciphertext of {len(ciphertext)} bytes is not a positive multiple of 16")
    out = bytearray()
    prev = list(iv)
    tables = _aes()
    for i in range(0, len(ciphertext), 16):
        block = list(ciphertext[i:i + 16])
        out += bytes(a ^ b for a, b in zip(_decrypt_block(block, tables), prev, strict=True))
        prev = block
    return bytes(out)


def encrypt(iv: bytes, cleartext: bytes) -> bytes:
    """AES-128-CBC encrypt with the fixed key; the caller pads to a multiple of 16."""
    if len(cleartext) % 16:
        raise LengthError(f"cleartext of {len(cleartext)} bytes is not a multiple of 16")
    out = bytearray()
    prev = list(iv)
    tables = _aes()
    for i in range(0, len(cleartext), 16):
        prev = _encrypt_block([a ^ b for a, b in zip(cleartext[i:i + 16], prev, strict=True)], tables)
        out += bytes(prev)
    return bytes(out)


# --- frames --------------------------------------------------------------------------

def prefix_of(direction: str) -> bytes:
    if direction == "outbound":
        return OUTBOUND_PREFIX
    if direction == "inbound":
        return INBOUND_PREFIX
    raise FormatError(f"direction must be 'outbound' or 'inbound', not {direction!r}")


def has_timestamp_envelope(direction: str, packet_type: int) -> bool:
    """Outbound xx03/xx04/xx45 carry pad(2)+id+serial+IV+timestamp(6); the rest id+serial+IV."""
    return direction == "outbound" and (packet_type & 0xFF) in (0x03, 0x04, 0x45)


def check_frame(data: bytes, direction: str) -> tuple[int, int, bytes]:
    """Framing and CRC of exactly one frame: (type, LEN, body)."""
    prefix = prefix_of(direction)
    p = len(prefix)
    if len(data) < p + 8:
        raise LengthError(f"{len(data)} bytes is shorter than any frame")
    if data[:p] != prefix:
        raise FormatError(f"{direction} frame must start with {prefix.decode()!r}")
    length_field = int.from_bytes(data[p:p + 4], "big")
    if length_field == 0:
        raise LengthError("LEN field is 0")
    expected = length_field + p + 7
    if expected != len(data):
        raise LengthError(f"LEN {length_field} means a {expected}-byte frame, got {len(data)} bytes")
    crc = crc16_modbus(data[:-2])
    if data[-2:] != crc_bytes(direction, crc):
        raise ChecksumError(f"CRC mismatch: stored {data[-2:].hex()}, computed {crc:04x}")
    return int.from_bytes(data[p + 4:p + 6], "big"), length_field, bytes(data[p + 6:-2])


def parse_blocks(cleartext: bytes) -> list[tuple[int, int, int]]:
    """``count, (start, end, values...)*`` -> [(start, end, offset of first value)]."""
    if not cleartext:
        raise FormatError("empty register dump")
    count = cleartext[0]
    pos = 1
    blocks = []
    for i in range(count):
        if pos + 4 > len(cleartext):
            raise FormatError(f"register block {i} of {count} starts past the end")
        start = int.from_bytes(cleartext[pos:pos + 2], "big")
        end = int.from_bytes(cleartext[pos + 2:pos + 4], "big")
        if end < start:
            raise FormatError(f"register block {start:#06x}-{end:#06x} ends before it starts")
        offset = pos + 4
        size = 2 * (end - start + 1)
        if offset + size > len(cleartext):
            raise FormatError(f"register block {start:#06x}-{end:#06x} runs past the cleartext")
        blocks.append((start, end, offset))
        pos = offset + size
    return blocks


def registers_of(cleartext: bytes, blocks: list[tuple[int, int, int]]) -> dict[int, int]:
    regs: dict[int, int] = {}
    for start, end, offset in blocks:
        for i in range(end - start + 1):
            regs[start + i] = int.from_bytes(cleartext[offset + 2 * i:offset + 2 * i + 2], "big")
    return regs


def decode_body(body: bytes, direction: str, packet_type: int, length_field: int | None = None) -> dict:
    """Envelope, decryption and register blocks of a frame body (between TYPE and CRC)."""
    prefix_of(direction)
    ts = has_timestamp_envelope(direction, packet_type)
    envelope = 40 if ts else 32
    if len(body) < envelope:
        raise LengthError(f"body of {len(body)} bytes is shorter than its {envelope}-byte envelope")
    base = 2 if ts else 0
    iv = bytes(body[base + 16:base + 32])
    cleartext = decrypt(iv, bytes(body[envelope:]))
    blocks = parse_blocks(cleartext) if ts else None
    return {
        "direction": direction,
        "type": packet_type,
        "length": len(body) + 1 if length_field is None else length_field,
        "envelope_pad": int.from_bytes(body[0:2], "big") if ts else None,
        "timestamp": bytes(body[34:40]) if ts else None,
        "device_id": bytes(body[base:base + 8]).decode("latin-1"),
        "device_serial": bytes(body[base + 8:base + 16]).decode("latin-1"),
        "iv": iv,
        "cleartext": cleartext,
        "blocks": list(blocks) if blocks is not None else None,
        "registers": registers_of(cleartext, blocks) if blocks else {},
    }


def decode_frame(data: bytes, direction: str) -> dict:
    """Decode exactly one complete frame (same dict as ``gridtap._native.goodwe_decode_frame``)."""
    packet_type, length_field, body = check_frame(bytes(data), direction)
    return decode_body(body, direction, packet_type, length_field)


def build_frame(direction: str, packet_type: int, body: bytes) -> bytes:
    """prefix + LEN(=len(body)+1) + TYPE + body + CRC in the direction's byte order."""
    head = prefix_of(direction) + (len(body) + 1).to_bytes(4, "big") + packet_type.to_bytes(2, "big")
    frame = head + body
    return frame + crc_bytes(direction, crc16_modbus(frame))


# --- stream splitter -----------------------------------------------------------------

@dataclass
class Splitter:
    """Pure-Python twin of ``gridtap._native.GoodweSplitter`` (same units, same resync)."""

    direction: str
    max_length: int = DEFAULT_MAX_LENGTH
    _buf: bytearray = field(default_factory=bytearray)

    def __post_init__(self) -> None:
        self._prefix = prefix_of(self.direction)
        self._inbound = self.direction == "inbound"

    @property
    def pending(self) -> int:
        return len(self._buf)

    def flush(self) -> list[tuple[str, bytes]]:
        if not self._buf:
            return []
        out = [("junk", bytes(self._buf))]
        self._buf.clear()
        return out

    def _candidate(self, b: int) -> bool:
        return b == self._prefix[0] or (self._inbound and b == 0x01)

    def _unit_at(self, pos: int) -> tuple[str, int] | None:
        """("frame"|"keepalive", length), ("junk", 0) if nothing starts here, None to wait."""
        buf = self._buf
        rest = len(buf) - pos
        if self._inbound and buf[pos] == 0x01:
            if rest < 2:
                return None
            return ("keepalive", 2) if buf[pos + 1] == 0x02 else ("junk", 0)
        p = len(self._prefix)
        n = min(rest, p)
        if buf[pos:pos + n] != self._prefix[:n]:
            return ("junk", 0)
        if rest < p + 4:
            return None
        length_field = int.from_bytes(buf[pos + p:pos + p + 4], "big")
        if length_field == 0 or length_field > self.max_length:
            return ("junk", 0)
        total = p + length_field + 7
        if rest < total:
            return None
        return ("frame", total)

    def feed(self, data: bytes) -> list[tuple[str, bytes]]:
        self._buf += data
        buf = self._buf
        out: list[tuple[str, bytes]] = []
        pos = 0
        junk_start: int | None = None
        while pos < len(buf):
            unit = self._unit_at(pos)
            if unit is None:
                break
            kind, size = unit
            if kind == "junk":
                if junk_start is None:
                    junk_start = pos
                pos += 1
                while pos < len(buf) and not self._candidate(buf[pos]):
                    pos += 1
                continue
            if junk_start is not None:
                out.append(("junk", bytes(buf[junk_start:pos])))
                junk_start = None
            out.append((kind, bytes(buf[pos:pos + size])))
            pos += size
        if junk_start is not None:
            out.append(("junk", bytes(buf[junk_start:pos])))
        del buf[:pos]
        return out


# --- the proxy's SEMS-to-device allow-list ---------------------------------------------

class InboundFilter:
    """Pure-Python twin of ``gridtap._native.GoodweInboundFilter``.

    Forwarded: keepalives, and valid frames (CRC, length, envelope, whole cipher blocks) of an
    allowed type whose cleartext is exactly one 16-byte block, addressed to the connection's
    device once that is known. Everything else is dropped with a reason.
    """

    def __init__(self, allow: list[int], max_length: int = DEFAULT_MAX_LENGTH) -> None:
        self.allow = frozenset(allow)
        self.serial: str | None = None
        self._split = Splitter("inbound", max_length)

    def set_serial(self, serial: str | None) -> None:
        self.serial = serial

    @property
    def pending(self) -> int:
        return self._split.pending

    def verdict(self, frame: bytes) -> tuple[int | None, str | None]:
        """(type if it decoded, drop reason or None to forward)."""
        try:
            d = decode_frame(frame, "inbound")
        except LengthError:
            return None, "length"
        except ChecksumError:
            return None, "checksum"
        except DecodeError:
            return None, "format"
        if d["type"] not in self.allow or len(d["cleartext"]) != 16:
            return d["type"], "unknown_type"
        if self.serial is not None and d["device_id"] + d["device_serial"] != self.serial:
            return d["type"], "device_mismatch"
        return d["type"], None

    def feed(self, data: bytes) -> tuple[bytes | None, list[tuple[int | None, str | None, int]]]:
        out = bytearray()
        events: list[tuple[int | None, str | None, int]] = []
        for kind, raw in self._split.feed(data):
            if kind == "keepalive":
                out += raw
            elif kind == "junk":
                events.append((None, "junk", len(raw)))
            else:
                ptype, reason = self.verdict(raw)
                events.append((ptype, reason, len(raw)))
                if reason is None:
                    out += raw
        return (bytes(out) if out else None), events

    def flush(self) -> int | None:
        units = self._split.flush()
        return len(units[0][1]) if units else None
