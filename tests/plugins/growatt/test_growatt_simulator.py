"""The simulator behaves like the real API where integrations break (limits, verbs, tokens,
HTML pages), its replies are shaped like the documented ones, and its values move; the client
turns every way a call can fail into a typed error."""

from __future__ import annotations

import datetime as dt
import json
import socket
from collections.abc import Iterator

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from gridtap.config import Secret
from gridtap_plugins.growatt import api
from gridtap_plugins.growatt import simulator as gsim

CET = dt.timezone(dt.timedelta(hours=1))
NOON = dt.datetime(2026, 6, 21, 12, 2, tzinfo=CET).timestamp()


@pytest.fixture
def sim() -> Iterator[gsim.GrowattSimulator]:
    s = gsim.GrowattSimulator(manual_clock=True, start=NOON)
    s.start()
    try:
        yield s
    finally:
        s.stop()


def get(sim, path: str, token: str = gsim.DEFAULT_TOKEN, **params) -> requests.Response:
    return requests.get(sim.url + path, params=params, headers={"token": token}, timeout=5)


def post(sim, path: str, token: str = gsim.DEFAULT_TOKEN, **form) -> requests.Response:
    return requests.post(sim.url + path, data=form, headers={"token": token}, timeout=5)


def test_window_per_endpoint_and_parameters_and_the_daily_cap(sim):
    assert get(sim, "plant/data", plant_id=4242).json()["error_code"] == 0
    assert get(sim, "plant/data", plant_id=4242).json() == {"error_code": 10012, "error_msg": "error_frequently_access",
                                                            "data": ""}
    assert get(sim, "plant/details", plant_id=4242).json()["error_code"] == 0  # another endpoint
    sim.advance(300)
    assert get(sim, "plant/data", plant_id=4242).json()["error_code"] == 0
    codes = []
    for _ in range(12):
        codes.append(get(sim, "plant/list").json()["error_code"])
        sim.advance(301)
    assert codes == [0] * 10 + [10012, 10012]  # 10 a day
    sim.advance(86400 - 11 * 301 + 1)
    assert get(sim, "plant/list").json()["error_code"] == 0  # the first has left the 24 hours


def test_wrong_verb_is_405_and_a_wrong_or_revoked_token_is_10011(sim):
    r = get(sim, "device/tlx/tlx_last_data", tlx_sn=gsim.DEVICES["min"].sn)
    assert r.status_code == 405 and r.headers["Allow"] == "POST" and r.text.startswith("<!doctype html>")
    assert post(sim, "plant/list").status_code == 405
    assert get(sim, "plant/list", token="nope").json()["error_code"] == 10011
    sim.revoked = True
    assert get(sim, "plant/list").json() == {"error_code": 10011, "error_msg": "error_permission_denied", "data": ""}
    assert get(sim, "nothing/here").status_code == 404


def test_html_page_and_min_spacing():
    sim = gsim.GrowattSimulator(manual_clock=True, start=NOON, html_error=True, min_spacing=3.0)
    sim.start()
    try:
        r = get(sim, "plant/list")
        assert r.status_code == 200 and "<html>" in r.text and r.headers["Content-Type"] == "text/html"
        sim.html = None
        sim.advance(1)
        assert get(sim, "plant/data", plant_id=4242).json()["error_code"] == 10012  # 1 s after the last call
        sim.advance(3)
        assert get(sim, "plant/details", plant_id=4242).json()["error_code"] == 0
    finally:
        sim.stop()


def test_replies_are_shaped_like_the_documented_ones(sim):
    tlx = post(sim, "device/tlx/tlx_last_data", tlx_sn=gsim.DEVICES["min"].sn).json()
    assert set(tlx) == {"data", "device_sn", "datalogger_sn", "error_code", "error_msg"}  # ids beside data
    d = tlx["data"]
    assert isinstance(d["pac"], float) and d["eex1Today"] == -0.1 and d["bdc1Soc"] == 0.0
    assert d["time"] == "2026-06-21 12:00:00" and len(repr(d["pac"])) > 8  # float32 noise
    mix = post(sim, "device/mix/mix_last_data", mix_sn=gsim.DEVICES["mix"].sn).json()["data"]
    assert isinstance(mix["ppv"], str) and mix["pacToUserR"] == "" and "epvtoday" in mix and "etogridTotal" in mix
    assert mix["socText"] == mix["soc"] + "%"
    inv = get(sim, "device/inverter/last_new_data", device_sn=gsim.DEVICES["inverter"].sn).json()["data"]
    assert inv["inverterId"] == gsim.DEVICES["inverter"].sn and isinstance(inv["pac"], str) and "powerToday" in inv
    plant = get(sim, "plant/data", plant_id=4242).json()["data"]
    assert plant["timezone"] == "GMT+1" and plant["efficiency"] == "" and isinstance(plant["today_energy"], str)
    devices = get(sim, "device/list", plant_id=4242).json()["data"]
    assert [x["type"] for x in devices["devices"]] == [7, 5, 1, 3] and devices["count"] == 4
    power = get(sim, "plant/power", plant_id=4242, date="2026-06-21").json()["data"]
    assert power["powers"][0]["time"] == "2026-06-21 23:55" and power["powers"][0]["power"] is None  # newest first
    assert get(sim, "plant/data", plant_id=1).json()["error_code"] == 10002
    assert get(sim, "device/list", plant_id=1).json()["error_code"] == 10003
    sim.advance(300)
    assert post(sim, "device/tlx/tlx_last_data", tlx_sn="NOPE").json()["error_code"] == 10002
    day = get(sim, "device/inverter/day_energy", device_sn=gsim.DEVICES["inverter"].sn, date="2026-06-20").json()
    assert isinstance(day["data"], float) and day["device_sn"] == gsim.DEVICES["inverter"].sn


def test_values_move_with_the_clock_and_the_night_repeats_the_last_daylight():
    model = gsim.PlantModel(1.0)
    dev = gsim.DEVICES["min"]
    at = lambda h, m=0, day=21: dt.datetime(2026, 6, day, h, m, tzinfo=CET).timestamp()  # noqa: E731
    noon, later = gsim.min_record(model, dev, at(12)), gsim.min_record(model, dev, at(12, 10))
    assert noon["pac"] != later["pac"] and later["eacToday"] > noon["eacToday"] > 0
    assert later["eacTotal"] >= noon["eacTotal"]
    evening = gsim.min_record(model, dev, at(23))
    assert evening["time"].startswith("2026-06-21 19:5") and evening["lost"] is True and evening["pac"] > 0
    assert gsim.min_record(model, dev, at(3, day=22))["time"] == evening["time"]  # all night
    assert gsim.min_record(model, dev, at(7, day=22))["eacToday"] < 1.0  # a new day begins small
    sim = gsim.GrowattSimulator(tz_hours=1.0)
    day = dt.date(2026, 6, 20)
    total = sum(gsim.device_day_energy(model, d, day) for d in sim._live_devices())
    assert sim._day_total(day) == pytest.approx(total) and total > 10


def test_replay_serves_saved_replies(tmp_path):
    (tmp_path / "plant_list.mine.json").write_text(json.dumps({"error_code": 0, "data": {"count": 1, "plants": [
        {"plant_id": 7, "name": "replayed"}]}}))
    (tmp_path / "device_day_energy.mine.json").write_text(json.dumps({"error_code": 0, "data": 1.5,
                                                                      "device_sn": "X"}))
    sim = gsim.GrowattSimulator(replay=tmp_path)
    sim.start()
    try:
        assert get(sim, "plant/list").json()["data"]["plants"][0]["name"] == "replayed"
        assert get(sim, "device/inverter/day_energy", device_sn="X").json() == {
            "device_sn": "X", "data": 1.5, "error_code": 0, "error_msg": ""}
        assert get(sim, "plant/data", plant_id=7).json()["error_code"] == 10001
    finally:
        sim.stop()
    with pytest.raises(Exception, match="not a folder"):
        gsim.GrowattSimulator(replay=tmp_path / "missing")


def test_client_errors_are_typed(sim):
    client = api.Client(sim.url, Secret(gsim.DEFAULT_TOKEN), timeout=2)
    assert client.call(api.PLANT_LIST, {}).data["plants"][0]["plant_id"] == 4242
    with pytest.raises(api.ApiError) as e:
        client.call(api.PLANT_LIST, {})
    assert e.value.problem is api.Problem.RATE_LIMITED and e.value.code == "10012"
    sim.html = 502
    with pytest.raises(api.TransportError) as t:
        client.call(api.PLANT_DATA, {"plant_id": 4242})
    assert t.value.code == "http_502" and "HTTP 502" in str(t.value)
    wrong = api.Client(sim.url, Secret(gsim.DEFAULT_TOKEN))
    with pytest.raises(api.TransportError) as t:
        wrong.call(api.Endpoint("device/tlx/tlx_last_data", "GET"), {"tlx_sn": "x"})  # the wrong verb
    assert t.value.code == "http_405"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    closed = api.Client(f"http://127.0.0.1:{port}/v1/", Secret("t"), timeout=2)
    with pytest.raises(api.TransportError) as t:
        closed.call(api.PLANT_LIST, {})
    assert t.value.code == "transport" and "refused" in str(t.value)


def test_silent_server_is_a_timeout():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        client = api.Client(f"http://127.0.0.1:{port}/v1/", Secret("t"), timeout=0.5)
        with pytest.raises(api.TransportError) as t:
            client.call(api.PLANT_LIST, {})
    assert t.value.code == "timeout" and "0.5 s" in str(t.value)


@pytest.mark.parametrize(("body", "code"), [
    (b"<html>login</html>", "not_json"), (b"[]", "not_json"), (b'{"error_code": "x"}', "not_json"),
    (b'{"data": 1}', "not_json"), (b"\xff\xfe", "not_json"),
    (b"[" * 100_000, "not_json"), (b'{"error_code": 0, "data": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "not_json"),
    (b'{"error_code": 1e999}', "not_json"), (b'{"error_code": true}', "not_json"),
    (b'{"error_code": 0.5, "data": 1}', "not_json"), (b'{"error_code": null}', "not_json"),
])
def test_envelope_problems(body, code):
    with pytest.raises(api.TransportError) as t:
        api.parse_envelope("plant/list", body)
    assert t.value.code == code


def test_error_codes_as_numbers_and_numeric_strings():
    assert api.parse_envelope("plant/list", b'{"error_code": "0", "data": 5}').data == 5
    assert api.parse_envelope("plant/list", b'{"error_code": 0.0, "data": 5}').data == 5
    with pytest.raises(api.ApiError) as e:
        api.parse_envelope("plant/list", b'{"error_code": "10012", "error_msg": null}')
    assert e.value.problem is api.Problem.RATE_LIMITED


def test_classification_depends_on_the_endpoint():
    assert api.classify("device/list", 10003) is api.Problem.NOT_FOUND
    assert api.classify("device/list", 10002) is api.Problem.SERVER  # "plant id empty" there
    assert api.classify("plant/data", 10002) is api.Problem.NOT_FOUND
    assert api.classify("device/tlx/tlxSet", 10012) is api.Problem.SERVER  # "device does not exist" on settings
    assert api.classify("plant/list", -1) is api.Problem.NEW_DOMAIN
    assert api.classify("plant/list", 10013) is api.Problem.BAD_REQUEST
    assert api.base_url("us", None) == "https://openapi-us.growatt.com/v1/"
    assert api.base_url("eu", "https://example.com") == "https://example.com/v1/"
    assert api.base_url("eu", "http://127.0.0.1:8080/v1") == "http://127.0.0.1:8080/v1/"


def test_an_endless_reply_is_cut_off():
    import threading

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]

        def serve() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.recv(4096)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{\"data\": \"")
                try:
                    for _ in range(2000):
                        conn.sendall(b"x" * 8192)
                except OSError:
                    pass

        threading.Thread(target=serve, daemon=True).start()
        client = api.Client(f"http://127.0.0.1:{port}/v1/", Secret("t"), timeout=5)
        with pytest.raises(api.TransportError) as t:
            client.call(api.PLANT_LIST, {})
    assert t.value.code == "too_large"


def test_plant_data_sums_each_past_day_once():
    """plant/data's month and year totals add up every past day of the year; each day's sum
    is made once (in December a plant/data reply took 200 ms, most of a 24-hour test run)."""
    december = dt.datetime(2026, 12, 21, 12, 2, tzinfo=CET).timestamp()
    sim = gsim.GrowattSimulator(manual_clock=True, start=december)
    first = sim._plant_data(december)
    misses = gsim._whole_day_energy.cache_info().misses
    later = sim._plant_data(december + 300)
    assert gsim._whole_day_energy.cache_info().misses == misses  # nothing summed again
    assert float(later["yearly_energy"]) >= float(first["yearly_energy"]) > float(first["monthly_energy"]) > 0
    assert float(first["yearly_energy"]) == pytest.approx(
        sum(sim._day_total(dt.date(2026, 1, 1) + dt.timedelta(days=i)) for i in range(354))
        + float(first["today_energy"]), abs=0.1)


def _shape(x):
    """A JSON value reduced to its shape: keys, and for every leaf its JSON type."""
    if isinstance(x, dict):
        return {k: _shape(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_shape(v) for v in x]
    return {bool: "bool", int: "number", float: "number", str: "string", type(None): "null"}[type(x)]


def _differences(doc, sim, where="") -> list[str]:
    """Where the simulator's reply (as :func:`_shape`) is not shaped like the documented one:
    a key missing or not documented, another JSON type. Every element of a list is compared
    with the documented first one; for a leaf in a list of objects the documented type must
    be among the types the elements use (a power curve is null at night, a number by day)."""
    if isinstance(doc, dict):
        if not isinstance(sim, dict):
            return [f"{where}: {sim!r:.40}, documented an object"]
        out = [f"{where}.{k}: missing" for k in doc if k not in sim]
        out += [f"{where}.{k}: not documented" for k in sim if k not in doc]
        return out + [d for k in doc if k in sim for d in _differences(doc[k], sim[k], f"{where}.{k}")]
    if isinstance(doc, list):
        if not isinstance(sim, list) or (doc and not sim):
            return [f"{where}: {sim!r:.40}, documented a list of {len(doc)}"]
        if not doc:
            return []
        if not isinstance(doc[0], dict):
            return [d for i, x in enumerate(sim) for d in _differences(doc[0], x, f"{where}[{i}]")]
        out = []
        for k, leaf in doc[0].items():
            values = [x.get(k) for x in sim if isinstance(x, dict)]
            if isinstance(leaf, str):  # a leaf: its type among the elements' types
                if leaf not in values:
                    out.append(f"{where}[*].{k}: {sorted(set(map(str, values)))}, documented {leaf}")
            else:
                out += [d for i, x in enumerate(values) for d in _differences(leaf, x, f"{where}[{i}].{k}")]
        keys = {k for x in sim if isinstance(x, dict) for k in x}
        out += [f"{where}[*].{k}: missing" for k in doc[0] if k not in keys]
        out += [f"{where}[*].{k}: not documented" for k in keys if k not in doc[0]]
        return out
    return [] if doc == sim else [f"{where}: {sim}, documented {doc}"]


@pytest.mark.parametrize(("fixture", "endpoint", "params"), [
    ("plant_list.doc.json", "plant/list", {}),
    ("plant_details.doc.json", "plant/details", {"plant_id": 4242}),
    ("plant_data.doc.json", "plant/data", {"plant_id": 4242}),
    ("plant_energy_day.doc.json", "plant/energy", {"plant_id": 4242, "start_date": "2026-06-18",
                                                           "end_date": "2026-06-20", "time_unit": "day"}),
    ("plant_power.doc.json", "plant/power", {"plant_id": 4242, "date": "2026-06-21"}),
    ("device_list.doc.json", "device/list", {"plant_id": 4242}),
    ("device_day_energy.doc.json", "device/inverter/day_energy", {"device_sn": gsim.DEVICES["inverter"].sn,
                                                                          "date": "2026-06-20"}),
    ("error_10011_permission_denied.json", "plant/list", {"token": "a-token-growatt-does-not-know"}),
])
def test_replies_have_the_documented_shape_all_the_way_down(sim, fixture, endpoint, params):
    """Recursively, key by key and type by type, the simulator's reply against the fixture
    (Growatt's documented example, or the real error envelope)."""
    from tests.conftest import fixture_path

    doc = json.loads(fixture_path("growatt", "openapi_v1", fixture).read_text())
    token = params.pop("token", gsim.DEFAULT_TOKEN)
    got = get(sim, endpoint, token, **params).json()
    assert _differences(_shape(doc), _shape(got)) == []


def test_the_history_decoders_on_replies_made_here(sim):
    """plant/energy, plant/power and day_energy decoded from the simulator's replies (so they
    are tested when the shared fixtures are absent too), against the simulator's model."""
    from gridtap_plugins.growatt import backfill
    from gridtap_plugins.growatt import metrics as m

    day = dt.date(2026, 6, 20)
    energy = get(sim, "plant/energy", plant_id=4242, start_date="2026-06-18", end_date="2026-06-20",
                 time_unit="day").json()["data"]
    assert backfill.daily_energy(energy) == {d: float(f"{sim._day_total(d):.1f}")
                                             for d in (dt.date(2026, 6, 18), dt.date(2026, 6, 19), day)}
    power = get(sim, "plant/power", plant_id=4242, date=day.isoformat()).json()["data"]
    points = backfill.power_points(power, CET)
    want = [(sim.model.slot_time(day, s).timestamp(), sim.plant_slot_power(day, s)) for s in range(288)]
    assert points == [(t, p) for t, p in want if p]  # sorted, nulls left out, float32 noise gone
    inv = gsim.DEVICES["inverter"]
    reply = api.parse_envelope("device/inverter/day_energy", get(sim, "device/inverter/day_energy",
                                                                 device_sn=inv.sn, date=day.isoformat()).content)
    sample = m.day_energy_metric(reply.data, reply.extra)
    assert sample is not None and dict(sample.labels) == {"device_sn": inv.sn, "datalogger_sn": inv.logger}
    assert sample.value == pytest.approx(gsim.device_day_energy(sim.model, inv, day) * 3.6e6, rel=1e-6)


_JSON = st.recursive(st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | st.text(max_size=8),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                   max_size=4), max_leaves=20)


@given(st.one_of(st.binary(max_size=200), _JSON.map(lambda x: json.dumps(x).encode()),
                 st.dictionaries(st.sampled_from(["error_code", "error_msg", "data", "device_sn"]), _JSON)
                 .map(lambda x: json.dumps(x).encode())))
def test_any_reply_is_an_envelope_or_a_typed_error(body):
    try:
        reply = api.parse_envelope("plant/data", body)
    except api.GrowattError as e:
        assert "\n" not in str(e)
    else:
        assert isinstance(reply.extra, dict)
