"""The budgeted scheduler against the simulator on loopback, on a manual clock shared by both:
verbs and parameters per family, 10012 mid-cycle, 10011 on discovery and on one optional
endpoint, HTML instead of JSON, restarts that keep the discovery cache, device filters."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from gridtap.budget import ManualClock
from gridtap.config import Duration, Secret
from gridtap.errors import DeviceError
from gridtap_plugins.growatt.plugin import GrowattConfig, GrowattPlugin
from gridtap_plugins.growatt.simulator import DEVICES, GrowattSimulator
from tests.plugins.growatt.shared_clock import SharedClock

NOON = dt.datetime(2026, 6, 21, 12, 2, tzinfo=dt.timezone(dt.timedelta(hours=1))).timestamp()
MIN_SN, MIX_SN, INV_SN = DEVICES["min"].sn, DEVICES["mix"].sn, DEVICES["inverter"].sn


@pytest.fixture
def sim() -> Iterator[GrowattSimulator]:
    s = GrowattSimulator(manual_clock=True, start=NOON, min_spacing=3.0)
    s.start()
    try:
        yield s
    finally:
        s.stop()


def plugin(sim: GrowattSimulator, cache: Path, clock: ManualClock, **kw) -> GrowattPlugin:
    cfg = GrowattConfig(token=Secret(sim.token), base_url=sim.url, cache_dir=str(cache), **kw)
    return GrowattPlugin(cfg, "roof", clock=clock)


def samples(metrics: list) -> dict[tuple[str, frozenset], float]:
    return {(x.name, frozenset(x.labels)): x.value for x in metrics}


def value(metrics: list, name: str, **labels: str):
    found = [x.value for x in metrics if x.name == name and all(dict(x.labels).get(k) == v for k, v in labels.items())]
    assert len(found) == 1, (name, labels, found)
    return found[0]


def calls(sim: GrowattSimulator, since: int = 0) -> list[tuple[str, str, dict]]:
    return [(c["method"], c["endpoint"], c["params"]) for c in list(sim.calls)[since:]]


def test_first_collection_uses_the_right_verb_and_parameter_per_family(sim, tmp_path, caplog):
    caplog.set_level(logging.INFO, "gridtap.growatt")
    clock = SharedClock(sim)
    p = plugin(sim, tmp_path, clock)
    out = p.collect()
    got = calls(sim)
    assert got[:6] == [
        ("GET", "plant/list", {}),
        ("GET", "device/list", {"plant_id": "4242", "page": "1", "perpage": "100"}),
        ("GET", "plant/data", {"plant_id": "4242"}),
        ("POST", "device/tlx/tlx_last_data", {"tlx_sn": MIN_SN}),
        ("POST", "device/mix/mix_last_data", {"mix_sn": MIX_SN}),
        ("GET", "device/inverter/last_new_data", {"device_sn": INV_SN}),
    ]
    assert got[6] == ("GET", "plant/details", {"plant_id": "4242"})  # one optional call per collection
    assert all(c["status"] == 200 and c["code"] == 0 for c in sim.calls)  # no 405, no 10012
    assert all(c["gap"] is None or c["gap"] >= 3.0 for c in sim.calls)
    assert "skipped JPC281833B (datalogger / smart meter / sensor: not read)" in caplog.text
    assert value(out, "growatt_ac_power_watts", device_sn=MIN_SN) > 1000  # noon in June
    assert value(out, "growatt_battery_state_of_charge_ratio", device_sn=MIX_SN) > 0.2
    assert value(out, "growatt_ac_power_watts", device_sn=INV_SN) > 300
    assert value(out, "growatt_reading_stale", endpoint="device/tlx/tlx_last_data") == 0
    infos = {dict(x.labels)["device_sn"]: dict(x.labels)["family"] for x in out if x.name == "growatt_device_info"}
    assert infos == {MIN_SN: "min", MIX_SN: "mix", INV_SN: "inverter"}


def test_10012_mid_cycle_serves_the_last_values_stale_and_the_other_devices_fresh(sim, tmp_path):
    clock = SharedClock(sim)
    p = plugin(sim, tmp_path, clock)
    first = p.collect()
    clock.advance(300)
    sim.faults["device/tlx/tlx_last_data"].append(10012)
    n = len(sim.calls)
    second = p.collect()
    assert [c["code"] for c in list(sim.calls)[n:] if c["endpoint"] == "device/tlx/tlx_last_data"] == [10012]
    # MIN: the previous values, not zeros, with their own data time, marked stale and aged
    for name in ("growatt_ac_power_watts", "growatt_ac_energy_joules_total", "growatt_data_timestamp_seconds"):
        assert value(second, name, device_sn=MIN_SN) == value(first, name, device_sn=MIN_SN) != 0
    assert value(second, "growatt_reading_stale", endpoint="device/tlx/tlx_last_data") == 1
    assert value(second, "growatt_reading_age_seconds", endpoint="device/tlx/tlx_last_data") >= 300
    # the other devices: refreshed, moved on, fresh
    assert value(second, "growatt_reading_stale", endpoint="device/mix/mix_last_data") == 0
    assert value(second, "growatt_data_timestamp_seconds", device_sn=INV_SN) == \
        value(first, "growatt_data_timestamp_seconds", device_sn=INV_SN) + 300
    diag = p.diagnostics()
    assert value(diag, "growatt_api_errors_total", endpoint="device/tlx/tlx_last_data", code="10012") == 1
    # no second call of that request inside its window, whatever the cadence
    for _ in range(4):
        clock.advance(60)
        n = len(sim.calls)
        p.collect()
        assert "device/tlx/tlx_last_data" not in [c["endpoint"] for c in list(sim.calls)[n:]]
    clock.advance(61)
    n = len(sim.calls)
    third = p.collect()
    assert "device/tlx/tlx_last_data" in [c["endpoint"] for c in list(sim.calls)[n:]]
    assert value(third, "growatt_reading_stale", endpoint="device/tlx/tlx_last_data") == 0
    assert not any(c["code"] == 10012 for c in list(sim.calls)[n:])


def test_10011_on_an_optional_endpoint_switches_it_off_for_that_device_only(sim, tmp_path):
    sim.denied.add("device/tlx/tlx_data_info")
    clock = SharedClock(sim)
    p = plugin(sim, tmp_path, clock)
    for _ in range(5):
        out = p.collect()
        clock.advance(300)
    info_calls = [c for c in sim.calls if c["endpoint"] == "device/tlx/tlx_data_info"]
    assert [c["code"] for c in info_calls] == [10011]  # asked once, then left alone
    assert value(out, "growatt_ac_power_watts", device_sn=MIN_SN) > 0  # the device carries on
    diag = p.diagnostics()
    assert value(diag, "growatt_api_disabled", endpoint="device/tlx/tlx_data_info", target=MIN_SN) == 1
    firmware = {dict(x.labels)["device_sn"]: dict(x.labels)["firmware"] for x in out if x.name == "growatt_device_info"}
    assert firmware[MIN_SN] == "" and firmware[MIX_SN] == "MIAA10"  # the others got their info


def test_a_refused_token_is_one_clear_error_a_long_back_off_and_no_retry_storm(sim, tmp_path):
    clock = SharedClock(sim)
    cfg = GrowattConfig(token=Secret("0123456789abcdef0123456789abcdef"), base_url=sim.url, cache_dir=str(tmp_path))
    p = GrowattPlugin(cfg, "roof", clock=clock)
    with pytest.raises(DeviceError) as e:
        p.collect()
    msg = str(e.value)
    assert "refused the token (10011" in msg and "plant/list" in msg and "next try after" in msg
    assert "0123456789abcdef" not in msg and "\n" not in msg
    for _ in range(12):  # an hour of 5-minute collections
        clock.advance(300)
        with pytest.raises(DeviceError, match="token"):
            p.collect()
    assert [c["endpoint"] for c in sim.calls] == ["plant/list", "plant/list"]  # 30 min back-off, then once more
    assert 1620 <= sim.calls[1]["t"] - sim.calls[0]["t"] <= 2100  # the next 5-minute tick after 30 min +-10%
    assert value(p.diagnostics(), "growatt_api_errors_total", endpoint="plant/list", code="10011") == 2


def test_a_token_revoked_while_running_takes_the_device_down(sim, tmp_path):
    clock = SharedClock(sim)
    p = plugin(sim, tmp_path, clock)
    p.collect()
    clock.advance(300)
    sim.revoked = True
    p.collect()  # 10011 on data that worked: served stale, the device list is read again next time
    clock.advance(300)
    with pytest.raises(DeviceError, match="refused the token"):
        p.collect()
    clock.advance(300)
    n = len(sim.calls)
    with pytest.raises(DeviceError, match="token refused"):
        p.collect()
    assert len(sim.calls) == n  # backing off: no call at all


def test_an_html_page_is_a_transport_error_with_growing_back_off(sim, tmp_path):
    clock = SharedClock(sim)
    p = plugin(sim, tmp_path, clock)
    good = p.collect()
    clock.advance(300)
    sim.html = 200
    n = len(sim.calls)
    out = p.collect()  # no crash: the first call fails, every other call waits
    assert len(sim.calls) == n + 1
    assert value(out, "growatt_reading_stale", endpoint="plant/data") == 1
    assert value(out, "growatt_ac_power_watts", device_sn=MIN_SN) == value(good, "growatt_ac_power_watts",
                                                                           device_sn=MIN_SN)
    diag = p.diagnostics()
    assert value(diag, "growatt_api_errors_total", endpoint="plant/data", code="not_json") == 1
    assert 26 <= value(diag, "growatt_api_backoff_seconds", endpoint="*") <= 34
    clock.advance(5)
    n = len(sim.calls)
    p.collect()
    assert len(sim.calls) == n  # still backing off
    clock.advance(30)
    sim.html = 502
    p.collect()
    assert sim.calls[-1]["status"] == 502
    assert 52 <= value(p.diagnostics(), "growatt_api_backoff_seconds", endpoint="*") <= 68  # doubled
    assert value(p.diagnostics(), "growatt_api_errors_total", code="http_502") == 1
    clock.advance(300)
    sim.html = None
    out = p.collect()
    assert value(out, "growatt_reading_stale", endpoint="plant/data") == 0
    assert value(p.diagnostics(), "growatt_api_backoff_seconds", endpoint="*") == 0


def test_a_restart_reuses_the_discovery_and_the_budget(sim, tmp_path):
    clock = SharedClock(sim)
    plugin(sim, tmp_path, clock).collect()
    clock.advance(30)
    n = len(sim.calls)
    again = plugin(sim, tmp_path, clock).collect()  # a new process: --once, a restart
    assert calls(sim, n) == [("GET", "device/tlx/tlx_data_info", {"device_sn": MIN_SN})]  # only an optional one
    assert value(again, "growatt_reading_stale", endpoint="device/tlx/tlx_last_data") == 1  # from the file
    assert value(again, "growatt_ac_power_watts", device_sn=MIN_SN) > 0


def test_plant_id_and_device_sn_filters(sim, tmp_path):
    clock = SharedClock(sim)
    p = plugin(sim, tmp_path, clock, plant_id="4242", device_sn=[MIX_SN])
    out = p.collect()
    endpoints = [c["endpoint"] for c in sim.calls]
    assert "plant/list" not in endpoints
    assert "device/mix/mix_last_data" in endpoints and "device/tlx/tlx_last_data" not in endpoints
    assert {dict(x.labels)["device_sn"] for x in out if x.name == "growatt_device_info"} == {MIX_SN}


def test_nothing_to_serve_is_a_device_error_and_diagnostics_stay(sim, tmp_path):
    sim.html = 503
    clock = SharedClock(sim)
    p = plugin(sim, tmp_path, clock)
    with pytest.raises(DeviceError, match="HTTP 503"):
        p.collect()
    assert value(p.diagnostics(), "growatt_api_errors_total", endpoint="plant/list", code="http_503") == 1


def test_count_mismatch_is_logged_once(sim, tmp_path, caplog):
    sim.count_mismatch = True
    clock = SharedClock(sim)
    p = plugin(sim, tmp_path, clock, discovery_ttl=Duration(600))
    for _ in range(5):
        p.collect()
        clock.advance(300)
    assert caplog.text.count("says count 6 but lists 4 device(s)") == 1


def test_status_tells_the_budget_and_never_the_token(sim, tmp_path):
    import json

    clock = SharedClock(sim)
    p = plugin(sim, tmp_path, clock)
    p.collect()
    sim.faults["device/mix/mix_last_data"].append(10012)
    clock.advance(300)
    p.collect()
    status = json.loads(json.dumps(p.status()))
    assert status["discovery"]["plants"] == ["4242"]
    assert status["budget"]["calls_today"]["plant/list"] == 1
    blocked = status["budget"]["blocked"]
    assert any("mix_last_data" in k and v["reason"] == "10012 rate limited by Growatt" for k, v in blocked.items())
    assert sim.token not in json.dumps(status)


def test_an_empty_device_list_is_read_again_hourly_without_spending_plant_lists(sim, tmp_path):
    """The real capture's `count: 1, devices: []`: plant data goes on, device/list is asked again
    every hour, plant/list (10 a day) only every discovery_ttl."""
    kept = sim.devices
    sim.devices = []
    clock = SharedClock(sim)
    p = plugin(sim, tmp_path, clock)
    for i in range(24 * 12):  # a day of collections
        if i == 150:
            sim.devices = kept  # the devices come back at 12:32
        out = p.collect()
        clock.advance(300)
    endpoints = [c["endpoint"] for c in sim.calls]
    assert endpoints.count("plant/list") == 4  # every 6 hours
    assert 13 <= endpoints.count("device/list") <= 16  # hourly until the devices came back, then 6-hourly
    assert value(out, "growatt_ac_energy_joules_total", device_sn=MIN_SN) > 0


def test_a_collection_that_changes_nothing_writes_no_file(sim, tmp_path):
    """Inside a rate window nothing is fetched, so neither the cache nor the budget file is
    rewritten (each write is an fsync; on a Raspberry Pi that is its SD card)."""
    clock = SharedClock(sim)
    p = plugin(sim, tmp_path, clock)
    for _ in range(5):  # the live calls and every optional one (plant/details, three *_data_info)
        p.collect()
        clock.advance(300)
    clock.advance(-240)
    files = {f.name: f.stat().st_ino for f in tmp_path.iterdir() if f.suffix == ".json"}
    n = len(sim.calls)
    for _ in range(3):
        clock.advance(10)
        out = p.collect()
    assert len(sim.calls) == n  # nothing was due
    assert value(out, "growatt_reading_stale", endpoint="device/tlx/tlx_last_data") == 0
    assert {f.name: f.stat().st_ino for f in tmp_path.iterdir() if f.suffix == ".json"} == files  # not replaced


def test_a_listed_device_that_does_not_exist_spends_no_plant_lists(sim, tmp_path):
    """A device the device list keeps listing but whose last data says "device does not exist"
    (10002) reads the device list again - not plant/list, which allows 10 calls a day - and
    backs off, so a day of it neither spends the plant lists nor asks device/list every time."""
    sim.faults["device/tlx/tlx_last_data"].extend([10002] * 1000)
    clock = SharedClock(sim)
    p = plugin(sim, tmp_path, clock)
    for _ in range(24 * 12):
        out = p.collect()
        clock.advance(300)
    endpoints = [c["endpoint"] for c in sim.calls]
    assert endpoints.count("plant/list") == 4  # every discovery_ttl (6 h), as without the fault
    assert endpoints.count("device/list") <= 30
    assert endpoints.count("device/tlx/tlx_last_data") <= 30
    assert endpoints.count("device/mix/mix_last_data") >= 280  # the others carry on every 5 minutes
    assert value(out, "growatt_ac_power_watts", device_sn=MIX_SN) >= 0


def test_a_plant_that_does_not_exist_reads_the_plant_list_at_most_hourly(sim, tmp_path):
    sim.faults["plant/data"].extend([10002] * 1000)
    clock = SharedClock(sim)
    p = plugin(sim, tmp_path, clock)
    start = clock.time()
    for _ in range(12 * 12):  # 12 hours
        p.collect()
        clock.advance(300)
    lists = [c["t"] - start for c in sim.calls if c["endpoint"] == "plant/list"]
    assert len(lists) <= 8 and all(b - a >= 3600 for a, b in zip(lists, lists[1:], strict=False)), lists
    assert [c["endpoint"] for c in sim.calls].count("device/tlx/tlx_last_data") >= 140  # devices carry on


def test_a_token_that_sees_no_plant_does_not_spend_the_day_in_an_hour(tmp_path):
    """Web-portal tokens often get an empty plant list. Asking again every collection would
    spend the 10 plant lists a day within 50 minutes; gridtap asks again every 3 hours."""
    replies = tmp_path / "replies"
    replies.mkdir()
    (replies / "plant_list.empty.json").write_text('{"error_code": 0, "error_msg": "", '
                                                  '"data": {"count": 0, "plants": []}}')
    sim = GrowattSimulator(replay=replies, manual_clock=True, start=NOON, min_spacing=3.0)
    sim.start()
    try:
        clock = SharedClock(sim)
        p = plugin(sim, tmp_path / "cache", clock)
        said = []
        for _ in range(12 * 12):  # 12 hours of 5-minute collections
            with pytest.raises(DeviceError, match="(lists|listed) no plant") as e:
                p.collect()
            said.append(str(e.value))
            clock.advance(300)
        assert "ShinePhone app" in said[0] and "next try after 2026-06-21 14:02:00 UTC" in said[0]
        assert "next call allowed at 2026-06-21 14:02:00 UTC (back-off: plant/list listed no plant)" in said[1]
        assert [c["endpoint"] for c in sim.calls].count("plant/list") == 4  # at 0, 3, 6 and 9 hours
    finally:
        sim.stop()


def test_two_pollers_sharing_a_cache_both_serve_the_newest_values(sim, tmp_path):
    """Two processes on one token and one cache_dir (an exporter and a push timer, say): the
    budget lets only one of them call, and the other serves what that one fetched (marked
    stale, with its real age) instead of its own ever older values - which after stale_after
    would be none at all."""
    clock = SharedClock(sim)
    a, b = plugin(sim, tmp_path, clock), plugin(sim, tmp_path, clock)
    for _ in range(24):  # two hours: a collects first every time, b 20 s later
        got_a = a.collect()
        clock.advance(20)
        got_b = b.collect()
        clock.advance(280)
    assert value(got_b, "growatt_data_timestamp_seconds", device_sn=MIN_SN) == \
        value(got_a, "growatt_data_timestamp_seconds", device_sn=MIN_SN)
    assert value(got_b, "growatt_ac_energy_joules_total", device_sn=MIN_SN) == \
        value(got_a, "growatt_ac_energy_joules_total", device_sn=MIN_SN)
    assert value(got_b, "growatt_reading_age_seconds", endpoint="device/tlx/tlx_last_data") < 60
    assert value(got_b, "growatt_reading_stale", endpoint="device/tlx/tlx_last_data") == 1  # not its own call
    assert not [c for c in sim.calls if c["code"] != 0]  # and the two never made a refused call


def test_a_dead_cloud_goes_down_within_stale_after_and_says_why(sim, tmp_path, caplog):
    caplog.set_level(logging.WARNING, "gridtap.growatt")
    clock = SharedClock(sim)
    p = plugin(sim, tmp_path, clock, stale_after=Duration(1800))
    p.collect()
    sim.html = 502
    for _ in range(5):  # 25 minutes: served, marked stale
        clock.advance(300)
        out = p.collect()
        assert value(out, "growatt_reading_stale", endpoint="device/tlx/tlx_last_data") == 1
    clock.advance(600)
    with pytest.raises(DeviceError, match=r"no values fetched within stale_after \(30 min\)"):
        p.collect()
    assert "stay served" not in caplog.text


def test_a_10012_with_nothing_cached_does_not_claim_stale_values(sim, tmp_path, caplog):
    caplog.set_level(logging.WARNING, "gridtap.growatt")
    sim.faults["plant/list"].append(10012)
    clock = SharedClock(sim)
    with pytest.raises(DeviceError, match="no plant and device list yet"):
        plugin(sim, tmp_path, clock).collect()
    assert "plant/list answered 10012 (rate limited); no call before" in caplog.text
    assert "stay served" not in caplog.text
