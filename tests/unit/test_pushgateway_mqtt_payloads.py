"""Payload builders of the Pushgateway output (no servers); MQTT: test_mqtt_payloads.py.

Every expectation is derived from a MetricDef built here, never from a real device, because
the outputs must treat any plugin's metrics the same way.
"""

from __future__ import annotations

import urllib.error
from email.message import Message
from io import BytesIO

import pytest

from gridtap.config import Secret
from gridtap.errors import GridtapError, OutputError
from gridtap.health import health_defs
from gridtap.model import Batch, Kind, MetricDef
from gridtap.outputs import pushgateway

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
