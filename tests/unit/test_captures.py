"""Hex capture text, as `gridtap decode`, the simulators' --replay and the tests read it."""

from __future__ import annotations

import pytest

from gridtap import captures
from gridtap.captures import parse_hex, read_capture, read_hex_file
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
    with pytest.raises(InputError, match="not hex text"):
        read_hex_file(bad)
    with pytest.raises(InputError, match="cannot read as hex text"):
        read_hex_file(tmp_path / "missing.hex")
    odd = tmp_path / "odd.hex"
    odd.write_text("0")
    with pytest.raises(InputError, match="not hex text"):
        read_hex_file(odd)


def test_a_non_ascii_comment_is_still_hex(tmp_path):
    """Issue 11: a `# Kessel im Keller, Zählerstand ✓` comment made the file "not hex text"."""
    text = "# Kessel im Keller, Zählerstand ✓\n53 3f 0d  # Grüße\n"
    assert parse_hex(text) == b"S?\r"
    f = tmp_path / "S.hex"
    f.write_text(text, encoding="utf-8")
    assert read_hex_file(f) == b"S?\r"
    assert read_capture(str(f)) == b"S?\r"


def test_a_typo_names_the_character_and_line(tmp_path):
    f = tmp_path / "typo.hex"
    f.write_text("53 3f\n" + "00 " * 32 + "\n0d zz\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"'z' is not a hex digit \(line 3\)"):
        read_capture(str(f))


def test_digit_pairs_may_span_lines(tmp_path):
    f = tmp_path / "split.hex"
    f.write_text("533\nf0d\n")
    assert read_capture(str(f), "hex") == b"S?\r"


def test_the_cap_bounds_what_is_read(tmp_path, monkeypatch):
    """Issue 11: `decode --block S? /dev/zero` grew to 4.2 GB; now it stops at the cap."""
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(3 * 1024 * 1024 + 1))
    with pytest.raises(InputError, match="larger than 3 MiB"):
        read_capture(str(big), limit=3 * 1024 * 1024)
    assert len(read_capture(str(big), limit=4 * 1024 * 1024)) == 3 * 1024 * 1024 + 1
    hexfile = tmp_path / "big.hex"
    hexfile.write_text("00 " * (2 * 1024 * 1024 + 5))
    with pytest.raises(InputError, match="more than 2 MiB of bytes"):
        read_capture(str(hexfile), limit=2 * 1024 * 1024)


def test_dev_zero_is_refused_quickly_and_in_bounded_memory():
    import resource
    import time

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.monotonic()
    with pytest.raises(InputError, match="larger than 16 MiB"):
        read_capture("/dev/zero", "auto")
    assert time.monotonic() - t0 < 5
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 4 * captures.MAX_CAPTURE / (1024 * 1024), grown_mib
