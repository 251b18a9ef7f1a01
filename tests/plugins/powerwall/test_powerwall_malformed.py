"""Bad answers and bad input: a clear error naming what is wrong, never a crash, and the rest
of the collection still served."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridtap import devices
from gridtap_plugins.powerwall import metrics as m
from gridtap_plugins.powerwall.documents import GatewayDocuments
from gridtap_plugins.powerwall.plugin import PowerwallPlugin
from gridtap_plugins.powerwall.simulator import PowerwallSimulator

GRIDTAP = [sys.executable, "-m", "gridtap"]


def replay_folder(tmp_path: Path, **files: str) -> Path:
    """A capture folder made from the simulator's own 21.44 documents, some replaced by ``files``."""
    folder = tmp_path / "capture"
    folder.mkdir()
    docs = GatewayDocuments("21.44")
    for endpoint in ("status", "system_status/soe", "operation", "sitemaster", "troubleshooting/problems",
                     "system_status", "meters/aggregates", "networks"):
        (folder / (endpoint.replace("/", ".") + ".json")).write_text(json.dumps(docs.get(endpoint)))
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def collect(folder: Path) -> list:
    sim = PowerwallSimulator("127.0.0.1", 0, "pw", replay=str(folder))
    sim.start()
    try:
        plugin = devices.device_spec(PowerwallPlugin, {"gateway_address": sim.address, "login_password": "pw",
                                                       "token_file": "none"}, where="powerwall",
                                     default_interval=None, env={}).create()
        try:
            return plugin.collect()
        finally:
            plugin.close()
    finally:
        sim.stop()


def ok_of(metrics) -> dict[str, int]:
    return {dict(s.labels)["endpoint"]: s.value for s in metrics if s.name == "powerwall_endpoint_ok"}


def test_truncated_and_mistyped_answers_fail_only_their_endpoint(tmp_path, caplog):
    folder = replay_folder(tmp_path, **{
        "operation.json": '{"real_mode": "autonomous", "backup_reser',
        "sitemaster.json": '{"running": "yes"}',
        "networks.json": '{"not": "a list"}',
        "system_status.soe.json": '{"percentage": NaN}',
        "troubleshooting.problems.json": "",
    })
    metrics = collect(folder)
    ok = ok_of(metrics)
    assert ok == {"status": 1, "system_status/soe": 0, "operation": 0, "sitemaster": 0,
                  "troubleshooting/problems": 0, "system_status": 1, "meters/aggregates": 1, "networks": 0}
    assert any(s.name == "powerwall_battery_info" for s in metrics)
    text = caplog.text
    assert "operation: answered" in text and "not JSON" in text
    assert "sitemaster.running: expected true or false, got 'yes'" in text
    assert "networks: expected a JSON list, got dict" in text
    assert "troubleshooting/problems: answered an empty body" in text


def test_nothing_usable_at_all_is_a_device_error(tmp_path):
    folder = tmp_path / "capture"
    folder.mkdir()
    (folder / "status.json").write_text("<html>not the gateway</html>")
    from gridtap.errors import DeviceError

    with pytest.raises(DeviceError, match="status: answered"):
        collect(folder)


def test_error_dumps_are_replayed_with_their_status(tmp_path):
    folder = replay_folder(tmp_path, **{"system_status.err": "HTTP/2 502 \ncontent-length: 0\n\n"})
    (folder / "system_status.json").unlink()
    metrics = collect(folder)
    assert ok_of(metrics)["system_status"] == 0


@pytest.mark.parametrize("endpoint,doc,problem", [
    ("status", {"up_time_seconds": "5 days"}, "status.up_time_seconds: not a duration"),
    ("status", [], "status: expected a JSON object, got list"),
    ("system_status", {"battery_blocks": [{"v_out": 1}]}, "PackageSerialNumber: missing"),
    ("system_status", {"battery_blocks": [{"PackageSerialNumber": "x", "v_out": "230"}]},
     "battery_blocks[0].v_out: expected a number"),
    ("meters/aggregates", {"site": 5}, "meters/aggregates.site: expected a JSON object"),
    ("meters/site", [{"Cached_readings": {"instant_power": True}}], "instant_power: expected a number"),
    ("operation", {"backup_reserve_percent": 1e400}, None),
])
def test_document_errors_name_the_field(endpoint, doc, problem):
    if problem is None:  # 1e400 parses as inf in Python: refused as not finite
        with pytest.raises(m.DocumentError, match="not a finite number"):
            m.decoder_for(endpoint)(json.loads(json.dumps(doc).replace("Infinity", "1e400")))
        return
    with pytest.raises(m.DocumentError) as e:
        m.decoder_for(endpoint)(doc)
    assert problem in str(e.value)


json_values = st.recursive(st.none() | st.booleans() | st.floats(allow_nan=False, allow_infinity=False) |
                           st.integers(-10**6, 10**6) | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                                         max_size=6), max_leaves=20)
KEYS = ["percentage", "version", "up_time_seconds", "battery_blocks", "PackageSerialNumber", "instant_power",
        "energy_exported", "iface_network_info", "network_name", "Cached_readings", "connection", "problems",
        "real_mode", "running", "can_reboot", "signal_strength", "commission_count"]
shaped = st.recursive(json_values, lambda inner: st.dictionaries(st.sampled_from(KEYS), inner, max_size=6) |
                      st.lists(st.dictionaries(st.sampled_from(KEYS), inner, max_size=6), max_size=3), max_leaves=25)


@settings(max_examples=300, deadline=None)
@given(endpoint=st.sampled_from([e for e, _ in m.ENDPOINTS] + ["meters/site"]), doc=shaped)
def test_any_json_gives_samples_or_a_document_error(endpoint, doc):
    try:
        samples = m.decoder_for(endpoint)(doc)
    except m.DocumentError:
        return
    for s in samples:
        assert s.value == s.value  # never NaN
        if s.definition.integer:  # an integer field in line protocol: a float would change its type
            assert isinstance(s.value, int), s


def test_a_fractional_signal_strength_stays_an_integer_field():
    doc = [{"network_name": "wifi", "interface": "WifiType",
            "iface_network_info": {"network_name": "wifi", "signal_strength": 57.6}}]
    (signal,) = [s for s in m.networks_metrics(doc) if s.name == "powerwall_network_signal_strength"]
    assert signal.value == 58 and isinstance(signal.value, int)


@given(h=st.integers(0, 10**6), mins=st.integers(0, 59), secs=st.integers(0, 59), frac=st.integers(0, 10**9 - 1))
def test_go_duration_round_trip(h, mins, secs, frac):
    text = f"{h}h{mins}m{secs}.{frac:09d}s"
    assert m.parse_go_duration(text) == pytest.approx(h * 3600 + mins * 60 + secs + frac / 1e9, rel=1e-15, abs=1e-9)


@pytest.mark.parametrize("text,seconds", [("1m20s", 80), ("500ms", 0.5), ("0", 0), ("-1.5h", -5400),
                                          ("1h2m3.5s", 3723.5), ("300us", 0.0003), ("2µs", 2e-6), ("1.s", 1),
                                          (".5m", 30), ("2562047h", 2562047 * 3600)])
def test_go_duration_forms(text, seconds):
    assert m.parse_go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5d12h10.07s", "1.5", "h", "1hh", "1 h", "s1", ".s", "-", "2562048h",
                                  "9" * 400 + "h"])  # the last two: longer than Go's int64 nanoseconds
def test_go_duration_refuses_what_go_refuses(text):
    with pytest.raises(ValueError):
        m.parse_go_duration(text)


def test_decode_command(tmp_path):
    good = tmp_path / "system_status.soe.json"
    good.write_text('{"percentage": 42.5}')
    res = subprocess.run([*GRIDTAP, "decode", "powerwall", str(good), "--format", "prometheus"], capture_output=True,
                         timeout=60)
    assert res.returncode == 0 and b"powerwall_charge_ratio" in res.stdout and b"0.425" in res.stdout
    bad = tmp_path / "operation.json"
    bad.write_text('{"real_mode": ')
    res = subprocess.run([*GRIDTAP, "decode", "powerwall", str(bad)], capture_output=True, timeout=60)
    assert res.returncode == 2 and res.stderr.decode().count("\n") == 1 and "not JSON" in res.stderr.decode()
    unnamed = tmp_path / "capture.json"
    unnamed.write_text("{}")
    res = subprocess.run([*GRIDTAP, "decode", "powerwall", str(unnamed)], capture_output=True, timeout=60)
    assert res.returncode == 2 and "--endpoint" in res.stderr.decode()
    res = subprocess.run([*GRIDTAP, "decode", "powerwall", str(unnamed), "--endpoint", "operation"],
                         capture_output=True, timeout=60)
    assert res.returncode == 0


def test_every_metric_says_how_a_person_reads_it():
    for d in m.ALL:
        assert d.display is not None, d.name
    energy = m.IMPORTED.display.for_labels({"category": "battery"})
    assert energy.unit == "kWh" and energy.state_class == "total_increasing" and energy.name == "Battery energy in"
    assert m.EXPORTED.display.for_labels({"category": "solar"}).name == "Solar production"
    assert m.APP_CHARGE.display.unit == "%" and m.APP_CHARGE.display.device_class == "battery"


def test_stored_energy_is_energy_storage_not_an_energy_dashboard_candidate():
    """HA offers every energy sensor with state_class total(_increasing) to its Energy dashboard;
    what a battery holds is ``energy_storage`` / ``measurement`` (only counters are flows)."""
    from gridtap.model import Kind, display_of

    stored = [d for d in m.ALL if d.unit == "joules" and d.kind is Kind.GAUGE]
    assert {d.name for d in stored} == {"powerwall_full_pack_joules", "powerwall_remaining_joules",
                                        "powerwall_battery_full_pack_joules", "powerwall_battery_remaining_joules"}
    for d in stored:
        shown = display_of(d, {"serial": "x"})
        assert (shown.device_class, shown.state_class, shown.unit) == ("energy_storage", "measurement", "kWh"), d.name
    for d in m.ALL:
        for category in ("site", "battery", "load", "solar", "busway"):
            shown = display_of(d, {"category": category})
            if shown.state_class in ("total", "total_increasing"):
                assert d.kind is Kind.COUNTER, d.name
