"""A light process: each command imports what it uses. These run the real command line in a
child process and look at what it imported (``sys.modules`` at exit), so an import moved back
to module level, or a plugin loaded that the command does not use, shows up here."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

import gridtap
from gridtap import plugin

WRAPPER = textwrap.dedent('''
    import atexit, json, os, sys
    atexit.register(lambda: open(os.environ["MODULES_OUT"], "w").write(json.dumps(sorted(sys.modules))))
    from gridtap.entry import main
    sys.argv[0] = "gridtap"
    sys.exit(main())
''')

#: What the framework never imports for a process that does not push, read a file or run the demo
#: (plugins still import what they import: see their own module-level imports).
HEAVY = ("prometheus_client", "yaml", "http.server", "gridtap.outputs.prometheus", "gridtap.demo")


def modules_of(tmp_path: Path, *argv: str, until: str | None = None, stdin: bytes = b"") -> set[str]:
    """The modules ``gridtap ARGV`` had imported when it ended (``until``: a URL that answers
    once it runs; the process is then stopped with SIGTERM)."""
    wrapper = tmp_path / "wrapper.py"
    wrapper.write_text(WRAPPER)
    out = tmp_path / "modules.json"
    env = {**os.environ, "MODULES_OUT": str(out)}
    proc = subprocess.Popen([sys.executable, str(wrapper), *argv], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    try:
        if until is None:
            proc.communicate(stdin, timeout=60)
        else:
            deadline = time.monotonic() + 30
            while True:
                try:
                    urllib.request.urlopen(until, timeout=2).read()
                    break
                except OSError:
                    assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read().decode()
                    time.sleep(0.1)
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return set(json.loads(out.read_text()))


def test_the_version_is_found_without_importlib_metadata():
    from importlib.metadata import version

    assert gridtap._installed_version() == version("gridtap")


def test_plugins_are_found_without_importlib_metadata():
    from importlib.metadata import entry_points

    assert plugin.declared() == {ep.name: ep.value for ep in entry_points(group=plugin.ENTRY_POINT_GROUP)}


def test_version_builds_no_plugin(tmp_path: Path):
    mods = modules_of(tmp_path, "--version")
    assert not [m for m in mods if m.startswith(("gridtap_plugins", "importlib.metadata", *HEAVY))]
    assert "gridtap._native" not in mods and "gridtap.outputs.exposition" not in mods


def test_decode_to_prometheus_loads_one_plugin_and_no_prometheus_client(tmp_path: Path):
    from gridtap_plugins.intergas.simulator import BoilerModel

    capture = tmp_path / "block.bin"
    capture.write_bytes(BoilerModel(start=0.0).block("S?", now=1.0))
    mods = modules_of(tmp_path, "decode", "intergas", str(capture), "--block", "S?", "--format", "prometheus")
    assert "gridtap_plugins.intergas.plugin" in mods and "gridtap.outputs.exposition" in mods
    assert not [m for m in mods if m.startswith(("gridtap_plugins.goodwe", "gridtap_plugins.powerwall",
                                                 "prometheus_client", "yaml", "gridtap.serve"))]


def test_run_prometheus_serves_without_http_server_or_prometheus_client(tmp_path: Path):
    from tests.integration.servers import free_port

    port = free_port()
    mods = modules_of(tmp_path, "run", "goodwe", "--listen-host", "127.0.0.1", "--listen-port", str(free_port()),
                      "--upstream-host", "127.0.0.1", "--output", "prometheus", "--listen", f"127.0.0.1:{port}",
                      until=f"http://127.0.0.1:{port}/metrics")
    assert "gridtap.serve" in mods and "gridtap.outputs.exposition" in mods
    assert not [m for m in mods if m.startswith(("gridtap_plugins.intergas", "gridtap_plugins.powerwall", *HEAVY))]
    assert "gridtap.outputs.lineproto" not in mods and "gridtap.sinks" not in mods


@pytest.mark.parametrize("config", [False, True])
def test_run_influx_once_needs_no_listener(tmp_path: Path, config: bool):
    from tests.integration.servers import free_port

    settings = ["--listen-host", "127.0.0.1", "--listen-port", str(free_port()), "--upstream-host", "127.0.0.1"]
    args = ["run", "goodwe", "--once", "--wait", "0s", *settings]
    if config:
        cfg = tmp_path / "gridtap.yaml"
        cfg.write_text("devices:\n  - plugin: goodwe\n    name: proxy\n")
        args += ["--config", str(cfg)]
    mods = modules_of(tmp_path, *args)
    assert "gridtap.serve" not in mods and "gridtap._native" in mods
    assert ("yaml" in mods) == config  # PyYAML only for a config file
    assert not [m for m in mods if m.startswith(("prometheus_client", "http.server", "gridtap.outputs.prometheus"))]
