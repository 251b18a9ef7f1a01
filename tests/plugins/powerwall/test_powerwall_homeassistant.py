"""How the Powerwall reads in Home Assistant: the discovery configs the MQTT output makes of the
simulated gateway (firmware 23.28: two battery blocks and a site meter), held to what a Home
Assistant user would design (plugins/powerwall/README.md, "Home Assistant")."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from gridtap import schedule
from gridtap.outputs import mqtt
from tests.mqtt_recorder import RecordingClient


def configs_of(plugin: Any) -> list[dict[str, Any]]:
    pub = mqtt.MqttPublisher("127.0.0.1", 1, devices=[("powerwall", "home")])
    pub._client = RecordingClient()  # type: ignore[assignment]
    batch = schedule.Collector(plugin, 15.0).collect_once()
    assert batch.ok, batch.error
    batch.device = "home"
    pub.publish([batch])
    return pub._client.discovery()  # type: ignore[attr-defined]


def on_dashboard(c: dict[str, Any]) -> bool:
    return "entity_category" not in c and c.get("enabled_by_default", True)


#: "<device> <entity>" of the enabled, non-diagnostic entities of the simulated site.
DASHBOARD = {
    *(f"home {n}" for n in ("Grid power", "Home power", "Solar power", "Battery power", "Battery charge",
                            "Backup reserve", "Battery stored energy", "Grid", "Grid import", "Grid export",
                            "Solar production", "Home consumption", "Battery energy in", "Battery energy out")),
    *(f"Battery {i} {n}" for i in (1, 2) for n in ("Stored energy", "Energy charged", "Energy discharged")),
}


def test_each_battery_and_meter_is_a_device_of_its_own_made_by_tesla(sim, make_plugin):
    configs = configs_of(make_plugin(sim))
    devices = {c["device"]["name"]: c["device"] for c in configs}
    assert set(devices) == {"home", "Battery 1", "Battery 2", "Grid meter"}
    gateway = devices["home"]
    assert (gateway["manufacturer"], gateway["model"], gateway["serial_number"], gateway["sw_version"]) == \
        ("Tesla", "Backup Gateway 2", "TG0000SIMULATED", "23.28.2 27626f98")
    for name, serial, model in (("Battery 1", "TG120000SIM000", "Powerwall"),
                                ("Battery 2", "TG121000SIM001", "Powerwall"),
                                ("Grid meter", "JBL00000SIM000synchrometerX", "Synchrometer X")):
        d = devices[name]
        assert (d["manufacturer"], d["model"], d["serial_number"], d["via_device"]) == \
            ("Tesla", model, serial, "gridtap_powerwall_home"), d
        assert serial not in d["name"]


def test_names_without_serials_once_per_device_and_a_short_dashboard(sim, make_plugin):
    configs = configs_of(make_plugin(sim))
    for c in configs:
        assert not re.search(r"TG\d|JBL|SIM\d", c["name"]), c["name"]
    per_device = Counter((c["device"]["name"], c["name"]) for c in configs)
    assert [k for k, n in per_device.items() if n > 1] == []
    assert {f"{c['device']['name']} {c['name']}" for c in configs if on_dashboard(c)} == DASHBOARD
    assert len(configs) == 113
    # the meter repeats the aggregates (its power is the grid power): there, but disabled
    assert all(c.get("enabled_by_default") is False for c in configs if c["device"]["name"] == "Grid meter")


def test_energy_entities_the_energy_dashboard_takes(sim, make_plugin):
    configs = {f"{c['device']['name']} {c['name']}": c for c in configs_of(make_plugin(sim))}
    for name in ("home Grid import", "home Grid export", "home Solar production", "home Battery energy in",
                 "home Battery energy out", "home Home consumption", "Battery 1 Energy charged",
                 "Battery 2 Energy discharged"):
        c = configs[name]
        assert (c["device_class"], c["state_class"], c["unit_of_measurement"]) == ("energy", "total_increasing", "kWh")
    # what a battery holds is no flow: energy_storage, a measurement (the Energy dashboard does not offer it)
    stored = configs["Battery 1 Stored energy"]
    assert (stored["device_class"], stored["state_class"]) == ("energy_storage", "measurement")
    assert configs["home Grid"]["device_class"] == "connectivity"
    assert configs["home Battery charge"]["device_class"] == "battery"
