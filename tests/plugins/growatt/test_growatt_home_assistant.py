"""The Home Assistant entities of the simulated plant, as gridtap's MQTT output announces them
(no broker: a fake client records the discovery configs). The same design is held against a
real Home Assistant in tests/integration/test_homeassistant.py; this is the fast check of what
README.md "Home Assistant" promises: which entities are on a dashboard, which are diagnostics,
the devices and their names, units and classes."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

import pytest

from gridtap.config import Duration, Secret
from gridtap.health import health_defs
from gridtap.model import Batch
from gridtap.outputs import mqtt
from gridtap_plugins.growatt.plugin import GrowattConfig, GrowattPlugin
from gridtap_plugins.growatt.simulator import DEVICES, GrowattSimulator
from tests.mqtt_recorder import RecordingClient
from tests.plugins.growatt.shared_clock import SharedClock

NOON = dt.datetime(2026, 6, 21, 12, 2, tzinfo=dt.timezone(dt.timedelta(hours=1))).timestamp()
MIN, SPH, INV = "Inverter MIN 5000TL-X", "Inverter SPH 3000", "Inverter"
PLANT, ACCOUNT, BATTERY = "Simulated plant", "roof", "Inverter SPH 3000 battery"

#: device -> the entities a person puts on a dashboard (README.md "Home Assistant" says why each)
DASHBOARD = {
    MIN: {"Output power", "PV power", "PV1 power", "PV2 power", "Energy today", "Energy produced", "PV energy",
          "Status", "Fault"},
    SPH: {"Output power", "PV power", "PV1 power", "Energy today", "Energy produced", "PV energy today", "PV energy",
          "Status", "Fault", "Grid import power", "Grid export power", "Grid energy imported", "Grid energy exported",
          "House load", "House energy used"},
    BATTERY: {"State of charge", "Charging power", "Discharging power", "Energy charged", "Energy discharged"},
    INV: {"Output power", "PV power", "PV1 power", "Energy today", "Energy produced", "PV energy", "Status", "Fault"},
    PLANT: {"Power", "Energy today"},
}
#: units a person reads; never the metric model's base units (J, ratio, Pa, seconds for ages)
UNITS = {"W", "kW", "kWh", "V", "A", "Hz", "°C", "%", "h", "min", "s", "VA"}


@pytest.fixture(scope="module")
def configs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, dict[str, Any]]]:
    """unique_id -> (component, discovery config) after the first collections (each one also
    makes one optional call: plant details, then the devices' firmware)."""
    sim = GrowattSimulator(manual_clock=True, start=NOON, window=1.0)
    sim.start()
    try:
        clock = SharedClock(sim)
        cfg = GrowattConfig(token=Secret(sim.token), base_url=sim.url, cache_dir=str(tmp_path_factory.mktemp("gw")),
                            rate_window=Duration(1.0), call_spacing=Duration(0.05))
        plugin = GrowattPlugin(cfg, ACCOUNT, clock=clock)
        pub = mqtt.MqttPublisher("127.0.0.1", 1, devices=[("growatt", ACCOUNT)])
        pub._client = RecordingClient()  # type: ignore[assignment]
        up, last, duration = health_defs("growatt")
        for _ in range(6):
            samples = plugin.collect() + plugin.diagnostics() + [up(1), last(clock.time()), duration(0.2)]
            pub.publish([Batch("growatt", ACCOUNT, int(clock.time() * 1e9), samples,
                               subdevice_labels=plugin.subdevice_labels)])
            clock.advance(2.0)
        plugin.close()
    finally:
        sim.stop()
    return {c["unique_id"]: (c.pop("component"), c) for c in pub._client.discovery()}  # type: ignore[attr-defined]


def on_dashboard(c: dict[str, Any]) -> bool:
    return "entity_category" not in c and c.get("enabled_by_default", True)


def test_the_dashboard_is_what_a_person_would_put_there(configs):
    got: dict[str, set[str]] = {}
    for _comp, c in configs.values():
        if on_dashboard(c):
            got.setdefault(c["device"]["name"], set()).add(c["name"])
    assert got == DASHBOARD
    # per inverter (with its battery) no more than a person keeps on a dashboard
    assert len(got[SPH] | {f"battery {n}" for n in got[BATTERY]}) == 20 and len(got[MIN]) == 9 and len(got[INV]) == 8
    assert Counter(comp for comp, _c in configs.values()) == {"sensor": 126, "binary_sensor": 8}


def test_one_device_per_plant_and_inverter_named_as_a_person_would(configs):
    devices = {c["device"]["name"]: c["device"] for _comp, c in configs.values()}
    assert set(devices) == {ACCOUNT, PLANT, MIN, SPH, BATTERY, INV}
    account = devices[ACCOUNT]["identifiers"][0]
    for name, family in ((MIN, "min"), (SPH, "mix"), (INV, "inverter")):
        d = devices[name]
        assert (d["manufacturer"], d["model"], d["serial_number"], d["via_device"]) == (
            "Growatt", DEVICES[family].model, DEVICES[family].sn, account)
        assert d["sw_version"]  # the firmware, from *_data_info
    assert devices[INV]["model"] == "A0B0D0T0PFU1M3S4"  # the model code is the model, never the name
    assert devices[PLANT]["manufacturer"] == "Growatt" and devices[PLANT]["via_device"] == account
    assert devices[BATTERY]["via_device"] == devices[SPH]["identifiers"][0]
    serials = [d.sn for d in DEVICES.values()] + ["A0B0D0T0PFU1M3S4", "4242"]
    for _comp, c in configs.values():
        assert not any(s in c["name"] or s in c["device"]["name"] for s in serials), c["name"]
        assert c["name"][0].isupper() and "_" not in c["name"] and "/" not in c["name"], c["name"]


def test_units_precision_and_classes(configs):
    for comp, c in configs.values():
        unit = c.get("unit_of_measurement")
        assert unit is None or unit in UNITS, (c["name"], unit)
        if comp == "sensor" and c.get("device_class") not in ("enum", "timestamp"):
            assert "suggested_display_precision" in c, c["name"]
        if c.get("device_class") == "energy":
            assert (unit, c["state_class"], c["suggested_display_precision"]) == ("kWh", "total_increasing", 2), c
    by = {(c["device"]["name"], c["name"]): (comp, c) for comp, c in configs.values()}
    assert by[(SPH, "Fault")][0] == "binary_sensor" and by[(SPH, "Fault")][1]["device_class"] == "problem"
    assert by[(MIN, "Data stale")][0] == "binary_sensor" and by[(MIN, "Data stale")][1]["entity_category"] == \
        "diagnostic"
    status = by[(SPH, "Status")][1]
    assert status["device_class"] == "enum" and "Online (solar and battery)" in status["options"]
    assert {"Normal", "Waiting", "Fault", "Offline"} <= set(status["options"])
    assert by[(BATTERY, "State of charge")][1]["device_class"] == "battery"
    assert by[(BATTERY, "State of charge")][1]["unit_of_measurement"] == "%"
    assert by[(ACCOUNT, "API back-off")][1]["unit_of_measurement"] == "min"
    assert by[(PLANT, "Installed power")][1]["unit_of_measurement"] == "kW"
    assert "state_class" not in by[(MIN, "Fault code")][1]  # a code: no long-term statistics


def test_diagnostics_and_the_rarely_wanted(configs):
    diagnostic = {(c["device"]["name"], c["name"]) for _comp, c in configs.values()
                  if c.get("entity_category") == "diagnostic" and c.get("enabled_by_default", True)}
    assert {(MIN, "Temperature"), (MIN, "Grid voltage L1"), (MIN, "PV1 voltage"), (MIN, "Fault code"),
            (MIN, "Last upload"), (MIN, "Data age"), (MIN, "Data stale"), (BATTERY, "State of health"),
            (ACCOUNT, "Connected"), (ACCOUNT, "API back-off"), (ACCOUNT, "Plant list calls today"),
            (PLANT, "Installed power"), (PLANT, "Last update")} <= diagnostic
    disabled = {(c["device"]["name"], c["name"]) for _comp, c in configs.values()
                if c.get("enabled_by_default", True) is False}
    assert {(MIN, "PV1 current"), (MIN, "Temperature 5"), (MIN, "DC bus positive voltage"), (MIN, "Grid frequency"),
            (MIN, "Status code"), (MIN, "PV1 energy today"), (SPH, "Grid energy imported today"),
            (SPH, "Backup output power"), (BATTERY, "Energy charged today"), (PLANT, "Energy produced"),
            (INV, "DC bus negative voltage"), (ACCOUNT, "MIN data back-off")} <= disabled
