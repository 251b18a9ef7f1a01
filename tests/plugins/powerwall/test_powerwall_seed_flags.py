"""The seed exporter's command line as gridtap reads it (``PowerwallPlugin.rewrite_argv``), and
through the real CLI: a missing value is argparse's one-line error, never a silently dropped flag."""

from __future__ import annotations

import subprocess
import sys

import pytest

from gridtap_plugins.powerwall.plugin import PowerwallPlugin

GRIDTAP = [sys.executable, "-m", "gridtap"]


@pytest.mark.parametrize("argv,expected", [
    (["--config.file=f.yaml"], ["--config", "f.yaml", "--output", "prometheus"]),
    (["--config.file", "f.yaml", "--log.style", "json"],
     ["--config", "f.yaml", "--log-format", "json", "--output", "prometheus"]),
    (["--config.file=f.yaml", "--debug", "--once", "--output", "influx"],
     ["--config", "f.yaml", "--log-level", "debug", "--once", "--output", "influx"]),
    (["--config.file=f.yaml", "--fetchcert"], None),
    # no value: the flag is handed on bare, so argparse says "expected one argument"
    (["--config.file"], ["--config", "--output", "prometheus"]),
    (["--config.file", "--debug"], ["--config", "--log-level", "debug", "--output", "prometheus"]),
    (["--log.style", "--config.file=f.yaml"], ["--log-format", "--config", "f.yaml", "--output", "prometheus"]),
])
def test_seed_flags_become_gridtap_flags(argv, expected):
    out = PowerwallPlugin.rewrite_argv(["run", "powerwall", *argv])
    if expected is None:
        assert out == ["powerwall", "fetchcert", "--config", "f.yaml"]
    else:
        assert out == ["run", "powerwall", *expected]


@pytest.mark.parametrize("argv", [["--config.file"], ["--config.file", "--debug"], ["--log.style"]])
def test_a_seed_flag_without_its_value_is_one_line(argv, tmp_path):
    res = subprocess.run([*GRIDTAP, "run", "powerwall", *argv], capture_output=True, timeout=60, cwd=tmp_path)
    err = res.stderr.decode()
    assert res.returncode == 2 and err.count("\n") == 1 and "expected one argument" in err, err


def test_the_sample_config_retries_less_than_an_interval():
    """While a collection retries, the previous reading stays published: the sample must not
    teach a retry budget longer than the interval (it had 30 s against 15 s)."""
    from gridtap import devices
    from tests.conftest import ROOT

    found = devices.load_device(PowerwallPlugin, config_path=str(ROOT / "plugins" / "powerwall" / "powerwall.yaml"))
    assert float(found.spec.settings.retry_timeout) < found.spec.interval
