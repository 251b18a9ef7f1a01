"""The MQTT / Home Assistant payloads (no broker: a fake client records what is published).

Most expectations are derived from MetricDefs built here, never from a device, because the
output must treat any plugin's metrics the same way; the last tests run the shipped plugins'
metric definitions through it and hold them to what a Home Assistant user needs (units a
person reads, no float noise, binary flags, energy-dashboard classes).
"""

from __future__ import annotations

import json
import re
from typing import Any

import jinja2
import pytest

from gridtap.health import health_defs
from gridtap.model import Batch, Display, DisplayByLabel, Kind, MetricDef
from gridtap.outputs import ha, mqtt
from tests.mqtt_recorder import RecordingClient

P = "demo"
TEMP = MetricDef(f"{P}_temperature_celsius", "Temperature", unit="celsius", label_names=("sensor",),
                 display=DisplayByLabel("sensor", {"flow": Display(name="Flow temperature")}))
POWER = MetricDef(f"{P}_power_watts", "Power", unit="watts")
ENERGY = MetricDef(f"{P}_energy_joules_total", "Energy", kind=Kind.COUNTER, unit="joules")
TODAY = MetricDef(f"{P}_energy_today_joules", "Energy today", unit="joules",
                  display=Display(name="Energy today", precision=1, state_class="total_increasing"))
PRESSURE = MetricDef(f"{P}_water_pressure_pascals", "Water pressure", unit="pascals",
                     display=Display(name="Water pressure", unit="bar", precision=2))
FAN = MetricDef(f"{P}_fan_hertz", "Fan speed", unit="hertz", display=Display(name="Fan speed", unit="rpm"))
ION = MetricDef(f"{P}_ionisation_amperes", "Ionisation", unit="amperes",
                display=Display(name="Ionisation current", unit="µA", diagnostic=True))
RATIO = MetricDef(f"{P}_pump_ratio", "Pump duty", unit="ratio")
HOURS = MetricDef(f"{P}_operating_seconds_total", "Operating time", kind=Kind.COUNTER, unit="seconds")
FLOW = MetricDef(f"{P}_tap_flow_cubic_meters_per_second", "Tap flow", unit="cubic_meters_per_second")
GAS = MetricDef(f"{P}_gas_cubic_meters_total", "Gas", kind=Kind.COUNTER, unit="cubic_meters")
STARTS = MetricDef(f"{P}_burner_starts_total", "Burner starts", kind=Kind.COUNTER, integer=True)
FLAG = MetricDef(f"{P}_flag", "Flags", integer=True, label_names=("name",),
                 display=DisplayByLabel("name", {"pump": Display(name="Pump", binary="running")},
                                        default=Display(name="Flag {name}", binary="", diagnostic=True,
                                                        enabled=False)))
RAW = MetricDef(f"{P}_register", "Raw register", integer=True, display=Display(hidden=True))
MODE = MetricDef(f"{P}_mode", "Mode", kind=Kind.STATESET, states=("off", "heating", "hot_water"),
                 display=Display(name="Status"))
INFO = MetricDef(f"{P}_revision_info", "Revision", kind=Kind.INFO, label_names=("hardware", "software"))
SOC = MetricDef(f"{P}_battery_soc_ratio", "SoC", unit="ratio",
                display=Display(name="State of charge", device_class="battery", component="battery"))
DEVICE_INFO = MetricDef(f"{P}_device_info", "Device", kind=Kind.INFO)
UP, LAST, DURATION = health_defs(P)


def publisher(device: str = "boiler", **kw: Any) -> mqtt.MqttPublisher:
    pub = mqtt.MqttPublisher("127.0.0.1", 1, devices=[(P, device)], **kw)
    pub._client = RecordingClient()  # type: ignore[assignment]
    return pub


def batch(up: int = 1, device: str = "boiler") -> Batch:
    return Batch(P, device, 1_700_000_000_000_000_000, [
        TEMP(47.5, sensor="flow"), TEMP(31.25, sensor="Return/Line"), POWER(1200.0), ENERGY(7.2e6), TODAY(1.8e6),
        PRESSURE(171000.0), FAN(50.0), ION(7.2000000000000005e-06), RATIO(0.25124999999999996), HOURS(7200),
        FLOW(0.0001), GAS(12.5), STARTS(42), FLAG(1, name="pump"), FLAG(0, name="spark"), RAW(7), MODE("heating"),
        INFO(1, hardware="hw7", software="sw1.2", model="HRE 24/18"), UP(up), LAST(1_700_000_000.0), DURATION(0.02),
    ])


def published(pub: mqtt.MqttPublisher) -> tuple[dict[str, dict], dict[str, dict]]:
    """(discovery configs by unique_id, last state JSON by topic)."""
    configs, states = {}, {}
    for topic, payload, _retain, _props in pub._client.sent:  # type: ignore[attr-defined]
        if topic.endswith("/config") and payload:
            cfg = json.loads(payload)
            configs[cfg["unique_id"]] = {**cfg, "_topic": topic}
        elif topic.endswith("/state"):
            states[topic] = json.loads(payload)
    return configs, states


def render(cfg: dict, state: dict) -> str:
    env = jinja2.Environment()
    env.filters["timestamp_custom"] = lambda v, fmt, local=True: "ts"  # an HA filter; stubbed here
    return env.from_string(cfg["value_template"]).render(value_json=state).strip()


@pytest.fixture
def boiler() -> tuple[dict[str, dict], dict]:
    pub = publisher()
    pub.publish([batch()])
    configs, states = published(pub)
    return {k.removeprefix("gridtap_demo_boiler_"): v for k, v in configs.items()}, states["gridtap/demo/boiler/state"]


# ------------------------------------------------------------------------------------ keys, state


def test_state_json_holds_model_values_in_base_units(boiler: tuple[dict, dict]) -> None:
    _configs, state = boiler
    assert state["temperature_celsius_flow"] == 47.5
    assert state["temperature_celsius_return_line"] == 31.25
    assert state["water_pressure_pascals"] == 171000.0
    assert state["energy_joules_total"] == 7.2e6
    assert state["burner_starts_total"] == 42 and isinstance(state["burner_starts_total"], int)
    assert state["mode"] == "heating" and state["register"] == 7 and state["up"] == 1
    assert not any(k.startswith("revision") for k in state)
    json.loads(json.dumps(state, allow_nan=False))


def test_vanished_keys_become_null_and_nan_is_null() -> None:
    pub = publisher()
    pub.publish([batch()])
    pub.publish([Batch(P, "boiler", 0, [POWER(float("nan")), UP(1)])])
    _configs, states = published(pub)
    state = states["gridtap/demo/boiler/state"]
    assert state["power_watts"] is None and state["temperature_celsius_flow"] is None and state["up"] == 1


def test_colliding_keys_get_a_stable_suffix() -> None:
    def keys(metrics: list) -> list[str]:
        pub = publisher("x")
        pub.publish([Batch(P, "x", 0, metrics)])
        return sorted(published(pub)[1]["gridtap/demo/x/state"])

    a, b = TEMP(1.0, sensor="a/b"), TEMP(2.0, sensor="a_b")
    assert keys([a, b]) == keys([b, a])
    assert keys([a, b])[0] == "temperature_celsius_a_b" and keys([a, b])[1].startswith("temperature_celsius_a_b_")


def test_availability_follows_up_and_a_waiting_device_leaves_it_alone() -> None:
    assert mqtt.availability_of(batch(up=1)) == "online"
    assert mqtt.availability_of(batch(up=0)) == "offline"
    assert mqtt.availability_of(Batch(P, "d", 0, [DURATION(0.1)], ok=False, error="waiting")) is None
    assert mqtt.availability_of(Batch(P, "d", 0, [POWER(1.0)])) == "online"


def test_bridge_is_per_process_and_made_from_its_devices() -> None:
    assert mqtt.bridge_id_for([("intergas", "boiler")]) == "intergas-boiler"
    assert mqtt.bridge_id_for([("goodwe", "sems-proxy"), ("intergas", "boiler")]) == "goodwe-sems-proxy+intergas-boiler"
    long = mqtt.bridge_id_for([("intergas", f"boiler-{i:02d}") for i in range(20)])
    assert len(long) <= 64 and long == mqtt.bridge_id_for([("intergas", f"boiler-{i:02d}") for i in range(20)])
    pub = publisher()
    assert pub.status_topic == "gridtap/bridge/demo-boiler/status"
    assert publisher(bridge_id="attic").status_topic == "gridtap/bridge/attic/status"


# ------------------------------------------------------------------------------ HA discovery


@pytest.mark.parametrize(
    ("key", "component", "device_class", "unit", "state_class", "precision", "shown"),
    [
        ("temperature_celsius_flow", "sensor", "temperature", "°C", "measurement", 1, "47.5"),
        ("power_watts", "sensor", "power", "W", "measurement", 0, "1200"),
        ("energy_joules_total", "sensor", "energy", "kWh", "total_increasing", 2, "2.0"),
        ("energy_today_joules", "sensor", "energy", "kWh", "total_increasing", 1, "0.5"),
        ("water_pressure_pascals", "sensor", "pressure", "bar", "measurement", 2, "1.71"),
        ("fan_hertz", "sensor", None, "rpm", "measurement", 0, "3000"),
        ("ionisation_amperes", "sensor", None, "µA", "measurement", 1, "7.2"),
        ("pump_ratio", "sensor", None, "%", "measurement", 0, "25"),
        ("operating_seconds_total", "sensor", "duration", "h", "total_increasing", 0, "2"),
        ("tap_flow_cubic_meters_per_second", "sensor", "volume_flow_rate", "L/min", "measurement", 1, "6.0"),
        ("gas_cubic_meters_total", "sensor", "gas", "m³", "total_increasing", 3, "12.5"),
        ("burner_starts_total", "sensor", None, None, "total_increasing", 0, "42"),
        ("flag_pump", "binary_sensor", "running", None, None, None, "ON"),
        ("flag_spark", "binary_sensor", None, None, None, None, "OFF"),
        ("mode", "sensor", "enum", None, None, None, "Heating"),
        ("up", "binary_sensor", "connectivity", None, None, None, "ON"),
        ("last_success_timestamp_seconds", "sensor", "timestamp", None, None, None, "ts"),
    ],
)
def test_entity_fields_and_rendered_values(boiler: tuple[dict, dict], key: str, component: str,
                                           device_class: str | None, unit: str | None, state_class: str | None,
                                           precision: int | None, shown: str) -> None:
    configs, state = boiler
    cfg = configs[key]
    assert cfg["_topic"] == f"homeassistant/{component}/gridtap_demo_boiler_{key}/config"
    assert cfg.get("device_class") == device_class
    assert cfg.get("unit_of_measurement") == unit
    assert cfg.get("state_class") == state_class
    assert cfg.get("suggested_display_precision") == precision
    assert render(cfg, state) == shown
    assert render(cfg, dict.fromkeys(state)) == "None"  # a vanished value is "unknown", not 0 or OFF


def test_enum_sensor_has_the_states_in_words_as_options_and_refuses_others(boiler: tuple[dict, dict]) -> None:
    configs, state = boiler
    assert configs["mode"]["options"] == ["Off", "Heating", "Hot water"]
    assert render(configs["mode"], {**state, "mode": "hot_water"}) == "Hot water"
    assert render(configs["mode"], {**state, "mode": "exploded"}) == "None"
    worded = MetricDef(f"{P}_phase", "Phase", kind=Kind.STATESET, states=("a", "b"),
                       display=Display(name="Phase", words={"state": {"a": "Alpha"}}))
    design = ha.design(P, worded("a"), "phase", [])
    assert design is not None and design.fields["options"] == ["Alpha", "B"]


def test_a_code_with_words_is_an_enum_sensor_and_an_unmapped_code_is_unknown() -> None:
    coded = MetricDef(f"{P}_bus_status", "Bus status", integer=True,
                      display=Display(name="Bus status", codes={0: "OK", -3: "Bus off", 7: "OK"}))
    design = ha.design(P, coded(-3), "bus_status", [])
    assert design is not None and design.component == "sensor"
    assert design.fields["device_class"] == "enum" and design.fields["options"] == ["OK", "Bus off"]
    assert "unit_of_measurement" not in design.fields and "state_class" not in design.fields
    cfg = {"value_template": design.fields["value_template"]}
    assert [render(cfg, {"bus_status": v}) for v in (0, -3, 7, 5, 2.5, None)] == \
        ["OK", "Bus off", "OK", "None", "None", "None"]


def test_a_state_in_a_label_is_one_text_sensor_that_follows_the_label() -> None:
    operation = MetricDef(f"{P}_operation_mode", "Operation mode; always 1", integer=True, label_names=("mode",),
                          display=Display(name="Operation mode", state_label="mode",
                                          words={"mode": {"self_consumption": "Self-Powered"}}))
    pub = publisher()
    pub.publish([Batch(P, "boiler", 1, [operation(1, mode="self_consumption"), UP(1)])])
    pub.publish([Batch(P, "boiler", 2, [operation(1, mode="backup"), UP(1)])])  # the owner switched modes
    configs, states = published(pub)
    modes = [c for c in configs.values() if c["name"] == "Operation mode"]
    assert len(modes) == 1  # one entity, not one per mode ever seen
    cfg = modes[0]
    assert cfg["_topic"] == "homeassistant/sensor/gridtap_demo_boiler_operation_mode/config"
    assert "device_class" not in cfg and "unit_of_measurement" not in cfg and "state_class" not in cfg
    assert states["gridtap/demo/boiler/state"]["operation_mode"] == "backup"
    assert render(cfg, {"operation_mode": "self_consumption"}) == "Self-Powered"
    assert render(cfg, {"operation_mode": "backup"}) == "backup"  # the device's own word where we have none
    assert render(cfg, {"operation_mode": None}) == "None"
    pub.publish([Batch(P, "boiler", 3, [operation(0, mode="backup"), UP(1)])])
    assert published(pub)[1]["gridtap/demo/boiler/state"]["operation_mode"] is None  # 0: no state


def test_no_float_noise_in_any_rendered_value(boiler: tuple[dict, dict]) -> None:
    configs, state = boiler
    for key, cfg in configs.items():
        shown = render(cfg, state)
        if re.fullmatch(r"-?\d+\.\d+", shown):
            digits = len(shown.split(".")[1])
            assert digits <= max(1, cfg.get("suggested_display_precision") or 0), (key, shown)


def test_names_ids_categories_and_hidden(boiler: tuple[dict, dict]) -> None:
    configs, _state = boiler
    flow = configs["temperature_celsius_flow"]
    assert flow["name"] == "Flow temperature" and flow["default_entity_id"] == "sensor.boiler_flow_temperature"
    assert "object_id" not in flow
    assert configs["temperature_celsius_return_line"]["name"] == "Temperature Return/Line"
    assert configs["ionisation_amperes"]["entity_category"] == "diagnostic"
    spark = configs["flag_spark"]
    assert spark["name"] == "Flag spark" and spark["enabled_by_default"] is False
    assert "enabled_by_default" not in configs["flag_pump"] and "entity_category" not in configs["flag_pump"]
    assert "register" not in configs  # hidden: in the state JSON, no entity
    assert configs["read_duration" if "read_duration" in configs else "collect_duration_seconds"][
        "enabled_by_default"] is False
    ids = [c["default_entity_id"] for c in configs.values()]
    assert len(ids) == len(set(ids))


def test_availability_measurements_follow_the_device_diagnostics_only_the_bridge(boiler: tuple[dict, dict]) -> None:
    configs, _state = boiler
    bridge, device = "gridtap/bridge/demo-boiler/status", "gridtap/demo/boiler/availability"
    assert [a["topic"] for a in configs["power_watts"]["availability"]] == [bridge, device]
    for key in ("up", "last_success_timestamp_seconds", "ionisation_amperes", "flag_spark"):
        assert [a["topic"] for a in configs[key]["availability"]] == [bridge], key
    assert all(c["availability_mode"] == "all" for c in configs.values())


def test_device_block_from_info_labels(boiler: tuple[dict, dict]) -> None:
    configs, _state = boiler
    dev = configs["power_watts"]["device"]
    assert dev == {"identifiers": ["gridtap_demo_boiler"], "name": "boiler", "manufacturer": "Demo",
                   "model": "HRE 24/18", "sw_version": "sw1.2", "hw_version": "hw7"}
    assert configs["power_watts"]["o"]["name"] == "gridtap"


def test_prefixes_are_configurable_and_object_ids_are_safe() -> None:
    pub = publisher("Living Room-2", topic_prefix="home/gt", discovery_prefix="ha")
    pub.publish([batch(device="Living Room-2")])
    configs, _ = published(pub)
    cfg = configs["gridtap_demo_living_room_2_power_watts"]
    assert cfg["_topic"] == "ha/sensor/gridtap_demo_living_room_2_power_watts/config"
    assert cfg["state_topic"] == "home/gt/demo/Living_Room-2/state"
    assert cfg["availability"][0]["topic"] == "home/gt/bridge/demo-Living_Room-2/status"


def test_once_run_expires_and_has_no_bridge() -> None:
    pub = publisher(once_expire_after=30.0)
    pub.publish([batch()])
    configs, _ = published(pub)
    cfg = configs["gridtap_demo_boiler_power_watts"]
    assert cfg["expire_after"] == 30
    assert [a["topic"] for a in cfg["availability"]] == ["gridtap/demo/boiler/availability"]
    assert "availability" not in configs["gridtap_demo_boiler_up"]
    retained = [(t, props) for t, p, r, props in pub._client.sent if r and p]  # type: ignore[attr-defined]
    assert "gridtap/demo/boiler/state" in {t for t, _props in retained}  # HA may subscribe after we are gone
    assert retained and all(props is not None and props.MessageExpiryInterval == 30 for _t, props in retained)


def test_a_display_unit_the_base_unit_cannot_reach_is_a_plugin_error_not_a_lost_batch() -> None:
    bad = MetricDef(f"{P}_bad_watts", "Bad", unit="watts", display=Display(name="Bad", unit="bar"))
    with pytest.raises(ValueError, match="no conversion from watts to 'bar'"):
        ha.check_display(bad, {})
    design = ha.design(P, bad(1.0), "bad_watts", [])  # the output shows the default unit instead
    assert design is not None and design.fields["unit_of_measurement"] == "W"
    pub = publisher()
    pub.publish([Batch(P, "boiler", 0, [bad(1.0), POWER(2.0), UP(1)])])
    assert {"gridtap_demo_boiler_bad_watts", "gridtap_demo_boiler_power_watts"} <= set(published(pub)[0])


def test_temperature_differences_and_reactive_power() -> None:
    spread = MetricDef(f"{P}_spread_celsius", "Spread", unit="celsius", display=Display(name="Spread", unit="K"))
    var = MetricDef(f"{P}_reactive_volt_amperes", "Q", unit="volt_amperes", display=Display(name="Q", unit="var"))
    d1, d2 = ha.design(P, spread(3.0), "s", []), ha.design(P, var(5.0), "q", [])
    assert d1 is not None and "device_class" not in d1.fields and d1.fields["unit_of_measurement"] == "K"
    assert d2 is not None and d2.fields["device_class"] == "reactive_power"


# ------------------------------------------------------------------------------ physical devices


def proxy_batch(*extra: Any) -> Batch:
    meter = (("device", "meter"), ("model", "HK1000"), ("serial", "91000HKU00000001"))
    inv = (("device", "inverter"), ("model", "GW10K-ET"), ("serial", "9010KETU00000001"))
    inv2 = (("device", "inverter"), ("model", "GW3000"), ("serial", "53000DSC00000001"))
    from gridtap.model import Metric, label_set

    samples = [Metric(POWER, 100.0, label_set(meter)), Metric(DEVICE_INFO, 1, label_set(meter)),
               Metric(POWER, 2000.0, label_set(inv)), Metric(SOC, 0.5, label_set(inv)),
               Metric(DEVICE_INFO, 1, label_set(inv)), Metric(POWER, 900.0, label_set(inv2)),
               STARTS(3), UP(1), *extra]
    return Batch(P, "sems-proxy", 0, samples, subdevice_labels=("serial",))


def test_each_physical_device_is_its_own_ha_device_via_the_proxy() -> None:
    pub = publisher("sems-proxy")
    pub.publish([proxy_batch()])
    configs, states = published(pub)
    by_device: dict[str, dict] = {}
    for cfg in configs.values():
        by_device.setdefault(cfg["device"]["identifiers"][0], cfg["device"])
    assert set(by_device) == {"gridtap_demo_sems_proxy", "gridtap_demo_91000hku00000001",
                              "gridtap_demo_9010ketu00000001", "gridtap_demo_9010ketu00000001_battery",
                              "gridtap_demo_53000dsc00000001"}
    meter = by_device["gridtap_demo_91000hku00000001"]
    assert meter == {"identifiers": ["gridtap_demo_91000hku00000001"], "name": "Meter HK1000", "model": "HK1000",
                     "serial_number": "91000HKU00000001", "via_device": "gridtap_demo_sems_proxy",
                     "manufacturer": "Demo"}
    battery = by_device["gridtap_demo_9010ketu00000001_battery"]
    assert battery == {"identifiers": ["gridtap_demo_9010ketu00000001_battery"], "name": "Inverter GW10K-ET battery",
                       "via_device": "gridtap_demo_9010ketu00000001", "manufacturer": "Demo"}
    assert by_device["gridtap_demo_9010ketu00000001"]["name"] == "Inverter GW10K-ET"
    assert by_device["gridtap_demo_53000dsc00000001"]["name"] == "Inverter GW3000"
    proxy = by_device["gridtap_demo_sems_proxy"]
    assert proxy["manufacturer"] == "gridtap" and proxy["model"] == "gridtap demo" and "via_device" not in proxy
    # serials tell devices apart in ids and topics, never in names
    assert all("9010" not in c["name"] and "9010" not in c["default_entity_id"] for c in configs.values())
    assert states["gridtap/demo/sems-proxy/9010ketu00000001/state"] == {"battery_soc_ratio": 0.5, "power_watts": 2000.0}
    soc = configs["gridtap_demo_9010ketu00000001_battery_soc_ratio"]
    assert soc["default_entity_id"] == "sensor.inverter_gw10k_et_battery_state_of_charge"
    assert soc["device_class"] == "battery"
    # unique ids follow the physical device: renaming the proxy keeps the inverter's history
    renamed = publisher("attic-proxy")
    b = proxy_batch()
    b.device = "attic-proxy"
    renamed.publish([b])
    assert "gridtap_demo_9010ketu00000001_power_watts" in published(renamed)[0]


def test_physical_device_names_come_from_kind_and_model() -> None:
    assert ha.physical_name({"device": "meter", "model": "HomeKit 1000 Smart Meter"}, "proxy") == (
        "HomeKit 1000 Smart Meter")
    assert ha.physical_name({"device": "inverter", "model": "unknown"}, "proxy") == "Inverter"
    assert ha.physical_name({"device": "proxy", "model": "X1"}, "proxy") == "X1"
    assert ha.physical_name({}, "proxy") == "Device"
    assert ha.physical_name({"name": "Roof plant", "device": "inverter"}, "proxy") == "Roof plant"
    plant = MetricDef(f"{P}_plant_info", "Plant", kind=Kind.INFO, label_names=("name",))
    from gridtap.model import Metric, label_set

    samples = [Metric(POWER, 1.0, label_set([("plant_id", "7"), ("device", "acct")])),
               Metric(plant, 1, label_set([("plant_id", "7"), ("name", "Roof plant"), ("device", "acct")]))]
    assert ha.physical_name(ha.naming_labels(samples), "acct") == "Roof plant"


def test_a_physical_device_missing_from_a_batch_gets_nulls() -> None:
    pub = publisher("sems-proxy")
    pub.publish([proxy_batch()])
    pub.publish([Batch(P, "sems-proxy", 0, [UP(1)], subdevice_labels=("serial",))])
    _configs, states = published(pub)
    assert states["gridtap/demo/sems-proxy/91000hku00000001/state"] == {"power_watts": None}


# ------------------------------------------------------------------------------ the shipped plugins


def plugin_metrics(name: str) -> list:
    from gridtap import plugin

    return list(plugin.load(name).metrics)


READABLE_UNITS = {"°C", "W", "kW", "kWh", "V", "A", "Hz", "bar", "rpm", "µA", "h", "%", "L/min", "L", "m³", "kB",
                  "s", None}


def shipped_plugins() -> list[str]:
    from gridtap import plugin

    return list(plugin.names())


@pytest.mark.parametrize("name", shipped_plugins())
def test_every_shipped_display_unit_is_reachable(name: str) -> None:
    for d in plugin_metrics(name):
        hint = d.display
        choices = [*hint.choices] if isinstance(hint, DisplayByLabel) else []
        for value in [*choices, "x"]:
            labels = {k: "x" for k in d.label_names}
            if isinstance(hint, DisplayByLabel):
                labels[hint.label] = value
            ha.check_display(d, labels)


@pytest.mark.parametrize("name", ["intergas", "goodwe"])
def test_every_shipped_metric_has_a_display_hint_and_a_readable_unit(name: str) -> None:
    for d in plugin_metrics(name):
        if d.kind is Kind.INFO:
            continue
        assert d.display is not None, f"{d.name}: no display= hint"
        labels = {k: "x" for k in d.label_names}
        sample = d(d.states[0] if d.kind is Kind.STATESET else 1, **labels)
        design = ha.design(name, sample, "k", list(labels.values()))
        if design is None:
            continue
        assert design.name and not re.search(r"[a-z]_[a-z]", design.name), (d.name, design.name)
        unit = design.fields.get("unit_of_measurement")
        assert unit in READABLE_UNITS, (d.name, unit)
        if design.component == "sensor" and design.fields.get("device_class") not in ("enum", "timestamp"):
            assert "suggested_display_precision" in design.fields, d.name
