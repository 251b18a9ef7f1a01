"""Goodwe end to end through the CLI: simulated device -> `gridtap run goodwe` proxy ->
simulated SEMS, and the decoded values in all three outputs (influx, collectd, prometheus).
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import time
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


def _scrape(http: int) -> str:
    with contextlib.suppress(OSError):
        _, _, body = servers.http_get(f"http://127.0.0.1:{http}/metrics")
        return body.decode()
    return ""


def _simulated(workdir: Path, port: int, kind: str, name: str) -> servers.Proc:
    return servers.spawn(name, [servers.gridtap_bin(), "simulate", "goodwe", "--connect", f"127.0.0.1:{port}",
                                "--kind", kind, "--interval", "0.3"], workdir, env=servers.gridtap_env())


DIAGNOSTICS = ("goodwe_decode_errors_total{", "goodwe_upstream_dial_failures_total{", "goodwe_device_connections{",
               "goodwe_inbound_dropped_total{")


def test_each_device_goes_stale_on_its_own_and_diagnostics_stay(sems: str, workdir: Path):
    """Issue 11, acceptance 2: a meter, an inverter and an ET behind one proxy; killing the
    meter's simulator removes the meter's readings within stale_after, the others stay fresh,
    and the proxy's diagnostics are on /metrics throughout (also before the first upload,
    when there is no goodwe_up at all: waiting is not down)."""
    port, http = servers.free_port(), servers.free_port()
    stale_after = 2.0
    run = servers.spawn("run", [servers.gridtap_bin(), "run", "goodwe", "--output", "prometheus", "--interval", "0.5",
                                "--listen", f"127.0.0.1:{http}", "--stale-after", f"{stale_after}s",
                                *_proxy_args(sems, port)], workdir, env=servers.gridtap_env())
    devices: list[servers.Proc] = []
    try:
        servers.wait_until(lambda: _port_open(port), 15, "goodwe proxy listening", run)
        before = servers.scrape_until(http, *DIAGNOSTICS, timeout=15, proc=run)
        assert "goodwe_up{" not in before and "goodwe_meter_" not in before
        meter = _simulated(workdir, port, "meter", "meter")
        devices = [meter, _simulated(workdir, port, "inverter", "inverter"), _simulated(workdir, port, "et", "et")]
        text = servers.scrape_until(http, 'goodwe_up{device="goodwe"} 1.0', 'device="meter"',
                                    'serial="53000DSC00000001"', 'serial="9010KETU00000001"',
                                    "goodwe_battery_energy_charge_joules_total{", timeout=20, proc=run)
        rc, report = servers.promtool_check_metrics(text)
        assert rc == 0 and report.strip() == "", report
        meter.stop()
        killed = time.monotonic()
        gone = servers.wait_until(lambda: (lambda t: t if "91000HKU00000001" not in t else None)(_scrape(http)),
                                  stale_after + 10, "meter readings gone", run)
        assert time.monotonic() - killed >= stale_after - 0.5
        assert 'serial="53000DSC00000001"' in gone and 'serial="9010KETU00000001"' in gone
        assert 'goodwe_up{device="goodwe"} 1.0' in gone
        assert all(d in gone for d in DIAGNOSTICS)
        for d in devices[1:]:
            d.stop()
        down = servers.scrape_until(http, 'goodwe_up{device="goodwe"} 0.0', timeout=stale_after + 10, proc=run)
        assert "goodwe_inverter_" not in down and "goodwe_battery_" not in down
        assert all(d in down for d in DIAGNOSTICS)
        assert re.search(r'goodwe_packets_total\{device="goodwe",direction="outbound",type="0x0304"\} [1-9]', down)
    finally:
        for d in devices:
            d.stop()
        run.stop()
