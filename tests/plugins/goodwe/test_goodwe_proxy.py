"""Loopback proxy tests: simulated device <-> GoodwePlugin's proxy <-> simulated SEMS.

Everything listens on 127.0.0.1 with port 0 and every wait is bounded.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import pytest

from gridtap import _native
from gridtap.config import Duration
from gridtap.errors import DeviceError, InputError
from gridtap_plugins.goodwe import batsignal, encoder, reference
from gridtap_plugins.goodwe.plugin import GoodweConfig, GoodwePlugin
from gridtap_plugins.goodwe.simulator import DeviceSimulator, SemsSimulator


def wait_for(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.01)
    raise AssertionError("condition not met in time")


def make_plugin(**kw) -> GoodwePlugin:
    cfg = GoodweConfig(listen_host="127.0.0.1", listen_port=0, **kw)
    p = GoodwePlugin(cfg, "goodwe")
    p.start()
    return p


#: The proxy's own series: diagnostics(), never collect().
PROXY_PREFIXES = ("goodwe_packets_", "goodwe_unknown_packets", "goodwe_decode_errors", "goodwe_inbound_dropped",
                  "goodwe_forwarded_bytes", "goodwe_device_connections", "goodwe_upstream_dial", "goodwe_batsignal")


def everything(plugin: GoodwePlugin) -> list:
    """What one collection publishes: the readings and the proxy's diagnostics."""
    return plugin.collect() + plugin.diagnostics()


def values(samples, name: str, **labels: str) -> list:
    return [m.value for m in samples if m.name == name and labels.items() <= dict(m.labels).items()]


@pytest.mark.timeout(30)
def test_device_proxy_sems_roundtrip() -> None:
    sems = SemsSimulator("127.0.0.1", 0)
    sems.start()
    plugin = make_plugin(upstream_host="127.0.0.1", upstream_port=sems.address[1])
    device = DeviceSimulator("127.0.0.1", plugin.address[1], kind="meter", interval=0.02, count=5)
    try:
        with pytest.raises(DeviceError):
            plugin.collect()
        device.start()
        assert device.done.wait(5)
        # info + 5 data frames + the 0x0310 answer to the set-clock
        wait_for(lambda: len(sems.received) == len(device.sent) and device.frames_sent == 7)
        wait_for(lambda: device.received == sems.expected_at_device())
        assert hashlib.sha256(bytes(device.sent)).digest() == hashlib.sha256(bytes(sems.received)).digest()
        labels = [label for label, _ in sems.sent_log]
        assert {"ack", "set_time", "keepalive", "bogus"} <= set(labels)
        for label, data in sems.sent_log:
            if label == "bogus":
                assert data not in bytes(device.received)
        samples = plugin.collect()
        assert values(samples, "goodwe_meter_power_generation_watts", serial="91000HKU00000001")
        assert not [m for m in samples if m.name.startswith(PROXY_PREFIXES)]  # those are diagnostics
        samples = plugin.diagnostics()
        assert values(samples, "goodwe_packets_total", direction="outbound", type="0x0304") == [5]
        assert values(samples, "goodwe_packets_total", direction="inbound", type="0x0116") == [1]
        assert values(samples, "goodwe_inbound_dropped_total", reason="unknown_type") == [1]
        assert values(samples, "goodwe_inbound_dropped_total", reason="checksum") == [1]
        assert values(samples, "goodwe_unknown_packets_total", direction="inbound") == [1]
        assert values(samples, "goodwe_device_connections") == [1]
    finally:
        device.stop()
        plugin.close()
        sems.stop()


@pytest.mark.timeout(30)
def test_no_forward_mode_answers_device_itself() -> None:
    plugin = make_plugin(forward=False)
    device = DeviceSimulator("127.0.0.1", plugin.address[1], kind="et", interval=0.02, count=3)
    try:
        device.start()
        assert device.done.wait(5)
        wait_for(lambda: sum(1 for k, _ in device.received_units if k == "frame") >= 5)
        types = [reference.decode_frame(raw, "inbound")["type"] for k, raw in device.received_units if k == "frame"]
        assert types[:2] == [0x0203, 0x0116] and types.count(0x0204) == 3
        samples = plugin.collect()
        assert values(samples, "goodwe_battery_state_of_charge_ratio") != []
    finally:
        device.stop()
        plugin.close()


@pytest.mark.timeout(30)
def test_upstream_unreachable_still_decodes() -> None:
    plugin = make_plugin(upstream_host="127.0.0.1", upstream_port=1, dial_timeout=Duration(0.5))
    device = DeviceSimulator("127.0.0.1", plugin.address[1], kind="inverter", interval=0.02, count=3)
    try:
        device.start()
        assert device.done.wait(5)
        wait_for(lambda: plugin.state.packets.get(("outbound", "0x0104"), 0) == 3)
        samples = everything(plugin)
        assert values(samples, "goodwe_inverter_input_voltage_dc_volts", input="pv1")
        assert values(samples, "goodwe_upstream_dial_failures_total")[0] >= 1
        assert device.received == b""
    finally:
        device.stop()
        plugin.close()


@pytest.mark.timeout(30)
def test_batsignal_rewrites_forwarded_frames_only() -> None:
    sems = SemsSimulator("127.0.0.1", 0, bogus=False)
    sems.start()
    plugin = make_plugin(upstream_host="127.0.0.1", upstream_port=sems.address[1], batsignal=True)
    noon = dt.datetime(2024, 1, 1, 12, 0, tzinfo=encoder.BEIJING)
    assert plugin.proxy is not None
    plugin.proxy.clock = lambda: noon
    device = DeviceSimulator("127.0.0.1", plugin.address[1], kind="meter", interval=0.02, count=2)
    try:
        device.start()
        assert device.done.wait(5)
        wait_for(lambda: len(sems.received) == len(device.sent))
        metrics_frames = [f for f in sems.frames if f["type"] == 0x0304]
        assert len(metrics_frames) == 2
        for f in metrics_frames:
            regs = f["registers"]
            assert (regs[0x083B] << 16 | regs[0x083C]) == 2250
            assert ((regs[0x0839] << 16 | regs[0x083A]) - (1 << 32)) == -3000
        real = values(plugin.collect(), "goodwe_meter_power_generation_watts")
        assert real and real[0] != 2250
        assert values(plugin.diagnostics(), "goodwe_batsignal_top")
    finally:
        device.stop()
        plugin.close()
        sems.stop()


def test_batsignal_rewrite_keeps_length_and_iv() -> None:
    frame = encoder.outbound_frame(0x0304, "91000HKU01234567", encoder.register_dump(encoder.meter_blocks(
        energy_export=1, energy_generation=2, energy_import=3, power_export=1557, power_generation=2601)),
        dt.datetime(2023, 9, 18, 9, 9, 27, tzinfo=encoder.BEIJING))
    d = _native.goodwe_decode_frame(frame, "outbound")
    out = batsignal.rewrite_meter_frame(frame, d, 2250, -3000)
    assert len(out) == len(frame) and out[:50] == frame[:50]
    r = _native.goodwe_decode_frame(out, "outbound")
    assert r["iv"] == d["iv"] and r["registers"][0x083C] == 2250


def test_decode_cli_hook() -> None:
    frame = encoder.outbound_frame(0x0304, "91000HKU01234567", encoder.register_dump(encoder.meter_blocks(
        energy_export=1, energy_generation=2, energy_import=3, power_export=-5, power_generation=7)),
        dt.datetime(2024, 1, 1, tzinfo=encoder.BEIJING))
    samples = GoodwePlugin.decode(b"xx" + frame + frame, argparse.Namespace(direction="outbound"))
    assert values(samples, "goodwe_meter_power_export_watts") == [-5, -5]
    with pytest.raises(InputError):
        GoodwePlugin.decode(b"not a frame", argparse.Namespace(direction="outbound"))
    with pytest.raises(InputError):
        GoodwePlugin.decode(frame[:-1] + b"\x00", argparse.Namespace(direction="outbound"))


@pytest.mark.timeout(30)
def test_simulator_command_line_ready_and_sigterm() -> None:
    code = ("import argparse,sys; from gridtap_plugins.goodwe import simulator as s; p=argparse.ArgumentParser();"
            "s.add_arguments(p); sys.exit(s.run(p.parse_args(sys.argv[1:])))")
    sems = subprocess.Popen([sys.executable, "-c", code, "--role", "sems", "--listen", "127.0.0.1:0"],
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    dev = None
    try:
        line = sems.stdout.readline().split()
        assert line[0] == "ready"
        dev = subprocess.Popen([sys.executable, "-c", code, "--connect", line[1], "--interval", "0.05"],
                               stdout=subprocess.PIPE, text=True)
        assert dev.stdout.readline().startswith("ready ")
        time.sleep(0.3)
        for p in (dev, sems):
            p.send_signal(signal.SIGTERM)
            assert p.wait(10) == 0
    finally:
        for p in (dev, sems):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait(5)


def test_sample_config_and_metric_definitions() -> None:
    from pathlib import Path

    from gridtap import devices
    from gridtap.config import load_yaml

    root = Path(__file__).resolve().parents[3]
    common = devices.load_common(load_yaml(root / "plugins" / "goodwe" / "goodwe.yaml"))
    ((where, cls, raw),) = devices.devices_from_file(common, only_plugin="goodwe")
    cfg = devices.device_spec(cls, raw, where=where, default_interval=None).settings
    assert isinstance(cfg, GoodweConfig)
    assert cfg.upstream_host == "tcp.goodwe-power.com" and cfg.forward is True and cfg.stale_after == 300
    names = [d.name for d in GoodwePlugin.metrics]
    assert len(names) == len(set(names)) and all(n.startswith("goodwe_") for n in names)
    assert "goodwe_up" not in names


@pytest.mark.timeout(30)
def test_an_unreachable_upstream_is_one_warning_not_one_per_retry(caplog: pytest.LogCaptureFixture) -> None:
    """Issue 11: "failures are logged once per change of state" did not hold for the dial
    retries (a WARNING per retry)."""
    import logging

    plugin = make_plugin(upstream_host="127.0.0.1", upstream_port=1, dial_timeout=Duration(0.5))
    assert plugin.proxy is not None
    plugin.proxy.opts.backoff_initial, plugin.proxy.opts.backoff_max = 0.02, 0.05
    caplog.set_level(logging.DEBUG, logger="gridtap.goodwe.proxy")
    device = DeviceSimulator("127.0.0.1", plugin.address[1], kind="meter", interval=0.05, count=3)
    try:
        device.start()
        wait_for(lambda: plugin.state.upstream_failures >= 5)
    finally:
        device.stop()
        plugin.close()
    dials = [r for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(dials) >= 5
    assert [r.levelno for r in dials][:5] == [logging.WARNING] + [logging.DEBUG] * 4
