"""What the goodwe plugin publishes over time (issue 11): each physical device goes stale on
its own, the proxy's counters are diagnostics that never vanish, waiting for the first upload
is not "down", and every data upload is handed to the outputs at once (``Plugin.updated``).

Everything listens on 127.0.0.1 with port 0 and every wait is bounded.
"""

from __future__ import annotations

import datetime as dt
import socket
import threading
import time

import pytest
from test_goodwe_proxy import PROXY_PREFIXES, make_plugin, values, wait_for

from gridtap.config import Duration
from gridtap.errors import DeviceError, Waiting
from gridtap.schedule import Collector
from gridtap_plugins.goodwe import simulator
from gridtap_plugins.goodwe.metrics import GoodweState
from gridtap_plugins.goodwe.plugin import GoodwePlugin
from gridtap_plugins.goodwe.simulator import DeviceSimulator, SemsSimulator

WHEN = dt.datetime(2024, 6, 1, 12, 0, tzinfo=simulator.encoder.BEIJING)
METER, INVERTER = simulator.DEFAULT_SERIALS["meter"], simulator.DEFAULT_SERIALS["inverter"]

DIAGNOSTIC_NAMES = {"goodwe_decode_errors_total", "goodwe_upstream_dial_failures_total", "goodwe_device_connections",
                    "goodwe_inbound_dropped_total", "goodwe_forwarded_bytes_total", "goodwe_unknown_packets_total"}


def serials(samples: list) -> set[str]:
    return {dict(m.labels)["serial"] for m in samples if "serial" in dict(m.labels)}


def test_subdevice_labels_tell_the_physical_devices_apart() -> None:
    assert GoodwePlugin.subdevice_labels == ("serial",)


def test_state_drops_each_device_on_its_own_schedule() -> None:
    state = GoodweState()
    meter = simulator.data_frame("meter", METER, WHEN, 1)
    inverter = simulator.data_frame("inverter", INVERTER, WHEN, 1)
    state.outbound([(0x0304, METER, meter)], now=1000.0)
    state.outbound([(0x0104, INVERTER, inverter)], now=1200.0)
    assert serials(state.measurements(now=1250.0, stale_after=300)) == {METER, INVERTER}
    # 301 s after the meter's last upload it is gone; the inverter (101 s) is not.
    fresh = state.measurements(now=1301.0, stale_after=300)
    assert serials(fresh) == {INVERTER}
    assert values(fresh, "goodwe_frame_timestamp_seconds", serial=INVERTER) == [1200.0]
    assert values(fresh, "goodwe_inverter_power_output_watts")  # its readings, not just info
    # A new upload brings the meter back with the new values.
    state.outbound([(0x0304, METER, simulator.data_frame("meter", METER, WHEN, 7))], now=1302.0)
    fresh = state.measurements(now=1303.0, stale_after=300)
    assert serials(fresh) == {METER, INVERTER}
    assert values(fresh, "goodwe_meter_energy_export_joules_total") == [(27078 + 7) * 36000.0]
    assert serials(state.measurements(now=1700.0, stale_after=300)) == set()


def test_late_cached_upload_keeps_the_device_fresh_but_not_its_old_values() -> None:
    state = GoodweState()
    live = simulator.data_frame("meter", METER, WHEN, 5)
    older = simulator.data_frame("meter", METER, WHEN - dt.timedelta(minutes=10), 1, cached=True)
    newer = simulator.data_frame("meter", METER, WHEN + dt.timedelta(minutes=1), 9, cached=True)
    state.outbound([(0x0304, METER, live)], now=1000.0)
    state.outbound([(0x0345, METER, older)], now=1100.0)
    samples = state.measurements(now=1101.0, stale_after=300)
    assert values(samples, "goodwe_meter_energy_export_joules_total") == [(27078 + 5) * 36000.0]
    assert values(samples, "goodwe_frame_timestamp_seconds") == [1100.0]
    assert serials(state.measurements(now=1350.0, stale_after=300)) == {METER}  # heard at 1100
    state.outbound([(0x0345, METER, newer)], now=1200.0)
    assert values(state.measurements(now=1201.0), "goodwe_meter_energy_export_joules_total") == [(27078 + 9) * 36000.0]


def test_info_upload_alone_does_not_make_a_device_fresh() -> None:
    state = GoodweState()
    info = simulator.info_frame("inverter", INVERTER, WHEN)
    state.outbound([(0x0103, INVERTER, info)], now=1000.0)
    assert state.measurements(now=1001.0, stale_after=300) == []
    assert state.last_data is None
    state.outbound([(0x0104, INVERTER, simulator.data_frame("inverter", INVERTER, WHEN, 0))], now=1002.0)
    samples = state.measurements(now=1003.0, stale_after=300)
    assert {dict(m.labels)["model"] for m in samples} == {"GW3000-DNS-30"}


@pytest.mark.timeout(60)
def test_dead_meter_goes_stale_while_the_inverter_stays_fresh() -> None:
    """Acceptance 2 of issue 11 at the plugin level: kill the meter, keep the inverter."""
    sems = SemsSimulator("127.0.0.1", 0, bogus=False)
    sems.start()
    stale_after = 1.0
    plugin = make_plugin(upstream_host="127.0.0.1", upstream_port=sems.address[1],
                         stale_after=Duration(stale_after))
    meter = DeviceSimulator("127.0.0.1", plugin.address[1], kind="meter", interval=0.1)
    inverter = DeviceSimulator("127.0.0.1", plugin.address[1], kind="inverter", interval=0.1)
    try:
        meter.start()
        inverter.start()
        wait_for(lambda: serials(plugin.collect() if plugin.state.last_data else []) == {METER, INVERTER})
        meter.stop()
        killed = time.monotonic()
        # Within stale_after (+ one inverter upload of slack) the meter's readings are gone...
        wait_for(lambda: METER not in serials(plugin.collect()), timeout=stale_after + 2)
        assert time.monotonic() - killed >= stale_after - 0.15
        samples = plugin.collect()
        # ...while the inverter's keep coming, and the proxy's counters stay published.
        assert serials(samples) == {INVERTER}
        assert values(samples, "goodwe_inverter_input_voltage_dc_volts", input="pv1")
        assert {m.name for m in plugin.diagnostics()} >= DIAGNOSTIC_NAMES
        assert not [m for m in samples if m.name.startswith(PROXY_PREFIXES)]
        inverter.stop()
        wait_for(lambda: _raises(plugin.collect) is DeviceError, timeout=stale_after + 2)
        assert {m.name for m in plugin.diagnostics()} >= DIAGNOSTIC_NAMES
    finally:
        meter.stop()
        inverter.stop()
        plugin.close()
        sems.stop()


def _raises(call) -> type | None:
    try:
        call()
    except Exception as e:  # noqa: BLE001 - the test looks at which
        return type(e)
    return None


@pytest.mark.timeout(30)
def test_waiting_before_the_first_upload_then_down_after_stale_after() -> None:
    plugin = make_plugin(upstream_host="127.0.0.1", upstream_port=1, stale_after=Duration(0.5))
    collector = Collector(plugin, interval=10)
    try:
        with pytest.raises(Waiting, match="waiting for the first upload"):
            plugin.collect()
        batch = collector.collect_once()
        names = {m.name for m in batch.metrics}
        # Not "down": no goodwe_up at all; the proxy's diagnostics are there.
        assert "goodwe_up" not in names
        assert names >= DIAGNOSTIC_NAMES
        assert values(batch.metrics, "goodwe_decode_errors_total", direction="outbound", error="checksum") == [0]
        time.sleep(0.6)
        with pytest.raises(DeviceError) as e:
            plugin.collect()
        assert not isinstance(e.value, Waiting)
        assert "since start" in str(e.value)
        batch = collector.collect_once()
        assert values(batch.metrics, "goodwe_up") == [0]
        assert {m.name for m in batch.metrics} >= DIAGNOSTIC_NAMES
    finally:
        plugin.close()


@pytest.mark.timeout(30)
def test_updated_on_data_upload_not_on_info_upload() -> None:
    plugin = make_plugin(upstream_host="127.0.0.1", upstream_port=1)
    calls: list[float] = []
    wake = threading.Event()

    def updated() -> None:
        calls.append(time.monotonic())
        wake.set()

    plugin.set_update_callback(updated)
    dev = socket.create_connection(plugin.address, timeout=5)
    try:
        dev.sendall(simulator.info_frame("meter", METER, WHEN))
        wait_for(lambda: plugin.state.packets.get(("outbound", "0x0303"), 0) == 1)
        time.sleep(0.05)
        assert calls == []
        sent = time.monotonic()
        dev.sendall(simulator.data_frame("meter", METER, WHEN, 0))
        assert wake.wait(5)
        assert len(calls) == 1 and calls[0] - sent < 0.1
        # The reading is in collect() by the time updated() ran.
        assert values(plugin.collect(), "goodwe_meter_power_export_watts", serial=METER) == [1557]
        (seen,) = plugin.status()["devices"]
        assert seen["serial"] == METER and seen["device"] == "meter" and seen["last_upload_age_seconds"] < 5
        # A broken data frame is no new reading.
        bad = bytearray(simulator.data_frame("meter", METER, WHEN, 1))
        bad[60] ^= 1
        dev.sendall(bytes(bad))
        wait_for(lambda: plugin.state.errors.get(("outbound", "checksum"), 0) == 1)
        time.sleep(0.05)
        assert len(calls) == 1
    finally:
        dev.close()
        plugin.close()
