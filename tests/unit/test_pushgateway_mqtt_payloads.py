"""Payload builders of the Pushgateway and MQTT / Home Assistant outputs (no servers).

Every expectation is derived from a MetricDef built here, never from a real device, because
the outputs must treat any plugin's metrics the same way.
"""

from __future__ import annotations

import json
import urllib.error
from email.message import Message
from io import BytesIO

import pytest

from gridtap.config import Secret
from gridtap.errors import GridtapError, OutputError
from gridtap.health import health_defs
from gridtap.model import Batch, Kind, MetricDef
from gridtap.outputs import mqtt, pushgateway

P = "demo"
TEMP = MetricDef(f"{P}_temperature_celsius", "Temperature", unit="celsius", label_names=("sensor",))
POWER = MetricDef(f"{P}_power_watts", "Power", unit="watts")
ENERGY = MetricDef(f"{P}_energy_joules_total", "Energy", kind=Kind.COUNTER, unit="joules")
STORED = MetricDef(f"{P}_stored_energy_joules", "Energy in the battery", unit="joules")
VOLTS = MetricDef(f"{P}_grid_volts", "Grid voltage", unit="volts", label_names=("phase",))
AMPS = MetricDef(f"{P}_grid_amperes", "Grid current", unit="amperes")
FREQ = MetricDef(f"{P}_fan_hertz", "Fan speed", unit="hertz")
PRESSURE = MetricDef(f"{P}_water_pressure_pascals", "Water pressure", unit="pascals")
RATIO = MetricDef(f"{P}_pump_ratio", "Pump duty", unit="ratio")
STARTS = MetricDef(f"{P}_burner_starts_total", "Burner starts", kind=Kind.COUNTER, integer=True)
GAS = MetricDef(f"{P}_gas_consumed_cubic_meters_total", "Gas", kind=Kind.COUNTER, unit="cubic_meters")
FLOW = MetricDef(f"{P}_tap_flow_cubic_meters_per_second", "Tap flow", unit="cubic_meters_per_second")
RUNTIME = MetricDef(f"{P}_operating_time_seconds_total", "Operating time", kind=Kind.COUNTER, unit="seconds")
CODE = MetricDef(f"{P}_display_code", "Display code", integer=True)
MODE = MetricDef(f"{P}_mode", "Mode", kind=Kind.STATESET, states=("off", "heating", "hot_water"))
INFO = MetricDef(f"{P}_revision_info", "Revision", kind=Kind.INFO, label_names=("hardware", "software"))
UP, LAST, DURATION = health_defs(P)


def batch(up: int = 1, device: str = "boiler") -> Batch:
    return Batch(P, device, 1_700_000_000_000_000_000, [
        TEMP(47.5, sensor="flow"), TEMP(31.25, sensor="Return/Line"), POWER(1200.0), ENERGY(7.2e6),
        STORED(3.6e6), VOLTS(230.1, phase="L1"), AMPS(5.0), FREQ(50.0), PRESSURE(150000.0), RATIO(0.25),
        STARTS(42), GAS(12.5), FLOW(0.0001), RUNTIME(3600), CODE(3), MODE("heating"),
        INFO(1, hardware="hw7", software="sw1.2", model="HRE 24/18"),
        UP(up), LAST(1_700_000_000.0), DURATION(0.02),
    ])


def keyed(b: Batch) -> dict[str, object]:
    return dict(mqtt.keyed_samples(b.plugin, b.device, b.labelled()))


def configs(b: Batch, **kw: str) -> dict[str, tuple[str, dict]]:
    info = mqtt.device_block(b.plugin, b.device, mqtt.device_metadata(b.labelled()))
    out = {}
    for key, m in mqtt.keyed_samples(b.plugin, b.device, b.labelled()):
        out[key] = mqtt.discovery_config(b.plugin, b.device, m, key, info, **kw)
    return out


# ------------------------------------------------------------------------------------ MQTT keys


def test_keys_drop_the_plugin_prefix_and_add_sanitized_label_values() -> None:
    keys = set(keyed(batch()))
    assert {"temperature_celsius_flow", "temperature_celsius_return_line", "grid_volts_l1", "power_watts",
            "energy_joules_total", "burner_starts_total", "mode", "display_code"} <= keys
    assert all(k == mqtt.sanitize(k) and k[0].isalpha() for k in keys)


def test_info_and_up_are_not_entities_but_health_metrics_are() -> None:
    keys = set(keyed(batch()))
    assert "up" not in keys and not any(k.startswith("revision") for k in keys)
    assert {"last_success_timestamp_seconds", "collect_duration_seconds"} <= keys


def test_colliding_keys_get_a_stable_suffix() -> None:
    b = Batch(P, "x", 0, [TEMP(1.0, sensor="a/b"), TEMP(2.0, sensor="a_b")])
    first = list(keyed(b))
    again = list(keyed(Batch(P, "x", 0, list(reversed(b.metrics)))))
    assert first == again and first[0] == "temperature_celsius_a_b" and first[1].startswith("temperature_celsius_a_b_")
    assert len(set(first)) == 2


def test_device_label_other_than_the_batch_device_is_part_of_the_key() -> None:
    b = Batch(P, "proxy", 0, [POWER(1.0, device="inverter", model="GW5000", serial="S1")])
    assert list(keyed(b)) == ["power_watts_inverter_s1"]  # model describes, serial distinguishes


# ---------------------------------------------------------------------------------- MQTT state


def test_state_json_holds_model_values_in_base_units() -> None:
    b = batch()
    state = mqtt.state_payload(P, b.device, b.labelled(), known_keys=["vanished_key"])
    assert state["temperature_celsius_flow"] == 47.5
    assert state["energy_joules_total"] == 7.2e6
    assert state["pump_ratio"] == 0.25
    assert state["burner_starts_total"] == 42 and isinstance(state["burner_starts_total"], int)
    assert state["mode"] == "heating"
    assert state["vanished_key"] is None
    json.loads(json.dumps(state, allow_nan=False))


def test_nan_becomes_null() -> None:
    b = Batch(P, "d", 0, [POWER(float("nan"))])
    assert mqtt.state_payload(P, "d", b.labelled()) == {"power_watts": None}


def test_topics_and_availability() -> None:
    t = mqtt.Topics.of("gridtap", P, "boiler/1 #2")
    assert t.state == "gridtap/demo/boiler_1_2/state"
    assert t.availability == "gridtap/demo/boiler_1_2/availability"
    assert t.bridge_status == "gridtap/status"
    assert mqtt.availability_of(batch(up=1)) == "online"
    assert mqtt.availability_of(batch(up=0)) == "offline"
    assert mqtt.availability_of(Batch(P, "d", 0, [], ok=False)) == "offline"


# ------------------------------------------------------------------------------ HA discovery


@pytest.mark.parametrize(
    ("key", "device_class", "unit", "state_class", "template"),
    [
        ("temperature_celsius_flow", "temperature", "°C", "measurement", "{{ value_json.temperature_celsius_flow }}"),
        ("power_watts", "power", "W", "measurement", "{{ value_json.power_watts }}"),
        ("energy_joules_total", "energy", "kWh", "total_increasing",
         "{{ value_json.energy_joules_total / 3600000 if value_json.energy_joules_total is number else None }}"),
        ("stored_energy_joules", "energy", "kWh", "total",
         "{{ value_json.stored_energy_joules / 3600000 if value_json.stored_energy_joules is number else None }}"),
        ("grid_volts_l1", "voltage", "V", "measurement", "{{ value_json.grid_volts_l1 }}"),
        ("grid_amperes", "current", "A", "measurement", None),
        ("fan_hertz", "frequency", "Hz", "measurement", None),
        ("water_pressure_pascals", "pressure", "Pa", "measurement", None),
        ("pump_ratio", None, "%", "measurement",
         "{{ value_json.pump_ratio * 100 if value_json.pump_ratio is number else None }}"),
        ("burner_starts_total", None, None, "total_increasing", "{{ value_json.burner_starts_total }}"),
        ("gas_consumed_cubic_meters_total", "gas", "m³", "total_increasing", None),
        ("tap_flow_cubic_meters_per_second", "volume_flow_rate", "L/min", "measurement",
         "{{ value_json.tap_flow_cubic_meters_per_second * 60000 if value_json.tap_flow_cubic_meters_per_second"
         " is number else None }}"),
        ("operating_time_seconds_total", "duration", "s", "total_increasing", None),
        ("display_code", None, None, "measurement", None),
        ("mode", None, None, None, "{{ value_json.mode }}"),
    ],
)
def test_device_class_unit_state_class_template(key: str, device_class: str | None, unit: str | None,
                                                state_class: str | None, template: str | None) -> None:
    _topic, cfg = configs(batch())[key]
    assert cfg.get("device_class") == device_class
    assert cfg.get("unit_of_measurement") == unit
    assert cfg.get("state_class") == state_class
    assert cfg["value_template"] == (template or f"{{{{ value_json.{key} }}}}")


def test_discovery_topic_ids_availability_device_origin() -> None:
    topic, cfg = configs(batch())["temperature_celsius_flow"]
    uid = "gridtap_demo_boiler_temperature_celsius_flow"
    assert topic == f"homeassistant/sensor/{uid}/config"
    assert cfg["unique_id"] == uid == cfg["object_id"]
    assert cfg["state_topic"] == "gridtap/demo/boiler/state"
    assert cfg["name"] == "Temperature flow"
    assert cfg["availability_mode"] == "all"
    assert [a["topic"] for a in cfg["availability"]] == ["gridtap/status", "gridtap/demo/boiler/availability"]
    assert all(a["payload_available"] == "online" and a["payload_not_available"] == "offline"
               for a in cfg["availability"])
    dev = cfg["device"]
    assert dev["identifiers"] == ["gridtap_demo_boiler"] and dev["name"] == "boiler"
    assert dev["model"] == "HRE 24/18" and dev["sw_version"] == "sw1.2" and dev["hw_version"] == "hw7"
    assert cfg["o"]["name"] == "gridtap" and cfg["o"]["sw"]
    json.loads(json.dumps(cfg))


def test_prefixes_are_configurable_and_object_ids_are_safe() -> None:
    b = batch(device="Living Room-2")
    topic, cfg = configs(b, topic_prefix="home/gt", discovery_prefix="ha")["power_watts"]
    assert topic == "ha/sensor/gridtap_demo_living_room_2_power_watts/config"
    assert cfg["state_topic"] == "home/gt/demo/Living_Room-2/state"
    assert cfg["availability"][0]["topic"] == "home/gt/status"
    object_id = topic.split("/")[2]
    assert object_id.replace("_", "").replace("-", "").isalnum()


def test_health_metrics_are_diagnostics_that_follow_only_the_bridge() -> None:
    cfgs = configs(batch())
    _, last = cfgs["last_success_timestamp_seconds"]
    assert last["device_class"] == "timestamp" and "unit_of_measurement" not in last
    assert "timestamp_custom" in last["value_template"]
    assert last["entity_category"] == "diagnostic"
    assert [a["topic"] for a in last["availability"]] == ["gridtap/status"]


def test_device_without_metadata_gets_a_default_manufacturer() -> None:
    b = Batch(P, "d", 0, [POWER(1.0)])
    block = mqtt.device_block(P, "d", mqtt.device_metadata(b.labelled()))
    assert block == {"identifiers": ["gridtap_demo_d"], "name": "d", "manufacturer": "gridtap demo"}


# ------------------------------------------------------------------------------ Pushgateway


def test_pushgateway_body_matches_the_exposition_without_timestamps() -> None:
    body = pushgateway.encode_group(batch()).decode()
    assert body.endswith("\n")
    assert 'demo_temperature_celsius{device="boiler",sensor="Return/Line"} 31.25' in body
    assert "# TYPE demo_energy_joules_total counter" in body
    assert 'demo_mode{demo_mode="heating",device="boiler"} 1.0' in body
    assert "gridtap_build_info" not in body
    for line in body.splitlines():
        if not line.startswith("#"):
            assert len(line.rsplit("}", 1)[-1].split()) == 1, f"timestamp in {line!r}"


def test_grouping_key_and_latest_batch_per_device() -> None:
    assert pushgateway.grouping_key("demo", "boiler") == {"plugin": "demo", "device": "boiler"}
    old, new, other = batch(), batch(), batch(device="other")
    new.timestamp_ns += 1
    assert pushgateway.latest_per_device([old, other, new]) == [new, other]


def test_errors_are_one_line_without_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = Secret("hunter2")

    def refused(*_a: object, **_k: object) -> None:
        raise urllib.error.HTTPError("http://gw/metrics/job/x", 400, "Bad Request", Message(),
                                     BytesIO(b"pushed metrics are invalid\nhunter2 is not a COUNTER\n"))

    monkeypatch.setattr(pushgateway, "push_to_gateway", refused)
    with pytest.raises(OutputError) as exc:
        pushgateway.push([batch()], "http://user:hunter2@gw:9091", username="user", password=secret)
    msg = str(exc.value)
    assert isinstance(exc.value, GridtapError)
    assert "\n" not in msg and "hunter2" not in msg
    assert "HTTP 400" in msg and "not a COUNTER" in msg and "demo/boiler" in msg and "gw:9091" in msg


def test_unreachable_gateway_is_an_output_error() -> None:
    from tests.integration.servers import free_port

    with pytest.raises(OutputError, match=r"cannot reach the gateway"):
        pushgateway.push([batch()], f"http://127.0.0.1:{free_port()}", timeout=2)


def test_value_templates_render_with_jinja() -> None:
    """HA renders value_template with Jinja; null (a key that vanished) must render ``None`` = unknown."""
    jinja2 = pytest.importorskip("jinja2")
    env = jinja2.Environment()
    env.filters["timestamp_custom"] = lambda v, fmt, local=True: "ts"  # an HA filter; stubbed here
    b = batch()
    state = mqtt.state_payload(P, b.device, b.labelled())
    cfgs = configs(b)

    def render(key: str, value_json: dict) -> str:
        return env.from_string(cfgs[key][1]["value_template"]).render(value_json=value_json).strip()

    assert render("energy_joules_total", state) == "2.0"  # 7.2e6 J = 2 kWh
    assert render("pump_ratio", state) == "25.0"
    assert float(render("tap_flow_cubic_meters_per_second", state)) == pytest.approx(6.0)
    assert render("temperature_celsius_flow", state) == "47.5"
    assert render("mode", state) == "heating"
    assert render("last_success_timestamp_seconds", state) == "ts"
    nulls = dict.fromkeys(state)
    for key in ("energy_joules_total", "pump_ratio", "last_success_timestamp_seconds", "power_watts"):
        assert render(key, nulls) == "None"
