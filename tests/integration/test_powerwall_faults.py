"""Acceptance 2 of issue 8 with real processes: ``gridtap simulate powerwall`` (HTTPS on loopback,
faults through its control endpoint) read by ``gridtap run powerwall``, scraped like Prometheus."""

from __future__ import annotations

import contextlib
import subprocess
import time
from pathlib import Path

import pytest

from . import servers

PASSWORD = "fault-Pa55"


def env(workdir: Path) -> dict[str, str]:
    e = servers.gridtap_env()
    e["GRIDTAP_STATE_DIR"] = str(workdir / "state")
    e["GRIDTAP_POWERWALL_LOGIN_PASSWORD"] = PASSWORD
    return e


def sim_for(workdir: Path, *extra: str) -> servers.PowerwallSim:
    return servers.start_powerwall_sim(workdir, "--password", PASSWORD, "--firmware", "23.28", *extra)


@contextlib.contextmanager
def running(workdir: Path, sim: servers.PowerwallSim, *extra: str, name: str = "gridtap-powerwall"):
    port = servers.free_port()
    proc = servers.spawn(name, [servers.gridtap_bin(), "run", "powerwall", "--gateway-address", sim.address,
                                "--output", "prometheus", "--listen", f"127.0.0.1:{port}", "--interval", "1s",
                                *extra], workdir, env=env(workdir))
    try:
        yield proc, port
    finally:
        proc.stop()


def scrape(port: int) -> str:
    _, _, body = servers.http_get(f"http://127.0.0.1:{port}/metrics", {"Accept": "text/plain"})
    return body.decode()


def value(text: str, series: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(series + " ") or line.startswith(series + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


def once(workdir: Path, sim: servers.PowerwallSim, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([servers.gridtap_bin(), "run", "powerwall", "--gateway-address", sim.address, "--once",
                           "--output", "influx", *extra], capture_output=True, timeout=60, env=env(workdir))


@pytest.fixture
def sim(workdir: Path, gridtap: str):
    s = sim_for(workdir)
    try:
        yield s
    finally:
        s.proc.stop()


def test_token_revoked_mid_collection_costs_one_relogin_and_no_gap(workdir, sim):
    with running(workdir, sim) as (proc, port):
        servers.scrape_until(port, 'powerwall_endpoint_ok{device="powerwall",endpoint="networks"} 1', timeout=30,
                             proc=proc)
        assert sim.counters()["logins"] == {"ok": 1}
        sim.control(revoke_on="sitemaster")
        servers.wait_until(lambda: sim.counters()["logins"].get("ok") == 2, 10, "one re-login", proc)
        hits = sim.counters()["hits"]["sitemaster"]
        servers.wait_until(lambda: sim.counters()["hits"]["sitemaster"] >= hits + 2, 10, "two more collections",
                           proc)
        text = scrape(port)
        assert value(text, 'powerwall_up{device="powerwall"}') == 1
        assert 'powerwall_endpoint_ok{device="powerwall",endpoint="sitemaster"} 1' in text
        assert "powerwall_sitemaster_running" in text
        assert sim.counters()["logins"] == {"ok": 2}


def test_wrong_password_one_clear_line_one_login_then_backoff(workdir, sim):
    e = env(workdir)
    res = subprocess.run([servers.gridtap_bin(), "run", "powerwall", "--gateway-address", sim.address, "--once",
                          "--login-password", "wrong-one"], capture_output=True, timeout=60, env=e)
    assert res.returncode == 1
    line = servers.one_error_line(res)
    assert "rejected" in line and "401 bad credentials" in line and "wrong-one" not in line
    assert sim.counters()["login_attempts"] == 1
    # a long-running process with the same wrong password: the back-off is remembered, no login at all
    e["GRIDTAP_POWERWALL_LOGIN_PASSWORD"] = "wrong-one"
    port = servers.free_port()
    proc = servers.spawn("gridtap-wrong", [servers.gridtap_bin(), "run", "powerwall", "--gateway-address",
                                           sim.address, "--output", "prometheus", "--listen", f"127.0.0.1:{port}",
                                           "--interval", "1s"], workdir, env=e)
    try:
        servers.scrape_until(port, 'powerwall_up{device="powerwall"} 0', timeout=20, proc=proc)
        time.sleep(3)
        text = scrape(port)
        assert value(text, 'powerwall_login_backoff_seconds{device="powerwall"}') > 250
        assert "powerwall_info" not in text
    finally:
        proc.stop()
    assert sim.counters()["login_attempts"] == 1
    log = proc.log()
    assert "wrong-one" not in log
    assert sum("rejected" in line for line in log.splitlines()) == 1, log


def test_429_is_honoured(workdir, sim):
    sim.control(rate_limit=600)
    res = once(workdir, sim)
    assert res.returncode == 1 and "429" in servers.one_error_line(res)
    with running(workdir, sim) as (proc, port):
        servers.scrape_until(port, 'powerwall_up{device="powerwall"} 0', timeout=20, proc=proc)
        time.sleep(2)
    counters = sim.counters()
    assert counters["logins"] == {"rate_limited": 1}
    assert set(counters["hits"]) == {"status", "login/Basic"}  # nothing after the 429


def test_gateway_lockout_after_bad_logins_is_never_reached_by_one_process(workdir, gridtap):
    sim = sim_for(workdir, "--lockout-after", "3")
    try:
        e = env(workdir)
        e["GRIDTAP_POWERWALL_LOGIN_PASSWORD"] = "wrong"
        port = servers.free_port()
        proc = servers.spawn("gridtap-lockout", [servers.gridtap_bin(), "run", "powerwall", "--gateway-address",
                                                 sim.address, "--output", "prometheus", "--listen",
                                                 f"127.0.0.1:{port}", "--interval", "500ms", "--token-file",
                                                 "none"], workdir, env=e)
        try:
            time.sleep(5)  # 10 collections
        finally:
            proc.stop()
        assert sim.counters()["logins"] == {"bad": 1}  # the seed would have made ~140 and met the 429
    finally:
        sim.proc.stop()


def test_powerwall3_is_one_clear_line(workdir, gridtap):
    sim = sim_for(workdir, "--powerwall3")
    try:
        res = once(workdir, sim)
        assert res.returncode == 1
        line = servers.one_error_line(res)
        assert "Powerwall 3" in line and "404" in line and sim.address in line
        with running(workdir, sim, "--token-file", "none") as (proc, port):
            servers.scrape_until(port, 'powerwall_up{device="powerwall"} 0', timeout=20, proc=proc)
            time.sleep(3)
        assert sim.counters()["logins"] == {"not_found": 2}  # one per process, no storm
        assert sum("Powerwall 3" in line for line in proc.log().splitlines()) == 1, proc.log()
    finally:
        sim.proc.stop()


def test_wifi_drop_shorter_than_retry_timeout_leaves_no_gap(workdir, sim):
    """As the README advises, retry_timeout below the interval: the drop starts in the middle of a
    collection (at /api/operation), which rides it out and is complete."""
    with running(workdir, sim, "--retry-timeout", "4s", "--retry-interval", "500ms", "--interval", "5s") \
            as (proc, port):
        servers.scrape_until(port, "powerwall_info{", timeout=30, proc=proc)
        sim.control(drop_on="operation", drop=3)
        deadline = time.monotonic() + 9
        scrapes = 0
        while time.monotonic() < deadline:
            text = scrape(port)
            assert value(text, 'powerwall_up{device="powerwall"}') == 1, text
            assert "powerwall_info{" in text and "powerwall_instant_power_watts{" in text
            scrapes += 1
            time.sleep(0.25)
        assert scrapes > 20
        text = scrape(port)
        assert value(text, 'powerwall_api_requests_total{code="network",device="powerwall"}') >= 2
    assert "collection failed" not in proc.log()


def test_wifi_drop_longer_than_retry_timeout_goes_down_and_comes_back(workdir, sim):
    with running(workdir, sim, "--retry-timeout", "1s", "--retry-interval", "300ms") as (proc, port):
        servers.scrape_until(port, "powerwall_info{", timeout=30, proc=proc)
        sim.control(drop=4)
        text = servers.scrape_until(port, 'powerwall_up{device="powerwall"} 0', timeout=10, proc=proc)
        assert "powerwall_info{" not in text  # nothing stale
        assert "powerwall_api_requests_total{" in text  # diagnostics stay
        servers.scrape_until(port, 'powerwall_up{device="powerwall"} 1', timeout=15, proc=proc)


def test_rotated_certificate_with_pinned_file_gives_no_metrics_and_a_clear_error(workdir, sim, promtool):
    pem = workdir / "gw.pem"
    pem.write_text(sim.certificate_pem())
    with running(workdir, sim, "--tls-cert-file", str(pem), "--retry-timeout", "5s") as (proc, port):
        text = servers.scrape_until(port, "powerwall_info{", timeout=30, proc=proc)
        rc, out = servers.promtool_check_metrics(text)
        assert rc == 0, out
        sim.control(rotate_cert=True)
        text = servers.scrape_until(port, 'powerwall_up{device="powerwall"} 0', timeout=10, proc=proc)
        assert "powerwall_info{" not in text and "powerwall_charge_ratio" not in text
        status, _, body = servers.http_get(f"http://127.0.0.1:{port}/status")
        assert "changed" in body.decode() and str(pem) in body.decode()
        time.sleep(2)
    changed = [line for line in proc.log().splitlines() if "changed" in line]
    assert len(changed) == 1 and "fetchcert" in changed[0], proc.log()
