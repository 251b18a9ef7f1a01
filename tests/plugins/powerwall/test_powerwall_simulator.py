"""The simulator answers like the gateway: the same shapes as the captures of each firmware
generation, values that move, and its user errors are one line."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from gridtap_plugins.powerwall import documents
from gridtap_plugins.powerwall.documents import GatewayDocuments, HomeModel
from tests.conftest import fixture_path

GRIDTAP = [sys.executable, "-m", "gridtap"]
#: firmware generation -> (capture folder, file prefix)
CAPTURES = {"21.39": ("fw21.39.1-running", ""), "21.44": ("fw21.44-running", ""),
            "23.28": ("pypowerwall-fw23.28", "api.")}
ENDPOINTS = ("status", "system_status/soe", "operation", "sitemaster", "troubleshooting/problems", "system_status",
             "system_status/grid_status", "meters/aggregates", "networks", "meters/site", "meters/solar")


def shape(doc):
    """Keys and nesting, without values (lists by their first element)."""
    if isinstance(doc, dict):
        return {k: shape(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [shape(doc[0])] if doc else []
    return type(doc).__name__ if not isinstance(doc, bool | type(None)) else repr(type(doc))


def _same_shape(ours, theirs, where=""):
    if isinstance(theirs, dict):
        assert isinstance(ours, dict), where
        assert list(ours) == list(theirs), f"{where}: keys {list(ours)} != {list(theirs)}"
        for k in theirs:
            _same_shape(ours[k], theirs[k], f"{where}.{k}")
    elif isinstance(theirs, list):
        assert isinstance(ours, list), where
        if theirs and ours:
            _same_shape(ours[0], theirs[0], f"{where}[0]")


@pytest.mark.parametrize("generation", sorted(CAPTURES))
def test_answers_are_shaped_like_the_captures(generation):
    folder_name, prefix = CAPTURES[generation]
    folder = fixture_path("powerwall", folder_name)
    docs = GatewayDocuments(generation)
    compared = 0
    for endpoint in ENDPOINTS:
        path = folder / f"{prefix}{endpoint.replace('/', '.')}.json"
        if not path.exists():
            continue
        theirs = json.loads(path.read_text())
        ours = docs.get(endpoint)
        if theirs is None:
            assert ours is None
            continue
        if endpoint == "networks":  # interfaces by type; the capture's order
            by_type = {n["interface"]: n for n in ours}
            for n in theirs:
                _same_shape(by_type[n["interface"]], n, f"{endpoint}[{n['interface']}]")
        else:
            _same_shape(shape(ours), shape(theirs), endpoint)
        compared += 1
    assert compared >= 8


def test_values_move_and_counters_grow():
    now = [1000.0]
    model = HomeModel(period=100.0, clock=lambda: now[0])
    docs = GatewayDocuments("21.44", model)
    first = docs.get("meters/aggregates")
    now[0] += 30
    second = docs.get("meters/aggregates")
    assert first["load"]["instant_power"] != second["load"]["instant_power"]
    assert second["load"]["energy_imported"] > first["load"]["energy_imported"]
    assert second["site"]["energy_imported"] >= first["site"]["energy_imported"]
    flows = model.flows
    assert flows["site"] == pytest.approx(flows["load"] - flows["solar"] - flows["battery"])


def test_uptime_is_a_go_duration():
    assert documents._go_duration(831359.932079901) == "230h55m59.932079901s"


@pytest.mark.parametrize("args,problem", [
    (["--tcp", "nope"], "--tcp"),
    (["--replay", "/nonexistent-folder"], "not a folder"),
    (["--control", "192.0.2.1:1"], "loopback"),
    (["--lockout-time", "0s"], "--lockout-time"),
])
def test_simulator_user_errors_are_one_line(args, problem):
    res = subprocess.run([*GRIDTAP, "simulate", "powerwall", *args], capture_output=True, timeout=60)
    err = res.stderr.decode()
    assert res.returncode == 2 and err.count("\n") == 1 and problem in err, err


def test_simulator_process_prints_ready_and_stops_on_sigterm(tmp_path):
    proc = subprocess.Popen([*GRIDTAP, "simulate", "powerwall", "--tcp", "127.0.0.1:0"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        line = proc.stdout.readline().decode()
        assert line.startswith("ready 127.0.0.1:")
    finally:
        proc.terminate()
        assert proc.wait(10) == 0
    time.sleep(0)
