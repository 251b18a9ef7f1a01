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
