"""Pure-Python reference of the Modbus block decoder (``rust/src/modbus.rs``).

Written from the spec (isg.md §2.2-2.7), not for speed: the differential test runs it and
the Rust ``ModbusMap`` on the same maps and registers and requires identical results (value,
type and absence). It takes the same map description:

``blocks`` is a list of ``(register_count, outputs)``; each output is a dict with ``op``:

* ``value``: ``reg``, ``signed`` (int16), ``mul``/``div`` (an exact integer fraction),
  ``absent`` (raw values meaning "no value", besides 0x8000), ``float`` (a float even when
  ``div`` is 1);
* ``bit``: ``reg``, ``bit`` - bit ``n`` of that register's own raw value;
* ``pair``: ``lo``, ``hi``, ``factor`` (1000), ``mul``/``div``, ``float`` - ``LOW + factor * HIGH``;
* ``code``: ``reg``, ``table`` ({raw: code}), ``default`` (code for other raw values, or None
  for "unknown", i.e. absent);

and optionally ``metric`` = ``(MetricDef, labels)`` with ``words`` ({code: state name}) and
``other_word`` for state sets.

The sentinel is checked on the raw unsigned value first: 0x8000 read as int16 would be
-32768 (-3276.8 °C), the classic bug. The result is an int when ``div`` is 1 (counters and
codes stay exact), else ``raw * mul / div`` as a float, rounded once.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

NOT_AVAILABLE = 0x8000
MAX_BLOCK = 125
_LIMIT = 1 << 31


class DecodeError(ValueError):
    """Malformed registers (wrong count, not 16-bit values)."""


class LengthError(DecodeError):
    pass


class FormatError(DecodeError):
    pass


def registers_from_bytes(data: bytes) -> list[int]:
    if len(data) % 2:
        raise LengthError(f"{len(data)} bytes is not a whole number of registers")
    return list(struct.unpack(f">{len(data) // 2}H", data))


def _registers(value: Any) -> list[int]:
    if isinstance(value, bytes | bytearray):
        return registers_from_bytes(bytes(value))
    out = []
    for i, item in enumerate(value):
        if isinstance(item, bool) or not isinstance(item, int) or not 0 <= item <= 0xFFFF:
            raise FormatError(f"register {i} is not an integer 0..65535")
        out.append(item)
    return out


def _scaled(x: int, mul: int, div: int, as_float: bool = False) -> int | float:
    return x * mul if div == 1 and not as_float else (float(x) * float(mul)) / float(div)


def _check(op: Mapping[str, Any], length: int) -> None:
    kind = op["op"]
    regs = [op["lo"], op["hi"]] if kind == "pair" else [op["reg"]]
    for r in regs:
        if not 0 <= r < length:
            raise ValueError(f"output reads register {r} of a {length}-register block")
    if kind in ("value", "pair"):
        mul, div = op.get("mul", 1), op.get("div", 1)
        if div < 1 or mul == 0 or abs(mul) > _LIMIT or div > _LIMIT:
            raise ValueError(f"scale {mul}/{div} is not a usable fraction")
    if kind == "pair" and not 1 <= op.get("factor", 1000) <= 1 << 15:
        raise ValueError("pair factor out of range")
    if kind == "bit" and not 0 <= op["bit"] <= 15:
        raise ValueError(f"bit {op['bit']} of a 16-bit register")
    raws = list(op.get("absent") or ()) + list(op.get("table") or {}) if kind in ("value", "code") else []
    if kind == "code" and not isinstance(op.get("table") or {}, dict):
        raise ValueError("code table must be a dict")
    if not all(isinstance(r, int) and not isinstance(r, bool) and 0 <= r <= 0xFFFF for r in raws):
        raise ValueError("raw values (absent, code table keys) are 0..65535")
    words = op.get("words")
    if words is not None and not (isinstance(words, dict) and all(
            isinstance(k, int) and isinstance(v, str) for k, v in words.items())):
        raise ValueError("words map integer codes to state names")
    if kind not in ("value", "bit", "pair", "code"):
        raise ValueError(f"unknown output op {kind!r}")


def apply(op: Mapping[str, Any], regs: Sequence[int]) -> int | float | None:
    """One output of a block (None = absent)."""
    kind = op["op"]
    if kind == "value":
        raw = regs[op["reg"]]
        if raw == NOT_AVAILABLE or raw in (op.get("absent") or ()):
            return None
        x = raw - 0x10000 if op.get("signed") and raw & 0x8000 else raw
        return _scaled(x, op.get("mul", 1), op.get("div", 1), bool(op.get("float")))
    if kind == "bit":
        raw = regs[op["reg"]]
        return None if raw == NOT_AVAILABLE else (raw >> op["bit"]) & 1
    if kind == "pair":
        lo, hi = regs[op["lo"]], regs[op["hi"]]
        if NOT_AVAILABLE in (lo, hi):
            return None  # never the bare LOW part: that would fake a counter reset
        return _scaled(lo + op.get("factor", 1000) * hi, op.get("mul", 1), op.get("div", 1), bool(op.get("float")))
    raw = regs[op["reg"]]
    if raw == NOT_AVAILABLE:
        return None
    table = op.get("table") or {}
    return table[raw] if raw in table else op.get("default")


class ModbusMap:
    """Same interface as ``gridtap._native.ModbusMap``."""

    def __init__(self, blocks: Iterable[tuple[int, Sequence[Mapping[str, Any]]]], metric_type: Any = None) -> None:
        self.blocks: list[tuple[int, list[Mapping[str, Any]]]] = []
        for i, (length, outputs) in enumerate(blocks):
            if not 1 <= length <= MAX_BLOCK:
                raise ValueError(f"block {i}: a block is 1-{MAX_BLOCK} registers, not {length}")
            outputs = list(outputs)
            for j, op in enumerate(outputs):
                try:
                    _check(op, length)
                except (TypeError, KeyError, ValueError) as e:
                    raise ValueError(f"block {i} output {j}: {e}") from None
            self.blocks.append((length, outputs))
        if metric_type is None and any(op.get("metric") for _, ops in self.blocks for op in ops):
            raise ValueError("outputs name metrics: give metric_type")
        self.metric_type = metric_type

    def __len__(self) -> int:
        return len(self.blocks)

    def block_length(self, index: int) -> int:
        return self._block(index)[0]

    def _block(self, index: int) -> tuple[int, list[Mapping[str, Any]]]:
        if not 0 <= index < len(self.blocks):
            raise FormatError(f"no block {index} in a {len(self.blocks)}-block map")
        return self.blocks[index]

    def decode(self, index: int, registers: Any) -> list[int | float | None]:
        length, ops = self._block(index)
        regs = _registers(registers)
        if len(regs) != length:
            raise LengthError(f"block has {len(regs)} registers, the map expects {length}")
        return [apply(op, regs) for op in ops]

    def metrics(self, index: int, registers: Any) -> list[Any]:
        _, ops = self._block(index)
        out = []
        for op, value in zip(ops, self.decode(index, registers), strict=True):
            if value is None or not op.get("metric"):
                continue
            definition, labels = op["metric"]
            words = op.get("words")
            if words is not None:
                value = words.get(value, op.get("other_word", "unknown"))
            out.append(self.metric_type(definition, value, labels))
        return out
