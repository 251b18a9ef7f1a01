"""Hex capture text, as `gridtap decode`, the simulators' --replay and the tests read it."""

from __future__ import annotations

import pytest

from gridtap.captures import parse_hex, read_hex_file
from gridtap.errors import InputError


@pytest.mark.parametrize(("text", "expected"), [
    ("53 3f 0d", b"S?\r"),
    ("# a comment line\n53 3f\n0d  # trailing comment\n", b"S?\r"),
    ("0x53,0x3F,0x0d", b"S?\r"),
    ("53:3f:0d", b"S?\r"),
    ("53-3F-0D\r\n", b"S?\r"),
])
def test_hex_forms(text, expected):
    assert parse_hex(text) == expected


@pytest.mark.parametrize("text", ["", "# only a comment\n", "53 3", "zz", "53 3g", "\x00"])
def test_not_hex(text):
    assert parse_hex(text) is None


def test_file_errors_are_one_line(tmp_path):
    good = tmp_path / "S.hex"
    good.write_text("# S? reply\n" + " ".join(["00"] * 32) + "\n")
    assert read_hex_file(good) == bytes(32)
    bad = tmp_path / "bad.hex"
    bad.write_bytes(b"\xff\xfe")
    with pytest.raises(InputError, match="cannot read as hex text"):
        read_hex_file(bad)
    odd = tmp_path / "odd.hex"
    odd.write_text("0")
    with pytest.raises(InputError, match="not hex text"):
        read_hex_file(odd)
