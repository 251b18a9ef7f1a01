"""Acceptance 4: ``gridtap run growatt --once --output pushgateway`` (what the systemd timer runs)
against a real prometheus-pushgateway on 127.0.0.1 leaves the metrics under the grouping key
of the device (job, plugin, device; plant and device serial where the gateway output keeps
one group per physical device), every series labelled with its plant and device, and a real
Prometheus scraping the gateway sees them."""

from __future__ import annotations

import datetime as dt
import json
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gridtap_plugins.growatt import simulator as gsim

from . import servers
from .conftest import needs

pytestmark = pytest.mark.integration

MIN_SN, MIX_SN = gsim.DEVICES["min"].sn, gsim.DEVICES["mix"].sn


def test_push_once_groups_and_prometheus_sees_it(workdir: Path, gridtap: str):
    tz = max(-12, min(14, 12 - dt.datetime.now(dt.UTC).hour))
    with needs():
        gateway = servers.start_pushgateway(workdir / "pgw")
    sim_proc, url = servers.start_simulator("growatt", workdir, "--timezone", str(tz), "--devices",
                                            "min,mix,datalogger")
    prom = None
    try:
        with needs():
            prom = servers.start_prometheus(workdir / "prom", [f"127.0.0.1:{gateway.port}"])
        res = servers.run_gridtap(["run", "growatt", "--name", "roof", "--token", gsim.DEFAULT_TOKEN, "--base-url", url,
                                   "--cache-dir", str(workdir / "cache"), "--once", "--output", "pushgateway",
                                   "--pushgateway", gateway.url], timeout=120)
        assert res.returncode == 0, res.stderr.decode()
        with urllib.request.urlopen(url.removesuffix("/v1/") + "/_sim/calls", timeout=10) as resp:
            log = json.load(resp)

        # --- the gateway ------------------------------------------------------------------
        groups = [g for g in gateway.groups() if g["labels"].get("plugin") == "growatt"]
        assert groups
        for g in groups:
            assert {"job": "gridtap", "plugin": "growatt", "device": "roof"}.items() <= g["labels"].items()
            for name, fam in g.items():
                if not isinstance(fam, dict) or "metrics" not in fam:
                    continue
                for sample in fam["metrics"]:  # a series carries the grouping labels of its group
                    assert g["labels"].items() <= sample["labels"].items(), (name, g["labels"], sample["labels"])
        _, _, body = servers.http_get(gateway.url + "/metrics", timeout=5)
        series: dict[tuple[str, frozenset], float] = {}
        for fam in text_string_to_metric_families(body.decode()):
            for s in fam.samples:
                if s.name.startswith("growatt_"):
                    series[(s.name, frozenset(s.labels.items()))] = s.value
        power = [(dict(ls), v) for (n, ls), v in series.items() if n == "growatt_ac_power_watts"]
        assert {lbl["device_sn"] for lbl, _ in power} == {MIN_SN, MIX_SN}
        for lbl, _ in power:
            assert lbl["plant_id"] == "4242" and lbl["job"] == "gridtap" and lbl["device"] == "roof"
        plant = [dict(ls) for (n, ls), _ in series.items() if n == "growatt_plant_energy_joules_total"]
        assert plant and all(lbl["plant_id"] == "4242" for lbl in plant)
        ups = [(dict(ls), v) for (n, ls), v in series.items() if n == "growatt_up"]
        assert [v for _, v in ups] == [1.0] and ups[0][0]["device"] == "roof"
        model = gsim.PlantModel(float(tz))
        t_min = next(c["t"] for c in log if c["endpoint"] == "device/tlx/tlx_last_data")
        want = gsim.min_record(model, gsim.DEVICES["min"], t_min)["eacTotal"] * 3.6e6
        pushed_total = [v for (n, ls), v in series.items() if n == "growatt_ac_energy_joules_total"
                        and ("device_sn", MIN_SN) in ls]
        assert pushed_total == [pytest.approx(want)]

        # --- Prometheus, scraping the gateway ---------------------------------------------------
        assert prom is not None

        def seen() -> list:
            return prom.query(f'growatt_ac_energy_joules_total{{device_sn="{MIN_SN}"}}')

        (result,) = servers.wait_until(seen, 60, "Prometheus to scrape growatt_ac_energy_joules_total", prom.proc)
        assert float(result["value"][1]) == pytest.approx(want)
        labels = result["metric"]
        assert (labels["job"], labels["plugin"], labels["device"], labels["plant_id"]) == \
            ("gridtap", "growatt", "roof", "4242")
        assert prom.query('growatt_up{device="roof"}')[0]["value"][1] == "1"
    finally:
        if prom is not None:
            prom.proc.stop()
        sim_proc.stop()
        gateway.proc.stop()
