"""Web mode against the simulated ISG: login, a wrong password, expired sessions (one re-login,
the cycle completes), session rollover, keep-alive resets, sticky flags, unreachable ISG."""

from __future__ import annotations

import time

import pytest

from gridtap import devices, logs
from gridtap.errors import ConfigError, DeviceError
from gridtap_plugins.isg.plugin import IsgPlugin
from gridtap_plugins.isg.simulator import IsgSimulator
from gridtap_plugins.isg.web import AuthError, IsgWebClient

PAGES = ["1,0", "1,1", "2,0", "2,1", "2,3", "2,4", "4,7"]


@pytest.fixture
def sim():
    with IsgSimulator(username="isg", password="s3cret-pw") as s:
        yield s


def plugin(url: str, **settings: object) -> IsgPlugin:
    raw = {"url": url, "username": "isg", "password": "s3cret-pw", **settings}
    return devices.device_spec(IsgPlugin, raw, where="isg", default_interval=60).create()


def by_name(samples):
    return {(s.name, dict(s.labels).get("name"), dict(s.labels).get("section")): s.value for s in samples}


def test_a_cycle_logs_in_once_and_reads_every_page(sim):
    dev = plugin(sim.url)
    samples = dev.collect()
    v = by_name(samples)
    model = sim.model.values()
    outside = v[("isg_web_temperature_celsius", "aussentemperatur", "heizung")]
    assert outside == pytest.approx(model["outside"], abs=0.11)
    assert v[("isg_web_pressure_pascals", "heizungsdruck", "heizung")] == 121_000.0
    assert v[("isg_web_energy_joules_total", "wm_heizen_summe", "waermemenge")] >= 44341 * 3_600_000
    assert v[("isg_web_flag", "heizkreispumpe", "status")] == 1
    pages_ok = {dict(s.labels)["page"]: s.value for s in samples if s.name == "isg_web_page_ok"}
    assert pages_ok == dict.fromkeys(PAGES, 1)
    assert sim.web.logins == 1 and sim.web.page_loads == len(PAGES)
    dev.collect()
    assert sim.web.logins == 1  # the session is kept
    assert {m.name: m.value for m in dev.diagnostics()}["isg_web_logins_total"] == 1
    dev.close()


def test_wrong_password_is_an_authentication_error_without_the_password(sim):
    logs.register_secret("wrong-pw-123")
    dev = plugin(sim.url, password="wrong-pw-123")
    with pytest.raises(AuthError) as e:
        dev.collect()
    text = str(e.value)
    assert "refused" in text and "wrong user name or password" in text and "\n" not in text
    assert "wrong-pw-123" not in text
    assert sim.web.failed_logins == 1 and sim.web.page_loads == 0


def test_an_expired_session_costs_exactly_one_relogin_and_the_cycle_completes(sim):
    dev = plugin(sim.url)
    dev.collect()
    assert sim.web.logins == 1
    sim.expire_sessions()
    samples = dev.collect()
    assert sim.web.logins == 2
    assert all(s.value == 1 for s in samples if s.name == "isg_web_page_ok")
    assert dev.web().logins == 2


def test_sessions_that_end_after_n_pages_mid_cycle(sim):
    sim.session_pages = 5
    dev = plugin(sim.url)
    samples = dev.collect()
    assert all(s.value == 1 for s in samples if s.name == "isg_web_page_ok")
    assert sim.web.logins == 2  # the session ended after 5 pages: one re-login, then the rest
    assert sim.web.page_loads == 7 + 1  # the login's own page 1,0 was loaded twice


def test_a_session_that_ends_again_right_away_is_an_error(sim):
    sim.session_pages = 1
    dev = plugin(sim.url)
    with pytest.raises(AuthError, match="again"):
        dev.collect()


def test_rollover_renews_the_session_after_n_page_loads(sim):
    dev = plugin(sim.url, session_rollover=10)
    dev.collect()  # login GET + 7 pages = 8 loads
    dev.collect()  # 15 loads
    assert sim.web.logins == 1
    dev.collect()  # over 10 at the start of the cycle: a fresh login
    assert sim.web.logins == 2


def test_keep_alive_resets_are_survived(sim):
    sim.idle_reset = 0.2
    dev = plugin(sim.url)
    dev.collect()
    time.sleep(0.5)
    samples = dev.collect()  # the pooled connection meets a reset: retried once on a fresh one
    assert sim.web.resets >= 1
    assert all(s.value == 1 for s in samples if s.name == "isg_web_page_ok")


def test_an_isg_without_credentials_needs_no_login():
    with IsgSimulator(password=None) as s:
        dev = devices.device_spec(IsgPlugin, {"url": s.url}, where="isg", default_interval=60).create()
        assert any(m.name == "isg_web_temperature_celsius" for m in dev.collect())
        assert s.web.logins == 0


def test_login_required_but_no_user_configured(sim):
    dev = devices.device_spec(IsgPlugin, {"url": sim.url}, where="isg", default_interval=60).create()
    with pytest.raises(AuthError, match="set username and password"):
        dev.collect()


def test_flags_stay_known_for_the_process_and_survive_a_failed_page(sim):
    dev = plugin(sim.url, pages=["2,0"])
    sim.model.start = time.time()  # compressor on in the first 5 minutes
    first = by_name(dev.collect())
    assert first[("isg_web_flag", "verdichter", "status")] == 1
    sim.model.start = time.time() - 650  # minute 10-15: compressor off, its icon row disappears
    second = by_name(dev.collect())
    assert second[("isg_web_flag", "verdichter", "status")] == 0  # zeroed, not removed
    sim.expire_sessions()  # a fresh login must not forget the flags (the seed's bug)
    third = by_name(dev.collect())
    assert third[("isg_web_flag", "verdichter", "status")] == 0


def test_a_failed_page_publishes_nothing_of_it_and_does_not_zero_its_flags(sim):
    dev = plugin(sim.url, pages=["2,0", "1,0"])
    assert ("isg_web_flag", "heizkreispumpe", "status") in by_name(dev.collect())
    sim.drop_pages = {"2,0"}  # the ISG drops the connection: the client sees a reset
    samples = dev.collect()
    v = by_name(samples)
    assert ("isg_web_flag", "heizkreispumpe", "status") not in v
    assert {dict(s.labels)["page"]: s.value for s in samples if s.name == "isg_web_page_ok"} == {"2,0": 0, "1,0": 1}
    sim.drop_pages = set()
    assert by_name(dev.collect())[("isg_web_flag", "heizkreispumpe", "status")] == 1


def test_failed_pages_keep_the_session_and_the_rest_of_the_cycle(sim):
    """A page that fails is that page's problem: the session (cookie) is still good, so the
    next page needs no new login, and two failures in one cycle are not an "authentication
    error" that fails the whole cycle."""
    dev = plugin(sim.url, pages=["2,0", "2,1", "1,0"])
    dev.collect()
    sim.drop_pages = {"2,0", "2,1"}
    samples = dev.collect()
    assert {dict(s.labels)["page"]: s.value for s in samples if s.name == "isg_web_page_ok"} == {
        "2,0": 0, "2,1": 0, "1,0": 1}
    assert ("isg_web_temperature_celsius", "aussentemperatur", "heizung") in by_name(samples)
    assert sim.web.logins == 1


def test_pages_served_without_a_charset_are_read_as_utf8(sim):
    """PHP 5.3 sends ``Content-Type: text/html`` without a charset; the pages are UTF-8 (their
    meta tag says so). requests would decode them as ISO-8859-1: ``WÄRMEMENGE`` would become
    ``wa_rmemenge`` and every umlaut label a different name."""
    sim.charset = False
    dev = plugin(sim.url, pages=["1,0", "1,1"])
    v = by_name(dev.collect())
    assert ("isg_web_temperature_celsius", "ruecklaufisttemperatur_wp", "heizung") in v
    assert ("isg_web_energy_joules_total", "wm_heizen_summe", "waermemenge") in v
    assert ("isg_web_temperature_celsius", "bivalenztemperatur_hzg", "elektrische_nacherwaermung") in v


def test_unreachable_isg_is_one_clear_device_error():
    client = IsgWebClient("http://127.0.0.1:1", "u", "p", timeout=2)
    with pytest.raises(DeviceError) as e:
        client.fetch(PAGES)
    assert str(e.value) == "cannot reach http://127.0.0.1:1: connection refused"


def test_settings_are_checked_at_start():
    with pytest.raises(ConfigError, match="url: missing value"):
        devices.device_spec(IsgPlugin, {}, where="isg", default_interval=60).create()
    with pytest.raises(ConfigError, match="pages"):
        devices.device_spec(IsgPlugin, {"url": "http://isg", "pages": ["1;1"]}, where="isg",
                            default_interval=60).create()
    with pytest.raises(ConfigError, match="modbus_port"):
        devices.device_spec(IsgPlugin, {"mode": "modbus", "host": "h", "modbus_port": 70000}, where="isg",
                            default_interval=60).create()
    with pytest.raises(ConfigError, match="host"):
        devices.device_spec(IsgPlugin, {"mode": "modbus"}, where="isg", default_interval=60).create()


@pytest.mark.parametrize(("settings", "problem"), [
    ({"pages": None}, "pages: missing value"),
    ({"pages": ""}, "pages: missing value"),
    ({"pages": [1, 0, 1, 1]}, 'quote each id in YAML: ["1,0", "1,1"]'),  # pages: [1,0, 1,1] unquoted
    ({"pages": "1 0"}, "page ids look like 1,1"),
    ({"url": "http://192.168.1.50/?s=1,0"}, "without ?s="),
    ({"url": "http://192.168.1.50/#top"}, "without ?s="),
    ({"mode": "modbus", "host": "192.168.1.50:502"}, "the port goes in modbus_port"),
    ({"mode": "modbus", "host": "http://192.168.1.50"}, "a host name or address, not a URL"),
    ({"mode": "modbus", "host": "isg box"}, "a host name or address"),
])
def test_setting_mistakes_are_one_line_config_errors(settings, problem):
    raw = {"url": "http://192.168.1.50", **settings}
    with pytest.raises(ConfigError) as e:
        devices.device_spec(IsgPlugin, raw, where="isg", default_interval=60).create()
    assert problem in str(e.value) and "\n" not in str(e.value)


def test_hosts_and_pages_that_are_fine():
    for host in ("192.168.1.50", "isg.fritz.box", "fe80::1", "[fe80::1]"):
        dev = devices.device_spec(IsgPlugin, {"mode": "modbus", "host": host}, where="isg",
                                  default_interval=60).create()
        assert dev.modbus_host == host.strip("[]")
    dev = devices.device_spec(IsgPlugin, {"url": "http://isg/", "pages": "1,0; 1,1 4,7,1 1,1"}, where="isg",
                              default_interval=60).create()
    assert dev.pages == ["1,0", "1,1", "4,7,1"]  # a page named twice is read once


def test_the_pages_default_reads_as_page_ids_in_help():
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-m", "gridtap", "run", "isg", "--help"], capture_output=True, timeout=60,
                         env={"COLUMNS": "400", "PATH": ""})
    assert "(default: 1,0 1,1 2,0 2,1 2,3 2,4 4,7)" in res.stdout.decode()  # not 1,0,1,1,2,0,...


def test_the_seeds_environment_variables_are_accepted(monkeypatch, sim):
    monkeypatch.setenv("ISG_URL", sim.url)
    monkeypatch.setenv("ISG_USER", "isg")
    monkeypatch.setenv("ISG_PASSWORD", "s3cret-pw")
    monkeypatch.setenv("SKIP_CIRCUIT_2", "true")
    monkeypatch.setenv("METRICS_WITH_SECTION_PREFIX", "true")
    found = devices.load_device(IsgPlugin)
    cfg = found.spec.settings
    assert (cfg.url, cfg.username, cfg.password.reveal(), cfg.skip_circuit2, cfg.section_prefix) == (
        sim.url, "isg", "s3cret-pw", True, True)
    names = {dict(s.labels).get("name") for s in found.spec.create().collect()}
    assert "heizung_isttemperatur_hk_1" in names and "heizung_isttemperatur_hk_2" not in names
    monkeypatch.setenv("GRIDTAP_ISG_USERNAME", "other")  # the gridtap spelling wins
    assert devices.load_device(IsgPlugin).spec.settings.username == "other"


def test_the_seeds_flags_are_rewritten():
    argv = ["run", "isg", "--url=http://isg", "--user", "u", "--password", "p", "--skipCircuit2", "--mode",
            "webscraping", "--browserRollover", "30", "--metricsWithSectionPrefix", "--port", "8080",
            "--loglevel", "warn"]
    assert IsgPlugin.rewrite_argv(argv) == [
        "run", "isg", "--url=http://isg", "--username", "u", "--password", "p", "--skip-circuit2", "true",
        "--mode", "web", "--session-rollover", "30", "--section-prefix", "true", "--listen", "0.0.0.0:8080",
        "--output", "prometheus", "--log-level", "warning"]


def test_status_facts_hold_no_secrets(sim):
    dev = plugin(sim.url.replace("http://", "http://admin:hunter2@"))
    dev.collect()
    facts = dev.status()
    assert facts["mode"] == "web" and facts["web"]["logins"] == 1
    assert "hunter2" not in repr(facts) and "s3cret-pw" not in repr(facts)
