"""grott datalogger records: the fixture record decodes to its expected JSON (header, CRC,
serials, every raw and scaled value), a flipped byte fails the CRC, a wrong length field is
refused, and records the project builds itself round-trip (when the fixture is absent too)."""

from __future__ import annotations

import datetime as dt
import json
import subprocess

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gridtap_plugins.growatt import grott
from tests.conftest import fixture_path, read_hex
from tests.integration.servers import gridtap_bin, one_error_line


def record() -> bytes:
    return read_hex(fixture_path("growatt", "grott", "record_T060104_proto06_data.hex"))


def expected() -> dict:
    return json.loads(fixture_path("growatt", "grott", "record_T060104_proto06_data.expected.json").read_text())


def test_fixture_record_decodes_to_the_expected_json():
    got = grott.decode(record())
    want = expected()
    assert got["total_length_bytes"] == want["total_length_bytes"] == 265
    assert got["header"] == want["header"]
    assert got["crc16_modbus"]["value"] == want["crc16_modbus"]["value"] == "6d03"
    assert got["crc16_modbus"]["on_wire_trailer"] == want["crc16_modbus"]["on_wire_trailer"]
    assert got["datalogger_serial"] == want["datalogger_serial"]
    assert got["inverter_serial"] == want["inverter_serial"]
    assert got["values"] == want["values"]  # every field: offset, length, raw, scaled
    assert got["values"]["pv1voltage"]["scaled"] == 230.9 and got["values"]["pvfrequentie"]["scaled"] == 50.01


def test_layout_table_matches_the_grott_layout_file():
    layout = json.loads(fixture_path("growatt", "grott", "layout_T060104.json").read_text())["T060104"]
    ours = {x.name: x for x in grott.T060104}
    for name, spec in layout.items():
        if name in ("decrypt", "pvserial", "date"):
            continue
        assert ours[name].offset * 2 == spec["value"], name
        assert ours[name].length == spec["length"] and ours[name].divide == spec.get("divide", 1), name
    assert set(ours) == {k for k in layout if k not in ("decrypt", "pvserial", "date")}
    assert layout["pvserial"]["value"] == grott.INVERTER_SN[0] * 2 and layout["date"]["value"] == grott.TIME_AT * 2


@pytest.mark.parametrize("where", [0, 1, 7, 8, 40, 100, 262])
def test_a_flipped_byte_fails_the_crc(where):
    data = bytearray(record())
    data[where] ^= 0x01
    with pytest.raises((grott.CrcError, grott.LengthError, grott.RecordError)) as e:
        grott.decode(bytes(data))
    if where not in (2, 3, 4, 5):  # the header's length/protocol fields give a length error first
        assert isinstance(e.value, grott.CrcError) and "CRC mismatch" in str(e.value)


def test_a_flipped_crc_byte_and_a_wrong_length_field():
    data = bytearray(record())
    data[-1] ^= 0xFF
    with pytest.raises(grott.CrcError):
        grott.decode(bytes(data))
    data = bytearray(record())
    data[5] += 1  # length 258 instead of 257
    with pytest.raises(grott.LengthError, match="length field says 258 but the record has 257"):
        grott.decode(bytes(data))
    with pytest.raises(grott.LengthError, match="declares 258 bytes"):
        grott.split(bytes(data))
    with pytest.raises(grott.LengthError):
        grott.decode(record()[:7])
    with pytest.raises(grott.RecordError, match="protocol 0x0009"):
        grott.split(b"\x00\x01\x00\x09\x00\x02\x01\x04")


def test_metrics_of_the_record_use_the_cloud_names():
    samples = {(x.name, tuple(sorted((k, v) for k, v in x.labels if k not in ("plant_id", "device_sn")))): x.value
               for x in grott.record_metrics(grott.decode(record()), dt.UTC)}
    assert samples[("growatt_pv_power_watts", ())] == 549.0
    assert samples[("growatt_pv_string_voltage_volts", (("string", "1"),))] == 230.9
    assert samples[("growatt_ac_power_watts", ())] == 505.1
    assert samples[("growatt_grid_frequency_hertz", ())] == 50.01
    assert samples[("growatt_grid_voltage_volts", (("phase", "1"),))] == 237.3
    assert samples[("growatt_ac_energy_joules_total", ())] == 15_456_960_000.0  # 4293.6 kWh, no float tail
    assert samples[("growatt_ac_energy_today_joules", ())] == pytest.approx(2.1 * 3.6e6)
    assert samples[("growatt_operating_seconds_total", ())] == pytest.approx(9055.575 * 3600)
    assert samples[("growatt_temperature_celsius", (("sensor", "temperature"),))] == 26.9
    assert samples[("growatt_dc_bus_voltage_volts", (("bus", "p"),))] == pytest.approx(371.8)
    assert ("growatt_dc_bus_voltage_volts", (("bus", "n"),)) not in samples  # 0: no negative bus, as in the cloud
    assert samples[("growatt_data_timestamp_seconds", ())] == dt.datetime(2021, 2, 9, 12, 14, 10,
                                                                           tzinfo=dt.UTC).timestamp()
    assert not any(k[0] == "growatt_pv_string_voltage_volts" and ("string", "2") in k[1] for k in samples)
    info = [x for x in grott.record_metrics(grott.decode(record()), dt.UTC) if x.name == "growatt_device_info"]
    assert dict(info[0].labels)["datalogger_sn"] == "JPC281833B" and dict(info[0].labels)["device_sn"] == "QMB2823261"


def build(values: dict[str, int], logger: str = "ABC1234567", inverter: str = "XYZ7654321",
          when: tuple[int, ...] = (24, 6, 21, 12, 0, 0)) -> bytes:
    """A protocol-06 T060104 record made here: plain payload, scrambled, CRC appended."""
    body = bytearray(211 + 48)
    body[8:18] = logger.encode()
    body[38:48] = inverter.encode()
    body[68:74] = bytes(when)
    for v in grott.T060104:
        body[v.offset:v.offset + v.length] = values.get(v.name, 0).to_bytes(v.length, "big")
    body[0:2], body[2:4], body[6], body[7] = b"\x00\x07", b"\x00\x06", 1, 4
    body[4:6] = (len(body) + 2 - 8).to_bytes(2, "big")
    scrambled = bytes(body[:8]) + bytes(b ^ grott.KEY[i % 7] for i, b in enumerate(body[8:]))
    return scrambled + grott.crc16_modbus(scrambled).to_bytes(2, "big")


@given(st.dictionaries(st.sampled_from([v.name for v in grott.T060104]), st.integers(0, 65535)),
       st.text("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789", min_size=10, max_size=10))
def test_records_made_here_round_trip(values, sn):
    data = build(values, inverter=sn)
    got = grott.decode(data)
    assert got["inverter_serial"]["value"] == sn and got["values"]["date"] == "2024-06-21T12:00:00"
    for v in grott.T060104:
        assert got["values"][v.name]["raw"] == values.get(v.name, 0)


def test_two_records_back_to_back_and_the_cli(tmp_path):
    data = build({"pvpowerout": 12345}) + build({"pvpowerout": 54321}, inverter="SECOND0001")
    assert [r["values"]["pvpowerout"]["scaled"] for r in grott.decode_all(data)] == [1234.5, 5432.1]
    path = tmp_path / "two.hex"
    path.write_text("# two records\n" + data.hex() + "\n")
    res = subprocess.run([gridtap_bin(), "decode", "growatt", str(path), "--format", "json"], capture_output=True,
                         timeout=60)
    assert res.returncode == 0, res.stderr
    rows = json.loads(res.stdout)
    power = {r["labels"]["device_sn"]: r["value"] for r in rows if r["name"] == "growatt_ac_power_watts"}
    assert power == {"XYZ7654321": 1234.5, "SECOND0001": 5432.1}
    res = subprocess.run([gridtap_bin(), "growatt", "grott", str(path)], capture_output=True, timeout=60)
    assert res.returncode == 0 and len(json.loads(res.stdout)) == 2
    bad = tmp_path / "bad.hex"
    broken = bytearray(data)
    broken[50] ^= 0x10
    bad.write_text(bytes(broken).hex())
    res = subprocess.run([gridtap_bin(), "decode", "growatt", str(bad)], capture_output=True, timeout=60)
    assert res.returncode == 2
    assert one_error_line(res).startswith("gridtap: grott: CRC mismatch")


def test_cli_grott_prints_the_fixture_record_as_expected(tmp_path):
    path = fixture_path("growatt", "grott", "record_T060104_proto06_data.hex")
    res = subprocess.run([gridtap_bin(), "growatt", "grott", str(path)], capture_output=True, timeout=60)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["values"] == expected()["values"] and doc["header"] == expected()["header"]


@given(st.binary(max_size=600))
def test_any_bytes_are_records_or_one_typed_error(data):
    try:
        records = grott.decode_all(data)
    except grott.RecordError as e:
        assert str(e).startswith("grott: ") and "\n" not in str(e)
    else:
        assert all("values" in r for r in records)


@given(st.data(), st.integers(1, 255), st.integers(0, 65535))
def test_any_change_to_a_record_made_here_is_refused(data, flip, power):
    """Without the fixture too: the CRC covers every byte before it, so one byte changed
    anywhere in a generated record is a CRC, length or protocol error - never a crash, never
    values decoded from a damaged record."""
    record = bytearray(build({"pvpowerout": power}))
    where = data.draw(st.integers(0, len(record) - 1))
    record[where] ^= flip
    with pytest.raises(grott.RecordError):
        grott.decode_all(bytes(record))


@given(st.integers(0, 300))
def test_a_truncated_or_padded_record_is_a_length_error(n):
    record = build({})
    for data in (record[:n], record + bytes(n % 7 + 1)):
        if data == record:
            continue
        with pytest.raises(grott.RecordError):
            grott.decode_all(data)
