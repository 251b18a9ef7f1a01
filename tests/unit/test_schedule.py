"""Device isolation: a failing or hanging device only affects itself."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from gridtap.errors import DeviceError
from gridtap.model import Kind, MetricDef
from gridtap.plugin import Plugin
from gridtap.schedule import Collector

VALUE = MetricDef("unit_value_watts", "A value.", unit="watts")


@dataclass(frozen=True)
class NoSettings:
    pass


class ScriptedDevice(Plugin):
    """A framework test double: answers from a script of values and failures."""

    name = "unit"
    config_schema = NoSettings

    def __init__(self, script: list, device: str = "d") -> None:
        super().__init__(NoSettings(), device)
        self.script = list(script)
        self.calls = 0

    def collect(self):
        self.calls += 1
        step = self.script.pop(0) if self.script else self.script_last
        self.script_last = step
        if isinstance(step, Exception):
            raise step
        if step == "hang":
            time.sleep(3)
            return [VALUE(0.0)]
        return [VALUE(step)]


def names(batch):
    return {m.name: m.value for m in batch.metrics}


def test_failure_drops_series_and_sets_up_zero(caplog):
    c = Collector(ScriptedDevice([5.0, DeviceError("timeout"), DeviceError("timeout"), 7.0]), 1.0)
    with caplog.at_level(logging.INFO, logger="gridtap.schedule"):
        first = c.collect_once()
        failed = c.collect_once()
        c.collect_once()
        back = c.collect_once()
    assert names(first)["unit_value_watts"] == 5.0 and names(first)["unit_up"] == 1
    assert "unit_value_watts" not in names(failed)
    assert names(failed)["unit_up"] == 0
    assert names(failed)["unit_last_success_timestamp_seconds"] == first.timestamp_ns / 1e9
    assert names(back)["unit_value_watts"] == 7.0 and back.ok
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "timeout" in warnings[0].getMessage()  # once per state change
    assert any("device is back" in r.getMessage() for r in caplog.records)


def test_plugin_bug_is_contained():
    c = Collector(ScriptedDevice([KeyError("oops")]), 1.0)
    batch = c.collect_once()
    assert not batch.ok and names(batch)["unit_up"] == 0
    assert "KeyError" in c.state.error


def test_hanging_device_does_not_block_another():
    slow = Collector(ScriptedDevice(["hang"], "slow"), 0.05)
    fast = Collector(ScriptedDevice([1.0], "fast"), 0.05)
    slow.start()
    fast.start()
    try:
        time.sleep(0.5)
        assert fast.plugin.calls >= 5
        assert slow.plugin.calls == 1 and slow.snapshot() is None
    finally:
        fast.stop()
        slow._stop.set()


# --- pushed readings, waiting, diagnostics (issue 11) -------------------------------------
PACKETS = MetricDef("unit_packets_total", "Packets seen by our side of the link.", kind=Kind.COUNTER, integer=True)


class PushingDevice(Plugin):
    """A device that pushes: readings arrive on another thread and call updated()."""

    name = "unit"
    config_schema = NoSettings

    def __init__(self) -> None:
        super().__init__(NoSettings(), "pusher")
        self.reading: float | None = None
        self.packets = 0

    def arrive(self, value: float) -> None:
        self.packets += 1
        self.reading = value
        self.updated()

    def collect(self):
        from gridtap.errors import Waiting

        if self.reading is None:
            raise Waiting("waiting for the first upload")
        return [VALUE(self.reading)]

    def diagnostics(self):
        return [PACKETS(self.packets)]


def test_a_pushed_reading_is_collected_and_handed_on_at_once() -> None:
    device = PushingDevice()
    collector = Collector(device, interval=3600.0)  # the tick alone would never come in time
    seen: list[tuple[float, object]] = []
    collector.subscribe(lambda batch: seen.append((time.monotonic(), batch)))
    collector.start()
    try:
        deadline = time.monotonic() + 5
        while not seen and time.monotonic() < deadline:  # the first, immediate collection
            time.sleep(0.01)
        t0 = time.monotonic()
        device.arrive(1234.5)
        while len(seen) < 2 and time.monotonic() < deadline:
            time.sleep(0.002)
    finally:
        collector.stop()
    assert len(seen) >= 2
    when, batch = seen[1]
    assert when - t0 < 0.1, f"{(when - t0) * 1000:.0f} ms"
    assert [(m.name, m.value) for m in batch.metrics if m.name == "unit_value_watts"] == [("unit_value_watts", 1234.5)]


class SlowPushingDevice(PushingDevice):
    """Each collection takes 30 ms (a proxy of a thousand devices rendering its samples)."""

    def collect(self):
        time.sleep(0.03)
        return super().collect()


def test_slow_pushed_collections_are_made_rare_and_fast_ones_are_not() -> None:
    """A 30 ms collection may follow a push only after (0.03 s)^2 / push_cost_budget = 1.8 s, cut to
    max_push_gap (1 s); the uploads meanwhile are one collection. A fast one follows at once."""
    for device, fastest, slowest in ((PushingDevice(), 0.0, 0.1), (SlowPushingDevice(), 0.9, 2.0)):
        collector = Collector(device, interval=3600.0)
        seen: list[float] = []
        collector.subscribe(lambda _batch, seen=seen: seen.append(time.monotonic()))
        device.arrive(1.0)
        collector.start()
        try:
            deadline = time.monotonic() + 5
            while not seen and time.monotonic() < deadline:
                time.sleep(0.002)
            t0 = time.monotonic()
            for value in (2.0, 3.0, 4.0):  # a burst of uploads
                device.arrive(value)
                time.sleep(0.01)
            while len(seen) < 2 and time.monotonic() < deadline:
                time.sleep(0.002)
            time.sleep(0.05 if fastest == 0.0 else 0.3)
        finally:
            collector.stop()
        assert len(seen) >= 2
        waited = seen[1] - t0
        assert fastest <= waited < slowest, (type(device).__name__, waited)
        if fastest:
            assert len(seen) == 2  # the burst was one collection


def test_waiting_is_not_down_and_diagnostics_stay(caplog) -> None:
    device = PushingDevice()
    collector = Collector(device, interval=1.0)
    caplog.set_level(logging.INFO, logger="gridtap.schedule")
    for _ in range(3):
        batch = collector.collect_once()
    names = {m.name for m in batch.metrics}
    assert "unit_up" not in names and "unit_collect_duration_seconds" not in names  # no "down" alert
    assert [m.value for m in batch.metrics if m.name == "unit_packets_total"] == [0]
    assert not batch.ok and batch.error == "waiting for the first upload"
    infos = [r for r in caplog.records if "waiting" in r.getMessage()]
    assert len(infos) == 1 and infos[0].levelno == logging.INFO
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]

    device.arrive(5.0)
    up = {m.name: m.value for m in collector.collect_once().metrics}
    assert up["unit_up"] == 1 and up["unit_value_watts"] == 5.0 and up["unit_packets_total"] == 1


def test_diagnostics_stay_while_the_device_is_down() -> None:
    device = PushingDevice()
    device.arrive(5.0)

    def broken():
        raise DeviceError("gone")

    device.collect = broken  # type: ignore[method-assign]
    batch = Collector(device, interval=1.0).collect_once()
    values = {m.name: m.value for m in batch.metrics}
    assert values["unit_up"] == 0 and "unit_value_watts" not in values and values["unit_packets_total"] == 1


def test_delivery_worker_keeps_only_the_newest_batch_per_device() -> None:
    import threading

    from gridtap.model import Batch
    from gridtap.sinks import Delivery, DeliveryWorker

    release = threading.Event()
    delivered: list[list[int]] = []

    class SlowSink:
        name = "slow"

        def publish(self, batches):
            release.wait(5)
            delivered.append([b.timestamp_ns for b in batches])

        def close(self):
            pass

    worker = DeliveryWorker(Delivery([SlowSink()]))
    worker.submit(Batch("unit", "a", 1))
    time.sleep(0.05)  # the first one is being delivered (and blocks)
    for ts in (2, 3, 4):
        worker.submit(Batch("unit", "a", ts))  # a slow sink never piles up old batches
    worker.submit(Batch("unit", "b", 10))
    release.set()
    worker.close()
    assert delivered == [[1], [4, 10]]


def test_a_collection_that_outlasts_the_interval_shows_the_device_down() -> None:
    """A device trickling its answer (or retries longer than the interval) must not leave the
    last reading on /metrics as if it were fresh: past the interval the device is shown down,
    measurements gone and diagnostics kept, until the slow collection ends."""
    import threading

    device = PushingDevice()
    device.arrive(7.0)
    release = threading.Event()
    real_collect = device.collect

    def slow():
        if device.packets > 1:
            release.wait(10)
        return real_collect()

    device.collect = slow  # type: ignore[method-assign]
    collector = Collector(device, interval=0.3)
    seen: list = []
    collector.subscribe(seen.append)
    collector.start()
    try:
        deadline = time.monotonic() + 5
        while not seen and time.monotonic() < deadline:
            time.sleep(0.01)
        device.packets += 1  # from now on a collection hangs until released
        time.sleep(0.35)  # the next tick starts the slow collection
        t0 = time.monotonic()
        while time.monotonic() < deadline and not (seen[-1].metrics and not seen[-1].ok):
            time.sleep(0.01)
        down = collector.snapshot()
        assert down is not None and not down.ok, "the device was not shown down"
        assert time.monotonic() - t0 < 0.6
        values = {m.name: m.value for m in down.metrics}
        # the diagnostics of the last finished collection stay
        assert values["unit_up"] == 0 and "unit_value_watts" not in values and values["unit_packets_total"] == 1
        release.set()
        while time.monotonic() < deadline and not collector.snapshot().ok:
            time.sleep(0.01)
        assert {m.name: m.value for m in collector.snapshot().metrics}["unit_value_watts"] == 7.0
    finally:
        release.set()
        collector.stop()
