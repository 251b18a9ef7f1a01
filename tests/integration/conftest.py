"""Fixtures that start real servers on 127.0.0.1 (see ``servers.py``).

A missing server binary skips the test with the reason and the install step, except when
GRIDTAP_REQUIRE_SERVERS=1 (set by tests/setup-and-run.sh, which installs them all): then a
missing binary fails the test, so CI never goes green by skipping.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from . import servers

REQUIRE = os.environ.get("GRIDTAP_REQUIRE_SERVERS", "") not in ("", "0")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)


@contextlib.contextmanager
def needs() -> Iterator[None]:
    """Turn :class:`servers.Missing` into a skip (or a failure under GRIDTAP_REQUIRE_SERVERS)."""
    try:
        yield
    except servers.Missing as exc:
        if REQUIRE:
            pytest.fail(f"GRIDTAP_REQUIRE_SERVERS is set but: {exc}", pytrace=False)
        pytest.skip(str(exc))


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def gridtap() -> str:
    with needs():
        return servers.gridtap_bin()


@pytest.fixture(scope="module")
def influxdb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.InfluxDB]:
    with needs():
        server = servers.start_influxd(tmp_path_factory.mktemp("influxd"))
    try:
        yield server
    finally:
        server.proc.stop()


@pytest.fixture
def promtool() -> str:
    with needs():
        return servers.require("promtool", "install the Debian package `prometheus` (tests/setup-and-run.sh)")


@pytest.fixture
def telegraf() -> str:
    with needs():
        return servers.telegraf_bin()


@pytest.fixture
def collectd_identity() -> tuple[str, str]:
    """(Exec user, gridtap path) for collectd's exec plugin; see servers.collectd_exec_identity."""
    with needs():
        servers.require("collectd", "install the Debian package `collectd-core` (tests/setup-and-run.sh)")
        return servers.collectd_exec_identity()


@pytest.fixture
def intergas_sim(workdir: Path, gridtap: str) -> Iterator[str]:
    """A running ``gridtap simulate intergas --tcp``; yields ``socket://127.0.0.1:PORT``."""
    proc, addr = servers.start_simulator("intergas", workdir)
    try:
        yield addr if "://" in addr else f"socket://{addr}"
    finally:
        proc.stop()


INTERGAS_BLOCKS = ("S?", "S2", "CRC", "HN", "V?", "REV")
INTERGAS_FILE = {"S?": "S", "S2": "S2", "CRC": "CRC", "HN": "HN", "V?": "V", "REV": "REV"}


@pytest.fixture
def intergas_fixed(workdir: Path, gridtap: str) -> Iterator[tuple[str, dict[str, float]]]:
    """The intergas simulator replaying one fixed moment of its boiler model.

    Yields (``socket://127.0.0.1:PORT``, {sensor label: temperature}) so tests can compare
    exact values wherever they come from (no drift between two reads).
    """
    from gridtap_plugins.intergas import simulator

    model = simulator.BoilerModel(start=0.0)
    replay = workdir / "intergas-replay"
    replay.mkdir()
    for kind in INTERGAS_BLOCKS:
        data = model.block(kind, now=0.0)
        (replay / f"{INTERGAS_FILE[kind]}_fixed.hex").write_text(f"# BoilerModel t=0 {kind}\n{data.hex(' ')}\n")
    status = model.values("S?", now=0.0)
    temps = {"aanvoer": status["t1_aanvoer"], "flow": status["t2_flow"], "retour": status["t3_retour"],
             "warmwater": status["t4_warmwater"]}
    proc, addr = servers.start_simulator("intergas", workdir, "--replay", str(replay))
    try:
        yield (addr if "://" in addr else f"socket://{addr}"), temps
    finally:
        proc.stop()
