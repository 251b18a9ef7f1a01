"""``gridtap run growatt --once --output mqtt`` against a real Mosquitto: Home Assistant discovery
the Energy dashboard accepts (solar, grid and battery energies in kWh, "today" energies
total_increasing, lifetime totals as meters), retained so HA finds them after the run."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from pathlib import Path

import pytest

from gridtap_plugins.growatt import simulator as gsim

from . import servers
from .conftest import needs

pytestmark = pytest.mark.integration


def test_mqtt_discovery_for_the_energy_dashboard(workdir: Path, gridtap: str):
    with needs():
        mosquitto = servers.require("mosquitto", "install the Debian package `mosquitto` (tests/setup-and-run.sh)")
        sub = servers.require("mosquitto_sub", "install the Debian package `mosquitto-clients`")
    port = servers.free_port()
    conf = workdir / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stdout\n")
    broker = servers.spawn("mosquitto", [mosquitto, "-c", str(conf)], workdir)
    tz = max(-12, min(14, 12 - dt.datetime.now(dt.UTC).hour))
    sim, url = servers.start_simulator("growatt", workdir, "--timezone", str(tz), "--devices", "min,mix")
    try:
        servers.wait_until(lambda: subprocess.run([sub, "-h", "127.0.0.1", "-p", str(port), "-t", "x", "-W", "1"],
                                                  capture_output=True).returncode in (0, 27), 10, "mosquitto", broker)
        res = servers.run_gridtap(["run", "growatt", "--name", "roof", "--token", gsim.DEFAULT_TOKEN, "--base-url", url,
                                   "--cache-dir", str(workdir / "cache"), "--once", "--output", "mqtt", "--mqtt",
                                   f"127.0.0.1:{port}"], timeout=120)
        assert res.returncode == 0, res.stderr.decode()
        got = subprocess.run([sub, "-h", "127.0.0.1", "-p", str(port), "-t", "homeassistant/#", "-t", "gridtap/#",
                              "-v", "-W", "3"], capture_output=True, timeout=30)
    finally:
        sim.stop()
        broker.stop()
    configs: dict[str, dict] = {}
    for line in got.stdout.decode().splitlines():
        topic, _, payload = line.partition(" ")
        if not payload:
            continue
        doc = json.loads(payload) if payload.startswith("{") else None
        if doc is None:
            continue
        if topic.endswith("/config"):
            configs[topic] = doc
    assert configs

    def entity(fragment: str) -> dict:
        found = [c for t, c in configs.items() if fragment in t or fragment in json.dumps(c.get("value_template", ""))]
        assert found, (fragment, sorted(configs)[:20])
        return found[0]

    # The Energy dashboard takes energy sensors with state_class total or total_increasing. The
    # plugin declares total_increasing for its "today" gauges (Display.state_class); an HA output
    # that does not read the hints yet says total for an energy gauge, which is accepted too.
    for key, classes in (("ac_energy_today", {"total_increasing", "total"}),
                         ("grid_import_energy_today", {"total_increasing", "total"}),
                         ("ac_energy_joules_total", {"total_increasing"}),
                         ("grid_export_energy_joules_total", {"total_increasing"}),
                         ("battery_charge_energy_joules_total", {"total_increasing"}),
                         ("battery_discharge_energy_joules_total", {"total_increasing"})):
        e = entity(key)
        assert e.get("device_class") == "energy" and e.get("unit_of_measurement") == "kWh", e
        assert e.get("state_class") in classes, e
    soc = entity("battery_state_of_charge")
    assert soc.get("unit_of_measurement") == "%" and "* 100" in soc.get("value_template", "")  # ratio -> %
