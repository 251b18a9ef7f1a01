"""ISG web pages: the real captures (German and English UI) decode to the spec's values
(isg.md §1.4-1.8), and the parsing rules hold on data of our own."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gridtap_plugins.isg import page
from gridtap_plugins.isg import simulator as sim
from tests.conftest import fixture_path

FIX = ("isg", "isg_exporter")
KWH = 3_600_000


def samples(name: str, **opts: bool) -> dict[tuple[str, str, str], float]:
    """{(metric, name label, section label): value} of a fixture page."""
    parsed = page.parse_page(fixture_path(*FIX, name).read_bytes())
    result = page.page_metrics(parsed.rows, page.Options(**opts))
    out = {(s.name, dict(s.labels)["name"], dict(s.labels)["section"]): s.value for s in result.metrics}
    for n, sec in result.flags:
        out[("isg_web_flag", n, sec)] = 1
    return out


def test_login_screen_is_recognised_and_has_no_values():
    parsed = page.parse_page(fixture_path(*FIX, "sample_1_0.html").read_bytes())
    assert parsed.login and parsed.rows == []


def test_info_heat_pump_page_german():
    s = samples("sample_1_1.html")
    assert s[("isg_web_temperature_celsius", "heissgastemp", "prozesswerte")] == 28.6
    assert s[("isg_web_pressure_pascals", "niederdruck", "prozesswerte")] == 817_000.0  # "8,17bar " (trailing space)
    assert s[("isg_web_pressure_pascals", "hochdruck", "prozesswerte")] == 1_000_000.0
    assert s[("isg_web_frequency_hertz", "fortluft_ist_luefterdrehzahl", "prozesswerte")] == 0.0
    # 44,341 MWh is exactly 44341 kWh; 0,379 MWh exactly 379 kWh (§1.5 examples)
    assert s[("isg_web_energy_joules_total", "wm_heizen_summe", "waermemenge")] == 44341 * KWH
    assert s[("isg_web_energy_joules_total", "wm_ne_ww_summe", "waermemenge")] == 379 * KWH
    assert s[("isg_web_energy_joules", "wm_heizen_tag", "waermemenge")] == pytest.approx(23.972 * KWH, rel=1e-15)
    assert s[("isg_web_runtime_seconds_total", "verdichter_heizen", "laufzeiten")] == 6157 * 3600
    assert s[("isg_web_runtime_seconds_total", "elektr_ne_ww", "laufzeiten")] == 40 * 3600
    assert len(s) == 23


def test_system_page_of_a_wpm_with_tbody_words_and_a_flag():
    s = samples("sample_onoff.html")
    assert s[("isg_web_temperature_celsius", "aussentemperatur", "heizung")] == 10.6
    assert s[("isg_web_temperature_celsius", "isttemperatur_hk_1", "heizung")] == 33.2
    assert s[("isg_web_temperature_celsius", "ruecklaufisttemperatur_wp", "heizung")] == 36.6
    assert s[("isg_web_temperature_celsius", "bivalenztemperatur_hzg", "elektrische_nacherwaermung")] == -25.0
    assert s[("isg_web_switch", "festwertbetrieb", "heizung")] == 0  # "Aus"
    assert s[("isg_web_switch", "untere_einsatzgrenze_ww", "elektrische_nacherwaermung")] == 0
    assert s[("isg_web_pressure_pascals", "heizungsdruck", "heizung")] == 121_000.0
    # VOLUMENSTROM in HEIZUNG and WARMWASSER: two series thanks to the section label
    assert s[("isg_web_flow_cubic_meters_per_second", "volumenstrom", "heizung")] == pytest.approx(8.98 / 60000)
    assert ("isg_web_flow_cubic_meters_per_second", "volumenstrom", "warmwasser") in s
    assert s[("isg_web_flag", "betriebszustand_2", "energiemanagement")] == 1  # icon-only row


def test_section_prefix_names_as_the_seed():
    s = samples("sample_onoff.html", section_prefix=True)
    assert s[("isg_web_temperature_celsius", "elektrische_nacherwaermung_bivalenztemperatur_hzg",
              "elektrische_nacherwaermung")] == -25.0
    assert ("isg_web_flow_cubic_meters_per_second", "warmwasser_volumenstrom", "warmwasser") in s


def test_em_debug_page_units_and_duplicate_keys():
    s = samples("sample_4_7.html")
    assert s[("isg_web_time_of_day_seconds", "aktuelle_zeit", "allgemein")] == pytest.approx(21.88 * 3600)
    assert s[("isg_web_value", "wpm_type", "allgemein")] == 103.0
    assert s[("isg_web_value", "inverter_aufheizung_stabil_hz", "inverter_heizung")] == -1.0  # "-1"
    assert s[("isg_web_temperature_difference_celsius", "inverter_gl_mittelw_aufheizung_hz", "inverter_heizung")] == 0
    assert s[("isg_web_duration_seconds", "letzte_laufzeit", "heizung")] == 0.0  # "0,0min"
    assert s[("isg_web_value", "m1e6", "heizung")] == 0.0  # key M*1E6
    assert ("isg_web_energy_joules", "vorh_inverter_min_energie_ww_shm", "inverter_warmwasser") in s
    assert s[("isg_web_flag", "winter", "heizung")] == 1
    # SHM LETZTES AN exists in WARMWASSER (13,63) and HEIZUNG (15,81): both kept, as different series
    assert s[("isg_web_time_of_day_seconds", "shm_letztes_an", "warmwasser")] == pytest.approx(13.63 * 3600)
    assert s[("isg_web_time_of_day_seconds", "shm_letztes_an", "heizung")] == pytest.approx(15.81 * 3600)
    assert s[("isg_web_current_amperes", "motorstrom", "allgemein")] == 0.0
    assert s[("isg_web_power_watts", "motorleistung", "allgemein")] == 0.0


def test_english_ui_with_commas_and_dots_in_keys():
    s = samples("sample_specialchars.html")
    assert s[("isg_web_temperature_difference_celsius", "set_superheating_suction_gas_compresso",
              "heat_pump_analysis")] == 11.8
    assert s[("isg_web_temperature_difference_celsius", "actual_superheating_suction_gas_compre",
              "heat_pump_analysis")] == 10.7
    assert s[("isg_web_value", "compressor_speed_limit", "heat_pump_analysis")] == 102.8  # no unit
    assert s[("isg_web_temperature_celsius", "temp_inv_compressor", "heat_pump_analysis")] == 47.4
    assert s[("isg_web_current_amperes", "motor_current", "heat_pump_analysis")] == 6.6
    assert s[("isg_web_ratio", "opening_exv", "heat_pump_analysis")] == pytest.approx(0.194)
    assert s[("isg_web_temperature_celsius", "set_superheating", "heat_pump_analysis")] == -0.8


@pytest.mark.parametrize(("label", "name"), [
    ("RAUMISTTEMP. HK1", "raumisttemp_hk1"),
    ("FORTLUFT IST LÜFTERDREHZAHL  ", "fortluft_ist_luefterdrehzahl"),
    ("WW-SOLLTEMP.", "ww_solltemp"),
    ("M*1E6", "m1e6"),
    ("VORH. INVERTER MIN ENERGIE WW (SHM)", "vorh_inverter_min_energie_ww_shm"),
    ("SET SUPERHEATING, SUCTION GAS, COMPRESSO.", "set_superheating_suction_gas_compresso"),
    ("RÜCKLAUFISTTEMPERATUR WP", "ruecklaufisttemperatur_wp"),
    ("ISTTEMPERATUR HK 1", "isttemperatur_hk_1"),
    ("Betriebszustand 2", "betriebszustand_2"),
    ("A  B", "a__b"),  # interior runs are not collapsed
    ("GROSSE ÜBERSICHT", "grosse_uebersicht"),
    ("Straße", "strasse"),  # hardening: ß
    ("Température ÉTÉ", "temperature_ete"),  # hardening: diacritics dropped
    ("2. KREIS", "_2_kreis"),  # hardening: no leading digit
    ("TEMP [°C] #1", "temp___c___1"),  # hardening: nothing outside [a-z0-9_]
])
def test_label_normalisation(label, name):
    assert page.normalise(label) == name


@pytest.mark.parametrize(("text", "number", "unit"), [
    ("10,6°C", "10.6", "°C"), ("-25,0°C", "-25.0", "°C"), ("8,17bar ", "8.17", "bar"), ("8,98l/min", "8.98", "l/min"),
    ("44,341MWh", "44341", "kWh"), ("0,379MWh", "379", "kWh"), ("6157h", "6157", "h"), ("0mK", "0", "mK"),
    ("-1", "-1", ""), ("102,8", "102.8", ""), ("0,0min", "0.0", "min"), ("21,88H.M", "21.88", "H.M"),
    ("150 m³/h", "150", "m³/h"), ("Aus", "0", ""), ("Ein", "1", ""), ("Off", "0", ""), ("Tændt", "1", ""),
])
def test_value_parsing(text, number, unit):
    v = page.parse_value(text)
    assert v is not None and v.number == Decimal(number) and v.unit == unit


@pytest.mark.parametrize("text", ["12.03.2024", "-", "Störung 12-3-4", "", "---", "keine Daten"])
def test_text_that_is_not_a_number_is_skipped(text):
    assert page.parse_value(text) is None


@given(st.integers(min_value=0, max_value=10**7))
def test_mwh_shift_is_exact_for_every_three_decimal_value(thousandths):
    text = f"{thousandths // 1000},{thousandths % 1000:03d}MWh"
    v = page.parse_value(text)
    assert v is not None and v.unit == "kWh" and v.number == thousandths  # e.g. 1,001 MWh -> 1001 kWh
    sample = page.value_metric("wm_heizen_summe", "waermemenge", v)
    assert sample.value == thousandths * KWH  # exact in joules as well


@pytest.mark.parametrize(("name", "skipped"), [
    ("isttemperatur_hk2", True), ("isttemperatur_hk_2", True), ("hk2_pumpe", True), ("raumisttemp_hk2", True),
    ("isttemperatur_hk_1", False), ("hk22", False), ("schk2", False), ("hk_20", False),
])
def test_circuit_2_is_skipped_as_a_token(name, skipped):
    assert page.skipped(name, page.Options(skip_circuit2=True)) is skipped
    assert page.skipped(name, page.Options()) is False


def test_flags_persist_as_zero_and_are_not_zeroed_by_a_failed_page():
    known: dict[str, set[tuple[str, str]]] = {}
    first = page.flag_metrics({"2,0": {("verdichter", "status"), ("heizen", "status")}}, known)
    assert {dict(s.labels)["name"]: s.value for s in first} == {"verdichter": 1, "heizen": 1}
    later = page.flag_metrics({"2,0": {("heizen", "status")}}, known)
    assert {dict(s.labels)["name"]: s.value for s in later} == {"verdichter": 0, "heizen": 1}
    assert page.flag_metrics({}, known) == []  # page failed: nothing published, nothing zeroed
    back = page.flag_metrics({"2,0": {("verdichter", "status")}}, known)
    assert {dict(s.labels)["name"]: s.value for s in back} == {"verdichter": 1, "heizen": 0}


def test_a_row_without_value_or_icon_is_not_a_flag():
    html = sim.render_page("2,0", [("STATUS", [("LEER", "")])], "isg")
    assert page.parse_page(html).rows == []


def test_simulated_pages_parse_like_real_ones():
    model = sim.HeatPumpModel("wpm", start=0.0)
    v = model.values(0.0)
    html = sim.render_page("1,1", sim.page_sections("1,1", v, "wpm", (0, 0, 2)), "isg")
    s = {(x.name, dict(x.labels)["name"]): x.value for x in page.page_metrics(page.parse_page(html).rows).metrics}
    assert s[("isg_web_energy_joules_total", "wm_heizen_summe")] == 44341 * KWH
    assert s[("isg_web_pressure_pascals", "niederdruck")] == v["low_pressure"] * 100_000
    assert page.parse_page(sim.login_screen()).login


def test_gridtap_decode_isg_page(tmp_path: Path):
    path = fixture_path(*FIX, "sample_onoff.html")
    res = subprocess.run([sys.executable, "-m", "gridtap", "decode", "isg", str(path)], capture_output=True,
                         timeout=60)
    assert res.returncode == 0, res.stderr
    rows = {(r["name"], r["labels"]["name"]): r["value"] for r in json.loads(res.stdout)}
    assert rows[("isg_web_temperature_celsius", "aussentemperatur")] == 10.6
    assert rows[("isg_web_flag", "betriebszustand_2")] == 1
    login = subprocess.run([sys.executable, "-m", "gridtap", "decode", "isg",
                            str(fixture_path(*FIX, "sample_1_0.html"))], capture_output=True, timeout=60)
    assert login.returncode == 2
    assert login.stderr.decode().count("\n") == 1 and "login screen" in login.stderr.decode()


@pytest.mark.parametrize("content", [b"<html><body><p>router admin</p></body></html>", b"<\x93\xff\x00garbage" * 40])
def test_gridtap_decode_isg_of_a_page_that_is_no_isg_page(tmp_path: Path, content: bytes):
    path = tmp_path / "page.html"
    path.write_bytes(content)
    res = subprocess.run([sys.executable, "-m", "gridtap", "decode", "isg", str(path)], capture_output=True,
                         timeout=60)
    assert res.returncode == 2 and res.stdout == b""
    assert res.stderr.decode().count("\n") == 1 and "no ISG value table" in res.stderr.decode()


def test_a_page_whose_tables_are_all_text_decodes_to_nothing_without_an_error():
    html = sim.render_page("2,1", [("INBETRIEBNAHME", [("DATUM", "12.03.2024")])], "isg")
    parsed = page.parse_page(html)
    assert parsed.tables == 1 and page.page_metrics(parsed.rows).metrics == []
