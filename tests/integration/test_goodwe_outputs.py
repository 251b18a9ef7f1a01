"""Goodwe end to end through the CLI: simulated device -> `gridtap run goodwe` proxy ->
simulated SEMS, and the decoded values in all three outputs (influx, collectd, prometheus).
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
from pathlib import Path

import pytest

from tests.integration import servers

pytestmark = pytest.mark.integration


def _read_ready(proc: servers.Proc, timeout: float = 20) -> str:
    stream = proc.popen.stdout
    assert stream is not None
    os.set_blocking(stream.fileno(), False)
    buf = b""

    def ready() -> str | None:
        nonlocal buf
        with contextlib.suppress(BlockingIOError, TypeError):
            buf += os.read(stream.fileno(), 4096)
        m = re.search(rb"ready (\S+)", buf)
        return m.group(1).decode() if m else None

    return servers.wait_until(ready, timeout, "simulator ready line", proc)


def _port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
        return True
    return False


@pytest.fixture
def sems(workdir: Path):
    proc = servers.spawn("sems", [servers.gridtap_bin(), "simulate", "goodwe", "--role", "sems", "--listen",
                                  "127.0.0.1:0"], workdir, env=servers.gridtap_env(), stdout_pipe=True)
    try:
        yield _read_ready(proc)
    finally:
        proc.stop()


def _proxy_args(sems: str, port: int) -> list[str]:
    host, _, sport = sems.rpartition(":")
    return ["--listen-host", "127.0.0.1", "--listen-port", str(port), "--upstream-host", host,
            "--upstream-port", sport]


def _device(workdir: Path, port: int) -> servers.Proc:
    return servers.spawn("device", [servers.gridtap_bin(), "simulate", "goodwe", "--role", "device", "--connect",
                                    f"127.0.0.1:{port}", "--kind", "meter", "--interval", "0.3", "--count", "20"],
                         workdir, env=servers.gridtap_env())


@pytest.mark.parametrize("output", ["influx", "collectd"])
def test_once_outputs_hold_meter_values(sems: str, workdir: Path, output: str):
    port = servers.free_port()
    run = subprocess.Popen([servers.gridtap_bin(), "run", "goodwe", "--output", output, "--once", "--wait", "20",
                            *_proxy_args(sems, port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env={**servers.gridtap_env(), "COLLECTD_HOSTNAME": "ci-host"})
    device = None
    try:
        servers.wait_until(lambda: _port_open(port), 15, "goodwe proxy listening")
        device = _device(workdir, port)
        out, err = run.communicate(timeout=30)
    finally:
        run.kill()
        if device:
            device.stop()
    assert run.returncode == 0, err.decode()
    text = out.decode()
    if output == "influx":
        lines = servers.parse_line_protocol(text)
        meter = [ln for ln in lines if ln.tags.get("device") == "meter"]
        assert meter, text
        fields = {k: v for ln in meter for k, v in ln.fields.items()}
        assert fields["meter_energy_import_joules_total"] >= 0
        assert any(k.startswith("meter_power_") for k in fields)
        assert all(len(ln.tags["serial"]) == 16 for ln in meter)
        assert any(ln.fields.get("up") == 1 for ln in lines)
    else:
        assert re.search(r"^PUTVAL ci-host/goodwe-meter/derive-meter_energy_import_joules-HomeKit_1000_Smart_Meter-"
                         r"\w{16} interval=\S+ \S+:\d+$",
                         text, re.M), text
        assert re.search(r"^PUTVAL ci-host/goodwe-goodwe/gauge-up interval=\S+ \S+:1\.0$", text, re.M), text


def test_prometheus_serves_meter_values(sems: str, workdir: Path):
    port, http = servers.free_port(), servers.free_port()
    run = servers.spawn("run", [servers.gridtap_bin(), "run", "goodwe", "--output", "prometheus", "--interval", "0.5",
                                "--listen", f"127.0.0.1:{http}", *_proxy_args(sems, port)], workdir,
                        env=servers.gridtap_env())
    device = None
    try:
        servers.wait_until(lambda: _port_open(port), 15, "goodwe proxy listening", run)
        device = _device(workdir, port)
        text = servers.scrape_until(http, 'goodwe_up{device="goodwe"} 1.0', "goodwe_meter_energy_import_joules_total",
                                    timeout=20, proc=run)
    finally:
        if device:
            device.stop()
        run.stop()
    assert re.search(r'goodwe_meter_power_\w+_watts\{device="meter",model="[^"]+",serial="\w{16}"\} -?\d', text)
    rc, report = servers.promtool_check_metrics(text)
    assert rc == 0 and report.strip() == "", report
