"""What the isg plugin ships beside its code: display hints on every metric (and how they read in
Home Assistant on real samples of the simulator, through the MQTT output), and the example alert
rules that drive the webhook."""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from gridtap import devices, schedule
from gridtap.model import display_of
from gridtap.outputs import mqtt
from gridtap_plugins.isg import metrics as m
from gridtap_plugins.isg import page as pages
from gridtap_plugins.isg.plugin import IsgPlugin
from gridtap_plugins.isg.simulator import IsgSimulator
from tests.conftest import ROOT
from tests.mqtt_recorder import RecordingClient


def entities(mode: str, controller: str = "wpm") -> list[dict[str, Any]]:
    """Home Assistant discovery configs of one simulated heat pump, as ``gridtap run isg --output mqtt``
    publishes them (two collections: the optional blocks are known after the first)."""
    with IsgSimulator(password=None, controller=controller) as sim:
        raw = {"mode": mode, "url": sim.url, "host": "127.0.0.1", "modbus_port": sim.modbus_port_bound}
        dev = devices.device_spec(IsgPlugin, raw, where="isg", default_interval=60).create()
        pub = mqtt.MqttPublisher("127.0.0.1", 1, devices=[("isg", "heatpump")])
        pub._client = RecordingClient()  # type: ignore[assignment]
        collector = schedule.Collector(dev, 60.0)
        try:
            for _ in range(2):
                batch = collector.collect_once()
                assert batch.ok, batch.error
                batch.device = "heatpump"
                pub.publish([batch])
        finally:
            dev.close()
    return pub._client.discovery()  # type: ignore[attr-defined]


def dashboard(configs: list[dict[str, Any]]) -> set[str]:
    return {c["name"] for c in configs if "entity_category" not in c and c.get("enabled_by_default", True)}


def by_name(configs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in configs}


def test_every_metric_declares_how_a_person_reads_it():
    assert all(d.display is not None for d in IsgPlugin.metrics)
    names = [d.name for d in IsgPlugin.metrics]
    assert len(names) == len(set(names))


#: The WPM simulator's dashboard (plugins/isg/README.md, "Home Assistant", says why each is there).
WPM_DASHBOARD = {
    "Outside temperature", "Flow temperature", "Return temperature", "Heating circuit 1 temperature",
    "Heating circuit 2 temperature", "Hot water temperature", "Hot water set temperature",
    "Room temperature (circuit 1)", "Room humidity (circuit 1)", "Heating pressure", "Operating mode", "Fault",
    "Compressor", "Heating", "Hot water heating", "Defrost", "Electric booster", "SG Ready state",
    "Inverter 1 power", "Heat produced today for heating", "Heat produced today for hot water",
    "Electricity used today for heating", "Electricity used today for hot water",
}


def test_modbus_entities_a_person_would_design():
    configs = entities("modbus")
    names = Counter(c["name"] for c in configs)
    assert [n for n, k in names.items() if k > 1] == []  # "Defrost" once: the other is "Defrost initiated"
    assert dashboard(configs) == WPM_DASHBOARD
    assert len(configs) == 102 and Counter(c["component"] for c in configs) == {"sensor": 54, "binary_sensor": 48}
    e = by_name(configs)
    assert e["Operating mode"]["device_class"] == "enum" and "Automatic" in e["Operating mode"]["options"]
    assert e["Defrost"]["device_class"] == "running" and e["Defrost initiated"]["entity_category"] == "diagnostic"
    assert (e["Fault"]["component"], e["Fault"]["device_class"]) == ("binary_sensor", "problem")
    assert e["Heating pressure"]["unit_of_measurement"] == "bar"
    assert e["Room humidity (circuit 1)"]["device_class"] == "humidity"
    assert "state_class" not in e["SG Ready state"]  # a code, not a quantity to average
    assert (e["SG Ready state"]["device_class"], e["SG Ready state"]["options"]) == \
        ("enum", ["Lock", "Normal", "Active", "Force"])
    assert e["Bus status"]["options"][:2] == ["OK", "Status error"]
    assert "state_class" not in e["Hot water comfort temperature (setting)"]  # settings keep no statistics
    for name in ("Electricity used today for heating", "Heat produced today for hot water"):
        assert (e[name]["device_class"], e[name]["state_class"], e[name]["unit_of_measurement"]) == \
            ("energy", "total_increasing", "kWh")
    # the totals lag up to a day (spec §2.7): diagnostics; the day counters feed the Energy dashboard
    assert e["Electricity used for heating"]["entity_category"] == "diagnostic"
    # repeats and internals exist but are disabled
    for name in ("Compressor 2", "Controller id", "Block system values read", "Heat pump 1 heat produced for heating"):
        assert e[name]["enabled_by_default"] is False, name
    device = e["Outside temperature"]["device"]
    assert (device["manufacturer"], device["model"]) == ("Stiebel Eltron", "WPM 3")


def test_lwz_entities_have_distinct_names_and_a_short_dashboard():
    configs = entities("modbus", "lwz")
    assert [n for n, k in Counter(c["name"] for c in configs).items() if k > 1] == []
    board = dashboard(configs)
    assert {"Filter change", "Extract air humidity", "Defrost", "Electric booster", "Compressor"} <= board
    assert len(board) <= 25, sorted(board)
    assert by_name(configs)["Filter change"]["device_class"] == "problem"


@pytest.mark.parametrize("controller", ["wpm", "lwz"])
def test_web_entities_have_english_distinct_names(controller):
    configs = entities("web", controller)
    assert [n for n, k in Counter(c["name"] for c in configs).items() if k > 1] == []
    e = by_name(configs)
    assert {"Outside temperature", "Flow temperature", "Hot water temperature", "Compressor", "Heating",
            "Electricity used today for heating"} <= dashboard(configs)
    assert e["Hot water flow rate"]["name"] != e["Heating flow rate"]["name"]  # one label, two sections
    assert e["ISG clock"]["enabled_by_default"] is False  # a time of day is no quantity
    assert e["Outside temperature"]["device"]["manufacturer"] == "Stiebel Eltron"


def test_a_tecalor_ui_names_the_manufacturer():
    page = ('<form id="werte"><table class="info"><tr><th class="round-top">STATUS</th></tr>'
            '<tr class="even"><td class="key">VERDICHTER</td><td class="value">'
            '<img src="./pics/tec-symbol_an-97b765.png"/></td></tr></table></form>')
    assert pages.parse_page(page).brand == "Tecalor"
    assert pages.parse_page(page.replace("tec-symbol", "ste-symbol")).brand == "Stiebel Eltron"
    assert pages.parse_page(page.replace("tec-symbol_an-97b765.png", "x.png")).brand is None


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
    assert (hint.unit, hint.precision, hint.enabled, hint.state_class) == ("h", 2, False, "")


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
    assert dev.config.sgready_reassert is None and dev.sgready is None  # nothing kept until sgready_enable
