"""The client against the simulator (in-process, real HTTPS on loopback): login discipline,
back-off, retries and pinning - acceptance 2 of issue 8 at the level of one collection."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from gridtap.errors import ConfigError, DeviceError
from gridtap_plugins.powerwall import client as pwclient
from gridtap_plugins.powerwall import tls
from gridtap_plugins.powerwall.client import BackingOff, CertificateChanged, NetworkError

PASSWORD = "sim-password"


def values(metrics):
    return {(m.name, m.labels): m.value for m in metrics}


def names(metrics):
    return {m.name for m in metrics}

FULL = {"powerwall_info", "powerwall_charge_ratio", "powerwall_operation_mode", "powerwall_sitemaster_running",
        "powerwall_problems_detected", "powerwall_battery_info", "powerwall_instant_power_watts",
        "powerwall_network_enabled", "powerwall_dev_instant_power_watts"}


def ok_endpoints(metrics) -> dict[str, int]:
    return {dict(m.labels)["endpoint"]: m.value for m in metrics if m.name == "powerwall_endpoint_ok"}


def test_one_login_then_the_token_is_reused(sim, make_plugin):
    plugin = make_plugin(sim)
    first = plugin.collect()
    assert names(first) >= FULL
    assert set(ok_endpoints(first).values()) == {1}
    plugin.collect()
    counters = sim.counters()
    assert counters["logins"] == {"ok": 1}
    # meters/battery and meters/load answer 404: asked once, never a login, not asked again for an hour
    assert counters["hits"]["meters/load"] == 1 and counters["hits"]["meters/battery"] == 1
    assert counters["hits"]["status"] == 2
    assert counters["sni"] == {"powerwall": 1}  # one kept-alive connection, always SNI powerwall


def test_token_revoked_mid_collection_costs_exactly_one_relogin(sim, make_plugin):
    plugin = make_plugin(sim)
    plugin.collect()
    sim.reset_counters()
    sim.control({"revoke_on": "sitemaster"})
    metrics = plugin.collect()
    counters = sim.counters()
    assert counters["logins"] == {"ok": 1}
    assert counters["hits"]["sitemaster"] == 2  # the 401, then the same request again
    assert names(metrics) >= FULL and set(ok_endpoints(metrics).values()) == {1}


def test_token_survives_a_restart_through_the_state_file(sim, make_plugin, tmp_path):
    make_plugin(sim).collect()
    state_file = tmp_path / "state" / "powerwall.json"
    assert state_file.stat().st_mode & 0o777 == 0o600
    assert PASSWORD not in state_file.read_text()
    sim.reset_counters()
    restarted = make_plugin(sim)
    assert names(restarted.collect()) >= FULL
    assert sim.counters()["login_attempts"] == 0


def test_wrong_password_is_one_login_per_collection_then_a_backoff(sim, make_plugin, tmp_path):
    sim.password = "the-real-one"
    plugin = make_plugin(sim)
    with pytest.raises(BackingOff) as first:
        plugin.collect()
    message = str(first.value)
    assert "rejected" in message and "login_password" in message and "401 bad credentials" in message
    assert PASSWORD not in message
    assert sim.counters()["logins"] == {"bad": 1}
    hits = sim.counters()["hits"]
    for _ in range(3):  # during the back-off nothing at all is sent
        with pytest.raises(BackingOff) as again:
            plugin.collect()
        assert str(again.value) == message
    assert sim.counters()["hits"] == hits
    assert 299 <= plugin.client.backoff_remaining() <= 300
    diag = values(plugin.diagnostics())
    assert diag[("powerwall_login_attempts_total", (("result", "rejected"),))] == 1
    # the back-off is kept across a restart (same password): still no login
    restarted = make_plugin(sim)
    with pytest.raises(BackingOff):
        restarted.collect()
    assert sim.counters()["logins"] == {"bad": 1}
    # when it has passed: exactly one more attempt, and the next wait is longer
    restarted.client.wall = lambda: time.time() + 301
    with pytest.raises(BackingOff):
        restarted.collect()
    assert sim.counters()["logins"] == {"bad": 2}
    assert restarted.client.backoff.until - (time.time() + 301) == pytest.approx(600, abs=2)
    assert "the-real-one" not in (tmp_path / "state" / "powerwall.json").read_text()


def test_a_new_password_ends_the_backoff_of_the_old_one(sim, make_plugin):
    sim.password = "new-password"
    with pytest.raises(BackingOff):
        make_plugin(sim).collect()
    fixed = make_plugin(sim, login_password="new-password")
    assert names(fixed.collect()) >= FULL
    assert sim.counters()["logins"] == {"bad": 1, "ok": 1}


def test_429_pauses_every_request(sim, make_plugin):
    sim.rate_limit(60)
    plugin = make_plugin(sim)
    with pytest.raises(BackingOff, match="429"):
        plugin.collect()
    assert sim.counters()["logins"] == {"rate_limited": 1}
    hits = dict(sim.counters()["hits"])
    with pytest.raises(BackingOff):
        plugin.collect()
    assert sim.counters()["hits"] == hits
    assert plugin.client.backoff_remaining() >= 299


def test_repeated_bad_logins_reach_the_gateway_lockout_only_through_backoffs(sim, make_plugin):
    sim.password, sim.lockout_after = "other", 2
    plugin = make_plugin(sim)
    offset = 0.0
    plugin.client.wall = lambda: time.time() + offset
    for _ in range(2):
        with pytest.raises(BackingOff):
            plugin.collect()
        offset += 3601
    with pytest.raises(BackingOff, match="429"):
        plugin.collect()
    assert sim.counters()["logins"] == {"bad": 2, "rate_limited": 1}


def test_powerwall3_is_one_clear_answer_without_a_retry_storm(sim, make_plugin):
    sim.powerwall3 = True
    plugin = make_plugin(sim)
    with pytest.raises(BackingOff) as e:
        plugin.collect()
    text = str(e.value)
    assert "404" in text and "Powerwall 3" in text and sim.address in text and "\n" not in text
    for _ in range(5):
        with pytest.raises(BackingOff):
            plugin.collect()
    assert sim.counters()["logins"] == {"not_found": 1}


def test_stopped_sitemaster_still_yields_what_it_can(sim, make_plugin):
    plugin = make_plugin(sim)
    sim.set_sitemaster(False)
    metrics = plugin.collect()
    v = values(metrics)
    assert v[("powerwall_sitemaster_running", ())] == 0
    assert v[("powerwall_sitemaster_busy", (("reason", ""),))] == 1
    assert "powerwall_charge_ratio" not in names(metrics) and "powerwall_instant_power_watts" not in names(metrics)
    ok = ok_endpoints(metrics)
    assert ok["system_status/soe"] == ok["system_status"] == ok["meters/aggregates"] == 0
    assert ok["status"] == ok["operation"] == ok["networks"] == 1
    assert sim.counters()["logins"] == {"ok": 1}  # a 502 never costs a login


def test_wifi_drop_shorter_than_retry_timeout_leaves_no_gap(sim, make_plugin):
    plugin = make_plugin(sim, retry_timeout="8s", retry_interval="300ms")
    plugin.collect()
    sim.control({"drop_on": "operation", "drop": 2})
    t0 = time.monotonic()
    metrics = plugin.collect()
    assert time.monotonic() - t0 >= 1.5
    assert names(metrics) >= FULL and set(ok_endpoints(metrics).values()) == {1}
    assert values(plugin.diagnostics())[("powerwall_api_requests_total", (("code", "network"),))] >= 2


def test_wifi_drop_longer_than_retry_timeout_fails_the_collection_within_the_budget(sim, make_plugin):
    plugin = make_plugin(sim, retry_timeout="1s", retry_interval="200ms")
    plugin.collect()
    sim.drop(5)
    t0 = time.monotonic()
    with pytest.raises(NetworkError, match="unreachable"):
        plugin.collect()
    assert time.monotonic() - t0 < 3.5  # one budget per collection, not one per request


def test_no_retries_by_default(sim, make_plugin):
    plugin = make_plugin(sim)
    sim.drop(3)
    t0 = time.monotonic()
    with pytest.raises(NetworkError):
        plugin.collect()
    assert time.monotonic() - t0 < 1.5


def test_pinned_certificate_works_and_a_rotated_one_fails_closed(sim, make_plugin, tmp_path):
    pem_file = tmp_path / "gateway.pem"
    der = tls.fetch_certificate(tls.Address.parse(sim.address), "powerwall", 2.0)
    pem_file.write_text(tls.pem(der))
    plugin = make_plugin(sim, tls_cert_file=str(pem_file), retry_timeout="5s")
    assert names(plugin.collect()) >= FULL
    sim.rotate_certificate()
    sim.reset_counters()
    t0 = time.monotonic()
    with pytest.raises(CertificateChanged) as e:
        plugin.collect()
    assert time.monotonic() - t0 < 2  # never retried
    text = str(e.value)
    assert "changed" in text and str(pem_file) in text and "fetchcert" in text
    assert sim.counters()["hits"] == {}  # not one request reached the impostor
    assert sim.counters()["login_attempts"] == 0


def test_pin_file_problems_are_config_errors(sim, make_plugin, tmp_path):
    key = tmp_path / "key.pem"
    key.write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    with pytest.raises(ConfigError, match="PRIVATE KEY, not a CERTIFICATE"):
        make_plugin(sim, tls_cert_file=str(key))
    with pytest.raises(ConfigError, match="cannot read"):
        make_plugin(sim, tls_cert_file=str(tmp_path / "missing.pem"))
    junk = tmp_path / "junk.pem"
    junk.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    with pytest.raises(ConfigError, match="not hold a valid X.509"):
        make_plugin(sim, tls_cert_file=str(junk))


def test_unknown_sni_is_refused_by_the_simulator_like_the_gateway(sim, make_plugin):
    plugin = make_plugin(sim, tls_server_name="powerwall.example.net")
    with pytest.raises(NetworkError):
        plugin.collect()


@pytest.mark.parametrize("address", ["", "https://10.0.0.5", "10.0.0.5/api", "10.0.0.5:0", "10.0.0.5:99999",
                                     "[::1", ":443",
                                     # each of these used to reach requests: an "unexpected InvalidURL", or
                                     # worse a request to another host (gw@x) or path (gw?x, gw#x)
                                     "10.0.0.5 443", "gw host", "10.0.0.5:443:1", "gw@evil.example", "gw?x", "gw#x",
                                     "gw%20", "a..b", "-gw.local", "gw-.local", "ｇｗ", "[10.0.0.5]", "[fe80::1%eth0]",
                                     "[::1]:8443x", "gw:44 3"])
def test_bad_gateway_address_is_a_config_error(sim, make_plugin, address):
    with pytest.raises(ConfigError, match="gateway_address"):
        make_plugin(sim, gateway_address=address)


def test_address_forms():
    assert tls.Address.parse("10.0.0.5") == tls.Address("10.0.0.5", 443)
    assert tls.Address.parse("teg.local:8443").base_url == "https://teg.local:8443"
    assert tls.Address.parse("[fe80::1]:8443") == tls.Address("fe80::1", 8443)
    assert tls.Address.parse("[fe80::1]").base_url == "https://[fe80::1]"
    assert tls.Address.parse("fe80::1") == tls.Address("fe80::1", 443)  # a bare IPv6 address has no port
    assert tls.Address.parse(" teg_gw.local. ") == tls.Address("teg_gw.local.", 443)
    assert tls.Address.parse("TEG-123:0443") == tls.Address("TEG-123", 443)


def test_login_failure_without_backoff_still_once_per_collection(sim, make_plugin, monkeypatch):
    plugin = make_plugin(sim)
    original = sim.answer
    logins = []

    def broken_login(method, path, headers, body):
        if path == "/api/login/Basic":
            logins.append(1)
            return 500, json.dumps({"code": 500, "error": "internal"}).encode(), {}
        return original(method, path, headers, body)

    monkeypatch.setattr(sim, "answer", broken_login)
    metrics = plugin.collect()
    ok = ok_endpoints(metrics)
    assert ok["status"] == 1 and ok["operation"] == 0
    assert len(logins) == 1
    assert plugin.client.backoff is None
    plugin.collect()
    assert len(logins) == 2  # the next collection may try again: a 500 is not a reason to back off


def test_state_file_in_an_unusable_place_is_a_config_error(sim, make_plugin, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="token_file"):
        make_plugin(sim, token_file=str(blocker / "sub" / "state.json"))


def test_token_file_none_keeps_nothing_on_disk(sim, make_plugin, tmp_path, monkeypatch):
    monkeypatch.setenv("GRIDTAP_STATE_DIR", str(tmp_path / "default"))
    make_plugin(sim, token_file="none").collect()
    assert not (tmp_path / "default").exists()


def test_default_state_dir(sim, make_plugin, tmp_path, monkeypatch):
    monkeypatch.setenv("GRIDTAP_STATE_DIR", str(tmp_path / "default"))
    spec_plugin = make_plugin(sim, token_file=None)
    spec_plugin.collect()
    path = Path(tmp_path / "default" / "powerwall" / "powerwall.json")
    assert json.loads(path.read_text())["address"] == sim.address


def test_network_errors_in_few_words():
    import requests

    assert pwclient._describe(requests.ConnectionError(ConnectionRefusedError(111, "Connection refused"))) == \
        "connection refused"
    assert "timed out" in pwclient._describe(requests.Timeout("read timed out"))


def test_device_error_types():
    assert issubclass(BackingOff, DeviceError) and issubclass(CertificateChanged, DeviceError)


def _collect_within(plugin, seconds: float):
    """plugin.collect() on a thread: (what it returned or raised, seconds it took); fails if it hangs."""
    import threading

    result: list = []
    t0 = time.monotonic()

    def run():
        try:
            result.append(plugin.collect())
        except Exception as e:  # noqa: BLE001 - handed to the test
            result.append(e)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"collect() still running after {seconds}s"
    return result[0], time.monotonic() - t0


def test_an_answer_that_trickles_in_times_out_like_a_drop(sim, make_plugin):
    """The timeout covers the whole answer, as the seed's does: a link that passes a byte now and
    then (a 355-byte /api/status at 5 bytes/s) used to hold the collection - and a --once run, deaf
    to SIGTERM - for minutes, serving the previous reading all along."""
    plugin = make_plugin(sim, timeout="1s")
    plugin.collect()
    sim.trickle = 0.2
    outcome, took = _collect_within(plugin, 10)
    assert isinstance(outcome, NetworkError) and "timed out" in str(outcome), outcome
    assert took < 3
    sim.trickle = 0
    assert names(plugin.collect()) >= FULL  # the pool holds no half-read connection


def test_an_answer_cut_short_is_said_in_words(sim, make_plugin):
    import threading

    plugin = make_plugin(sim)
    plugin.collect()
    sim.trickle = 0.01  # slow enough that the connection goes while the body is on its way
    threading.Timer(0.5, sim.close_connections).start()
    outcome, _ = _collect_within(plugin, 10)
    assert isinstance(outcome, NetworkError), outcome
    assert str(outcome).endswith("GET /api/status: the answer was cut short"), outcome


def test_an_endless_answer_is_refused_with_bounded_memory(sim, make_plugin, monkeypatch):
    plugin = make_plugin(sim)
    original = sim.answer

    def huge(method, path, headers, body):
        if path == "/api/networks":
            return 200, b"[" + b" " * (3 << 20) + b"]", {}
        return original(method, path, headers, body)

    monkeypatch.setattr(sim, "answer", huge)
    metrics = plugin.collect()
    ok = ok_endpoints(metrics)
    assert ok["networks"] == 0 and ok["status"] == 1
    assert names(metrics) >= FULL - {"powerwall_network_enabled"}


@pytest.mark.parametrize("kept", [
    {"backoff": {"until": time.time() + 100, "kind": "rate_limited", "step": "x"}},
    {"backoff": {"until": time.time() + 100, "kind": "rate_limited", "step": True}},
    {"backoff": {"until": time.time() + 100, "kind": "nonsense"}},
    {"backoff": {"until": 9e9, "kind": "rate_limited"}},  # years away: no back-off is that long
    {"backoff": {"until": "soon", "kind": "rate_limited"}},
    {"backoff": {"until": 9e9, "kind": "rate_limited", "step": 10**400}},
    {"backoff": {"until": float("inf"), "kind": "rate_limited"}},
    {"backoff": {"until": 9e9, "kind": ["rate_limited"], "message": {"a": 1}}},
    {"backoff": [1, 2]},
    {"token": 5, "salt": 7},
    {"token": "", "salt": None},
])
def test_a_broken_state_file_is_started_afresh(sim, make_plugin, tmp_path, kept):
    """A state file is a cache: what does not make sense in it is ignored (a traceback at start
    before), and the gateway is read as if it were not there."""
    state_file = tmp_path / "state" / "powerwall.json"
    state_file.parent.mkdir(parents=True)
    state_file.write_text(json.dumps({"address": sim.address, "email": "powerwall_exporter@example.org", **kept})
                          .replace("Infinity", "1e999"))
    plugin = make_plugin(sim)
    assert plugin.client.backoff is None
    assert names(plugin.collect()) >= FULL
    assert sim.counters()["logins"] == {"ok": 1}


def test_the_backoff_stops_growing_at_its_ceiling(sim, make_plugin):
    """Every hour of a wrong password is one more step; after ~1000 of them (six weeks) 2**step
    overflowed a float, the error escaped the back-off and a login went out every collection."""
    sim.password = "the-real-one"
    plugin = make_plugin(sim)
    plugin.client.backoff = pwclient.Backoff(time.time() - 1, "old", "rejected", step=5000)
    with pytest.raises(BackingOff):
        plugin.collect()
    assert plugin.client.backoff_remaining() == pytest.approx(pwclient.BACKOFF_MAX, abs=2)
    with pytest.raises(BackingOff):
        plugin.collect()
    assert sim.counters()["logins"] == {"bad": 1}


def test_a_backoff_ends_with_the_first_good_answer(sim, make_plugin, monkeypatch):
    """A 429 on a data endpoint, then good answers without a login: the back-off is over, so the
    next 429 waits 5 minutes again, not 10 (and /status no longer carries it)."""
    plugin = make_plugin(sim)
    plugin.collect()
    original = sim.answer
    limited = [True]

    def sometimes_429(method, path, headers, body):
        if path == "/api/operation" and limited[0]:
            return 429, json.dumps({"code": 429, "error": "Api Limit reached for this endpoint"}).encode(), {}
        return original(method, path, headers, body)

    monkeypatch.setattr(sim, "answer", sometimes_429)
    offset = [0.0]
    plugin.client.wall = lambda: time.time() + offset[0]
    with pytest.raises(BackingOff, match="429"):
        plugin.collect()
    limited[0] = False
    offset[0] += 301
    assert names(plugin.collect()) >= FULL
    assert plugin.client.backoff is None
    limited[0] = True
    with pytest.raises(BackingOff):
        plugin.collect()
    assert plugin.client.backoff_remaining() == pytest.approx(300, abs=2)
    assert sim.counters()["logins"] == {"ok": 1}


def _refusing(sim, monkeypatch, *paths: str, status: int = 403) -> list[str]:
    """The simulator answering ``paths`` with a refusal whatever the token (a role without access);
    the list of the refused requests."""
    original = sim.answer
    refused: list[str] = []
    body = json.dumps({"code": status, "error": "User does not have adequate access rights",
                       "message": "Forbidden"}).encode()

    def answer(method, path, headers, data):
        if path in paths:
            refused.append(path)
            return status, body, {}
        return original(method, path, headers, data)

    monkeypatch.setattr(sim, "answer", answer)
    return refused


@pytest.mark.parametrize("path", ["/api/troubleshooting/problems", "/api/system_status/soe"])
def test_an_endpoint_that_refuses_every_token_costs_no_logins_and_nothing_else(sim, make_plugin, monkeypatch, path):
    """A 403 on one endpoint (a gateway answers "User does not have adequate access rights") used
    to throw the token away: every later endpoint of the collection failed "not logged in", and
    every collection cost a login - 5760 a day at 15 s, the way to the 429 lockout."""
    asked = _refusing(sim, monkeypatch, path)
    plugin = make_plugin(sim)
    for _ in range(3):
        ok = ok_endpoints(plugin.collect())
        assert ok.pop(path.removeprefix("/api/")) == 0
        assert set(ok.values()) == {1}, ok
    assert sim.counters()["logins"] == {"ok": 1}
    assert asked == [path] * 3  # still asked (it may be allowed again), once each time


def test_a_token_revoked_after_a_refusing_endpoint_still_costs_one_relogin(sim, make_plugin, monkeypatch):
    _refusing(sim, monkeypatch, "/api/troubleshooting/problems")
    plugin = make_plugin(sim)
    plugin.collect()
    sim.control({"revoke_on": "system_status"})
    ok = ok_endpoints(plugin.collect())
    assert ok.pop("troubleshooting/problems") == 0 and set(ok.values()) == {1}, ok
    assert sim.counters()["logins"] == {"ok": 2}


def test_a_gateway_that_refuses_its_own_fresh_token_everywhere_is_a_backoff(sim, make_plugin, monkeypatch):
    """Logins succeed but every endpoint refuses the token: without a back-off that is a login per
    collection for ever."""
    _refusing(sim, monkeypatch, *(f"/api/{e}" for e in ("system_status/soe", "operation", "sitemaster",
                                                       "troubleshooting/problems", "system_status",
                                                       "meters/aggregates", "networks")), status=401)
    plugin = make_plugin(sim)
    with pytest.raises(BackingOff) as e:
        plugin.collect()
    assert "refuses" in str(e.value) and sim.address in str(e.value)
    for _ in range(3):
        with pytest.raises(BackingOff):
            plugin.collect()
    assert sim.counters()["logins"] == {"ok": 1}
