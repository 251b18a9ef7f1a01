"""What the isg plugin ships beside its code: display hints on every metric (and that they read
as names on real samples), and the example alert rules that drive the webhook."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from gridtap import devices
from gridtap.model import display_of
from gridtap_plugins.isg import metrics as m
from gridtap_plugins.isg.plugin import IsgPlugin
from gridtap_plugins.isg.simulator import IsgSimulator
from tests.conftest import ROOT


def test_every_metric_declares_how_a_person_reads_it():
    assert all(d.display is not None for d in IsgPlugin.metrics)
    names = [d.name for d in IsgPlugin.metrics]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("mode", ["modbus", "web"])
def test_display_names_of_real_samples(mode):
    with IsgSimulator(password=None, controller="wpm") as sim:
        raw = {"mode": mode, "url": sim.url, "host": "127.0.0.1", "modbus_port": sim.modbus_port_bound}
        dev = devices.device_spec(IsgPlugin, raw, where="isg", default_interval=60).create()
        samples = dev.collect() + dev.diagnostics()
        dev.close()
    titles = {}
    for s in samples:
        labels = dict(s.labels)
        hint = display_of(s.definition, labels)
        if hint.hidden:
            continue  # not an entity (the controller info)
        title = hint.title(labels)
        assert title and "{" not in title and title[0].isupper(), (s.name, labels, title)
        titles[(s.name, s.labels)] = title
    if mode == "modbus":
        assert titles[("isg_outside_temperature_celsius", ())] == "Outside temperature"
        assert titles[("isg_heating_circuit_temperature_celsius", (("circuit", "1"), ("type", "actual")))] == \
            "Heating circuit 1 actual temperature"
        assert titles[("isg_status_flag", (("flag", "hc1_pump"),))] == "Heating circuit 1 pump"
        assert display_of(m.MODBUS_BY_STEM["heating_pressure_pascals"], {}).unit == "bar"
    else:
        assert titles[("isg_web_temperature_celsius", (("name", "aussentemperatur"), ("section", "heizung")))] == \
            "Outside temperature"
        hint = display_of(m.WEB_FLAG, {"name": "verdichter", "section": "status"})
        assert hint.binary == "running" and hint.name == "Verdichter"


@pytest.mark.parametrize(("flag", "device_class"), [
    ("compressor", "running"), ("hc1_pump", "running"), ("filter_change_extract_air", "problem"),
    ("service", "problem"), ("summer_mode", ""), ("utility_lock", ""),
])
def test_status_flags_are_binary_sensors_of_the_right_class(flag, device_class):
    hint = display_of(m.MODBUS_BY_STEM["status_flag"], {"flag": flag})
    assert hint.binary == device_class  # a filter change is a problem, not "running"
    assert hint.title({"flag": flag})[0].isupper()


def test_clock_values_read_in_hours_like_the_isg_shows_them():
    hint = display_of(m.WEB_TIME_OF_DAY, {"name": "aktuelle_zeit", "section": "allgemein"})
    assert (hint.unit, hint.precision) == ("h", 2)


def test_alert_rules_pass_promtool_and_fire_as_documented(tmp_path: Path):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package prometheus; tests/setup-and-run.sh)")
    rules = ROOT / "plugins" / "isg" / "alerts.yml"
    check = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr
    test = tmp_path / "alerts_test.yml"
    test.write_text(f"""rule_files: ["{rules}"]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'goodwe_meter_power_export_watts{{device="meter"}}'
        values: '2500x30'
      - series: 'isg_sgready_error_total{{device="heatpump"}}'
        values: '0 0 1 1'
    alert_rule_test:
      - eval_time: 20m
        alertname: HeatPumpPVSurplus
        exp_alerts:
          - exp_labels: {{device: meter, target: active, sgready_device: heatpump}}
            exp_annotations: {{summary: "PV surplus 2.5kW: SGReady 3 (raised set points)"}}
      - eval_time: 20m
        alertname: HeatPumpGridLimit
        exp_alerts: []
      - eval_time: 3m
        alertname: HeatPumpSGReadyWritesFail
        exp_alerts:
          - exp_labels: {{device: heatpump, severity: warning}}
            exp_annotations: {{summary: "SGReady requests to heatpump failed: see gridtap's log"}}
""")
    result = subprocess.run([promtool, "test", "rules", str(test)], capture_output=True, timeout=30)
    assert result.returncode == 0, (result.stdout + result.stderr).decode()


def test_the_sample_config_loads():
    found = devices.load_device(IsgPlugin, config_path=str(ROOT / "plugins" / "isg" / "isg.yaml"))
    dev = found.spec.create()
    assert (found.spec.name, dev.config.mode, dev.modbus_host) == ("heatpump", "modbus", "192.168.1.50")
    assert dev.pages == ["1,0", "1,1", "2,0", "2,1", "2,3", "2,4", "4,7"]
    assert float(dev.config.sgready_reassert) == 300.0
