"""`gridtap simulate goodwe` and the goodwe proxy settings, as a user meets them: the device
simulator ends by itself after --count/--replay, and every mistake is one `gridtap:` line.

Everything listens on 127.0.0.1 and every wait is bounded.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gridtap.errors import ConfigError
from gridtap_plugins.goodwe import encoder
from gridtap_plugins.goodwe.plugin import GoodweConfig, GoodwePlugin
from gridtap_plugins.goodwe.simulator import DeviceSimulator, SemsSimulator
from tests.integration.servers import one_error_line


def gridtap(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    """The CLI of the Python running the tests (so a venv's tests test that venv)."""
    return subprocess.run([sys.executable, "-m", "gridtap", *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, env={**os.environ, "PYTHONUNBUFFERED": "1"})


@pytest.fixture
def sems() -> Iterator[SemsSimulator]:
    sim = SemsSimulator("127.0.0.1", 0, bogus=False)
    sim.start()
    try:
        yield sim
    finally:
        sim.stop()


def connect(sim: SemsSimulator) -> str:
    assert sim.address is not None
    return f"{sim.address[0]}:{sim.address[1]}"


# --- 1: the device role ends by itself ------------------------------------------------------

@pytest.mark.timeout(60)
def test_device_exits_0_after_count_uploads(sems: SemsSimulator) -> None:
    t0 = time.monotonic()
    proc = gridtap("simulate", "goodwe", "--connect", connect(sems), "--interval", "50ms", "--count", "3",
                   timeout=20)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ready ") and proc.stderr == ""
    assert time.monotonic() - t0 < 15
    # the info upload and all 3 data uploads arrived (and were answered) before it left
    types = [f["type"] for f in sems.frames]
    assert types[0] == 0x0303 and types.count(0x0304) == 3


@pytest.mark.timeout(60)
def test_device_sends_cached_uploads_first(sems: SemsSimulator) -> None:
    proc = gridtap("simulate", "goodwe", "--connect", connect(sems), "--kind", "inverter", "--interval", "50ms",
                   "--count", "1", "--cached", "2", timeout=20)
    assert proc.returncode == 0, proc.stderr
    types = [f["type"] for f in sems.frames]
    assert types[:4] == [0x0103, 0x0145, 0x0145, 0x0104]
    cached = [f for f in sems.frames if f["type"] == 0x0145]
    assert [len(f["cleartext"]) for f in cached] == [352, 352]  # the DNS's own cached block set
    assert cached[0]["timestamp"] < cached[1]["timestamp"]
    proc = gridtap("simulate", "goodwe", "--connect", connect(sems), "--cached", "-1")
    assert proc.returncode == 2 and "--cached" in one_error_line(proc)


@pytest.mark.timeout(60)
def test_device_exits_0_at_end_of_replay(sems: SemsSimulator, tmp_path: Path) -> None:
    when = dt.datetime(2024, 1, 1, 12, 0, tzinfo=encoder.BEIJING)
    frames = [encoder.outbound_frame(0x0304, "91000HKU00000042", encoder.register_dump(encoder.meter_blocks(
        energy_export=i, energy_generation=2, energy_import=3, power_export=-5, power_generation=7)), when)
        for i in range(2)]
    for i, frame in enumerate(frames):
        (tmp_path / f"{i}.hex").write_text(frame.hex() + "\n")
    proc = gridtap("simulate", "goodwe", "--connect", connect(sems), "--interval", "0.05",
                   "--replay", str(tmp_path), timeout=20)
    assert proc.returncode == 0, proc.stderr
    assert bytes(sems.received) == b"".join(frames)


@pytest.mark.timeout(60)
def test_device_with_count_still_stops_on_sigterm(sems: SemsSimulator) -> None:
    dev = subprocess.Popen([sys.executable, "-m", "gridtap", "simulate", "goodwe", "--connect", connect(sems),
                            "--interval", "1m", "--count", "5"], stdout=subprocess.PIPE, text=True,
                           env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert dev.stdout is not None and dev.stdout.readline().startswith("ready ")
        dev.send_signal(signal.SIGTERM)
        assert dev.wait(10) == 0
    finally:
        if dev.poll() is None:
            dev.kill()
            dev.wait(5)


@pytest.mark.timeout(30)
def test_finishing_device_gives_up_waiting_for_a_silent_server() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        device = DeviceSimulator("127.0.0.1", silent.getsockname()[1], count=1, interval=0.01,
                                 finish=True, reply_timeout=0.3)
        device.start()
        conn, _ = silent.accept()
        with conn:
            assert device._thread is not None
            device._thread.join(5)
            assert not device._thread.is_alive() and device.error is None
            assert device.done.is_set() and device.frames_sent == 2


@pytest.mark.timeout(30)
def test_in_process_device_stays_connected_after_done_by_default(sems: SemsSimulator) -> None:
    device = DeviceSimulator(*sems.address, count=1, interval=0.01)  # type: ignore[misc]
    device.start()
    try:
        assert device.done.wait(5)
        time.sleep(0.2)
        assert device._thread is not None and device._thread.is_alive()
    finally:
        device.stop()


# --- 2-4: the simulator's flags ---------------------------------------------------------------

@pytest.mark.parametrize("serial", ["SHORT", "ÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄ", "91000HKU000000012"])
def test_bad_serial_exits_2_before_ready(sems: SemsSimulator, serial: str) -> None:
    proc = gridtap("simulate", "goodwe", "--connect", connect(sems), "--count", "1", "--serial", serial)
    assert proc.returncode == 2
    assert "--serial" in one_error_line(proc) and "16" in proc.stderr
    assert "ready" not in proc.stdout and sems.frames == []


def test_serial_checked_in_process_too() -> None:
    with pytest.raises(ValueError, match="16"):
        DeviceSimulator("127.0.0.1", 1, serial="SHORT")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("interval", ["50ms", "0.05s", "0.05"])
def test_interval_takes_a_duration(sems: SemsSimulator, interval: str) -> None:
    proc = gridtap("simulate", "goodwe", "--connect", connect(sems), "--interval", interval, "--count", "2")
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("interval", ["5x", "0", "-1s"])
def test_bad_interval_exits_2(sems: SemsSimulator, interval: str) -> None:
    proc = gridtap("simulate", "goodwe", "--connect", connect(sems), "--interval", interval)
    assert proc.returncode == 2
    assert "--interval" in one_error_line(proc)


def test_missing_connect_is_one_gridtap_line() -> None:
    proc = gridtap("simulate", "goodwe", "--count", "1")
    assert proc.returncode == 2
    assert one_error_line(proc) == "gridtap: config error: --connect: HOST:PORT is required for the device role"


def test_replay_without_frames_is_one_gridtap_line(sems: SemsSimulator, tmp_path: Path) -> None:
    (tmp_path / "junk.hex").write_text("# nothing here\n")
    proc = gridtap("simulate", "goodwe", "--connect", connect(sems), "--replay", str(tmp_path))
    assert proc.returncode == 2
    assert one_error_line(proc) == f"gridtap: no POSTGW frames in {tmp_path}/*.hex"
    proc = gridtap("simulate", "goodwe", "--connect", connect(sems), "--replay", str(tmp_path / "absent"))
    assert proc.returncode == 2
    assert "not a directory" in one_error_line(proc)


# --- 5: port and packet-type ranges -------------------------------------------------------------

@pytest.mark.parametrize(("settings", "key"), [
    ({"listen_port": 70000}, "goodwe/pv.listen_port"),
    ({"listen_port": -1}, "goodwe/pv.listen_port"),
    ({"upstream_port": 0}, "goodwe/pv.upstream_port"),
    ({"upstream_port": 65536}, "goodwe/pv.upstream_port"),
    ({"inbound_allow": ["0x0116", "0x99999"]}, "goodwe/pv.inbound_allow"),
    ({"inbound_allow": ["-1"]}, "goodwe/pv.inbound_allow"),
])
def test_out_of_range_settings_are_config_errors(settings: dict, key: str) -> None:
    with pytest.raises(ConfigError) as e:
        GoodwePlugin(GoodweConfig(listen_host="127.0.0.1", **settings), "pv")
    assert e.value.key == key and e.value.exit_code == 2


def test_edge_values_are_accepted() -> None:
    plugin = GoodwePlugin(GoodweConfig(listen_port=0, upstream_port=65535, inbound_allow=["0", "0xffff"]), "pv")
    assert plugin.options.inbound_allow == frozenset({0, 0xFFFF})


@pytest.mark.parametrize(("flags", "key"), [
    (["--listen-port", "70000"], "listen_port"),
    (["--inbound-allow", "0x0116,0x99999"], "inbound_allow"),
])
def test_out_of_range_flags_exit_2(flags: list[str], key: str) -> None:
    proc = gridtap("run", "goodwe", "--listen-host", "127.0.0.1", "--once", "--wait", "1s", *flags)
    assert proc.returncode == 2
    line = one_error_line(proc)
    assert line.startswith("gridtap: config error: goodwe/goodwe.") and key in line, line


# --- 6: the proxy's port is taken ---------------------------------------------------------------

@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        yield busy.getsockname()[1]


def test_busy_listen_port_names_device_and_address(busy_port: int) -> None:
    plugin = GoodwePlugin(GoodweConfig(listen_host="127.0.0.1", listen_port=busy_port), "roof")
    with pytest.raises(ConfigError) as e:
        plugin.start()
    assert str(e.value) == (f"config error: goodwe/roof.listen_port: cannot listen on 127.0.0.1:{busy_port}: "
                            "Address already in use")
    plugin.close()


@pytest.mark.timeout(60)
def test_serve_with_two_proxies_says_which_one_cannot_listen(busy_port: int, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        http = s.getsockname()[1]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    cfg = tmp_path / "gridtap.yaml"
    cfg.write_text(f"listen: 127.0.0.1:{http}\ndevices:\n"
                   f"  - plugin: goodwe\n    name: garage\n    listen_host: 127.0.0.1\n    listen_port: {free}\n"
                   f"  - plugin: goodwe\n    name: roof\n    listen_host: 127.0.0.1\n    listen_port: {busy_port}\n")
    proc = gridtap("serve", "--config", str(cfg), "--log-level", "error")
    assert proc.returncode == 2
    assert one_error_line(proc) == (f"gridtap: config error: goodwe/roof.listen_port: cannot listen on "
                              f"127.0.0.1:{busy_port}: Address already in use")


# --- 7: `gridtap decode goodwe` decodes every good frame and reports each bad one ------------

def _frames() -> tuple[bytes, bytes, bytes]:
    when = dt.datetime(2024, 1, 1, 12, 0, tzinfo=encoder.BEIJING)
    good = [encoder.outbound_frame(0x0304, "91000HKU00000042", encoder.register_dump(encoder.meter_blocks(
        energy_export=i, energy_generation=2, energy_import=3, power_export=-5 - i, power_generation=7)), when)
        for i in range(2)]
    bad = bytearray(good[0])
    bad[80] ^= 0x10
    return good[0], bytes(bad), good[1]


def test_decode_skips_bad_frames_and_reports_each(caplog: pytest.LogCaptureFixture) -> None:
    import argparse

    first, bad, second = _frames()
    data = b"junk" + first + bad + second + second[:100]
    with caplog.at_level("DEBUG", logger="gridtap.goodwe"):
        samples = GoodwePlugin.decode(data, argparse.Namespace(direction="outbound", body=None))
    assert [m.value for m in samples if m.name == "goodwe_meter_power_export_watts"] == [-5, -6]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [
        f"frame 2 at offset {4 + len(first)} ({len(bad)} bytes): CRC mismatch: stored "
        f"{bad[-2:].hex()}, computed {_crc(bad):04x} (big-endian)",
        f"frame 4 at offset {4 + 3 * len(first)}: truncated: its LEN says {len(second)} bytes, the capture has 100",
    ]
    assert any("offset 0: skipped 4 bytes" in r.getMessage() for r in caplog.records)


def _crc(frame: bytes) -> int:
    from gridtap_plugins.goodwe import reference

    return reference.crc16_modbus(frame[:-2])


@pytest.mark.timeout(60)
def test_decode_cli_exit_codes_and_one_line_per_bad_frame(tmp_path: Path) -> None:
    first, bad, second = _frames()
    mixed = tmp_path / "mixed.hex"
    mixed.write_text((first + bad + second).hex() + "\n")
    proc = gridtap("decode", "goodwe", str(mixed), "--format", "prometheus")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count('goodwe_meter_power_export_watts{') == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"frame 2 at offset {len(first)}" in lines[0] and "CRC mismatch" in lines[0]
    only_bad = tmp_path / "bad.hex"
    only_bad.write_text((bad + bad).hex() + "\n")
    proc = gridtap("decode", "goodwe", str(only_bad))
    assert proc.returncode == 2
    assert proc.stderr.count("CRC mismatch") == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last == f"gridtap: goodwe: nothing decoded in {2 * len(bad)} bytes: 2 bad frames"


@pytest.mark.timeout(60)
def test_decode_cli_body_only_capture(tmp_path: Path) -> None:
    when = dt.datetime(2024, 1, 1, 12, 0, tzinfo=encoder.BEIJING)
    from gridtap_plugins.goodwe import simulator

    frame = simulator.data_frame("inverter", "53000DSC00000042", when, 0)
    body = tmp_path / "inverter.body.hex"
    body.write_text(frame[12:-2].hex() + "\n")  # after POSTGW, LEN and TYPE; before the CRC
    whole = tmp_path / "inverter.hex"
    whole.write_text(frame.hex() + "\n")
    proc = gridtap("decode", "goodwe", str(body))
    assert proc.returncode == 2 and "--body TYPE" in one_error_line(proc)
    by_body = gridtap("decode", "goodwe", str(body), "--body", "0x0104")
    by_frame = gridtap("decode", "goodwe", str(whole))
    assert by_body.returncode == 0 and by_body.stdout == by_frame.stdout, by_body.stderr
    assert '"goodwe_inverter_input_voltage_dc_volts"' in by_body.stdout
    for wrong in ("0x10000", "pv"):
        proc = gridtap("decode", "goodwe", str(body), "--body", wrong)
        assert proc.returncode == 2 and "--body" in proc.stderr
    proc = gridtap("decode", "goodwe", str(body), "--body", "0x0110")  # wrong envelope for this body
    assert proc.returncode == 2 and "0x0110" in one_error_line(proc)
