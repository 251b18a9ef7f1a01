"""Conformance against the shared Intergas fixtures (read in place; skipped where absent).

Each frame must decode to ``expected_decoded.json`` in both flag orders, the five
reconstructed frames must reproduce every ``intergas_*`` value of the seed exporter's sample
output (in our names and base units), and the LAN2RF payloads must decode as the upstream
client does.
"""

from __future__ import annotations

import json
import math
import re

import pytest
from conftest import fixture_path, read_hex

from gridtap_plugins.intergas import metrics as m
from gridtap_plugins.intergas import reference
from gridtap_plugins.intergas.decode import decode_block, decode_lan2rf
from gridtap_plugins.intergas.lan2rf import Lan2rfClient

STATUS_FRAMES = ["serial/S_idle_meewis.hex", "serial/S_idle_keesma.hex", "reference_exporter/reconstructed_S.hex"]
SCALAR_KEYS = [
    "t1_aanvoer", "t2_flow", "t3_retour", "t4_warmwater", "t5_boiler", "t6_buiten", "ch_pressure", "temp_set",
    "fanspeed_set_rpm", "fanspeed_rpm", "fan_pwm_pct", "io_curr_uA", "displ_code",
]


def expected() -> dict:
    return json.loads(fixture_path("intergas", "expected_decoded.json").read_text())


@pytest.mark.parametrize("frame", STATUS_FRAMES)
@pytest.mark.parametrize("decoder", ["native", "reference"])
def test_status_frames_match_expected_decoded(frame: str, decoder: str) -> None:
    want = expected()[frame]
    data = read_hex(fixture_path("intergas", *frame.split("/")))
    decode = decode_block if decoder == "native" else reference.decode_block
    normative = decode("S?", data)
    for key in SCALAR_KEYS:
        assert normative[key] == want[key], key
    assert normative["flags"] == want["flags_lsb_first"]
    assert decode("S?", data, True)["flags"] == want["flags_reference_exporter"]


def test_meewis_pins_the_flag_order() -> None:
    """Spec §16: idle with a valid 1.49 bar reading → opentherm + pressure_sensor only."""
    d = decode_block("S?", read_hex(fixture_path("intergas", "serial", "S_idle_meewis.hex")))
    assert [k for k, v in d["flags"].items() if v] == ["opentherm", "pressure_sensor"]
    assert d["display_text"] == "standby"


def test_keesma_pressure_without_sensor_is_dropped() -> None:
    d = decode_block("S?", read_hex(fixture_path("intergas", "serial", "S_idle_keesma.hex")))
    assert d["ch_pressure"] == 6.0 and d["flags"]["pressure_sensor"] == 0
    names = {s.name for s in m.status_metrics(d)}
    assert "intergas_water_pressure_pascals" not in names
    kept = m.status_metrics(d, m.Options(drop_sentinels=False))
    assert [s.value for s in kept if s.name == "intergas_water_pressure_pascals"] == [600000.0]


def test_revision_frame() -> None:
    want = expected()["serial/REV_ic3_meewis.hex"]
    data = read_hex(fixture_path("intergas", "serial", "REV_ic3_meewis.hex"))
    for d in (decode_block("REV", data), reference.decode_block("REV", data)):
        for key in ("hardware_release", "software_release", "separator", "rom_checksum1", "rom_checksum2"):
            assert d[key] == want[key], key
        assert d["controller_type"] == want["controller_type_char_index2"]
    (info,) = m.revision_metrics(decode_block("REV", data))
    assert dict(info.labels) == {"hardware": "ic3mk1   *P190517*", "software": "V2.53", "controller": "ic3"}


# ------------------------------------------------------------------ the seed exporter's sample
PROM_LINE = re.compile(r'^(intergas_\w+)(?:\{(\w+)="([^"]*)"\})? (\S+)$')

#: seed name → (our name, seed label → our label, factor to base units)
SEED = {
    "intergas_temperature_celcius": ("intergas_temperature_celsius", "sensor", 1),
    "intergas_water_pressure_bar": ("intergas_water_pressure_pascals", None, 1e5),
    "intergas_display_code": ("intergas_display_code", None, 1),
    "intergas_fanspeed_rpm": ("intergas_fan_speed_hertz", "type", 1 / 60),
    "intergas_fan_pwm": ("intergas_fan_pwm_ratio", None, 1 / 100),
    "intergas_pump_pwm": ("intergas_pump_pwm_ratio", None, 1 / 100),
    "intergas_flag": ("intergas_flag", "name", 1),
    "intergas_ionization_current_microampere": ("intergas_ionization_current_amperes", None, 1e-6),
    "intergas_interrupt_time": ("intergas_interrupt_time", None, 1),
    "intergas_load": ("intergas_load_ratio", "type", 1 / 100),
    "intergas_hours": ("intergas_operating_time_seconds_total", "type", 3600),
    "intergas_watermeter": ("intergas_hot_water_cubic_meters_total", None, 1),
    "intergas_parameter": ("intergas_parameter", "name", 1),
    "intergas_tapflow": ("intergas_tap_flow_cubic_meters_per_second", None, 1 / 60000),
}
SEED_STATS = {
    "power_disconnect": "intergas_power_disconnects_total", "burnerstarts": "intergas_burner_starts_total",
    "burnerstarts_dhw": "intergas_dhw_burner_starts_total", "ignition_failed": "intergas_ignition_failures_total",
    "flame_lost": "intergas_flame_losses_total", "reset": "intergas_resets_total",
}
SEED_GAS = {"cv": "heating", "warmwater": "dhw"}
FRAMEWORK = {"intergas_up", "intergas_updated"}  # the framework's own up / last-success series


def ours(seed: str, label: str | None, value: str | None) -> tuple[str, tuple, float]:
    if seed == "intergas_stats":
        return SEED_STATS[value], (), 1
    if seed == "intergas_gasmeter":
        return "intergas_gas_consumed_cubic_meters_total", (("circuit", SEED_GAS[value]),), 1
    name, our_label, factor = SEED[seed]
    labels = ((our_label, value),) if our_label else ()
    return name, labels, factor


def test_reconstructed_frames_reproduce_example_output() -> None:
    folder = fixture_path("intergas", "reference_exporter")
    samples = []
    for kind, stem in (("S?", "S"), ("S2", "S2"), ("CRC", "CRC"), ("HN", "HN"), ("V?", "V")):
        decoded = decode_block(kind, read_hex(folder / f"reconstructed_{stem}.hex"), reference_flag_order=True)
        samples += m.block_metrics(kind, decoded)
    produced = {(s.name, s.labels): s.value for s in samples}
    checked = 0
    for line in (folder / "example_output.prom").read_text().splitlines():
        match = PROM_LINE.match(line)
        if not match or match.group(1) in FRAMEWORK:
            continue
        seed, label, value, number = match.groups()
        name, labels, factor = ours(seed, label, value)
        assert (name, labels) in produced, f"{line!r} has no counterpart {name}{labels}"
        got = produced[(name, labels)]
        assert math.isclose(got, float(number) * factor, rel_tol=1e-9, abs_tol=1e-12), (line, got)
        checked += 1
    assert checked == 75  # 5 temps, pressure, display, 2 fans, 2 pwm, 16 flags, io, it, 2 loads, 3 hours,
    #                       6 stats, 2 gas, water, 31 parameters, tapflow


def test_example_flags_differ_in_normative_order() -> None:
    """The sample's flags match only the reversed order (spec §6); normative gives gasvalve."""
    data = read_hex(fixture_path("intergas", "reference_exporter", "reconstructed_S.hex"))
    d = decode_block("S?", data)
    assert d["flags"]["gasvalve"] == 1 and d["flags"]["gp_switch"] == 0 and d["flags"]["grad_flag"] == 0


# ------------------------------------------------------------------ LAN2RF
LAN2RF_FRAMES = [
    "data_standby_no_rooms.json", "data_standby_room1.json", "data_standby_room1_override.json",
    "data_burning_opentherm.json",
]


@pytest.mark.parametrize("name", LAN2RF_FRAMES)
def test_lan2rf_payloads_decode_like_the_upstream_client(name: str) -> None:
    want = json.loads(fixture_path("intergas", "lan2rf", "expected_decoded.json").read_text())[name]
    got = decode_lan2rf(json.loads(fixture_path("intergas", "lan2rf", name).read_text()))
    for key, value in want.items():
        assert got[key] == value, key


def test_lan2rf_burning_metrics() -> None:
    got = decode_lan2rf(json.loads(fixture_path("intergas", "lan2rf", "data_burning_opentherm.json").read_text()))
    samples = {(s.name, s.labels): s.value for s in m.lan2rf_metrics(got)}
    assert samples[("intergas_temperature_celsius", (("sensor", "aanvoer"),))] == 43.66
    assert samples[("intergas_temperature_celsius", (("sensor", "warmwater"),))] == 30.97
    assert samples[("intergas_water_pressure_pascals", ())] == 138000.0
    assert samples[("intergas_display_code", ())] == 0
    assert samples[("intergas_display_state", ())] == "opentherm"
    assert samples[("intergas_flag", (("name", "burner"),))] == 1
    assert samples[("intergas_flag", (("name", "pump"),))] == 1
    assert samples[("intergas_flag", (("name", "tap_switch"),))] == 0
    assert samples[("intergas_room_temperature_celsius", (("type", "override"), ("zone", "1")))] == 15.0
    assert not any(k[1] and ("zone", "2") in k[1] for k in samples)


class _Response:
    def __init__(self, text: str) -> None:
        self.text, self.status_code = text, 200


class _Session:
    def __init__(self, text: str) -> None:
        self.body, self.auth, self.urls = text, None, []

    def get(self, url: str, timeout: float) -> _Response:
        self.urls.append(url)
        return _Response(self.body)

    def close(self) -> None:
        pass


@pytest.mark.parametrize(("name", "slots"), [
    ("heaterlist_one.json", ["2110f25190"]),
    ("heaterlist_unbound.json", []),
    ("heaterlist_invalid_backslash.txt", ["2303002041"]),
])
def test_lan2rf_heaterlists(name: str, slots: list[str]) -> None:
    session = _Session(fixture_path("intergas", "lan2rf", name).read_text())
    client = Lan2rfClient("http://gw", session=session)  # type: ignore[arg-type]
    heaters = client.heaters()
    assert len(heaters) == 8
    assert [h for h in heaters if h] == slots
    assert session.urls == ["http://gw/heaterlist.json"]


@pytest.mark.parametrize(("raw", "temperature"), [(0xEC14, -51.00), (0xEC27, -50.81)])
def test_both_unconnected_sensor_readings_are_dropped(raw: int, temperature: float) -> None:
    """Spec §4 names two readings of an unconnected NTC; -50.81 used to be published."""
    from gridtap_plugins.intergas import encode, simulator

    values = dict(simulator.BoilerModel(start=0.0).values("S?", now=0.0))
    values["t6_buiten"] = temperature
    block = encode.encode_block("S?", values)
    assert block[10:12] == raw.to_bytes(2, "little")  # outside temperature, int16 LE / 100
    d = decode_block("S?", block)
    assert d["t6_buiten"] == temperature
    sensors = {dict(s.labels)["sensor"] for s in m.status_metrics(d) if s.name == "intergas_temperature_celsius"}
    assert "buiten" not in sensors and "flow" in sensors
    kept = m.status_metrics(d, m.Options(drop_sentinels=False))
    assert [s.value for s in kept if dict(s.labels).get("sensor") == "buiten"] == [temperature]
