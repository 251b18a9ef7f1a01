"""Acceptance 1: every shared Growatt fixture response decodes to the right metrics.

The fixtures (shared/fixtures/growatt/openapi_v1: Growatt's documented examples, a real
``count: 1, devices: []`` capture, an error envelope) are read in place and skipped where
absent. Values are checked in base units: kWh x 3.6e6 J, kW x 1000 W.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path

import pytest

from gridtap.budget import ManualClock
from gridtap.config import Duration, Secret
from gridtap_plugins.growatt import api, backfill, poller
from gridtap_plugins.growatt import metrics as m
from gridtap_plugins.growatt import values as v
from gridtap_plugins.growatt.plugin import GrowattConfig, GrowattPlugin
from gridtap_plugins.growatt.simulator import GrowattSimulator
from tests.conftest import fixture_path

GMT8 = dt.timezone(dt.timedelta(hours=8))


def reply(name: str, endpoint: str) -> api.Reply:
    return api.parse_envelope(endpoint, fixture_path("growatt", "openapi_v1", name).read_bytes())


def by_name(metrics: list) -> dict[str, list]:
    out: dict[str, list] = {}
    for x in metrics:
        out.setdefault(x.name, []).append(x)
    return out


def test_plant_data_doc_example():
    r = reply("plant_data.doc.json", "plant/data")
    record = v.normalise_record(r.data)
    now = dt.datetime(2018, 12, 13, 11, 10, tzinfo=GMT8).timestamp()
    zone = v.parse_zone(record["timezone"])
    got = {x.name: (x.value, dict(x.labels)) for x in m.plant_metrics("1185", record, m.Options(), now, zone)}
    assert got == {
        "growatt_plant_power_watts": (0.0, {"plant_id": "1185"}),  # current_power 0 (kW)
        "growatt_plant_energy_today_joules": (0.0, {"plant_id": "1185"}),  # "0"
        "growatt_plant_energy_month_joules": (15.7 * 3.6e6, {"plant_id": "1185"}),  # "15.7" kWh
        "growatt_plant_energy_year_joules": (15.7 * 3.6e6, {"plant_id": "1185"}),
        "growatt_plant_energy_joules_total": (15.7 * 3.6e6, {"plant_id": "1185"}),
        "growatt_plant_peak_power_watts": (20000.0, {"plant_id": "1185"}),  # peak_power_actual 20 kWp
        # "2018-12-13 11:06:34" at GMT+8
        "growatt_plant_data_timestamp_seconds": (dt.datetime(2018, 12, 13, 3, 6, 34, tzinfo=dt.UTC).timestamp(),
                                                 {"plant_id": "1185"}),
    }
    assert got["growatt_plant_energy_month_joules"][0] == 56_520_000.0
    # "efficiency": "" is absent, not 0; carbon_offset is not exported


def test_plant_data_of_another_day_drops_the_period_energies_and_the_stale_power():
    record = v.normalise_record(reply("plant_data.doc.json", "plant/data").data)
    next_year = dt.datetime(2019, 1, 2, 9, 0, tzinfo=GMT8).timestamp()
    names = {x.name for x in m.plant_metrics("1185", record, m.Options(), next_year, GMT8)}
    assert names == {"growatt_plant_energy_joules_total", "growatt_plant_peak_power_watts",
                     "growatt_plant_data_timestamp_seconds"}


def test_plant_list_doc_example():
    r = reply("plant_list.doc.json", "plant/list")
    plants = poller._plants(r.data, lambda *a: None)
    assert list(plants) == ["1185"]  # the number 1185 is the plant_id label "1185"
    info = m.plant_info("1185", plants["1185"])
    assert info.name == "growatt_plant_info" and info.value == 1
    assert dict(info.labels) == {"plant_id": "1185", "name": "9", "timezone": "", "city": "0", "country": "China"}
    assert v.number(plants["1185"]["current_power"]) is None  # "" is absent, never 0


def test_plant_details_doc_example():
    record = v.normalise_record(reply("plant_details.doc.json", "plant/details").data)
    info = m.plant_info("1185", record)
    assert dict(info.labels) == {"plant_id": "1185", "name": "API interface test power station",
                                 "timezone": "GMT+8", "city": "Shenzhen", "country": "China"}
    assert v.first(record, ("peakpower",)) == 20.0
    assert v.parse_zone(record["timezone"]) == GMT8


def test_device_list_doc_example_trusts_the_list_and_logs_the_count(caplog):
    r = reply("device_list.doc.json", "device/list")
    said = []
    rows = poller._devices("1185", r.data, lambda topic, level, text: said.append((level, text)))
    assert said == [(logging.WARNING, "device/list of plant 1185 says count 3 but lists 1 device(s) (a known Growatt "
                                      "API inconsistency); using the list")]
    (dev,) = [poller._device("1185", row) for row in rows]
    assert (dev.sn, dev.type, dev.family) == ("ZT00100001", 1, api.FAMILIES[1])
    assert dev.family.last is api.INV_LAST and dev.family.last.method == "GET" and dev.family.last_param == "device_sn"
    info = m.device_info("1185", dev.record, dev.family.name)
    assert dict(info.labels) == {"plant_id": "1185", "device_sn": "ZT00100001", "family": "inverter", "type": "1",
                                 "model": "A0B0D0T0PFU1M3S4", "datalogger_sn": "CRAZT00001", "firmware": "",
                                 "name": "Inverter"}  # a model code names no product (README: Home Assistant)


def test_real_capture_count_one_without_devices():
    r = reply("device_list_count_without_devices.issue.json", "device/list")
    said = []
    assert poller._devices("1185", r.data, lambda *a: said.append(a[2])) == []
    assert said and "count 1 but lists 0" in said[0]


def test_error_envelope_is_a_permission_error():
    with pytest.raises(api.ApiError) as e:
        reply("error_10011_permission_denied.json", "plant/list")
    assert e.value.error_code == 10011 and e.value.code == "10011"
    assert e.value.problem is api.Problem.AUTH and e.value.message == "error_permission_denied"


def test_plant_energy_day_doc_example():
    r = reply("plant_energy_day.doc.json", "plant/energy")
    assert backfill.daily_energy(r.data) == {dt.date(2018, 12, 12): 0.0}  # "energy": "0" (a string)


def test_plant_power_doc_example_is_sorted_and_averaged_per_hour():
    r = reply("plant_power.doc.json", "plant/power")
    points = backfill.power_points(r.data, GMT8)
    t1040 = dt.datetime(2018, 12, 13, 10, 40, tzinfo=GMT8).timestamp()
    assert points == [(t1040, 7689.7), (t1040 + 300, 7903.4)]  # newest-first in the reply; float noise gone
    assert backfill.hourly_means(points, GMT8) == [(t1040 - 40 * 60, round((7689.7 + 7903.4) / 2, 3))]
    assert max(w for _, w in points) == 7903.4


def test_device_day_energy_doc_example_bare_number_beside_identifiers():
    r = reply("device_day_energy.doc.json", "device/inverter/day_energy")
    assert r.extra == {"datalogger_sn": "KHD1850045", "device_sn": "NOD1851006"}
    sample = m.day_energy_metric(r.data, r.extra)
    assert sample is not None and sample.name == "growatt_device_daily_energy_joules"
    assert sample.value == 168.9 * 3.6e6 == 608_040_000.0  # 168.89999389648438 kWh, float32 noise rounded
    assert dict(sample.labels) == {"device_sn": "NOD1851006", "datalogger_sn": "KHD1850045"}


def test_the_doc_examples_through_the_whole_plugin(tmp_path: Path):
    """The plugin reading a simulator that replays the fixture files: discovery, plant/data,
    and a device whose last data the replay does not have (only its info stays)."""
    folder = fixture_path("growatt", "openapi_v1")
    sim = GrowattSimulator(replay=folder, window=300)
    sim.start()
    try:
        clock = ManualClock(dt.datetime(2018, 12, 13, 11, 10, tzinfo=GMT8).timestamp())
        sim.manual, sim._now = True, clock.time()
        cfg = GrowattConfig(token=Secret(sim.token), base_url=sim.url, cache_dir=str(tmp_path),
                            call_spacing=Duration(3.0))
        plugin = GrowattPlugin(cfg, "doc", clock=clock)

        def synced_sleep(seconds: float) -> None:
            clock.advance(seconds)
            sim.set_time(clock.time())

        clock.sleep = synced_sleep  # type: ignore[method-assign]
        got = by_name(plugin.collect())
        plugin.close()
    finally:
        sim.stop()
    assert [dict(x.labels)["name"] for x in got["growatt_plant_info"]] == ["API interface test power station"]
    assert got["growatt_plant_energy_joules_total"][0].value == 56_520_000.0
    assert got["growatt_plant_power_watts"][0].value == 0.0
    (info,) = got["growatt_device_info"]
    assert dict(info.labels)["device_sn"] == "ZT00100001"
    assert "growatt_ac_power_watts" not in got  # last_new_data is not in the replay: nothing made up
    calls = [(c["method"], c["endpoint"]) for c in sim.calls]
    assert calls[:4] == [("GET", "plant/list"), ("GET", "device/list"), ("GET", "plant/data"),
                         ("GET", "device/inverter/last_new_data")]
    assert all(c["gap"] is None or c["gap"] >= 3.0 for c in sim.calls)


def test_fixture_json_is_valid_for_the_replay():
    folder = fixture_path("growatt", "openapi_v1")
    for path in folder.glob("*.json"):
        json.loads(path.read_text())
