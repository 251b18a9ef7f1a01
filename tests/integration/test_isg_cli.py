"""``gridtap`` against ``gridtap simulate isg`` (issue 7, acceptance 2 and 3): both modes print
real values, a wrong password and an unreachable ISG are one line, an expired session costs one
re-login, a block answering exception 02 leaves the rest published, and ``gridtap sgready``
writes exactly the spec's two input registers."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from . import servers

pytestmark = pytest.mark.integration


@pytest.fixture
def isg(workdir: Path, gridtap: str) -> Iterator[servers.IsgSim]:
    sim = servers.start_isg_simulator(workdir, "--password", "pass-w0rd", "--missing-block", "energy_extended")
    try:
        yield sim
    finally:
        sim.proc.stop()


def run(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([servers.gridtap_bin(), *args], capture_output=True, timeout=timeout,
                          env=env or servers.gridtap_env(), stdin=subprocess.DEVNULL)


def lines(proc: subprocess.CompletedProcess) -> list[servers.LPLine]:
    assert proc.returncode == 0, proc.stderr.decode()
    return servers.parse_line_protocol(proc.stdout.decode())


def field(rows: list[servers.LPLine], key: str, **tags: str) -> object:
    for r in rows:
        if key in r.fields and all(r.tags.get(k) == v for k, v in tags.items()):
            return r.fields[key]
    raise AssertionError(f"no {key} {tags} in {[r.raw for r in rows][:20]}")


def test_web_mode_once_prints_real_values(isg: servers.IsgSim):
    rows = lines(run("run", "isg", "--mode", "web", "--url", isg.web, "--username", "isg", "--password", "pass-w0rd",
                     "--once", "--output", "influx"))
    assert all(r.measurement == "isg" for r in rows)
    outside = field(rows, "web_temperature_celsius", name="aussentemperatur", section="heizung")
    assert -1.0 <= outside <= 7.0
    assert field(rows, "web_pressure_pascals", name="heizungsdruck") == 121000.0
    assert field(rows, "web_energy_joules_total", name="wm_heizen_summe") >= 44341 * 3.6e6
    assert field(rows, "web_switch", name="festwertbetrieb") == 0
    assert field(rows, "web_flag", name="heizkreispumpe") == 1
    assert field(rows, "up") == 1
    assert isg.state()["web"]["logins"] == 1


def test_the_seeds_environment_file_keeps_working(isg: servers.IsgSim):
    env = servers.gridtap_env() | {"ISG_URL": isg.web, "ISG_USER": "isg", "ISG_PASSWORD": "pass-w0rd",
                                   "SKIP_CIRCUIT_2": "true"}
    rows = lines(run("run", "isg", "--once", "--output", "influx", env=env))
    names = {r.tags.get("name") for r in rows}
    assert "isttemperatur_hk_1" in names and "isttemperatur_hk_2" not in names


def test_wrong_password_is_one_line_without_the_password(isg: servers.IsgSim):
    proc = run("run", "isg", "--url", isg.web, "--username", "isg", "--password", "Wr0ng-Secret!", "--once")
    assert proc.returncode == 1
    line = servers.one_error_line(proc)
    assert "login as 'isg' refused" in line and "wrong user name or password" in line
    assert b"Wr0ng-Secret!" not in proc.stdout + proc.stderr
    assert proc.stdout == b""


def test_an_expired_session_costs_one_relogin(workdir: Path, gridtap: str):
    sim = servers.start_isg_simulator(workdir, "--password", "pw", "--session-pages", "5")
    try:
        rows = lines(run("run", "isg", "--url", sim.web, "--username", "isg", "--password", "pw", "--once"))
        ok = {r.tags["page"]: r.fields["web_page_ok"] for r in rows if "web_page_ok" in r.fields}
        assert ok == dict.fromkeys(["1,0", "1,1", "2,0", "2,1", "2,3", "2,4", "4,7"], 1)
        assert sim.state()["web"]["logins"] == 2  # the first session ended after 5 pages
    finally:
        sim.proc.stop()


def test_modbus_mode_once_with_an_unsupported_block(isg: servers.IsgSim):
    proc = run("run", "isg", "--mode", "modbus", "--host", "127.0.0.1", "--modbus-port", str(isg.modbus_port),
               "--once", "--output", "influx")
    rows = lines(proc)
    assert -1.0 <= field(rows, "outside_temperature_celsius") <= 7.0
    assert field(rows, "heating_pressure_pascals") == 121000.0
    assert field(rows, "operating_mode", isg_operating_mode="automatic") == 1  # a state set: one 0/1 line per state
    assert field(rows, "operating_mode", isg_operating_mode="comfort") == 0
    assert field(rows, "heat_joules_total", use="heating") >= 44341 * 3.6e6
    assert field(rows, "modbus_block_ok", block="energy") == 1
    assert field(rows, "modbus_block_supported", block="energy_extended") == 0  # exception 02
    assert not any("inverter_power_watts" in r.fields for r in rows)  # that block's values: absent
    assert b"Traceback" not in proc.stderr


@pytest.mark.parametrize("mode", ["web", "modbus"])
def test_nothing_listening_is_one_line_exit_1(mode: str):
    port = str(servers.free_port())
    args = ["--url", f"http://127.0.0.1:{port}"] if mode == "web" else ["--host", "127.0.0.1", "--modbus-port", port]
    proc = run("run", "isg", "--mode", mode, *args, "--once")
    assert proc.returncode == 1
    line = servers.one_error_line(proc)
    assert "connection refused" in line and port in line


def test_prometheus_exposition_of_both_modes_passes_promtool(isg: servers.IsgSim, promtool: str):
    for args in (["--mode", "web", "--url", isg.web, "--username", "isg", "--password", "pass-w0rd"],
                 ["--mode", "modbus", "--host", "127.0.0.1", "--modbus-port", str(isg.modbus_port)]):
        proc = run("run", "isg", *args, "--once", "--output", "prometheus")
        assert proc.returncode == 0, proc.stderr
        code, out = servers.promtool_check_metrics(proc.stdout)
        assert code == 0, out
        assert b"isg_up" in proc.stdout


@pytest.mark.parametrize(("state", "inputs"), [("1", [0, 1]), ("2", [0, 0]), ("3", [1, 0]), ("4", [1, 1]),
                                               ("lock", [0, 1]), ("force", [1, 1])])
def test_sgready_set_writes_exactly_the_two_inputs(isg: servers.IsgSim, state: str, inputs: list[int]):
    proc = run("sgready", "set", state, "--host", "127.0.0.1", "--modbus-port", str(isg.modbus_port))
    assert proc.returncode == 0, proc.stderr
    writes = isg.state()["modbus"]["writes"]
    assert [(w["function"], w["address"], w["values"]) for w in writes] == [(16, 4001, inputs)]
    assert isg.holding(4000, 3) == [1, *inputs]
    number = {"lock": "1", "force": "4"}.get(state, state)
    assert f"SGReady {number} (" in proc.stdout.decode()
    assert f"operating state: {number}" in proc.stdout.decode()


def test_sgready_get_prints_the_state(isg: servers.IsgSim):
    assert run("sgready", "set", "active", "--host", "127.0.0.1", "--modbus-port", str(isg.modbus_port)).returncode == 0
    proc = run("sgready", "get", "--host", "127.0.0.1", "--modbus-port", str(isg.modbus_port))
    assert proc.returncode == 0
    out = proc.stdout.decode()
    assert "SG Ready is on" in out and "input 1 = 1, input 2 = 0 -> 3 (active)" in out
    assert "operating state: 3 (active)" in out


def test_sgready_set_5_writes_nothing_and_exits_2(isg: servers.IsgSim):
    proc = run("sgready", "set", "5", "--host", "127.0.0.1", "--modbus-port", str(isg.modbus_port))
    assert proc.returncode == 2
    assert "1-4 or lock, normal, active, force" in servers.one_error_line(proc)
    assert isg.state()["modbus"]["writes"] == []


def test_sgready_from_a_config_file_and_unreachable_device(isg: servers.IsgSim, workdir: Path):
    config = workdir / "isg.yaml"
    config.write_text(f"devices:\n  - plugin: isg\n    name: heatpump\n    mode: modbus\n    host: 127.0.0.1\n"
                      f"    modbus_port: {isg.modbus_port}\n    sgready_switch_on: true\n")
    proc = run("sgready", "set", "normal", "--config", str(config))
    assert proc.returncode == 0, proc.stderr
    assert isg.state()["modbus"]["writes"][-1]["values"] == [0, 0]
    down = run("sgready", "set", "3", "--host", "127.0.0.1", "--modbus-port", str(servers.free_port()))
    assert down.returncode == 1 and "connection refused" in servers.one_error_line(down)


def test_sgready_refused_when_the_readback_differs(workdir: Path, gridtap: str):
    sim = servers.start_isg_simulator(workdir, "--sgready-ignore-writes")
    try:
        proc = run("sgready", "set", "3", "--host", "127.0.0.1", "--modbus-port", str(sim.modbus_port))
        assert proc.returncode == 1
        assert "reads back input 1 = 0, input 2 = 0" in servers.one_error_line(proc)
    finally:
        sim.proc.stop()


def test_replay_serves_captured_pages(workdir: Path, gridtap: str):
    from tests.conftest import fixture_path

    folder = fixture_path("isg", "isg_exporter")
    sim = servers.start_isg_simulator(workdir, "--replay", str(folder))
    try:
        rows = lines(run("run", "isg", "--url", sim.web, "--username", "isg", "--password", "isg", "--once",
                         "--pages", "1,0 1,1 4,7 2,4", "--output", "influx"))
        assert field(rows, "web_temperature_celsius", name="aussentemperatur") == 10.6  # sample_onoff.html
        assert field(rows, "web_energy_joules_total", name="wm_heizen_summe") == 44341 * 3.6e6  # sample_1_1.html
        assert field(rows, "web_flag", name="winter") == 1  # sample_4_7.html
        assert field(rows, "web_value", name="compressor_speed_limit") == 102.8  # sample_specialchars.html (2,4)
    finally:
        sim.proc.stop()
