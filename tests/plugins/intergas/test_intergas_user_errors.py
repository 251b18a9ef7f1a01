"""User mistakes with the intergas plugin and its simulator: each is one ``gridtap: ...`` line
and exit 2 (never a traceback), found at start-up rather than at the first collection, and
the simulator never overwrites or steals a path it was pointed at."""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from gridtap import devices
from gridtap.config import Duration, Secret
from gridtap.errors import ConfigError, DeviceError, InputError
from gridtap_plugins.intergas.lan2rf import Lan2rfClient
from gridtap_plugins.intergas.plugin import IntergasConfig, IntergasPlugin
from gridtap_plugins.intergas.simulator import IntergasSimulator
from tests.integration.servers import one_error_line

pytestmark = pytest.mark.timeout(60)


def gridtap(*argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gridtap", *argv], capture_output=True, text=True, timeout=30,
                          stdin=subprocess.DEVNULL, cwd=cwd)


# ------------------------------------------------------------------ simulate --pty
def test_pty_refuses_a_regular_file(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    proc = gridtap("simulate", "intergas", "--pty", str(notes))
    assert proc.returncode == 2
    assert "not a symlink" in one_error_line(proc)
    assert notes.read_text() == "my notes\n"
    with pytest.raises(ConfigError, match="not a symlink"):
        IntergasSimulator(pty=str(notes)).start()
    assert notes.read_text() == "my notes\n"


def test_pty_refuses_the_live_link_of_another_simulator(tmp_path: Path) -> None:
    link = tmp_path / "ttyBoiler"
    first = IntergasSimulator(pty=str(link)).start()
    try:
        ours = os.readlink(link)
        proc = gridtap("simulate", "intergas", "--pty", str(link))
        assert proc.returncode == 2
        assert "another simulator" in one_error_line(proc)
        assert os.readlink(link) == ours  # still the first simulator's pty, and still there
    finally:
        first.stop()
    assert not os.path.lexists(link)


def test_pty_replaces_a_dangling_link_and_removes_it_on_exit(tmp_path: Path) -> None:
    link = tmp_path / "ttyBoiler"
    os.symlink(tmp_path / "gone", link)  # left behind by a simulator that was killed
    sim = IntergasSimulator(pty=str(link)).start()
    assert os.readlink(link).startswith("/dev/")
    sim.stop()
    assert not os.path.lexists(link)


def test_pty_stop_leaves_a_link_that_is_no_longer_ours(tmp_path: Path) -> None:
    link = tmp_path / "ttyBoiler"
    sim = IntergasSimulator(pty=str(link)).start()
    os.unlink(link)
    os.symlink(tmp_path / "elsewhere", link)
    sim.stop()
    assert os.readlink(link) == str(tmp_path / "elsewhere")


# ------------------------------------------------------------------ simulate: other flags
@pytest.mark.parametrize(("argv", "expected"), [
    (["--tcp", "nonsense"], "--tcp: expected HOST:PORT"),
    (["--tcp", "127.0.0.1:70000"], "--tcp: expected HOST:PORT"),
    (["--lan2rf", "127.0.0.1"], "--lan2rf: expected HOST:PORT"),
    (["--lan2rf", "127.0.0.1:0", "--auth", "nocolon"], "--auth: expected USER:PASSWORD"),
    (["--lan2rf", "127.0.0.1:0", "--auth", ":pw"], "--auth: expected USER:PASSWORD"),
    (["--tcp", "127.0.0.1:0", "--auth", "admin:pw"], "--auth: only the LAN2RF gateway"),
    (["--tcp", "127.0.0.1:0", "--replay", "/nonexistent"], "no such folder"),
    (["--tcp", "127.0.0.1:0", "--replay", "EMPTY"], "no S*/S2*"),
    (["--tcp", "127.0.0.1:0", "--replay", "FILE"], "not a folder"),
    (["--pty", "/nonexistent/folder/tty"], "cannot create the link"),
])
def test_simulate_mistakes_are_one_line_exit_2(tmp_path: Path, argv: list[str], expected: str) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "S_one.hex").write_text("00 " * 32)
    argv = [{"EMPTY": str(tmp_path / "empty"), "FILE": str(tmp_path / "S_one.hex")}.get(a, a) for a in argv]
    proc = gridtap("simulate", "intergas", *argv)
    assert proc.returncode == 2
    line = one_error_line(proc)
    assert expected in line
    assert "pw" not in line.replace("PASSWORD", "")  # the --auth value is never echoed


def test_replay_errors_are_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such folder"):
        IntergasSimulator(tcp="127.0.0.1:0", replay=tmp_path / "missing")


# ------------------------------------------------------------------ port
@pytest.mark.parametrize("port", [
    "socket://127.0.0.1:99999", "socket://127.0.0.1", "socket://:20108", "socket://127.0.0.1:0",
    "socket://127.0.0.1:abc", "127.0.0.1:99999", "rfc2217://127.0.0.1", "", "  ",
])
def test_bad_port_is_a_config_error(port: str) -> None:
    with pytest.raises(ConfigError) as err:
        IntergasPlugin(IntergasConfig(port=port), "boiler")
    assert err.value.key == "intergas.port"


@pytest.mark.parametrize("port", [
    "/dev/ttyUSB0", "socket://127.0.0.1:20108", "127.0.0.1:20108", "boiler.lan:20108", "rfc2217://gw:2217",
    "socket://[::1]:20108",
])
def test_valid_port_forms_are_accepted(port: str) -> None:
    IntergasPlugin(IntergasConfig(port=port), "boiler").close()  # nothing is opened before a collection


def test_empty_port_in_yaml_is_a_config_error_at_start_up() -> None:
    spec = devices.device_spec(IntergasPlugin, {"plugin": "intergas", "port": ""}, where="devices[0]",
                               default_interval=None, env={})
    with pytest.raises(ConfigError, match="intergas.port: missing value"):
        spec.create()


def test_bad_port_flag_is_one_line_exit_2() -> None:
    proc = gridtap("run", "intergas", "--port", "socket://127.0.0.1", "--once")
    assert proc.returncode == 2
    assert one_error_line(proc) == ("gridtap: config error: intergas.port: expected socket://HOST:PORT with a port "
                              "1-65535, got 'socket://127.0.0.1'")


# ------------------------------------------------------------------ gateway_url
@pytest.mark.parametrize("url", ["notaurl", "ftp://gw/", "http://", "http://gw:99999", "http://gw:x", "", "gw"])
def test_bad_gateway_url_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError) as err:
        IntergasPlugin(IntergasConfig(gateway_url=url), "boiler")
    assert err.value.key == "intergas.gateway_url"


def test_gateway_url_error_never_echoes_credentials() -> None:
    with pytest.raises(ConfigError) as err:
        IntergasPlugin(IntergasConfig(gateway_url="ftp://admin:pw-x1@gw/"), "boiler")
    assert "pw-x1" not in str(err.value)


@pytest.mark.parametrize("url", ["http://192.168.1.60", "https://gw.lan:8443/", "http://[::1]:8080"])
def test_valid_gateway_urls_are_accepted(url: str) -> None:
    IntergasPlugin(IntergasConfig(gateway_url=url), "boiler").close()


# ------------------------------------------------------------------ LAN2RF failures in words
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_lan2rf_connection_refused_is_said_in_words() -> None:
    client = Lan2rfClient(f"http://127.0.0.1:{_free_port()}", username="admin", password="pw-x1", timeout=2)
    with pytest.raises(DeviceError) as err:
        client.heaters()
    assert str(err.value) == "LAN2RF heaterlist.json: connection refused (wrong address or port?)"
    client.close()


def test_lan2rf_silence_is_a_timeout() -> None:
    with socket.socket() as silent:  # accepts connections (backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        port = silent.getsockname()[1]
        client = Lan2rfClient(f"http://127.0.0.1:{port}", username="admin", password="pw-x1", timeout=0.3)
        with pytest.raises(DeviceError) as err:
            client.heaters()
        client.close()
    assert str(err.value) == "LAN2RF heaterlist.json: no reply within 0.3 s"


def test_lan2rf_http_status_has_its_phrase() -> None:
    with IntergasSimulator(lan2rf="127.0.0.1:0") as sim:  # no auth: /protect/ paths are 404
        plugin = IntergasPlugin(IntergasConfig(gateway_url=sim.address, username="admin",
                                               password=Secret("pw-x1"), timeout=Duration(2.0)), "boiler")
        with pytest.raises(DeviceError) as err:
            plugin.collect()
        plugin.close()
    assert str(err.value) == "LAN2RF heaterlist.json: HTTP 404 Not Found"


# ------------------------------------------------------------------ numbers
@pytest.mark.parametrize("divisor", [math.nan, math.inf, -math.inf, 0.0, -1.0])
def test_gas_meter_divisor_must_be_finite_and_positive(divisor: float) -> None:
    with pytest.raises(ConfigError, match="intergas.gas_meter_divisor"):
        IntergasPlugin(IntergasConfig(port="/dev/null", gas_meter_divisor=divisor), "boiler")


@pytest.mark.parametrize(("key", "value"), [
    ("gas_meter_divisor", math.nan), ("gas_meter_divisor", math.inf), ("gas_meter_divisor", 0),
    ("timeout", 0), ("timeout", -1), ("timeout", math.nan), ("timeout", math.inf), ("timeout", "0s"),
])
def test_yaml_numbers_are_checked_at_start_up(key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=key):
        devices.device_spec(IntergasPlugin, {"plugin": "intergas", "port": "/dev/null", key: value},
                            where="devices[0]", default_interval=None, env={}).create()
