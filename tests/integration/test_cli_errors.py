"""User mistakes end in one line and exit code 2, measured with the real intergas plugin."""

from __future__ import annotations

import pytest

from tests.integration import servers

pytestmark = pytest.mark.integration


def _run(*args: str, **kw):
    return servers.run_gridtap(list(args), timeout=30, **kw)


@pytest.mark.parametrize(("yaml_text", "key", "problem"), [
    ("devices:\n  - plugin: intergas\n    port: /dev/null\n    baud: 9600\n", "devices[0].baud", "unknown key"),
    ("devices:\n  - plugin: intergas\n    port: /dev/null\n    timeout: soon\n", "devices[0].timeout", "duration"),
    ("devices:\n  - plugin: intergas\n    port: /dev/null\n    heater: [1]\n", "devices[0].heater", "integer"),
    ("devices:\n  - plugin: intergas\n", "port", "port"),
    ("devices:\n  - port: /dev/null\n", "devices[0].plugin", "missing required value"),
    ("interval: 10s\ncolour: red\n", "config.colour", "unknown key"),
    ("devices: [\n", "not valid YAML", ""),
])
def test_bad_config_exits_2_with_one_line_naming_the_key(tmp_path, yaml_text, key, problem):
    cfg = tmp_path / "gridtap.yaml"
    cfg.write_text(yaml_text)
    for argv in (["run", "intergas", "--config", str(cfg), "--once"], ["serve", "--config", str(cfg)]):
        proc = _run(*argv)
        assert proc.returncode == 2, (argv, proc.stderr)
        line = servers.one_error_line(proc)
        assert key in line and problem in line, line


@pytest.mark.parametrize(("flags", "key"), [
    (["--port", "/dev/null", "--timeout", "soon"], "timeout"),
    (["--port", "/dev/null", "--heater", "x"], "heater"),
    (["--port", "/dev/null", "--flag-bit-order", "backwards"], "flag_bit_order"),
    ([], "port"),
])
def test_bad_flags_exit_2(flags, key):
    proc = _run("run", "intergas", "--once", *flags)
    assert proc.returncode == 2
    assert key in servers.one_error_line(proc)


def test_bad_environment_exits_2():
    env = {**servers.gridtap_env(), "GRIDTAP_INTERGAS_HEATER": "seven"}
    import subprocess

    proc = subprocess.run([servers.gridtap_bin(), "run", "intergas", "--port", "/dev/null", "--once"], env=env,
                          capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
    assert proc.returncode == 2
    assert "heater" in servers.one_error_line(proc)


def test_password_is_never_printed(tmp_path):
    cfg = tmp_path / "g.yaml"
    cfg.write_text("devices:\n  - plugin: intergas\n    gateway_url: http://127.0.0.1:9/\n"
                   "    username: admin\n    password: s3cr3t-Pa55\n    timeout: 1s\n")
    proc = _run("run", "intergas", "--config", str(cfg), "--once", "--log-level", "debug")
    assert proc.returncode == 1
    assert b"s3cr3t-Pa55" not in proc.stderr + proc.stdout


def test_unknown_plugin_and_bad_capture(tmp_path):
    proc = _run("run", "nosuch", "--once")
    assert proc.returncode == 2 and "nosuch" in servers.one_error_line(proc)
    bad = tmp_path / "x.hex"
    bad.write_text("zz zz\n")
    proc = _run("decode", "intergas", "--block", "S?", "--input", "hex", str(bad))
    assert proc.returncode == 2 and "not hex" in servers.one_error_line(proc)
    short = tmp_path / "short.hex"
    short.write_text("01 02 03\n")
    proc = _run("decode", "intergas", "--block", "S?", str(short))
    assert proc.returncode == 2 and "32" in servers.one_error_line(proc)


@pytest.mark.parametrize(("argv", "env", "line"), [
    (["--output", "pushgateway", "--pushgateway", "http://127.0.0.1:99999"], {},
     "config.pushgateway.url: not a valid URL: 'http://127.0.0.1:99999'"),
    (["--output", "pushgateway", "--pushgateway", "ftp://u:pw-x1@127.0.0.1/"], {},
     "config.pushgateway.url: expected an http:// or https:// URL with a host (http://127.0.0.1:9091), "
     "got 'ftp://127.0.0.1/'"),
    (["--output", "mqtt", "--mqtt", "127.0.0.1:abc"], {},
     "--mqtt: expected HOST[:PORT] with a numeric port, got '127.0.0.1:abc'"),
    (["--output", "mqtt", "--mqtt", "mqtt://127.0.0.1:1883"], {},
     "--mqtt: expected HOST[:PORT], not a URL: 'mqtt://127.0.0.1:1883'"),
    (["--output", "collectd"], {"COLLECTD_INTERVAL": "0"},
     "COLLECTD_INTERVAL: expected seconds greater than zero, got '0'"),
    (["--output", "collectd"], {"COLLECTD_INTERVAL": "nan"},
     "COLLECTD_INTERVAL: expected seconds greater than zero, got 'nan'"),
    (["--timeout", "0"], {}, "intergas.timeout: must be greater than zero, got '0'"),
])
def test_bad_output_settings_exit_2_before_any_collection(argv, env, line):
    import subprocess

    proc = subprocess.run([servers.gridtap_bin(), "run", "intergas", "--port", "/dev/null", *argv],
                          env={**servers.gridtap_env(), **env}, capture_output=True, timeout=30,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 2, proc.stderr
    assert servers.one_error_line(proc) == f"gridtap: config error: {line}"
    assert b"pw-x1" not in proc.stderr


def test_hex_capture_with_a_typo_names_it(tmp_path):
    typo = tmp_path / "typo.hex"
    typo.write_text("# S? reply\nbc 0f cd 0f d4 0f 4e 0d 14 ec 14 ec 95 00 00 00\n"
                    "00 00 00 00 00 00 00 00 7e 00 80 zz\n")
    proc = _run("decode", "intergas", "--block", "S?", str(typo))
    assert proc.returncode == 2
    assert servers.one_error_line(proc) == f"gridtap: {typo}: not hex text: 'z' is not a hex digit (line 3)"


def test_collectd_interval_yields_to_an_explicit_interval(tmp_path):
    import subprocess

    # --once prints one batch; its PUTVAL interval says which interval won.
    proc, addr = servers.start_simulator("intergas", tmp_path)
    try:
        for argv, want in ((["--interval", "2s"], "interval=2.000"), ([], "interval=30.000")):
            out = subprocess.run([servers.gridtap_bin(), "run", "intergas", "--port", addr, "--once",
                                  "--output", "collectd", *argv],
                                 env={**servers.gridtap_env(), "COLLECTD_INTERVAL": "30", "COLLECTD_HOSTNAME": "h"},
                                 capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
            assert out.returncode == 0, out.stderr
            putvals = out.stdout.decode().splitlines()
            assert putvals and all(want in ln for ln in putvals), (argv, putvals[:2])
    finally:
        proc.stop()


def test_demo_refuses_a_busy_listen_address_before_starting_simulators(tmp_path):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = _run("demo", "--listen", f"127.0.0.1:{port}", "--duration", "5s")
    assert proc.returncode == 2
    assert servers.one_error_line(proc) == (f"gridtap: config error: listen: cannot listen on 127.0.0.1:{port}: "
                               "Address already in use")
    assert proc.stdout == b""


@pytest.mark.parametrize("argv", [
    [], ["run"], ["run", "intergas"], ["run", "goodwe"], ["serve"], ["decode", "intergas"], ["decode", "goodwe"],
    ["simulate", "intergas"], ["simulate", "goodwe"], ["demo"], ["plugins"],
])
def test_help_and_version_everywhere(argv):
    proc = _run(*argv, "--help")
    assert proc.returncode == 0 and b"usage: gridtap" in proc.stdout
    proc = _run(*argv, "--version")
    assert proc.returncode == 0 and proc.stdout.startswith(b"gridtap ")
