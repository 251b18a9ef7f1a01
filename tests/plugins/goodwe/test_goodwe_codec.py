"""Decoders on frames made by our own encoder (no shared fixtures needed), malformed input,
and a differential hypothesis test of the Rust decoder against the pure-Python reference."""

from __future__ import annotations

import contextlib
import datetime as dt

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gridtap import _native
from gridtap_plugins.goodwe import encoder, reference
from gridtap_plugins.goodwe.metrics import INBOUND_KNOWN, GoodweState, frame_metrics
from gridtap_plugins.goodwe.proxy import filter_inbound, inbound_verdict

WHEN = dt.datetime(2024, 4, 12, 17, 23, 43, tzinfo=encoder.BEIJING)
SERIAL = "91000HKU01234567"
DECODE = {"native": _native.goodwe_decode_frame, "reference": reference.decode_frame}


def values(samples: list, name: str, **labels: str) -> list:
    return [m.value for m in samples if m.name == name and labels.items() <= dict(m.labels).items()]


def meter_frame(**kw: int) -> bytes:
    args = dict(energy_export=70000, energy_generation=123456, energy_import=99999, power_export=-1234,
                power_generation=-3)
    args.update(kw)
    return encoder.outbound_frame(0x0304, SERIAL, encoder.register_dump(encoder.meter_blocks(**args)), WHEN)


@pytest.mark.parametrize("decoder", DECODE)
def test_known_answer_meter_frame(decoder: str) -> None:
    frame = meter_frame()
    assert len(frame) == 166 and frame[-2:] == reference.crc16_modbus(frame[:-2]).to_bytes(2, "big")
    d = DECODE[decoder](frame, "outbound")
    assert d["iv"] == bytes((24, 4, 12, 17, 23, 43)) + bytes(10)
    assert d["timestamp"] == d["iv"][:6]
    s = frame_metrics(d)
    assert dict(s[0].labels) == {"device": "meter", "model": "HomeKit 1000 Smart Meter", "serial": SERIAL}
    assert values(s, "goodwe_meter_power_export_watts") == [-1234]
    assert values(s, "goodwe_meter_power_generation_watts") == [-3]
    assert values(s, "goodwe_meter_energy_export_joules_total") == [70000 * 36000]
    assert values(s, "goodwe_meter_energy_generation_joules_total") == [123456 * 36000]
    assert values(s, "goodwe_meter_energy_import_joules_total") == [99999 * 36000]


@pytest.mark.parametrize("decoder", DECODE)
def test_block_order_and_extra_blocks_do_not_matter(decoder: str) -> None:
    blocks = encoder.meter_blocks(energy_export=1, energy_generation=2, energy_import=3, power_export=444,
                                  power_generation=555)
    shuffled = [blocks[3], (0x4000, [1, 2, 3]), blocks[1], blocks[2], blocks[0]]
    d = DECODE[decoder](encoder.outbound_frame(0x0345, SERIAL, encoder.register_dump(shuffled), WHEN), "outbound")
    s = frame_metrics(d)
    assert values(s, "goodwe_meter_power_export_watts") == [444]
    assert values(s, "goodwe_meter_power_generation_watts") == [555]
    assert values(s, "goodwe_meter_energy_import_joules_total") == [3 * 36000]


@pytest.mark.parametrize("decoder", DECODE)
def test_dns_and_et_frames_from_encoder(decoder: str) -> None:
    blocks = encoder.dt_blocks(WHEN, vpv=3484, ipv=64, vgrid=2532, igrid=101, fgrid=4995, power=40000,
                               temperature=-25, e_day=153, e_total=70000, h_total=1664, rssi=54)
    d = DECODE[decoder](encoder.outbound_frame(0x0104, "53000DSC00000009", encoder.register_dump(blocks[::-1]),
                                               WHEN), "outbound")
    s = frame_metrics(d)
    assert values(s, "goodwe_inverter_input_voltage_dc_volts", input="pv1") == [348.4]
    assert values(s, "goodwe_inverter_power_output_watts") == [40000]  # above 16 bits
    assert values(s, "goodwe_inverter_temperature_celsius") == [-2.5]
    assert values(s, "goodwe_inverter_energy_output_joules_total") == [70000 * 360000]
    assert values(s, "goodwe_inverter_operating_seconds_total") == [1664 * 3600]
    assert values(s, "goodwe_inverter_wifi_signal_ratio") == [0.54]

    blocks = encoder.et_blocks(WHEN, "9010KETU233W2025", "GW10KN-ET", vpv1=5620, ipv1=10, vpv2=0, ipv2=0,
                               vgrid=2322, igrid=16, fgrid=4996, active_power=-736, load_power=180,
                               vbattery=4068, ibattery=-1, pbattery=-53, e_total=13534, e_day=488,
                               battery_temperature=355, soc=87, soh=99)
    d = DECODE[decoder](encoder.outbound_frame(0x0204, "9010KETU233W2025", encoder.register_dump(blocks), WHEN,
                                               envelope_pad=1), "outbound")
    assert d["envelope_pad"] == 1
    s = frame_metrics(d)
    assert dict(s[0].labels)["model"] == "GW10KN-ET"
    assert values(s, "goodwe_battery_state_of_charge_ratio") == [0.87]
    assert values(s, "goodwe_battery_state_of_health_ratio") == [0.99]
    assert values(s, "goodwe_battery_power_watts") == [-53]
    assert values(s, "goodwe_battery_current_amperes") == [-0.1]
    assert values(s, "goodwe_inverter_power_output_watts") == [-736]


def test_dns_model_remembered_from_info_upload() -> None:
    state = GoodweState()
    serial = "12345DSC00000001"  # not in the reference's fixed table
    info = encoder.outbound_frame(0x0103, serial, encoder.register_dump(
        encoder.dt_info_blocks("GW5000-DNS-30", e_total=10, h_total=2)), WHEN)
    state.frame("outbound", _native.goodwe_decode_frame(info, "outbound"))
    blocks = encoder.dt_blocks(WHEN, vpv=1, ipv=1, vgrid=1, igrid=1, fgrid=5000, power=1, temperature=1,
                               e_day=1, e_total=11, h_total=2, rssi=1)
    data = encoder.outbound_frame(0x0104, serial, encoder.register_dump(blocks), WHEN)
    state.frame("outbound", _native.goodwe_decode_frame(data, "outbound"))
    info = [m for m in state.measurements() if m.name == "goodwe_device_info"]
    assert [dict(m.labels)["model"] for m in info] == ["GW5000-DNS-30"]
    assert values(state.diagnostics(), "goodwe_packets_total", type="0x0104") == [1]


@pytest.mark.parametrize("decoder", DECODE)
def test_inbound_replies(decoder: str) -> None:
    d = DECODE[decoder](encoder.ack(0x0304, SERIAL, WHEN), "inbound")
    assert d["cleartext"] == bytes(16) and d["iv"][:6] == bytes((43, 23, 17, 12, 4, 24))
    d = DECODE[decoder](encoder.set_time(SERIAL, WHEN), "inbound")
    assert d["type"] == 0x0116 and d["cleartext"][:10] == bytes.fromhex("12161218") + bytes((24, 4, 12, 17, 23, 43))
    d = DECODE[decoder](encoder.time_sync_ack(0x03, SERIAL, WHEN), "outbound")
    assert d["cleartext"] == bytes.fromhex("1216121800") + b"\xff" * 11 and d["blocks"] is None


# --- malformed input ---------------------------------------------------------------------

ERRORS = {"native": _native.DecodeError, "reference": reference.DecodeError}


@pytest.mark.parametrize("decoder", DECODE)
def test_every_truncation_and_bit_flip_is_a_typed_error(decoder: str) -> None:
    frame = meter_frame()
    checksum = _native.ChecksumError if decoder == "native" else reference.ChecksumError
    for n in range(len(frame)):
        with pytest.raises(ERRORS[decoder]):
            DECODE[decoder](frame[:n], "outbound")
    for i in range(len(frame)):
        for bit in (0, 7):
            bad = bytearray(frame)
            bad[i] ^= 1 << bit
            with pytest.raises(ERRORS[decoder]) as e:
                DECODE[decoder](bytes(bad), "outbound")
            if i >= 10:  # past prefix and LEN: only the CRC can notice
                assert isinstance(e.value, checksum)


def test_wrong_crc_order_and_off_by_one_length_are_not_forwarded() -> None:
    ack = encoder.ack(0x0304, SERIAL, WHEN)
    be = ack[:-2] + reference.crc16_modbus(ack[:-2]).to_bytes(2, "big")
    with pytest.raises(_native.ChecksumError):
        _native.goodwe_decode_frame(be, "inbound")
    assert filter_inbound([("frame", ack)]) == ack
    assert filter_inbound([("frame", be)]) == b""
    for delta in (-1, 1):
        body = bytearray(ack[:-2])
        body[5] += delta
        bad = bytes(body) + reference.crc_bytes("inbound", reference.crc16_modbus(bytes(body)))
        with pytest.raises(_native.LengthError):
            _native.goodwe_decode_frame(bad, "inbound")
        assert filter_inbound(_native.GoodweSplitter("inbound").feed(bad)) == b""


@pytest.mark.parametrize("impl", ["native", "reference"])
def test_absurd_length_is_skipped_and_buffer_is_bounded(impl: str) -> None:
    cls = _native.GoodweSplitter if impl == "native" else reference.Splitter
    s = cls("outbound", 4096)
    frame = meter_frame()
    units = s.feed(b"POSTGW\xff\xff\xff\xff\x03\x04" + b"\x00" * 100 + frame)
    assert [k for k, _ in units] == ["junk", "frame"] and units[1][1] == frame
    # A header just under the limit waits, but never holds more than one maximal frame.
    s.feed(b"POSTGW\x00\x00\x0f\xff")
    for _ in range(100):
        s.feed(b"\x00" * 1000)
        assert s.pending <= 6 + 4096 + 7


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400), st.sampled_from(["outbound", "inbound"]))
def test_random_bytes_never_crash(data: bytes, direction: str) -> None:
    for decode, err in ((_native.goodwe_decode_frame, _native.DecodeError),
                        (reference.decode_frame, reference.DecodeError)):
        with contextlib.suppress(err):
            decode(data, direction)
    units = _native.GoodweSplitter(direction).feed(data)
    assert b"".join(raw for _, raw in units) == data[: len(b"".join(raw for _, raw in units))]


# --- differential: Rust against the pure-Python reference ---------------------------------

register_blocks = st.lists(
    st.tuples(st.integers(0, 0xFF00), st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=40)),
    min_size=0, max_size=6,
)


def _outcome(fn, *args):
    try:
        return "ok", fn(*args)
    except ValueError as e:
        return "error", type(e).__name__


@settings(max_examples=120, deadline=None)
@given(register_blocks, st.sampled_from([0x0304, 0x0345, 0x0104, 0x0145, 0x0204, 0x0103, 0x0310, 0x0999]),
       st.text(alphabet="0123456789ABCDEFKLMNSTUWX", min_size=16, max_size=16))
def test_differential_encoded_frames(blocks, ptype: int, serial: str) -> None:
    frame = encoder.outbound_frame(ptype, serial, encoder.register_dump(blocks), WHEN)
    assert _outcome(_native.goodwe_decode_frame, frame, "outbound") == _outcome(
        reference.decode_frame, frame, "outbound")


@settings(max_examples=120, deadline=None)
@given(st.binary(min_size=0, max_size=120), st.sampled_from([0x0304, 0x0116, 0x0104]),
       st.sampled_from(["outbound", "inbound"]))
def test_differential_random_bodies(body: bytes, ptype: int, direction: str) -> None:
    frame = reference.build_frame(direction, ptype, body)
    assert _outcome(_native.goodwe_decode_frame, frame, direction) == _outcome(
        reference.decode_frame, frame, direction)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.sampled_from(["frame", "ack", "keepalive", "junk", "P", "G", "trunc"]), max_size=8),
       st.lists(st.integers(1, 200), min_size=1, max_size=10), st.sampled_from(["outbound", "inbound"]))
def test_differential_splitter(pieces: list[str], cuts: list[int], direction: str) -> None:
    parts = {"frame": meter_frame(), "ack": encoder.ack(0x0304, SERIAL, WHEN), "keepalive": b"\x01\x02",
             "junk": b"\x00abc\x01", "P": b"POST", "G": b"GW", "trunc": meter_frame()[:50]}
    stream = b"".join(parts[p] for p in pieces)
    native, ref = _native.GoodweSplitter(direction), reference.Splitter(direction)
    pos, i = 0, 0
    got_n, got_r = [], []
    while pos < len(stream):
        chunk = stream[pos:pos + cuts[i % len(cuts)]]
        pos += len(chunk)
        i += 1
        got_n += native.feed(chunk)
        got_r += ref.feed(chunk)
    assert got_n == got_r and native.pending == ref.pending
    assert b"".join(raw for _, raw in got_n) + stream[len(stream) - native.pending:] == stream


# --- the proxy's inbound allow-list: Rust against the Python twin -----------------------

_OTHER = "91000HKU99999999"


def _inbound_units() -> dict[str, bytes]:
    enc = _native.goodwe_encrypt
    return {
        "ack": encoder.ack(0x0304, SERIAL, WHEN, encrypt=enc),
        "nack": encoder.ack(0x0104, SERIAL, WHEN, nack=True, encrypt=enc),
        "clock": encoder.set_time(SERIAL, WHEN, encrypt=enc),
        "firmware": encoder.inbound_frame(0x01F0, SERIAL, bytes(16), WHEN, encrypt=enc),
        "two_blocks": encoder.inbound_frame(0x0304, SERIAL, bytes(32), WHEN, encrypt=enc),
        "other_device": encoder.ack(0x0304, _OTHER, WHEN, encrypt=enc),
        "bit_flip": (lambda f: f[:30] + bytes([f[30] ^ 4]) + f[31:])(encoder.ack(0x0303, SERIAL, WHEN, encrypt=enc)),
        "keepalive": reference.KEEPALIVE,
        "junk": b"\x00zz\x01\x03",
        "absurd_len": b"GW\x7f\xff\xff\xff\x03\x04",
    }


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(order=st.lists(st.sampled_from(sorted(_inbound_units())), max_size=8),
       cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=4),
       serial=st.sampled_from([None, SERIAL]))
def test_inbound_filter_matches_python_twin(order: list[str], cuts: list[int], serial: str | None) -> None:
    units = _inbound_units()
    stream = b"".join(units[k] for k in order)
    allow = sorted(INBOUND_KNOWN)
    rust, twin = _native.GoodweInboundFilter(allow), reference.InboundFilter(allow)
    rust.set_serial(serial)
    twin.set_serial(serial)
    bounds = [0, *sorted(c for c in cuts if c < len(stream)), len(stream)]
    got: dict[str, list] = {"rust": [b"", []], "twin": [b"", []]}
    for a, b in zip(bounds, bounds[1:], strict=False):
        chunk = stream[a:b]
        for name, f in (("rust", rust), ("twin", twin)):
            forward, events = f.feed(chunk)
            if name == "rust" and forward is not None and forward == chunk:
                assert forward is chunk or not chunk  # forwarded as is: the read itself, no copy
            got[name][0] += forward or b""
            got[name][1] += events
    assert got["rust"] == got["twin"]
    assert rust.pending == twin.pending
    assert rust.flush() == twin.flush()
    # Whatever was forwarded is exactly the allowed units, in order.
    expected = b"".join(units[k] for k in order if k in ("ack", "nack", "clock", "keepalive")
                        or (k == "other_device" and serial is None))
    if "absurd_len" not in order and "junk" not in order:
        assert got["rust"][0] == expected


def test_inbound_filter_agrees_with_inbound_verdict() -> None:
    """The rule as proxy.inbound_verdict states it, on every kind of unit."""
    allow = frozenset(INBOUND_KNOWN)
    for name, raw in _inbound_units().items():
        if name in ("keepalive", "junk", "absurd_len"):
            continue
        f = _native.GoodweInboundFilter(sorted(allow))
        f.set_serial(SERIAL)
        forward, events = f.feed(raw)
        allowed, reason, decoded = inbound_verdict(raw, allow, SERIAL)
        assert (forward == raw) is allowed, name
        assert events == [(decoded["type"] if decoded else None, reason, len(raw))], name


def test_energy_dashboard_counters_from_encoder_frames() -> None:
    """Grid import/export (DT meter registers, ET meter floats), battery charge/discharge and
    PV energy, from frames our encoder builds (no fixtures needed)."""
    kwh = 3.6e6
    blocks = encoder.dt_blocks(WHEN, vpv=1, ipv=1, vgrid=1, igrid=1, fgrid=5000, power=1, temperature=1, e_day=1,
                               e_total=20642, h_total=2, rssi=1, meter_export_wh=1234567, meter_import_wh=89)
    s = frame_metrics(_native.goodwe_decode_frame(
        encoder.outbound_frame(0x0104, "53000DSC00000009", encoder.register_dump(blocks), WHEN), "outbound"))
    assert values(s, "goodwe_grid_energy_export_joules_total") == [1234567 * 3600.0]
    assert values(s, "goodwe_grid_energy_import_joules_total") == [89 * 3600.0]
    assert values(s, "goodwe_inverter_energy_output_joules_total") == [pytest.approx(2064.2 * kwh)]
    blocks = encoder.et_blocks(WHEN, "9010KETU233W2025", "GW10KN-ET", vpv1=1, ipv1=1, vpv2=0, ipv2=0, vgrid=1,
                               igrid=1, fgrid=5000, active_power=1, load_power=1, vbattery=1, ibattery=1,
                               pbattery=1, e_total=13534, e_day=1, battery_temperature=1, soc=1, soh=1,
                               e_battery_charge=7806, e_battery_discharge=6331, meter_export_wh=1122470.0,
                               meter_import_wh=0.5)
    s = frame_metrics(_native.goodwe_decode_frame(encoder.outbound_frame(
        0x0204, "9010KETU233W2025", encoder.register_dump(blocks), WHEN, envelope_pad=1), "outbound"))
    assert values(s, "goodwe_battery_energy_charge_joules_total") == [pytest.approx(780.6 * kwh)]
    assert values(s, "goodwe_battery_energy_discharge_joules_total") == [pytest.approx(633.1 * kwh)]
    assert values(s, "goodwe_grid_energy_export_joules_total") == [pytest.approx(1122.47 * kwh)]
    assert values(s, "goodwe_grid_energy_import_joules_total") == [pytest.approx(0.5 * 3600)]
    # A meter float that is NaN or negative is no reading.
    for bad in (float("nan"), -1.0):
        blocks_bad = encoder.et_blocks(WHEN, "9010KETU233W2025", "GW10KN-ET", vpv1=1, ipv1=1, vpv2=0, ipv2=0,
                                       vgrid=1, igrid=1, fgrid=5000, active_power=1, load_power=1, vbattery=1,
                                       ibattery=1, pbattery=1, e_total=1, e_day=1, battery_temperature=1, soc=1,
                                       soh=1, meter_export_wh=bad)
        s = frame_metrics(_native.goodwe_decode_frame(encoder.outbound_frame(
            0x0204, "9010KETU233W2025", encoder.register_dump(blocks_bad), WHEN, envelope_pad=1), "outbound"))
        assert values(s, "goodwe_grid_energy_export_joules_total") == []
        assert values(s, "goodwe_grid_energy_import_joules_total") != []


# --- the proxy's outbound scan: Rust against the Python twin ------------------------------

def _outbound_units() -> dict[str, bytes]:
    data = meter_frame()
    info = encoder.outbound_frame(0x0303, SERIAL, encoder.register_dump(encoder.meter_info_blocks()), WHEN)
    ack = encoder.time_sync_ack(0x03, SERIAL, WHEN)
    return {"data": data, "info": info, "ack": ack,
            "bit_flip": data[:70] + bytes([data[70] ^ 8]) + data[71:],
            "bad_blocks": encoder.outbound_frame(0x0304, SERIAL, b"\x05" + bytes(15), WHEN),
            "junk": b"zzPOST", "absurd_len": b"POSTGW\x7f\xff\xff\xff"}


def _twin_scan(stream: bytes, cuts: list[int]) -> list[tuple]:
    split, out, offset = reference.Splitter("outbound"), [], 0
    bounds = [0, *cuts, len(stream)]
    for a, b in zip(bounds, bounds[1:], strict=False):
        for kind, raw in split.feed(stream[a:b]):
            at, offset = offset, offset + len(raw)
            if kind != "frame":
                continue
            try:
                d = reference.decode_frame(raw, "outbound")
            except reference.DecodeError as e:
                reason = {reference.ChecksumError: "checksum", reference.LengthError: "length"}.get(type(e), "format")
                try:
                    ptype, _, body = reference.check_frame(raw, "outbound")
                    base = 2 if reference.has_timestamp_envelope("outbound", ptype) else 0
                    who = (ptype, body[base:base + 16].decode("latin-1"))
                except reference.DecodeError:
                    who = (None, None)
                out.append((at, *who, reason, None))
                continue
            out.append((at, d["type"], d["device_id"] + d["device_serial"], None,
                        raw if d["blocks"] is not None else None))
    return out


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(order=st.lists(st.sampled_from(sorted(_outbound_units())), max_size=6),
       cuts=st.lists(st.integers(min_value=0, max_value=1200), max_size=3))
def test_scan_matches_python_twin(order: list[str], cuts: list[int]) -> None:
    units = _outbound_units()
    stream = b"".join(units[k] for k in order)
    cuts = sorted(c for c in cuts if c < len(stream))
    scanner = _native.GoodweSplitter("outbound")
    bounds = [0, *cuts, len(stream)]
    got = [item for a, b in zip(bounds, bounds[1:], strict=False) for item in scanner.scan(stream[a:b])]
    assert got == _twin_scan(stream, cuts)
    assert scanner.offset + scanner.pending == len(stream)
