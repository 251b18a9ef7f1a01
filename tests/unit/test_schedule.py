"""Device isolation: a failing or hanging device only affects itself."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from gridtap.errors import DeviceError
from gridtap.model import MetricDef
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
