"""A manual clock that moves the Growatt simulator's time with the test's (sleeps included), so
hours of rate-limited polling run in seconds."""

from __future__ import annotations

from gridtap.budget import ManualClock
from gridtap_plugins.growatt.simulator import GrowattSimulator


class SharedClock(ManualClock):
    """The test's clock, mirrored into the simulator on every move."""

    def __init__(self, sim: GrowattSimulator) -> None:
        super().__init__(sim.now())
        self.sim = sim

    def advance(self, seconds: float) -> float:
        t = super().advance(seconds)
        self.sim.set_time(t)
        return t

    def set(self, now: float) -> None:
        super().set(now)
        self.sim.set_time(now)
