"""Captured bytes written as hex text, the way device captures are shared, and the capped
reader behind ``gridtap decode``.

One hex reader for ``gridtap decode``, the simulators' ``--replay`` and the tests: ``#`` starts
a comment (which may hold any UTF-8 text), and bytes may be separated by spaces, newlines,
``:``, ``,`` or ``-`` and written with or without ``0x``.

:func:`read_capture` reads a file or stdin in chunks and stops at a size cap, so a mistaken
``/dev/zero`` or a huge log costs bounded memory and ends with one line saying the cap was hit.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from .errors import InputError

_SEPARATORS = re.compile(rb"0x|[\s:,-]", re.IGNORECASE)
_HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")

#: The most bytes ``gridtap decode`` takes from one capture (decoded), and from a hex text.
MAX_CAPTURE = 16 * 1024 * 1024
MAX_TEXT = 4 * MAX_CAPTURE
_CHUNK = 1 << 20


class _NotHex(Exception):
    def __init__(self, problem: str | None) -> None:
        self.problem = problem


def _hex_of_lines(lines: Iterable[bytes], first_line: int = 1) -> Iterator[bytes]:
    """The bytes each line spells (comments and separators removed); _NotHex at the first
    character that is no hex digit (with its line), or for an odd digit count overall."""
    carry = b""  # an odd digit left at the end of a line pairs with the next line's first
    for number, line in enumerate(lines, first_line):
        body = _SEPARATORS.sub(b"", line.split(b"#", 1)[0])
        if not body:
            continue
        bad = next((i for i, c in enumerate(body) if c not in _HEX_DIGITS), None)
        if bad is not None:
            shown = body[bad:bad + 4].decode("utf-8", "replace")[0]
            raise _NotHex(f"{shown!r} is not a hex digit (line {number})")
        body = carry + body
        if len(body) % 2:
            carry, body = body[-1:], body[:-1]
        else:
            carry = b""
        yield bytes.fromhex(body.decode("ascii"))
    if carry:
        raise _NotHex("an odd number of hex digits")


def parse_hex(text: str | bytes) -> bytes | None:
    """The bytes ``text`` spells in hex, or None when it is not hex text."""
    raw = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text
    try:
        out = b"".join(_hex_of_lines(raw.splitlines()))
    except _NotHex:
        return None
    return out or None


def hex_problem(text: str | bytes) -> str | None:
    """Why ``text`` is not hex, if it was meant to be: the first stray character and its line,
    or an odd digit count. None when it is valid hex, or does not look like hex at all (then
    it is more likely a binary capture that happens to be ASCII)."""
    raw = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text
    if not _looks_like_hex(raw):
        return None
    try:
        b"".join(_hex_of_lines(raw.splitlines()))
    except _NotHex as e:
        return e.problem
    return None


def _looks_like_hex(raw: bytes) -> bool:
    """Mostly hex digits once comments and separators are gone (a typo or two allowed)."""
    compact = _SEPARATORS.sub(b"", b"".join(line.split(b"#", 1)[0] for line in raw.splitlines()))
    if not compact:
        return False
    stray = sum(1 for c in compact if c not in _HEX_DIGITS)
    return stray <= len(compact) // 10


def read_hex_file(path: str | Path) -> bytes:
    """The bytes of a hex capture file; InputError (one line) when it is not one."""
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise InputError(f"{path}: cannot read as hex text ({e.strerror})") from None
    try:
        data = b"".join(_hex_of_lines(raw.splitlines()))
    except _NotHex as e:
        raise InputError(f"{path}: not hex text: {e.problem}") from None
    if not data:
        raise InputError(f"{path}: not hex text (no hex digits)")
    return data


def _too_big(what: str, limit: int) -> InputError:
    return InputError(f"{what}: larger than {limit / (1024 * 1024):g} MiB, the most gridtap decode reads "
                      "from one capture; split it")


def _chunks(stream: BinaryIO, budget: int, what: str, limit: int) -> Iterator[bytes]:
    """Chunks of ``stream`` until ``budget`` bytes are exceeded (then ``_too_big(limit)``)."""
    total = 0
    while True:
        chunk = stream.read(min(_CHUNK, budget - total + 1))
        if not chunk:
            return
        total += len(chunk)
        if total > budget:
            raise _too_big(what, limit)
        yield chunk


def _lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    pending = b""
    for chunk in chunks:
        pending += chunk
        *whole, pending = pending.split(b"\n")
        yield from whole
    if pending:
        yield pending


def read_capture(path: str, mode: str = "auto", *, limit: int = MAX_CAPTURE,
                 text_limit: int = MAX_TEXT) -> bytes:
    """The bytes of a capture file (``-`` = stdin): raw (``binary``), hex text (``hex``), or
    whichever the start of the file says (``auto``). Reads in chunks up to the caps; a file
    over a cap is one InputError line, after reading no more than the cap."""
    try:
        stream: BinaryIO = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror}") from None
    try:
        try:
            head = stream.read(64 * 1024)
        except OSError as e:
            raise InputError(f"cannot read {path}: {e.strerror}") from None
        if mode == "auto":
            mode = "hex" if _looks_like_hex(head) else "binary"
        cap = text_limit if mode == "hex" else limit
        if len(head) > cap:
            raise _too_big(path, cap)
        rest = _chunks(stream, cap - len(head), path, cap)
        if mode == "binary":
            data = bytearray(head)
            for chunk in rest:
                data += chunk
            return bytes(data)
        out = bytearray()
        try:
            for piece in _hex_of_lines(_lines(_prepend(head, rest))):
                out += piece
                if len(out) > limit:
                    raise InputError(f"{path}: holds more than {limit / (1024 * 1024):g} MiB of bytes, the most "
                                     "gridtap decode reads from one capture; split it")
        except _NotHex as e:
            raise InputError(f"{path}: not hex text: {e.problem}") from None
        except OSError as e:
            raise InputError(f"cannot read {path}: {e.strerror}") from None
        if not out:
            raise InputError(f"{path}: not hex text (no hex digits)")
        return bytes(out)
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()


def _prepend(head: bytes, rest: Iterable[bytes]) -> Iterator[bytes]:
    yield head
    yield from rest
