"""The plugin against its simulator over a real pty pair and over TCP on 127.0.0.1.

Covers the whole cycle, the spec §14 failure modes (31- and 33-byte replies, stale bytes
before a reply: none may shift later frames), the port vanishing mid-run (DeviceError, then
recovery on the same plugin object), and the LAN2RF gateway over HTTP with and without auth.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gridtap.config import Duration, Secret
from gridtap.errors import ConfigError, DeviceError, InputError
from gridtap_plugins.intergas.plugin import IntergasConfig, IntergasPlugin
from gridtap_plugins.intergas.simulator import BoilerModel, IntergasSimulator

pytestmark = pytest.mark.timeout(30)

ALL = ["S?", "S2", "CRC", "HN", "V?", "REV"]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def by_key(samples: list) -> dict:
    return {(s.name, s.labels): s.value for s in samples}


def block_ok(samples: list) -> dict[str, int]:
    return {dict(s.labels)["block"]: s.value for s in samples if s.name == "intergas_block_ok"}


@pytest.fixture(params=["pty", "tcp"])
def link(request: pytest.FixtureRequest, tmp_path: Path):
    """(simulator factory, clock); the factory restarts on the same address."""
    clock = Clock()
    model = BoilerModel(start=0.0, clock=clock, period=60.0)
    where = {"pty": str(tmp_path / "ttyIntergas")} if request.param == "pty" else {"tcp": "127.0.0.1:0"}
    sims: list[IntergasSimulator] = []

    def make(**override: str) -> IntergasSimulator:
        sim = IntergasSimulator(model=model, **(override or where)).start()
        sims.append(sim)
        return sim

    yield make, clock
    for sim in sims:
        sim.stop()


def plugin_for(address: str, **kw) -> IntergasPlugin:
    config = IntergasConfig(port=address, timeout=Duration(0.2), commands=ALL, **kw)
    plugin = IntergasPlugin(config, "boiler")
    assert plugin.transport is not None
    plugin.transport.backoff_min = 0.05
    plugin.transport.drain = plugin.transport.settle = 0.01  # keep the suite fast
    return plugin


def test_full_cycle(link) -> None:
    make, clock = link
    sim = make()
    plugin = plugin_for(sim.address)
    try:
        samples = plugin.collect()
        assert block_ok(samples) == dict.fromkeys(ALL, 1)
        assert sim.commands == ALL
        got = by_key(samples)
        model = sim.model.values("S?")
        assert got[("intergas_temperature_celsius", (("sensor", "flow"),))] == model["t2_flow"]
        assert got[("intergas_water_pressure_pascals", ())] == pytest.approx(model["ch_pressure"] * 1e5)
        assert got[("intergas_flag", (("name", "pump"),))] == 1
        assert got[("intergas_flag", (("name", "gp_switch"),))] == 0
        assert got[("intergas_burner_starts_total", ())] == 70000 + 100
        assert got[("intergas_parameter", (("name", "param_6"),))] == -7
        assert got[("intergas_revision_info", (("controller", "ic2"), ("hardware", "ic2sim   *P000000*"),
                                                ("software", "V0.01")))] == 1
        # values move: later time, warmer flow (sine) and more burner starts
        clock.now += 15.0
        later = by_key(plugin.collect())
        assert later[("intergas_temperature_celsius", (("sensor", "flow"),))] != model["t2_flow"]
        assert later[("intergas_burner_starts_total", ())] == 70000 + 101
    finally:
        plugin.close()


def test_reference_flag_order_switch(link) -> None:
    make, _ = link
    sim = make()
    plugin = plugin_for(sim.address, flag_bit_order="reference")
    try:
        got = by_key(plugin.collect())
        assert got[("intergas_flag", (("name", "gp_switch"),))] == 1  # 0x98 read bit 7 first
        assert got[("intergas_flag", (("name", "grad_flag"),))] == 1
    finally:
        plugin.close()


@pytest.mark.parametrize("fault", ["short", "long", "silent"])
def test_bad_reply_spoils_only_its_block(link, fault: str) -> None:
    make, _ = link
    sim = make()
    plugin = plugin_for(sim.address)
    try:
        sim.inject(fault)  # the first reply (S?) is spoiled
        samples = plugin.collect()
        assert block_ok(samples) == {"S?": 0, "S2": 1, "CRC": 1, "HN": 1, "V?": 1, "REV": 1}
        names = {s.name for s in samples}
        assert "intergas_temperature_celsius" not in names  # nothing stale, nothing shifted
        got = by_key(samples)
        assert got[("intergas_mains_frequency_hertz", ())] == 50.0
        assert got[("intergas_parameter", (("name", "ch_set_max"),))] == 80
        again = plugin.collect()
        assert block_ok(again) == dict.fromkeys(ALL, 1)
        assert by_key(again)[("intergas_display_state", ())] == "opentherm"
    finally:
        plugin.close()


def test_stale_bytes_are_discarded(link) -> None:
    make, _ = link
    sim = make()
    plugin = plugin_for(sim.address)
    try:
        plugin.collect()
        sim.send_stale(b"\x01\x02\x03\x04\x05\x06\x07")
        port = plugin.transport._port
        deadline = time.monotonic() + 1.0
        while not port.in_waiting and time.monotonic() < deadline:  # the junk sits in our buffer
            time.sleep(0.002)
        samples = plugin.collect()
        assert block_ok(samples) == dict.fromkeys(ALL, 1)
        assert by_key(samples)[("intergas_display_code", ())] == 0
        assert plugin.transport.discarded >= 1
    finally:
        plugin.close()


def test_every_block_failing_is_a_device_error(link) -> None:
    make, _ = link
    sim = make()
    plugin = plugin_for(sim.address)
    plugin.config.commands = ["S?", "S2"]
    try:
        sim.inject("silent", "short")
        with pytest.raises(DeviceError, match="no valid block"):
            plugin.collect()
        assert block_ok(plugin.collect()) == {"S?": 1, "S2": 1}
    finally:
        plugin.close()


def test_port_vanishes_then_recovers(link) -> None:
    make, clock = link
    sim = make()
    plugin = plugin_for(sim.address)
    address = sim.address
    try:
        assert block_ok(plugin.collect())["S?"] == 1
        sim.stop()
        with pytest.raises(DeviceError):
            plugin.collect()
        with pytest.raises(DeviceError):  # still gone: a quick, clean failure again
            plugin.collect()
        tcp = address.removeprefix("socket://") if address.startswith("socket://") else None
        make(**({"tcp": tcp} if tcp else {"pty": address}))
        time.sleep(0.3)  # past the reopen backoff
        samples = plugin.collect()
        assert block_ok(samples) == dict.fromkeys(ALL, 1)
    finally:
        plugin.close()


def test_unreachable_port_is_a_device_error(tmp_path: Path) -> None:
    plugin = plugin_for(str(tmp_path / "no-such-tty"))
    with pytest.raises(DeviceError, match="cannot open"):
        plugin.collect()


def test_config_needs_exactly_one_source() -> None:
    with pytest.raises(ConfigError, match="exactly one"):
        IntergasPlugin(IntergasConfig(), "boiler")
    with pytest.raises(ConfigError, match="exactly one"):
        IntergasPlugin(IntergasConfig(port="/dev/null", gateway_url="http://gw"), "boiler")
    with pytest.raises(ConfigError, match="unknown block"):
        IntergasPlugin(IntergasConfig(port="/dev/null", commands=["S?", "XX"]), "boiler")


# ------------------------------------------------------------------ LAN2RF
def gateway_plugin(address: str, **kw) -> IntergasPlugin:
    return IntergasPlugin(IntergasConfig(gateway_url=address, timeout=Duration(2.0), **kw), "boiler")


@pytest.mark.parametrize("auth", [None, "admin:s3cret"])
def test_lan2rf_gateway(auth: str | None) -> None:
    frozen = BoilerModel(start=0.0, clock=lambda: 100.0)  # values must not move between the two reads
    with IntergasSimulator(lan2rf="127.0.0.1:0", auth=auth, model=frozen) as sim:
        kw = {"username": "admin", "password": Secret("s3cret")} if auth else {}
        plugin = gateway_plugin(sim.address, **kw)
        got = by_key(plugin.collect())
        model = sim.model.values("S?")
        assert got[("intergas_temperature_celsius", (("sensor", "aanvoer"),))] == pytest.approx(model["t1_aanvoer"])
        assert got[("intergas_flag", (("name", "burner"),))] == 1
        assert got[("intergas_block_ok", (("block", "lan2rf"),))] == 1
        assert ("intergas_room_temperature_celsius", (("type", "measured"), ("zone", "2"))) not in got
        plugin.close()


def test_lan2rf_wrong_password_and_unbound_and_backslash() -> None:
    with IntergasSimulator(lan2rf="127.0.0.1:0", auth="admin:s3cret") as sim:
        plugin = gateway_plugin(sim.address, username="admin", password=Secret("wrong"))
        with pytest.raises(DeviceError, match="401") as err:
            plugin.collect()
        assert "wrong" not in str(err.value)
    with IntergasSimulator(lan2rf="127.0.0.1:0", model=BoilerModel(start=0.0, clock=lambda: 100.0)) as sim:
        sim.heater_serial = "000W00000"
        plugin = gateway_plugin(sim.address)
        with pytest.raises(DeviceError, match="no heater bound"):
            plugin.collect()
        sim.heater_serial = "2303\\02041"  # invalid JSON escape, as real gateways send
        sim.lan2rf_io = 0x01  # failure: displ_code is the fault code
        got = by_key(plugin.collect())
        assert got[("intergas_display_code", ())] == 256 + sim.model.values("S?")["display_raw"]
        assert got[("intergas_display_state", ())] == "fault"


# ------------------------------------------------------------------ the foreground simulator
def test_simulate_command_prints_ready_and_stops_on_sigterm() -> None:
    code = (
        "import argparse, sys;"
        "from gridtap_plugins.intergas.plugin import IntergasPlugin as P;"
        "p = argparse.ArgumentParser(); P.add_simulate_arguments(p);"
        "sys.exit(P.simulate(p.parse_args(sys.argv[1:])))"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, "--tcp", "127.0.0.1:0"], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith("ready socket://127.0.0.1:")
        plugin = plugin_for(line.split()[1])
        assert block_ok(plugin.collect())["HN"] == 1
        plugin.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


def test_replay_serves_fixture_blocks(tmp_path: Path) -> None:
    (tmp_path / "S_one.hex").write_text("# comment\n" + " ".join(["00"] * 24) + " 33 00 00 40 20 ff 00 ff\n")
    (tmp_path / "reconstructed_S2.hex").write_text(" ".join(["00", "00", "64"] + ["00"] * 29))
    with IntergasSimulator(tcp="127.0.0.1:0", replay=tmp_path) as sim:
        plugin = plugin_for(sim.address)
        samples = plugin.collect()
        assert block_ok(samples) == {"S?": 1, "S2": 1, "CRC": 0, "HN": 0, "V?": 0, "REV": 0}
        got = by_key(samples)
        assert got[("intergas_display_state", ())] == "tapwater_int"
        assert got[("intergas_pump_pwm_ratio", ())] == 0.5
        plugin.close()
    ns = argparse.Namespace(tcp=None, pty=None, lan2rf=None, replay=str(tmp_path / "empty"), auth=None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no S"):
        IntergasPlugin.simulate(argparse.Namespace(**{**vars(ns), "tcp": "127.0.0.1:0"}))


def test_a_dead_bridge_is_one_warning_not_one_per_retry(caplog: pytest.LogCaptureFixture) -> None:
    """Issue 11: "failures are logged once per change of state" did not hold for the reopen
    retries (a WARNING per retry)."""
    import logging

    from gridtap_plugins.intergas.transport import SerialTransport

    transport = SerialTransport("socket://127.0.0.1:9", 0.2, backoff=(0.01, 0.02))
    caplog.set_level(logging.DEBUG, logger="gridtap_plugins.intergas.transport")
    for _ in range(5):  # the link breaks again and again without ever coming back
        transport.fail("no reply within 0.2 s")
    levels = [r.levelno for r in caplog.records]
    assert levels == [logging.WARNING] + [logging.DEBUG] * 4, [r.getMessage() for r in caplog.records]
