"""Captured bytes written as hex text, the way device captures are shared.

One reader for ``gridtap decode``, the simulators' ``--replay`` and the tests: ``#`` starts a
comment, and bytes may be separated by spaces, newlines, ``:``, ``,`` or ``-`` and written
with or without ``0x``.
"""

from __future__ import annotations

import re
from pathlib import Path

from .errors import InputError

_SEPARATORS = re.compile(r"0x|[\s:,-]", re.IGNORECASE)
_HEX = re.compile(r"[0-9a-fA-F]*")


def parse_hex(text: str) -> bytes | None:
    """The bytes ``text`` spells in hex, or None when it is not hex text."""
    compact = _SEPARATORS.sub("", "".join(line.split("#", 1)[0] for line in text.splitlines()))
    if not compact or len(compact) % 2 or not _HEX.fullmatch(compact):
        return None
    return bytes.fromhex(compact)


def hex_problem(text: str) -> str | None:
    """Why ``text`` is not hex, if it was meant to be: the first stray character and its line,
    or an odd digit count. None when it is valid hex, or does not look like hex at all (then
    it is more likely a binary capture that happens to be ASCII)."""
    lines = [line.split("#", 1)[0] for line in text.splitlines()]
    compact = _SEPARATORS.sub("", "".join(lines))
    if not compact:
        return None
    stray = [c for c in compact if c not in "0123456789abcdefABCDEF"]
    if len(stray) > len(compact) // 10:
        return None
    for number, line in enumerate(lines, 1):
        for c in _SEPARATORS.sub("", line):
            if c not in "0123456789abcdefABCDEF":
                return f"{c!r} is not a hex digit (line {number})"
    return "an odd number of hex digits" if len(compact) % 2 else None


def read_hex_file(path: str | Path) -> bytes:
    """The bytes of a hex capture file; InputError (one line) when it is not one."""
    try:
        text = Path(path).read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot read as hex text ({getattr(e, 'strerror', None) or e})") from None
    data = parse_hex(text)
    if data is None:
        raise InputError(f"{path}: not hex text (odd length or a non-hex character)")
    return data
