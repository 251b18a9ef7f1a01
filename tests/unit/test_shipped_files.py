"""What we ship beside the code stays true to it: every plugin's sample config validates,
every telegraf.d snippet is a command our CLI accepts, every dashboard query names a metric
the plugin really emits."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest

from gridtap import cli, config, devices, plugin
from gridtap.health import health_defs
from tests.conftest import ROOT

PLUGINS = sorted(p.name for p in (ROOT / "plugins").iterdir() if (p / "plugin.py").exists())
SNIPPETS = sorted((ROOT / "telegraf.d").glob("*.conf"))


def test_every_plugin_ships_its_files():
    assert plugin.names() == PLUGINS
    for name in PLUGINS:
        for shipped in (f"{name}.yaml", "README.md", "dashboard.json"):
            assert (ROOT / "plugins" / name / shipped).is_file(), (name, shipped)
        assert (ROOT / "telegraf.d" / f"{name}.conf").is_file(), name


@pytest.mark.parametrize("name", PLUGINS)
def test_sample_config_validates(name: str):
    common = devices.load_common(config.load_yaml(ROOT / "plugins" / name / f"{name}.yaml"))
    (entry,) = devices.devices_from_file(common, only_plugin=name)
    where, cls, raw = entry
    spec = devices.device_spec(cls, raw, where=where, default_interval=float(common.interval))
    assert spec.plugin_cls.name == name and spec.interval > 0


@pytest.mark.parametrize("path", SNIPPETS, ids=[p.name for p in SNIPPETS])
def test_telegraf_snippet_is_a_valid_command(path: Path):
    (execd,) = tomllib.loads(path.read_text())["inputs"]["execd"]
    command = execd["command"]
    assert command[0] == "gridtap"
    args = cli.build_parser(cli._plugin_classes()).parse_args(command[1:])
    assert (args.command, args.output) == ("run", "influx")
    assert execd.get("data_format", "influx") == "influx"
    assert args.signal == execd.get("signal", "none")  # the two sides agree on who triggers
    assert Path(args.config).name == f"{args.plugin}.yaml"  # the shipped sample's name


def _queries(node: object) -> list[str]:
    if isinstance(node, dict):
        found = [v for k, v in node.items() if k in ("expr", "query", "definition") and isinstance(v, str)]
        return found + [q for v in node.values() for q in _queries(v)]
    if isinstance(node, list):
        return [q for v in node for q in _queries(v)]
    return []


@pytest.mark.parametrize("name", PLUGINS)
def test_dashboard_queries_name_real_metrics(name: str):
    dashboard = json.loads((ROOT / "plugins" / name / "dashboard.json").read_text())
    used = set(re.findall(rf"\b{name}_[a-z0-9_]+", " ".join(_queries(dashboard))))
    cls = plugin.load(name)
    known = {d.name for d in cls.metrics} | {d.name for d in health_defs(name)}
    assert used, "the dashboard queries no metric of its plugin"
    assert used <= known, sorted(used - known)
