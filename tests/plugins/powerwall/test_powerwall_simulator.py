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
            "23.28": ("pypowerwall-fw23.28", "api."), "23.44": ("pwsimulator-fw23.44", "api.")}
ENDPOINTS = ("status", "system_status/soe", "operation", "sitemaster", "troubleshooting/problems", "system_status",
             "system_status/grid_status", "system_status/grid_faults", "meters/aggregates", "networks", "meters/site",
             "meters/solar", "site_info/site_name")


def kind(value) -> str:
    """A JSON value's kind (a number is a number, with or without a fraction: Go reads both)."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return "null" if value is None else type(value).__name__


def differences(ours, theirs, where: str) -> list[str]:
    """Where ``ours`` differs from ``theirs`` in keys, their order, nesting or the kind of a value
    (every element of a list against the capture's first one)."""
    if kind(ours) != kind(theirs):
        return [f"{where}: {kind(ours)} where the capture has {kind(theirs)} ({theirs!r:.40})"]
    if isinstance(theirs, dict):
        if list(ours) != list(theirs):
            return [f"{where}: keys {list(ours)} != {list(theirs)}"]
        return [d for k in theirs for d in differences(ours[k], theirs[k], f"{where}.{k}")]
    if isinstance(theirs, list) and theirs:
        return [d for i, item in enumerate(ours) for d in differences(item, theirs[0], f"{where}[{i}]")]
    return []


def test_differences_sees_kinds_keys_and_nesting():
    assert differences({"a": 1, "b": [{"c": "x"}]}, {"a": 2.5, "b": [{"c": "y"}]}, "d") == []
    assert differences({"a": "1"}, {"a": 1}, "d") == ["d.a: str where the capture has number (1)"]
    assert differences({"a": True}, {"a": 1}, "d") and differences({"a": None}, {"a": 1}, "d")
    assert differences({"b": 1, "a": 1}, {"a": 1, "b": 1}, "d") and differences([{"a": 1}, {}], [{"a": 1}], "d")


@pytest.mark.parametrize("generation", sorted(CAPTURES))
def test_answers_are_shaped_like_the_captures(generation):
    folder_name, prefix = CAPTURES[generation]
    folder = fixture_path("powerwall", folder_name)
    docs = GatewayDocuments(generation)
    compared, found = 0, []
    for endpoint in ENDPOINTS:
        path = folder / f"{prefix}{endpoint.replace('/', '.')}.json"
        if not path.exists():
            continue
        theirs = json.loads(path.read_text())
        ours = docs.get(endpoint)
        if endpoint == "networks":  # interfaces by type, each against the capture's of that type
            by_type = {n["interface"]: n for n in ours}
            for n in theirs:
                found += differences(by_type[n["interface"]], n, f"networks[{n['interface']}]")
        else:
            found += differences(ours, theirs, endpoint)
        compared += 1
    assert not found, "\n".join(found)
    assert compared >= 8


def test_a_stopped_sitemaster_answers_like_the_capture():
    theirs = json.loads(fixture_path("powerwall", "fw21.44-stopped", "sitemaster.json").read_text())
    ours = GatewayDocuments("21.44").sitemaster(running=False)
    assert not differences(ours, theirs, "sitemaster") and ours == theirs


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


def test_the_simulator_answers_without_nagle_delays(sim, make_plugin):
    """Headers and body are two writes; with Nagle on, each answer waited for the client's delayed
    ACK (~40 ms: 460 ms per collection of ~10 requests; a real gateway answers in a few ms)."""
    plugin = make_plugin(sim)
    plugin.collect()
    took = []
    for _ in range(5):
        t0 = time.monotonic()
        plugin.collect()
        took.append(time.monotonic() - t0)
    assert sorted(took)[2] < 0.25, took


@pytest.mark.parametrize("command,problem", [
    ({"drop": "abc"}, "drop: expected seconds"),
    ({"trickle": None}, "trickle: expected seconds"),
    ({"rate_limit": -1}, "rate_limit: expected seconds"),
    ({"sitemaster": 5}, "sitemaster: expected running or stopped"),
    ({"drop_mode": "sideways", "drop": 1}, "drop_mode"),
    ({"revoke_on": ["status"]}, "revoke_on: expected a string"),
    ({"dorp": 1}, "unknown control 'dorp'"),
])
def test_a_bad_control_request_is_a_400_naming_the_key(command, problem):
    """It used to drop the connection and print a traceback on the simulator's stderr."""
    import urllib.error
    import urllib.request

    from gridtap_plugins.powerwall.simulator import PowerwallSimulator

    sim = PowerwallSimulator("127.0.0.1", 0, "pw", control=("127.0.0.1", 0))
    sim.start()
    try:
        request = urllib.request.Request(f"{sim.control_url}/control", data=json.dumps(command).encode(),
                                         method="POST")
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(request, timeout=5)
        assert e.value.code == 400 and problem in json.loads(e.value.read())["error"]
        assert sim.drop_until == 0 and sim.trickle == 0 and sim.sitemaster_running  # nothing was applied
    finally:
        sim.stop()
