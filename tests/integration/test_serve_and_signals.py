"""`gridtap serve` with several devices, one of them dead; and the execd `signal = "none"`
mode with both of Telegraf's ways of stopping a child (stdin EOF, SIGTERM)."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration import servers

pytestmark = pytest.mark.integration


def test_serve_isolates_a_dead_device(workdir: Path):
    sim, addr = servers.start_simulator("intergas", workdir)
    dead = servers.free_port()
    http = servers.free_port()
    cfg = workdir / "gridtap.yaml"
    cfg.write_text(
        f"interval: 1s\nlisten: 127.0.0.1:{http}\ndevices:\n"
        f"  - plugin: intergas\n    name: kitchen\n    port: socket://{addr.removeprefix('socket://')}\n"
        f"  - plugin: intergas\n    name: attic\n    port: socket://127.0.0.1:{dead}\n    timeout: 0.3s\n"
        f"  - plugin: goodwe\n    name: proxy\n    listen_host: 127.0.0.1\n    listen_port: {servers.free_port()}\n"
        f"    upstream_host: 127.0.0.1\n    upstream_port: {dead}\n")
    serve = servers.spawn("serve", [servers.gridtap_bin(), "serve", "--config", str(cfg)], workdir,
                          env=servers.gridtap_env())

    try:
        text = servers.scrape_until(http, 'intergas_up{device="kitchen"} 1.0', 'intergas_up{device="attic"} 0.0',
                                    timeout=20, proc=serve)
    finally:
        sim.stop()
        code = serve.stop()
    assert code == 0, serve.log()
    assert re.search(r'intergas_temperature_celsius\{device="kitchen",sensor="flow"\} \d', text)
    assert 'device="attic",sensor=' not in text  # nothing stale or made up for the dead device
    # No device has uploaded yet: waiting, not down (no goodwe_up), and the proxy's diagnostics are there.
    assert 'goodwe_up{device="proxy"}' not in text
    assert 'goodwe_upstream_dial_failures_total{device="proxy"} 0.0' in text
    rc, report = servers.promtool_check_metrics(text)
    assert rc == 0 and report.strip() == "", report
    # one warning per device state change, not one per attempt
    assert serve.log().count("intergas/attic: collection failed") == 1, serve.log()


def _own_interval(workdir: Path) -> tuple[servers.Proc, subprocess.Popen]:
    sim, addr = servers.start_simulator("intergas", workdir)
    proc = subprocess.Popen([servers.gridtap_bin(), "run", "intergas", "--port", addr, "--output", "influx",
                             "--signal", "none", "--interval", "0.5s"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=servers.gridtap_env())
    return sim, proc


def _batches_within(proc: subprocess.Popen, seconds: float) -> int:
    assert proc.stdout is not None
    out, deadline = b"", time.monotonic() + seconds
    while time.monotonic() < deadline:
        if select.select([proc.stdout], [], [], 0.1)[0]:
            out += os.read(proc.stdout.fileno(), 65536)
    return len(set(re.findall(rb" (\d{19})\n", out)))  # distinct batch timestamps


@pytest.mark.parametrize("stop", ["stdin EOF", "SIGTERM"])
def test_signal_none_collects_on_its_own_and_stops_cleanly(workdir: Path, stop: str):
    sim, proc = _own_interval(workdir)
    try:
        assert _batches_within(proc, 2.6) >= 3  # every 0.5 s with no newline from anyone
        t0 = time.monotonic()
        if stop == "SIGTERM":
            proc.send_signal(signal.SIGTERM)
        else:
            assert proc.stdin is not None
            proc.stdin.close()
        code = proc.wait(5)
        assert time.monotonic() - t0 < 3
    finally:
        if proc.poll() is None:
            proc.kill()
        sim.stop()
    assert code == 0, proc.stderr.read().decode() if proc.stderr else ""
