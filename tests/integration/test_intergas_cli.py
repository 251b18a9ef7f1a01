"""Intergas through the real CLI: a pty pair and a TCP bridge, --once, and a simulator that
dies and comes back while `gridtap run` keeps going (up=0, then recovery, never an exit)."""

from __future__ import annotations

import os
import re
import select
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration import servers

pytestmark = pytest.mark.integration


def _simulator(workdir: Path, where: str, *mode: str) -> servers.Proc:
    proc = servers.spawn(f"sim-{where}", [servers.gridtap_bin(), "simulate", "intergas", *mode], workdir,
                         env=servers.gridtap_env(), stdout_pipe=True)
    stream = proc.popen.stdout
    assert stream is not None
    buf = b""

    def ready() -> bool:
        nonlocal buf
        if select.select([stream], [], [], 0.1)[0]:
            buf += os.read(stream.fileno(), 4096)
        return b"ready" in buf

    servers.wait_until(ready, 20, "intergas simulator ready", proc)
    return proc


@pytest.fixture(params=["pty", "tcp"])
def transport(request, workdir: Path):
    """(how to start the simulator, the plugin's port setting)."""
    if request.param == "pty":
        link = str(workdir / "ttyBoiler")
        return ("--pty", link), link
    port = servers.free_port()
    return ("--tcp", f"127.0.0.1:{port}"), f"socket://127.0.0.1:{port}"


def test_once_prints_every_block(transport, workdir: Path):
    mode, port = transport
    sim = _simulator(workdir, "once", *mode)
    try:
        proc = servers.run_gridtap(["run", "intergas", "--port", port, "--output", "influx", "--once"], timeout=30)
    finally:
        sim.stop()
    assert proc.returncode == 0, proc.stderr.decode()
    lines = servers.parse_line_protocol(proc.stdout.decode())
    fields = {(k, tuple(sorted(ln.tags.items()))): v for ln in lines for k, v in ln.fields.items()}
    names = {k for k, _ in fields}
    # one field from each of the five blocks, plus the health metrics
    for name in ("temperature_celsius", "water_pressure_pascals", "fan_speed_hertz", "flag",  # S?
                 "pump_pwm_ratio",  # S2
                 "load_ratio",  # CRC
                 "burner_starts_total", "gas_consumed_cubic_meters_total",  # HN
                 "parameter",  # V?
                 "up", "last_success_timestamp_seconds"):
        assert name in names, (name, sorted(names))
    flags = [ln for ln in lines if "name" in ln.tags and "flag" in ln.fields]
    assert len(flags) == 16
    params = [ln for ln in lines if "parameter" in ln.fields]
    assert len(params) == 31


class Cycle:
    """`gridtap run intergas --signal STDIN`: one newline in, one batch out."""

    def __init__(self, port: str) -> None:
        self.proc = subprocess.Popen(
            [servers.gridtap_bin(), "run", "intergas", "--port", port, "--output", "influx", "--signal", "STDIN",
             "--timeout", "0.5s"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=servers.gridtap_env())

    def collect(self) -> list[servers.LPLine]:
        assert self.proc.poll() is None, self.proc.stderr.read().decode()
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(b"\n")
        self.proc.stdin.flush()
        out, deadline = b"", time.monotonic() + 20
        while time.monotonic() < deadline:
            ready = select.select([self.proc.stdout], [], [], 0.3)[0]
            if ready:
                out += os.read(self.proc.stdout.fileno(), 65536)
            elif re.search(rb"[ ,]up=\di", out):
                break  # the batch's health line arrived and nothing followed for 0.3 s
        return servers.parse_line_protocol(out.decode())

    def close(self) -> int:
        assert self.proc.stdin
        self.proc.stdin.close()
        return self.proc.wait(10)


def _up(lines: list[servers.LPLine]) -> int:
    (up,) = [ln.fields["up"] for ln in lines if "up" in ln.fields]
    return up


def test_simulator_dies_and_comes_back(transport, workdir: Path):
    mode, port = transport
    sim = _simulator(workdir, "first", *mode)
    run = Cycle(port)
    try:
        first = run.collect()
        assert _up(first) == 1 and any("temperature_celsius" in ln.fields for ln in first)
        sim.stop()
        down = run.collect()
        assert _up(down) == 0
        # nothing stale: only the health metrics remain while the device is gone
        assert {k for ln in down for k in ln.fields} <= {"up", "collect_duration_seconds",
                                                       "last_success_timestamp_seconds"}
        sim = _simulator(workdir, "second", *mode)
        for _ in range(20):
            back = run.collect()
            if _up(back) == 1:
                break
            time.sleep(0.5)
        assert _up(back) == 1 and any("temperature_celsius" in ln.fields for ln in back)
        assert run.proc.poll() is None  # the process never exited
    finally:
        sim.stop()
        code = run.close()
    assert code == 0  # and it exits cleanly on stdin EOF
