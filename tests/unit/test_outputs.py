"""collectd PUTVAL and Prometheus exposition of the metric model."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from gridtap.model import Batch, Kind, MetricDef
from gridtap.outputs import collectd, prometheus

TEMP = MetricDef("intergas_temperature_celsius", "Temperature.", unit="celsius")
STARTS = MetricDef("intergas_burner_starts_total", "Burner starts.", kind=Kind.COUNTER, integer=True)
ENERGY = MetricDef("intergas_energy_joules_total", "Energy.", kind=Kind.COUNTER, unit="joules")
GAS = MetricDef("intergas_gas_cubic_meters_total", "Gas.", kind=Kind.COUNTER, unit="cubic_meters")
CODE = MetricDef("intergas_display_code", "Display code.", integer=True)
STATE = MetricDef("intergas_display_state", "State.", kind=Kind.STATESET, states=("standby", "tapwater"))
INFO = MetricDef("intergas_controller_info", "Controller.", kind=Kind.INFO)
NAN = MetricDef("intergas_pressure_pascals", "Pressure.", unit="pascals")


def batch() -> Batch:
    return Batch("intergas", "boiler", 1_700_000_000_250_000_000, [
        TEMP(47.59, sensor="flow"), STARTS(52436), ENERGY(3.6e6), GAS(5383.3816, circuit="heating"), CODE(126),
        STATE("standby"), INFO(1, firmware="V2.53"), NAN(float("nan")),
    ])


def test_putval_lines():
    text = collectd.encode([batch()], "host-a", 10.0)
    assert text.splitlines() == [
        "PUTVAL host-a/intergas-boiler/temperature-flow interval=10.000 1700000000.250:47.59",
        "PUTVAL host-a/intergas-boiler/derive-burner_starts interval=10.000 1700000000.250:52436",
        "PUTVAL host-a/intergas-boiler/derive-energy_joules interval=10.000 1700000000.250:3600000",
        "PUTVAL host-a/intergas-boiler/gauge-gas_cubic_meters_total-heating interval=10.000 1700000000.250:5383.3816",
        "PUTVAL host-a/intergas-boiler/gauge-display_code interval=10.000 1700000000.250:126.0",
        "PUTVAL host-a/intergas-boiler/pressure interval=10.000 1700000000.250:U",
    ]


def test_timestamps_are_gauges_not_durations():
    """Issue 11: collectd typed the last-success timestamp as a duration."""
    from gridtap.health import health_defs

    _up, last, took = health_defs("intergas")
    text = collectd.encode([Batch("intergas", "boiler", 1_700_000_000_000_000_000,
                                  [last(1_699_999_990.5), took(0.25)])], "h", 10.0)
    assert text.splitlines() == [
        "PUTVAL h/intergas-boiler/gauge-last_success_timestamp_seconds interval=10.000 1700000000.000:1699999990.5",
        "PUTVAL h/intergas-boiler/duration-collect_duration interval=10.000 1700000000.000:0.25",
    ]


def test_putval_cleans_identifiers_and_bounds_lines():
    long = MetricDef("x_v", "v")
    text = collectd.encode([Batch("x", "dev ice/1", 0, [long(1.0, a="b c/d" * 100)])], "h", 1.0)
    line = text.strip()
    assert line.startswith("PUTVAL h/x-dev_ice_1/gauge-v-b_c_d")
    assert len(line) < 1000 and " " not in line.split(" ")[1]


def test_exposition_types_units_and_labels():
    text = prometheus.encode([batch()]).decode()
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    assert fams["intergas_temperature_celsius"].type == "gauge"
    sample = fams["intergas_temperature_celsius"].samples[0]
    assert (sample.labels, sample.value) == ({"device": "boiler", "sensor": "flow"}, 47.59)
    assert fams["intergas_burner_starts"].type == "counter"
    assert fams["intergas_burner_starts"].samples[0].name == "intergas_burner_starts_total"
    states = {s.labels["intergas_display_state"]: s.value for s in fams["intergas_display_state"].samples}
    assert states == {"standby": 1.0, "tapwater": 0.0}
    assert fams["intergas_controller_info"].samples[0].labels == {"device": "boiler", "firmware": "V2.53"}
    assert "gridtap_build_info{version=" in text
    assert "_created" not in text


def test_unknown_state_is_shown_not_lost():
    text = prometheus.encode([Batch("intergas", "b", 0, [STATE("weird")])]).decode()
    assert 'intergas_display_state{device="b",intergas_display_state="weird"} 1.0' in text
    assert 'intergas_display_state{device="b",intergas_display_state="standby"} 0.0' in text
