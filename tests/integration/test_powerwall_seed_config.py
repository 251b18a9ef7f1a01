"""Acceptance 3 of issue 8: the config file a foogod/powerwall_exporter user has works with
``gridtap run powerwall --config FILE --once --output influx`` and ``--output prometheus`` on
the seed's port; the seed's flag spellings and --fetchcert too. Real processes, loopback only."""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from . import servers

PASSWORD = "seed-Pa55word"


@pytest.fixture
def sim(workdir: Path, gridtap: str) -> Iterator[servers.PowerwallSim]:
    s = servers.start_powerwall_sim(workdir, "--password", PASSWORD, "--firmware", "23.28")
    try:
        yield s
    finally:
        s.proc.stop()


def seed_file(path: Path, sim: servers.PowerwallSim, web: str = "", device: str = "") -> Path:
    path.write_text(f"""# a powerwall_exporter config file, as its README shows it
web:
{web or '  metrics_path: /metrics'}
device:
  gateway_address: {sim.address}
  login_email: owner@example.org
  login_password: {PASSWORD}
  retry_interval: 500ms
  retry_timeout: 0s
{device}""")
    return path


def env(workdir: Path) -> dict[str, str]:
    e = servers.gridtap_env()
    e["GRIDTAP_STATE_DIR"] = str(workdir / "state")
    return e


def test_seed_config_once_influx(workdir, sim):
    cfg = seed_file(workdir / "powerwall_exporter.yaml", sim)
    res = subprocess.run([servers.gridtap_bin(), "run", "powerwall", "--config", str(cfg), "--once", "--output",
                          "influx"], capture_output=True, timeout=60, env=env(workdir))
    assert res.returncode == 0, res.stderr.decode()
    assert PASSWORD not in res.stderr.decode() + res.stdout.decode()
    lines = servers.parse_line_protocol(res.stdout.decode())
    fields: dict[str, list] = {}
    for line in lines:
        assert line.measurement == "powerwall" and line.tags["device"] == "powerwall"
        for k, v in line.fields.items():
            fields.setdefault(k, []).append((line.tags, v))
    for name in ("info", "charge_ratio", "app_charge_ratio", "uptime_seconds", "instant_power_watts",
                 "imported_joules_total", "battery_charged_joules_total", "network_active", "up"):
        assert name in fields, name
    assert 0 < fields["charge_ratio"][0][1] < 1
    categories = {tags["category"] for tags, _ in fields["instant_power_watts"]}
    assert categories == {"site", "battery", "load", "solar"}
    assert sim.counters()["logins"] == {"ok": 1}
    assert (workdir / "state" / "powerwall" / "powerwall.json").stat().st_mode & 0o777 == 0o600


def test_seed_config_prometheus_on_the_seed_port_and_path(workdir, sim, promtool):
    port = servers.free_port()
    cfg = seed_file(workdir / "pw.yaml", sim, web=f'  listen_address: "127.0.0.1:{port}"\n  metrics_path: /pw/scrape')
    proc = servers.spawn("gridtap-powerwall", [servers.gridtap_bin(), "run", "powerwall", "--config", str(cfg),
                                               "--output", "prometheus", "--interval", "1s"], workdir, env=env(workdir))
    try:
        text = servers.wait_until(lambda: _scrape(port, "/pw/scrape", "powerwall_info{"), 30,
                                  "powerwall_info on the seed's metrics_path", proc)
        rc, out = servers.promtool_check_metrics(text)
        assert rc == 0, out
        status, _, body = servers.http_get(f"http://127.0.0.1:{port}/status")
        assert status == 200 and PASSWORD not in body.decode()
        assert json.loads(body)["devices"][0]["facts"]["gateway"] == sim.address
    finally:
        proc.stop()
    assert PASSWORD not in proc.log()


def test_seed_spellings_serve_metrics_without_output_flag(workdir, sim):
    port = servers.free_port()
    cfg = seed_file(workdir / "pw.yaml", sim, web=f'  listen_address: ":{port}"')
    proc = servers.spawn("gridtap-seed-flags", [servers.gridtap_bin(), "run", "powerwall", f"--config.file={cfg}",
                                                "--log.style", "logfmt", "--debug"], workdir, env=env(workdir))
    try:
        servers.wait_until(lambda: _scrape(port, "/metrics", "powerwall_charge_ratio"), 30, "/metrics", proc)
        servers.wait_until(lambda: "level=debug" in proc.log() and "login/Basic" in proc.log(), 10, "debug log", proc)
    finally:
        proc.stop()
    log = proc.log()
    assert PASSWORD not in log and "(sensitive)" in log  # debug shows calls, never the login body


def test_default_port_comes_from_the_seed(workdir, sim):
    """Without web.listen_address the seed listens on :9871, and so does gridtap: with 9871 held,
    it says so (held by this test, or by anything else on the machine - either way it is taken)."""
    cfg = seed_file(workdir / "pw.yaml", sim)
    with contextlib.ExitStack() as stack:
        holder = socket.socket()
        stack.callback(holder.close)
        with contextlib.suppress(OSError):
            holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            holder.bind(("0.0.0.0", 9871))
            holder.listen()
        res = subprocess.run([servers.gridtap_bin(), "run", "powerwall", "--config", str(cfg), "--output",
                              "prometheus"], capture_output=True, timeout=60, env=env(workdir))
    assert res.returncode == 2
    line = servers.one_error_line(res)
    assert ":9871" in line and "cannot listen" in line


def test_a_bare_number_is_nanoseconds_as_in_the_seed_and_says_so(workdir, sim):
    """yaml.v2 reads ``retry_timeout: 30`` into a Go duration as 30 ns: the seed never retried.
    The file works unchanged, with the same meaning, and one warning tells the owner."""
    from gridtap_plugins.powerwall import seedconfig

    cfg = seed_file(workdir / "powerwall_exporter.yaml", sim).read_text().replace("retry_timeout: 0s",
                                                                                  "retry_timeout: 30")
    path = workdir / "bare.yaml"
    path.write_text(cfg)
    device = seedconfig.adapt(str(path))["devices"][0]
    assert device["retry_timeout"] == pytest.approx(30e-9)
    res = subprocess.run([servers.gridtap_bin(), "run", "powerwall", "--config", str(path), "--once", "--output",
                          "influx"], capture_output=True, timeout=60, env=env(workdir))
    assert res.returncode == 0, res.stderr.decode()
    warnings = [line for line in res.stderr.decode().splitlines() if "no unit" in line]
    assert len(warnings) == 1 and "device.retry_timeout" in warnings[0] and "30 ns" in warnings[0] \
        and "write 30s" in warnings[0], res.stderr.decode()
    assert " app_charge_ratio=" in res.stdout.decode() or ",app_charge_ratio=" in res.stdout.decode()


@pytest.mark.parametrize("extra,key", [("  listen_port: 1\n", "device.listen_port"),
                                       ("  retry_timeout: 5d\n", "device.retry_timeout"),
                                       ("  retry_timeout: 3000000h\n", "device.retry_timeout")])
def test_seed_config_mistakes_are_one_line(workdir, sim, extra, key):
    cfg = workdir / "bad.yaml"
    cfg.write_text(f"device:\n  gateway_address: {sim.address}\n  login_password: {PASSWORD}\n{extra}")
    res = subprocess.run([servers.gridtap_bin(), "run", "powerwall", "--config", str(cfg), "--once"],
                         capture_output=True, timeout=60, env=env(workdir))
    assert res.returncode == 2
    line = servers.one_error_line(res)
    assert key in line and PASSWORD not in line


def test_missing_password_and_unknown_top_level_key(workdir, sim):
    cfg = workdir / "bad.yaml"
    cfg.write_text(f"device:\n  gateway_address: {sim.address}\n")
    res = subprocess.run([servers.gridtap_bin(), "run", "powerwall", "--config", str(cfg), "--once"],
                         capture_output=True, timeout=60, env=env(workdir))
    assert res.returncode == 2 and "device.login_password" in servers.one_error_line(res)
    cfg.write_text(f"device:\n  gateway_address: {sim.address}\n  login_password: x\nweb2: {{}}\n")
    res = subprocess.run([servers.gridtap_bin(), "run", "powerwall", "--config", str(cfg), "--once"],
                         capture_output=True, timeout=60, env=env(workdir))
    assert res.returncode == 2 and "web2" in servers.one_error_line(res)


def test_help_never_shows_the_password(workdir):
    e = env(workdir)
    e["GRIDTAP_POWERWALL_LOGIN_PASSWORD"] = PASSWORD
    res = subprocess.run([servers.gridtap_bin(), "run", "powerwall", "--help"], capture_output=True, timeout=60,
                         env=e)
    assert res.returncode == 0 and PASSWORD not in res.stdout.decode()
    assert "--login-password" in res.stdout.decode()


def test_fetchcert_seed_spelling_then_pinned_then_rotated(workdir, sim):
    pem = workdir / "gateway.pem"
    cfg = seed_file(workdir / "pw.yaml", sim, device=f"  tls_cert_file: {pem}\n")
    res = subprocess.run([servers.gridtap_bin(), "run", "powerwall", f"--config.file={cfg}", "--fetchcert"],
                         capture_output=True, timeout=60, env=env(workdir))
    assert res.returncode == 0, res.stderr.decode()
    assert pem.stat().st_mode & 0o777 == 0o644
    assert ssl.PEM_cert_to_DER_cert(pem.read_text()) == ssl.PEM_cert_to_DER_cert(sim.certificate_pem())
    assert sim.counters()["hits"] == {}  # no HTTP request, no password sent
    assert sim.counters()["sni"] == {"powerwall": 1}
    once = [servers.gridtap_bin(), "run", "powerwall", "--config", str(cfg), "--once", "--output", "influx"]
    res = subprocess.run(once, capture_output=True, timeout=60, env=env(workdir))
    assert res.returncode == 0 and b"charge_ratio=" in res.stdout, res.stderr.decode()
    sim.control(rotate_cert=True)
    logins = sim.counters()["login_attempts"]
    res = subprocess.run(once, capture_output=True, timeout=60, env=env(workdir))
    assert res.returncode == 1 and res.stdout == b""
    line = servers.one_error_line(res)
    assert "changed" in line and str(pem) in line and "fetchcert" in line
    assert sim.counters()["login_attempts"] == logins
    # gridtap's own spelling fetches the new one, and reading works again
    res = subprocess.run([servers.gridtap_bin(), "powerwall", "fetchcert", "--config", str(cfg)],
                         capture_output=True, timeout=60, env=env(workdir))
    assert res.returncode == 0 and "SHA-256" in res.stdout.decode()
    res = subprocess.run(once, capture_output=True, timeout=60, env=env(workdir))
    assert res.returncode == 0, res.stderr.decode()


def test_fetchcert_without_tls_cert_file_is_one_line(workdir, sim):
    cfg = seed_file(workdir / "pw.yaml", sim)
    res = subprocess.run([servers.gridtap_bin(), "powerwall", "fetchcert", "--config", str(cfg)],
                         capture_output=True, timeout=60, env=env(workdir))
    assert res.returncode == 2 and "tls_cert_file" in servers.one_error_line(res)


def _scrape(port: int, path: str, needle: str) -> str | None:
    with contextlib.suppress(OSError):
        status, _, body = servers.http_get(f"http://127.0.0.1:{port}{path}", {"Accept": "text/plain"})
        text = body.decode()
        if status == 200 and needle in text:
            return text
    return None


def test_telegraf_execd_reads_the_battery(workdir, sim, telegraf):
    """telegraf.d/powerwall.conf's command, with the seed's file, under a real Telegraf."""
    cfg = seed_file(workdir / "powerwall.yaml", sim)
    server = servers.start_telegraf(workdir / "telegraf", [servers.gridtap_bin(), "run", "powerwall", "--output",
                                                           "influx", "--signal", "STDIN", "--config", str(cfg)],
                                    environment=[f"GRIDTAP_STATE_DIR={workdir / 'state'}"])
    try:
        servers.wait_until(lambda: "charge_ratio=" in server.output() and "instant_power_watts=" in server.output(),
                           40, "powerwall lines in Telegraf's output", server.proc)
    finally:
        server.proc.stop()
    lines = [ln for ln in servers.parse_line_protocol(server.output()) if ln.measurement == "powerwall"]
    assert any(ln.tags.get("category") == "solar" for ln in lines)
    assert sim.counters()["logins"] == {"ok": 1}  # one login however many intervals Telegraf asked for
