"""What plugins/growatt ships stays true to the code: the README's metric table, the systemd
units (systemd-analyze verify), the sample config's keys, the plugin's class facts."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from gridtap import config, devices
from gridtap.health import health_defs
from gridtap.model import display_of
from gridtap.outputs.ha import check_display
from gridtap_plugins.growatt import api as gapi
from gridtap_plugins.growatt import metrics as m
from gridtap_plugins.growatt.plugin import GrowattConfig, GrowattPlugin
from tests.conftest import ROOT
from tests.integration.servers import gridtap_bin

HERE = ROOT / "plugins" / "growatt"


def test_readme_lists_every_metric_and_setting():
    text = (HERE / "README.md").read_text()
    table = set(re.findall(r"^\| `(growatt_[a-z_]+)` \| (?:gauge|counter|info|stateset)", text, re.MULTILINE))
    assert table == {d.name for d in m.METRICS}
    for d in health_defs("growatt"):
        assert d.name in text
    for field in GrowattConfig.__dataclass_fields__:
        assert f"| `{field}` |" in text, field
    for var in GrowattPlugin.env_aliases:
        assert var in text, var


def test_the_class_facts():
    assert GrowattPlugin.default_interval == 300.0
    assert GrowattPlugin.default_listen == "127.0.0.1:9120"
    assert GrowattPlugin.subdevice_labels == ("plant_id", "device_sn")
    assert set(GrowattPlugin.env_aliases.values()) <= set(GrowattConfig.__dataclass_fields__)


def test_sample_config_names_every_setting_and_validates_with_the_env_token(monkeypatch):
    text = (HERE / "growatt.yaml").read_text()
    for field in GrowattConfig.__dataclass_fields__:
        assert re.search(rf"^\s+#? ?{field}:", text, re.MULTILINE), field
    monkeypatch.setenv("GROWATT_TOKEN", "from-the-environment")
    common = devices.load_common(config.load_yaml(HERE / "growatt.yaml"))
    ((where, cls, raw),) = devices.devices_from_file(common, only_plugin="growatt")
    spec = devices.device_spec(cls, raw, where=where, default_interval=float(common.interval))
    assert spec.settings.token.reveal() == "from-the-environment"  # the environment beats the file
    assert spec.interval == 300.0


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_units_verify(tmp_path: Path):
    units = sorted((HERE / "systemd").glob("gridtap-growatt*"))
    assert {u.name for u in units} == {"gridtap-growatt.service", "gridtap-growatt-push.service",
                                       "gridtap-growatt-push.timer"}
    for unit in units:  # systemd checks that ExecStart exists: point it at this gridtap
        (tmp_path / unit.name).write_text(unit.read_text().replace("/usr/local/bin/gridtap", gridtap_bin()))
    res = subprocess.run(["systemd-analyze", "verify", *sorted(str(p) for p in tmp_path.iterdir())],
                         capture_output=True, timeout=60)
    assert res.returncode == 0 and res.stderr.decode().strip() == "", res.stderr.decode()
    push = (HERE / "systemd" / "gridtap-growatt-push.service").read_text()
    assert "--once --output pushgateway" in push and "Type=oneshot" in push
    timer = (HERE / "systemd" / "gridtap-growatt-push.timer").read_text()
    assert "OnCalendar=*:0/5" in timer and "Unit=gridtap-growatt-push.service" in timer
    for unit in units:
        if unit.suffix == ".service":
            command = re.search(r"^ExecStart=(.*)$", unit.read_text(), re.MULTILINE).group(1).split()
            assert command[0] == "/usr/local/bin/gridtap"
            res = subprocess.run([gridtap_bin(), *command[1:], "--help"], capture_output=True, timeout=60)
            assert res.returncode == 0, res.stderr  # the flags the unit passes exist


def test_entity_names_read_like_english():
    """Home Assistant shows Display names: no field names, paths, snake_case or serials, whatever
    the label values the plugin produces; every unit asked for is reachable from the base unit."""
    labels = {"string": ["1", "8"], "phase": ["1", "3"], "phases": ["rs", "st", "tr"], "bus": ["p", "n"],
              "sensor": sorted({dict(f.labels)["sensor"] for f in m.DEVICE_FIELDS if f.metric is m.TEMPERATURE}),
              "endpoint": ["*", *gapi.ENDPOINTS], "code": ["10012"], "target": ["BNE9A5100D"]}
    seen = {}
    for d in m.METRICS:
        assert d.display is not None, d.name
        names = [n for n in d.label_names if n in labels]
        for i in range(max(len(labels[n]) for n in names) if names else 1):
            sample = {n: labels[n][min(i, len(labels[n]) - 1)] for n in names} | {"plant_id": "1", "device_sn": "X"}
            shown = display_of(d, sample)
            if shown.hidden:
                continue
            check_display(d, sample)
            title = shown.title(sample)
            assert title and "/" not in title and "_" not in title and "BNE9A5100D" not in title and not any(
                w in title.lower() for w in ("temp1", "tlx", "last data", " rs", " p ")), (d.name, title)
            seen[(d.name, tuple(sample.items()))] = title
    assert seen[("growatt_temperature_celsius", (("sensor", "ipm"), ("plant_id", "1"), ("device_sn", "X")))] == \
        "IPM temperature"
    assert seen[("growatt_temperature_celsius", (("sensor", "temperature5"), ("plant_id", "1"),
                                                 ("device_sn", "X")))] == "Temperature 5"
    assert seen[("growatt_pv_string_power_watts", (("string", "8"), ("plant_id", "1"), ("device_sn", "X")))] == \
        "PV8 power"
    assert seen[("growatt_api_backoff_seconds", (("endpoint", "*"), ("plant_id", "1"), ("device_sn", "X")))] == \
        "API back-off"
    assert seen[("growatt_api_backoff_seconds", (("endpoint", "device/tlx/tlx_last_data"), ("plant_id", "1"),
                                                 ("device_sn", "X")))] == "MIN data back-off"
