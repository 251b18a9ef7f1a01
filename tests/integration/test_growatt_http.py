"""Acceptance 2: 24 simulated hours of HTTP mode against ``gridtap simulate growatt --clock
manual`` (a real process on loopback that answers 10012 to anything its limits forbid, and
to two calls closer than 3 s): no forbidden call, plant/list at most 10 times, a 10012
mid-cycle leaves stale values (not zeros) with the other devices exported, an HTML error
page is a transport error with back-off; /metrics never calls the API."""

from __future__ import annotations

import datetime as dt
import json
import urllib.request
from collections import defaultdict
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gridtap import runtime
from gridtap.budget import ManualClock
from gridtap.config import Secret
from gridtap.schedule import Collector
from gridtap_plugins.growatt.plugin import GrowattConfig, GrowattPlugin
from gridtap_plugins.growatt.simulator import DEVICES

from . import servers

pytestmark = pytest.mark.integration

CET = dt.timezone(dt.timedelta(hours=1))
START = dt.datetime(2026, 6, 21, 0, 2, tzinfo=CET).timestamp()
MIN_SN, MIX_SN, INV_SN = DEVICES["min"].sn, DEVICES["mix"].sn, DEVICES["inverter"].sn


class SimulatorClock(ManualClock):
    """The test's clock; every move (the plugin's sleeps too) is set on the simulator."""

    def __init__(self, control: str, start: float) -> None:
        self.control = control
        super().__init__(start)
        self._post({"set": start})

    def advance(self, seconds: float) -> float:
        t = super().advance(seconds)
        self._post({"set": t})
        return t

    def _post(self, body: dict) -> object:
        return control(self.control, "clock", body)


def control(base: str, what: str, body: dict | None = None) -> object:
    req = urllib.request.Request(f"{base}/_sim/{what}", data=None if body is None else json.dumps(body).encode(),
                                 method="GET" if body is None else "POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.load(resp)


def scrape(port: int) -> dict[tuple[str, frozenset], float]:
    _, _, body = servers.http_get(f"http://127.0.0.1:{port}/metrics", {"Accept": "text/plain"})
    out = {}
    for fam in text_string_to_metric_families(body.decode()):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def pick(got: dict, name: str, **labels: str) -> float | None:
    found = [v for (n, ls), v in got.items() if n == name and all((k, x) in ls for k, x in labels.items())]
    assert len(found) <= 1, (name, labels, found)
    return found[0] if found else None


def test_24_simulated_hours_of_http_mode(workdir: Path, gridtap: str) -> None:
    proc, url = servers.start_simulator("growatt", workdir, "--clock", "manual", "--start",
                                        dt.datetime.fromtimestamp(START, CET).isoformat(), "--min-spacing", "3s")
    base = url.removesuffix("/v1/")
    plugin = None
    server = None
    try:
        clock = SimulatorClock(base, START)
        cfg = GrowattConfig(token=Secret("gridtap-simulator-token-000000000"), base_url=url,
                            cache_dir=str(workdir / "cache"))
        plugin = GrowattPlugin(cfg, "roof", clock=clock)
        collector = Collector(plugin, 300)
        port = servers.free_port()
        server = runtime.open_metrics_server(f"127.0.0.1:{port}", [collector])
        seen_power = seen_night = False
        n_calls = 0
        for cycle in range(288):
            tick = START + cycle * 300
            if clock.time() < tick:
                clock.set(tick)
                clock._post({"set": tick})
            fault = None
            if cycle == 144:  # 12:02: the MIN's last-data call answers 10012
                control(base, "fault", {"endpoint": "device/tlx/tlx_last_data", "code": 10012})
                fault = "10012"
            if cycle == 150:  # 12:32: an HTML error page instead of JSON, for this collection
                control(base, "html", {"on": True, "status": 200})
                fault = "html"
            before = scrape(port) if fault else None
            batch = collector.collect_once()
            if fault == "html":
                control(base, "html", {"on": False})
            assert batch.ok, batch.error
            n_calls += len(control(base, f"calls?since={n_calls}"))
            got = scrape(port)
            if cycle % 12 == 0:  # once an hour: scrape again; the same answer, and no call made
                assert scrape(port) == got
                assert control(base, f"calls?since={n_calls}") == []
            assert pick(got, "growatt_up", device="roof") == 1.0
            power = pick(got, "growatt_ac_power_watts", device_sn=MIN_SN)
            hour = dt.datetime.fromtimestamp(clock.time(), CET).hour
            seen_power |= bool(power and power > 1000 and 11 <= hour <= 14)
            if hour in (2, 3) or hour >= 21:
                seen_night = True
                assert power is None  # the last daytime value Growatt serves all night is not shown
                assert pick(got, "growatt_ac_energy_joules_total", device_sn=MIN_SN) > 0
            if fault == "10012":
                assert before is not None
                # the MIN's values stay (not zeros), marked stale; the other devices moved on
                assert power == pick(before, "growatt_ac_power_watts", device_sn=MIN_SN) > 0
                assert pick(got, "growatt_data_timestamp_seconds", device_sn=MIN_SN) == \
                    pick(before, "growatt_data_timestamp_seconds", device_sn=MIN_SN)
                assert pick(got, "growatt_reading_stale", endpoint="device/tlx/tlx_last_data") == 1
                assert pick(got, "growatt_reading_stale", endpoint="device/mix/mix_last_data") == 0
                assert pick(got, "growatt_data_timestamp_seconds", device_sn=INV_SN) > \
                    pick(before, "growatt_data_timestamp_seconds", device_sn=INV_SN)
                assert pick(got, "growatt_api_errors_total", endpoint="device/tlx/tlx_last_data", code="10012") == 1
            if fault == "html":
                assert pick(got, "growatt_reading_stale", endpoint="plant/data") == 1
                assert pick(got, "growatt_api_errors_total", code="not_json") == 1
                assert 25 <= pick(got, "growatt_api_backoff_seconds", endpoint="*") <= 35
                assert pick(got, "growatt_ac_power_watts", device_sn=MIN_SN) == \
                    pick(before, "growatt_ac_power_watts", device_sn=MIN_SN)
            if cycle == 151:  # the collection after the HTML page: back to normal
                assert pick(got, "growatt_reading_stale", endpoint="plant/data") == 0
                assert pick(got, "growatt_api_backoff_seconds", endpoint="*") == 0
        assert seen_power and seen_night
        rc, report = servers.promtool_check_metrics(servers.http_get(f"http://127.0.0.1:{port}/metrics")[2])
        assert rc == 0 and report.strip() == "", report
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
        if plugin is not None:
            plugin.close()
        log = control(base, "calls") if proc.alive() else []
        proc.stop()

    # --- the simulator's call log, judged independently of the plugin's budget ------------
    assert log and {c["status"] for c in log} == {200}  # the HTML page came with 200 too; no 405
    refused = [c for c in log if c["code"] == 10012]
    assert [(c["endpoint"]) for c in refused] == ["device/tlx/tlx_last_data"]  # only the injected one
    gaps = [c["gap"] for c in log if c["gap"] is not None]
    assert min(gaps) >= 3.0
    last: dict[str, float] = {}
    per_key_ok = defaultdict(int)
    for c in log:
        key = c["endpoint"] + "?" + json.dumps(sorted(c["params"].items()))
        if key in last:
            assert c["t"] - last[key] >= 300, (key, c["t"] - last[key])
        last[key] = c["t"]
        per_key_ok[c["endpoint"]] += c["code"] == 0
    plant_lists = [c["t"] for c in log if c["endpoint"] == "plant/list"]
    assert 1 <= len(plant_lists) <= 10
    assert len(plant_lists) <= 5  # a 6-hour discovery cache: at most one list per 6 hours
    assert per_key_ok["device/tlx/tlx_last_data"] >= 280  # and the data kept coming every 5 minutes
    assert per_key_ok["device/mix/mix_last_data"] >= 280
