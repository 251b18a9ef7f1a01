"""Decoder properties that need no shared data: Rust == reference, encode∘decode = id, bad lengths.

The differential test feeds arbitrary 32-byte blocks to the Rust decoder and to the
spec-literal Python reference and demands identical dicts; the round trip pins the encoder
(used by the simulator) to the decoder; the malformed cases must raise typed errors, fast.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridtap import _native
from gridtap.errors import InputError
from gridtap.model import Kind
from gridtap_plugins.intergas import encode, metrics, reference
from gridtap_plugins.intergas.decode import decode_block, decode_lan2rf
from gridtap_plugins.intergas.plugin import IntergasPlugin

BLOCKS = ("S?", "S2", "CRC", "HN", "V?", "REV")
block32 = st.binary(min_size=32, max_size=32)


@settings(max_examples=400, deadline=None)
@given(kind=st.sampled_from(BLOCKS), data=block32, reference_order=st.booleans())
def test_rust_equals_reference(kind: str, data: bytes, reference_order: bool) -> None:
    native = decode_block(kind, data, reference_order)
    ref = reference.decode_block(kind, data, reference_order)
    assert native == ref
    assert [type(v) for v in native.values()] == [type(v) for v in ref.values()]


def test_rust_equals_reference_on_every_int16() -> None:
    """All 65 536 values of one f100 field, the case where an off-by-one sign would hide."""
    for raw in range(65536):
        data = raw.to_bytes(2, "little") + bytes(30)
        assert _native.intergas_decode_block("S?", data)["t1_aanvoer"] == reference.decode_status(data)["t1_aanvoer"]


def normalise(kind: str, data: bytes) -> bytes:
    """Set the bytes the spec leaves undefined to the encoder's filler."""
    d = bytearray(data)
    if kind == "S?":
        for i, b in encode.STATUS_FILLER.items():
            d[i] = b
    elif kind == "S2":
        for i in encode.STATUS2_UNKNOWN:
            d[i] = 0
    elif kind == "CRC":
        for i in encode.CRC_UNKNOWN:
            d[i] = 0
    elif kind == "V?":
        d[encode.PARAMETERS_UNUSED] = 0
    return bytes(d)


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(BLOCKS), data=block32)
def test_encode_inverts_decode(kind: str, data: bytes) -> None:
    block = normalise(kind, data)
    assert encode.encode_block(kind, decode_block(kind, block)) == block


def test_crc_frequency_round_trips_every_raw_value() -> None:
    for raw in range(65536):
        block = bytes(6) + raw.to_bytes(2, "little") + bytes(24)
        assert encode.encode_crc(reference.decode_crc(block))[6:8] == raw.to_bytes(2, "little")


def test_encoder_from_flag_names() -> None:
    values = reference.decode_status(normalise("S?", bytes(32)))
    del values["status_flags1"], values["status_flags2"]
    values["flags"] = {"pump": 1, "opentherm": 1, "pressure_sensor": 1}
    block = encode.encode_status(values)
    assert block[26] == 0x88 and block[28] == 0x20


def test_fault_override() -> None:
    block = bytearray(normalise("S?", bytes(32)))
    block[24], block[27], block[29] = 126, 0x80, 10
    d = decode_block("S?", bytes(block))
    assert (d["displ_code"], d["display_text"], d["fault_active"]) == (266, "fault", True)
    samples = {s.name: s.value for s in metrics.status_metrics(d)}
    assert samples["intergas_display_code"] == 266
    assert samples["intergas_display_state"] == "fault"
    assert samples["intergas_last_fault_code"] == 10
    block[27] = 0xC0  # bit 7 set but not exactly 0x80: no override (spec §5)
    assert decode_block("S?", bytes(block))["displ_code"] == 126


@pytest.mark.parametrize(("code", "state"), [(0, "opentherm"), (126, "standby"), (231, "postrun_ch"), (7, "unknown")])
def test_display_state_is_open_ended(code: int, state: str) -> None:
    block = bytearray(normalise("S?", bytes(32)))
    block[24] = code
    d = decode_block("S?", bytes(block))
    (sample,) = [s for s in metrics.status_metrics(d) if s.name == "intergas_display_state"]
    assert sample.value == state and state in sample.definition.states
    assert _native.intergas_display_text(code) == reference.display_text(code) == state


def test_wide_counters_use_the_high_bytes() -> None:
    block = bytearray(32)
    block[0:2], block[30] = b"\x01\x00", 2  # 2·65536 + 1 hours
    block[8:10], block[31] = b"\xff\xff", 1
    d = decode_block("HN", bytes(block))
    assert d["line_power_connected_hours"] == 131073 and d["burnerstarts"] == 131071
    samples = {(s.name, s.labels): s.value for s in metrics.counters_metrics(d)}
    assert samples[("intergas_operating_time_seconds_total", (("type", "line_power"),))] == 131073 * 3600


def test_gas_meter_divisor_is_applied() -> None:
    block = bytearray(32)
    block[16:20] = (1_161_927).to_bytes(4, "little")
    d = decode_block("HN", bytes(block))
    opts = metrics.Options(gas_meter_divisor=11619.27)
    (gas,) = [s for s in metrics.counters_metrics(d, opts) if s.labels == (("circuit", "heating"),)]
    assert gas.value == pytest.approx(100.0)
    assert gas.definition.kind is Kind.COUNTER


def test_metric_definitions_are_unique_and_counters_are_total() -> None:
    names = [d.name for d in metrics.ALL]
    assert len(names) == len(set(names))
    assert all(n.startswith("intergas_") for n in names)
    assert "intergas_up" not in names
    assert all(d.name.endswith("_total") for d in metrics.ALL if d.kind is Kind.COUNTER)


# ------------------------------------------------------------------ malformed input
@pytest.mark.parametrize("length", [0, 31, 33, 1000])
@pytest.mark.parametrize("kind", BLOCKS)
def test_wrong_length_raises_length_error(kind: str, length: int) -> None:
    with pytest.raises(_native.LengthError) as err:
        decode_block(kind, bytes(range(256)) * 4 if length == 1000 else bytes(length))
    assert isinstance(err.value, _native.DecodeError)
    with pytest.raises(_native.LengthError):
        decode_block(kind, bytes(length))
    with pytest.raises(reference.BlockLengthError):
        reference.decode_block(kind, bytes(length))


@settings(max_examples=200, deadline=None)
@given(kind=st.sampled_from(BLOCKS), data=st.binary(max_size=200).filter(lambda b: len(b) != 32))
def test_any_other_length_is_a_length_error(kind: str, data: bytes) -> None:
    with pytest.raises(_native.LengthError, match="must be 32 bytes"):
        decode_block(kind, data)


def test_native_direct_functions() -> None:
    for kind in ("S?", "S2", "CRC", "HN", "V?", "REV"):
        with pytest.raises(_native.LengthError):
            _native.intergas_decode_block(kind, bytes(31))
        block = _native.intergas_decode_block(kind, bytes(32))
        assert isinstance(block, Mapping) and isinstance(block.to_dict(), dict)
        assert block == block.to_dict() and dict(block.items()) == block.to_dict()
    with pytest.raises(_native.FormatError):
        _native.intergas_decode_block("XX", bytes(32))


def test_plugin_decode_cli_hook() -> None:
    parser = argparse.ArgumentParser()
    IntergasPlugin.add_decode_arguments(parser)
    args = parser.parse_args(["--block", "V?"])
    block = bytes([1, 0, 50]) + bytes(29)
    samples = {dict(s.labels)["name"]: s.value for s in IntergasPlugin.decode(block, args)}
    assert samples["heater_on"] == 1 and samples["ch_set_max"] == 50 and len(samples) == 31
    with pytest.raises(InputError, match="32 bytes, got 33"):
        IntergasPlugin.decode(bytes(33), args)
    with pytest.raises(SystemExit):
        parser.parse_args(["--block", "XX"])


def test_lan2rf_garbage_is_a_format_error() -> None:
    with pytest.raises(_native.FormatError):
        decode_lan2rf({"IO": "x"})
