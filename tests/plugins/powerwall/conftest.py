"""The powerwall simulator in-process, and plugins configured the way ``gridtap run`` configures them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gridtap import devices
from gridtap_plugins.powerwall.plugin import PowerwallPlugin
from gridtap_plugins.powerwall.simulator import PowerwallSimulator

PASSWORD = "sim-password"


@pytest.fixture
def sim() -> Iterator[PowerwallSimulator]:
    s = PowerwallSimulator("127.0.0.1", 0, PASSWORD, firmware="23.28", lockout_after=100)
    s.start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def make_plugin(tmp_path: Path) -> Iterator[Callable[..., PowerwallPlugin]]:
    made: list[PowerwallPlugin] = []

    def make(sim: PowerwallSimulator, **settings: Any) -> PowerwallPlugin:
        raw = {"gateway_address": sim.address, "login_password": PASSWORD,
               "token_file": str(tmp_path / "state" / "powerwall.json"), **settings}
        spec = devices.device_spec(PowerwallPlugin, raw, where="powerwall", default_interval=None, env={})
        plugin = spec.create()
        made.append(plugin)
        return plugin

    yield make
    for p in made:
        p.close()

