"""Growatt's loose values (spec §5, §10.5): numbers, keys, sentinels, units, the guards, stale
power at night. Data made here (the spec's acceptance-test ideas §16.3 and §16.5)."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gridtap_plugins.growatt import metrics as m
from gridtap_plugins.growatt import values as v

CET = dt.timezone(dt.timedelta(hours=1))
NOON = dt.datetime(2026, 6, 21, 12, 0, tzinfo=CET).timestamp()


@pytest.mark.parametrize(("raw", "want"), [
    ("15.7", 15.7), ("0", 0.0), (" 42 ", 42.0), (21.600000381469727, 21.6), (7903.39990234375, 7903.4),
    (50.0099983215332, 50.01), (168.89999389648438, 168.9), (1625146.9, 1625146.9), (0.1 + 0.2, 0.3),
    ("", None), (None, None), ("-", None), ("84%", None), (True, None), (-0.1, None), ("-0.1", None),
    (float("nan"), None), ("inf", None), ([], None), (-5, -5.0),
])
def test_number(raw, want):
    assert v.number(raw) == want


@given(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, width=32))
def test_denoise_recovers_what_a_float32_holds(x):
    y = v.denoise(x)
    assert abs(y - x) <= max(abs(x) * 1e-6, 1e-9)
    assert float(f"{y:.7g}") == y or y == round(x, 3)  # at most 7 significant digits: no '...00000381' tails


def test_keys_are_case_and_underscore_blind_first_value_wins():
    rec = v.normalise_record({"etogridTotal": "12.5", "etoGridToday": "1.5", "e_to_grid_total": "99",
                              "eacToday": "", "EACTODAY": "3.2", 7: "x"})
    assert rec == {"etogridtotal": "12.5", "etogridtoday": "1.5", "eactoday": "3.2"}
    assert v.first(rec, ("nothere", "etogridtotal")) == 12.5


@pytest.mark.parametrize(("name", "offset"), [("GMT+8", 8), ("GMT-5", -5), ("UTC+05:30", 5.5), ("+0100", 1),
                                              ("GMT", 0), ("gmt+1", 1)])
def test_zones(name, offset):
    zone = v.parse_zone(name)
    assert zone is not None and zone.utcoffset(None) == dt.timedelta(hours=offset)


def test_zones_iana_and_bad():
    assert v.parse_zone("Europe/Berlin") is not None
    assert v.parse_zone("GMT+99") is None and v.parse_zone("Mars/Olympus") is None and v.parse_zone("") is None


def test_local_time():
    assert v.parse_local_time("2018-12-13 11:03:52", dt.timezone(dt.timedelta(hours=8))) == \
        dt.datetime(2018, 12, 13, 3, 3, 52, tzinfo=dt.UTC).timestamp()
    assert v.parse_local_time("2018-12-13 10:45", dt.UTC) == \
        dt.datetime(2018, 12, 13, 10, 45, tzinfo=dt.UTC).timestamp()
    assert v.parse_local_time("yesterday", dt.UTC) is None and v.parse_local_time(None, dt.UTC) is None


def test_lifetime_totals_never_decrease_but_a_real_reset_is_accepted():
    g = v.Guards()
    seq = [1859.5, 0.0, 1859.6, 1859.5, 1860.0]
    assert [g.total("eac", x) for x in seq] == [1859.5, None, 1859.6, None, 1860.0]
    g.resets_after = 3
    assert [g.total("eac", x) for x in (5.0, 5.1, 5.2, 5.3)] == [None, None, 5.2, 5.3]  # a replaced inverter


def test_midnight_bounce_is_suppressed():
    """Spec §16.3: eacToday 12.3 (23:55) -> 0 (00:00) -> 12.3 (00:05, stale) -> 0.2 (00:10)."""
    g = v.Guards()
    steps = [("2026-06-20", 23 * 3600 + 55 * 60, 12.3), ("2026-06-21", 0, 0.0), ("2026-06-21", 300, 12.3),
             ("2026-06-21", 600, 0.2), ("2026-06-21", 900, 0.3)]
    assert [g.today("eac", x, day, sod) for day, sod, x in steps] == [12.3, 0.0, None, 0.2, 0.3]


def test_yesterdays_value_in_the_morning_is_dropped_and_a_dip_is_a_glitch():
    g = v.Guards()
    assert g.today("e", 20.0, "2026-06-20", 19 * 3600) == 20.0
    assert g.today("e", 20.0, "2026-06-21", 6 * 3600) is None  # HA #69907: yesterday's figure at dawn
    assert g.today("e", 0.1, "2026-06-21", 6 * 3600 + 300) == 0.1
    assert g.today("e", 0.0, "2026-06-21", 6 * 3600 + 600) is None  # a 0 in the middle of a day
    assert g.today("e", 0.4, "2026-06-21", 6 * 3600 + 900) == 0.4
    assert g.today("e", 0.3, "2026-06-20", 23 * 3600) is None  # older than what was taken


def test_guards_round_trip_through_json_and_stay_bounded():
    g = v.Guards()
    g.total("a", 5.0)
    g.today("b", 1.0, "2026-06-21", 3600)
    h = v.Guards(g.to_json())
    assert h.total("a", 4.0) is None and h.today("b", 0.5, "2026-06-21", 7200) is None
    h.MAX_SERIES = 10
    for i in range(100):
        h.total(f"s{i}", 1.0)
    assert len(h.totals) <= 10


def tlx(**over) -> dict:
    base = {"serialNum": "BNE9A5100D", "time": "2026-06-21 11:55:00", "lost": False, "status": 1, "pac": 2503.8,
            "pac1": 2530.699951171875, "pac2": 0.0, "pac3": 0.0, "pacr": 0.0, "ppv": 2558.7, "ppv1": 1500.7,
            "ppv2": 1058.0, "ppv3": 0.0, "ppv4": 0.0, "vpv1": 258.6000061035156, "vpv2": 168.0, "vpv3": 0.0,
            "vpv4": 0.0, "ipv1": 5.800000190734863, "ipv2": 6.099999904632568, "ipv3": 0.0, "ipv4": 0.0,
            "vac1": 239.5, "vac2": 0.0, "vac3": 0.0, "vacRs": 239.5, "vacSt": 0.0, "vacTr": 0.0,
            "iac1": 10.699999809265137, "iac2": 0.0, "iac3": 0.0, "fac": 50.0099983215332, "pf": 1.0,
            "eacToday": 21.600000381469727, "eacTotal": 1859.5, "epv1Today": 13.199999809265137, "epv1Total": 926.6,
            "epv2Today": 8.199999809265137, "epv2Total": 906.4, "epv3Today": 0.0, "epv3Total": 0.0,
            "epvTotal": 1833.0, "temp1": 47.79999923706055, "temp2": 0.0, "temp5": 51.70000076293945,
            "bdc1Soc": 0.0, "bdc1Vbat": 0.0, "bmsSoh": 0.0, "bdc1ChargePower": 0.0, "eex1Today": -0.1,
            "pex1": -0.1, "pBusVoltage": 367.0, "nBusVoltage": 0.0, "timeTotal": 1625146.9, "faultType": 0}
    base.update(over)
    return base


def serve(record: dict, family: str = "min", now: float = NOON, options: m.Options | None = None,
          guards: v.Guards | None = None, fetched_at: float | None = None) -> dict[tuple[str, tuple], float]:
    rec = v.normalise_record(record)
    when = v.parse_local_time(rec.get("time"), CET)
    reading = m.DeviceReading("4242", "SN1", family, rec, when, rec.get("lost") is True, fetched_at=fetched_at)
    m.guard_device(reading, guards or v.Guards(), CET)
    out = m.device_metrics(reading, options or m.Options(), now, CET)
    return {(x.name, tuple((k, val) for k, val in x.labels if k not in ("plant_id", "device_sn"))): x.value
            for x in out}


def test_min_record_in_base_units():
    got = serve(tlx())
    assert got[("growatt_ac_power_watts", ())] == 2503.8
    assert got[("growatt_ac_phase_power_watts", (("phase", "1"),))] == 2530.7
    assert ("growatt_ac_phase_power_watts", (("phase", "2"),)) not in got  # single phase: 2 and 3 unused
    assert got[("growatt_grid_voltage_volts", (("phase", "1"),))] == 239.5
    assert got[("growatt_grid_line_voltage_volts", (("phases", "rs"),))] == 239.5
    assert got[("growatt_grid_frequency_hertz", ())] == 50.01
    assert got[("growatt_pv_string_voltage_volts", (("string", "1"),))] == 258.6
    assert got[("growatt_pv_string_current_amperes", (("string", "2"),))] == 6.1
    assert not any(k[0].startswith("growatt_pv_string") and ("string", "3") in k[1] for k in got)  # unused
    assert got[("growatt_ac_energy_today_joules", ())] == pytest.approx(21.6 * 3.6e6)
    assert got[("growatt_ac_energy_joules_total", ())] == 1859.5 * 3.6e6
    assert got[("growatt_pv_string_energy_joules_total", (("string", "1"),))] == pytest.approx(926.6 * 3.6e6)
    assert got[("growatt_temperature_celsius", (("sensor", "temp1"),))] == 47.8
    assert got[("growatt_temperature_celsius", (("sensor", "temp5"),))] == 51.7
    assert ("growatt_temperature_celsius", (("sensor", "temp2"),)) not in got  # 0 = no sensor
    assert got[("growatt_dc_bus_voltage_volts", (("bus", "p"),))] == 367.0
    assert ("growatt_dc_bus_voltage_volts", (("bus", "n"),)) not in got
    assert got[("growatt_device_status", ())] == 1 and isinstance(got[("growatt_device_status", ())], int)
    assert got[("growatt_data_timestamp_seconds", ())] == dt.datetime(2026, 6, 21, 11, 55, tzinfo=CET).timestamp()
    assert not any("battery" in k[0] for k in got)  # all zeros: a MIN without battery
    assert not any("operating" in k[0] for k in got)  # TLX timeTotal has no known unit
    assert not any(x == -0.1 or x == -360000.0 for x in got.values())  # the sentinel is absent


def test_stale_power_at_night_is_absent_energies_stay():
    late = dt.datetime(2026, 6, 21, 23, 30, tzinfo=CET).timestamp()  # 11h35 after the last upload
    got = serve(tlx(time="2026-06-21 11:55:00"), now=late)
    names = {k[0] for k in got}
    assert "growatt_ac_power_watts" not in names and "growatt_grid_voltage_volts" not in names
    assert "growatt_device_status" not in names
    assert got[("growatt_ac_energy_today_joules", ())] == pytest.approx(21.6 * 3.6e6)
    assert got[("growatt_ac_energy_joules_total", ())] == 1859.5 * 3.6e6
    after_midnight = dt.datetime(2026, 6, 22, 0, 30, tzinfo=CET).timestamp()
    got = serve(tlx(), now=after_midnight)
    assert ("growatt_ac_energy_today_joules", ()) not in got  # yesterday's "today" is not today's
    assert ("growatt_ac_energy_joules_total", ()) in got


def test_stale_powers_can_be_zero_instead():
    late = dt.datetime(2026, 6, 21, 23, 30, tzinfo=CET).timestamp()
    got = serve(tlx(), now=late, options=m.Options(stale_power="zero"))
    assert got[("growatt_ac_power_watts", ())] == 0.0 and got[("growatt_pv_power_watts", ())] == 0.0
    assert ("growatt_grid_voltage_volts", (("phase", "1"),)) not in got  # only powers become 0
    assert got[("growatt_ac_energy_joules_total", ())] == 1859.5 * 3.6e6


def test_lost_means_stale():
    got = serve(tlx(lost=True))
    assert ("growatt_ac_power_watts", ()) not in got and ("growatt_ac_energy_joules_total", ()) in got


def mix(**over) -> dict:
    base = {"serialNum": "SARN744005", "time": "2026-06-21 11:55:00", "lost": False, "status": "5",
            "ppv": "3.9", "ppv1": "3.9", "ppv2": "0", "pac": "0", "vpv1": "264.8", "vac1": "219.9", "fac": "50.06",
            "soc": "84", "socText": "84%", "vbat": "56.7", "pcharge1": "0", "pdischarge1": "16.5",
            "pacToGridTotal": "38.6", "pacToUserTotal": "0", "pacToUserR": "", "plocalLoadTotal": "120",
            "epvtoday": "0.5", "epvTotal": "2352.3", "etoGridToday": "0.3", "etogridTotal": "2293",
            "etoUserToday": "0", "etoUserTotal": "11991.1", "echarge1Today": "0.2", "echarge1Total": "6113.2",
            "edischarge1Today": "0.4", "edischarge1Total": "5540.6", "esystemtoday": "0.5", "bmsSoh": "47",
            "temp1": "34", "temp2": "33.1", "temp3": ""}
    base.update(over)
    return base


def test_mix_strings_lowercase_keys_battery_and_power_unit():
    got = serve(mix(), family="mix")
    assert got[("growatt_battery_state_of_charge_ratio", ())] == 0.84
    assert got[("growatt_battery_state_of_health_ratio", ())] == 0.47
    assert got[("growatt_battery_voltage_volts", ())] == 56.7
    assert got[("growatt_battery_discharge_power_watts", ())] == 16.5
    assert got[("growatt_grid_export_power_watts", ())] == 38.6
    assert got[("growatt_load_power_watts", ())] == 120.0
    assert got[("growatt_pv_energy_today_joules", ())] == 0.5 * 3.6e6  # "epvtoday", all lower case
    assert got[("growatt_grid_export_energy_joules_total", ())] == 2293 * 3.6e6  # "etogridTotal"
    assert got[("growatt_battery_charge_energy_joules_total", ())] == pytest.approx(6113.2 * 3.6e6)
    assert got[("growatt_battery_discharge_energy_today_joules", ())] == pytest.approx(0.4 * 3.6e6)
    assert ("growatt_temperature_celsius", (("sensor", "temp3"),)) not in got  # ""
    assert not any(k[0] == "growatt_grid_import_power_watts" and v_ != 0 for k, v_ in got.items())
    in_kw = serve(mix(), family="mix", options=m.Options(mix_power_unit="kW"))
    assert in_kw[("growatt_grid_export_power_watts", ())] == 38600.0


def test_classic_inverter_power_fields_are_energies_and_time_total_is_hours():
    rec = {"inverterId": "ZT00100001", "time": "2026-06-21 11:55:00", "status": 1, "pac": "812.3", "pacr": 812.3,
           "ppv": 845.0, "vacr": 231.2, "vacs": 0.0, "iacr": 3.5, "fac": "50.01", "powerToday": 4.2,
           "powerTotal": 303642.5, "epv1Today": 4.4, "epv1Total": 102709.5, "vpv1": 360.0, "temperature": 23.2,
           "ipmTemperature": 0.0, "timeTotal": "10568.9", "pBusVoltage": 140.9, "nBusVoltage": 143.1}
    got = serve(rec, family="inverter")
    assert got[("growatt_ac_power_watts", ())] == 812.3
    assert got[("growatt_grid_voltage_volts", (("phase", "1"),))] == 231.2
    assert got[("growatt_ac_energy_today_joules", ())] == pytest.approx(4.2 * 3.6e6)
    assert got[("growatt_ac_energy_joules_total", ())] == 303642.5 * 3.6e6
    assert got[("growatt_operating_seconds_total", ())] == pytest.approx(10568.9 * 3600)
    assert got[("growatt_temperature_celsius", (("sensor", "temperature"),))] == 23.2
    assert ("growatt_temperature_celsius", (("sensor", "ipm"),)) not in got
    assert got[("growatt_dc_bus_voltage_volts", (("bus", "n"),))] == 143.1


def test_guards_apply_once_per_fetch_across_the_midnight_sequence():
    g = v.Guards()
    t = lambda h, mi, day=21: dt.datetime(2026, 6, day, h, mi, tzinfo=CET).timestamp()  # noqa: E731
    seq = [("2026-06-20 23:55:00", 12.3, 1859.5, t(23, 56, 20)), ("2026-06-21 00:00:00", 0.0, 0.0, t(0, 1)),
           ("2026-06-21 00:05:00", 12.3, 1859.6, t(0, 6)), ("2026-06-21 00:10:00", 0.2, 1859.6, t(0, 11))]
    today, total = [], []
    for when, e_today, e_total, now in seq:
        got = serve(tlx(time=when, eacToday=e_today, eacTotal=e_total), now=now, guards=g)
        today.append(got.get(("growatt_ac_energy_today_joules", ())))
        total.append(got.get(("growatt_ac_energy_joules_total", ())))
    assert today == [pytest.approx(12.3 * 3.6e6), 0.0, None, pytest.approx(0.2 * 3.6e6)]
    assert total == [1859.5 * 3.6e6, None, pytest.approx(1859.6 * 3.6e6), pytest.approx(1859.6 * 3.6e6)]


def test_every_metric_has_a_display_and_base_unit_names():
    for d in m.METRICS:
        assert d.display is not None, d.name
        assert not any(bad in d.name for bad in ("kwh", "kilowatt", "percent", "_kw")), d.name
    today = [d for d in m.METRICS if d.name.endswith("_today_joules")]
    assert today and all(d.display.state_class == "total_increasing" and d.display.unit == "kWh" for d in today)


@pytest.mark.parametrize(("status", "fault", "state", "active"), [
    (1, 0, "normal", 0), (0, 0, "waiting", 0), (2, 0, "fault", 1), (3, 117, "fault", 1), (1, 27, "normal", 0),
    (5, 0, "pv_battery_online", 0), (6, 0, "battery_online", 0), (8, 0, "backup_battery", 0), (4, 0, "updating", 0),
    (42, 0, "unknown", 0),
])
def test_status_in_words_and_the_fault_flag(status, fault, state, active):
    got = serve(tlx(status=status, faultType=fault))
    assert got[("growatt_device_state", ())] == state
    assert got[("growatt_fault_active", ())] == active
    assert got[("growatt_device_status", ())] == status and got[("growatt_fault_code", ())] == fault
    assert state in m.DEVICE_STATE.states


def test_without_a_status_the_fault_code_decides():
    assert serve(tlx(status=None, faultType=27))[("growatt_fault_active", ())] == 1
    assert serve(tlx(status=None, faultType=0))[("growatt_fault_active", ())] == 0
    assert ("growatt_device_state", ()) not in serve(tlx(status=None))


def test_a_device_that_uploads_nothing_is_offline_and_says_nothing_of_faults():
    late = dt.datetime(2026, 6, 21, 23, 30, tzinfo=CET).timestamp()
    # fetched at 23:29: Growatt's newest upload was 11:55, so the inverter has been off for hours
    got = serve(tlx(time="2026-06-21 11:55:00"), now=late, fetched_at=late - 60)
    assert got[("growatt_device_state", ())] == "offline"
    assert ("growatt_fault_active", ()) not in got and ("growatt_device_status", ()) not in got
    assert serve(tlx(lost=True), fetched_at=NOON)[("growatt_device_state", ())] == "offline"
    # fetched at 12:00, served at 23:30 from an old fetch: nothing is known now, so no state at all
    got = serve(tlx(), now=late, fetched_at=NOON)
    assert ("growatt_device_state", ()) not in got and ("growatt_fault_active", ()) not in got


def test_grid_and_house_flows_only_with_a_meter():
    plain = serve(tlx(etoUserToday=0.0, etoUserTotal=0.0, etoGridToday=0.0, etoGridTotal=0.0,
                      elocalLoadToday=0.0, elocalLoadTotal=0.0, pacToGridTotal=0.0, pacToUserTotal=0.0,
                      pacToLocalLoad=0.0))
    assert not any(k[0].startswith(("growatt_grid_import", "growatt_grid_export", "growatt_load")) for k in plain)
    metered = serve(tlx(etoUserToday=0.0, etoUserTotal=1.5, etoGridToday=3.2, etoGridTotal=812.4,
                        elocalLoadToday=4.0, elocalLoadTotal=640.0, pacToGridTotal=0.0, pacToUserTotal=0.0,
                        pacToLocalLoad=0.0))
    assert metered[("growatt_grid_export_energy_joules_total", ())] == pytest.approx(812.4 * 3.6e6)
    assert metered[("growatt_grid_import_energy_today_joules", ())] == 0.0  # a real 0: the meter is there
    assert metered[("growatt_grid_import_power_watts", ())] == 0.0


@pytest.mark.parametrize(("model", "name"), [
    ("MIN 5000TL-X", "Inverter MIN 5000TL-X"), ("SPH 3000", "Inverter SPH 3000"), ("A0B0D0T0PFU1M3S4", "Inverter"),
    ("a0b0d0t0p0u0m0s0", "Inverter"), ("", "Inverter"), ("  MOD  10KTL3-X ", "Inverter MOD 10KTL3-X"),
    ("Inverter 3000-S", "Inverter 3000-S"),
])
def test_device_names_say_what_it_is_never_a_code(model, name):
    assert m.device_name(model) == name
