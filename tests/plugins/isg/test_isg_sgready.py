"""SGReady: the write steps on the simulated ISG (exactly one FC16 of two registers), read-back
and its failure modes, the Alertmanager payload rules, and the webhook on the /metrics listener
(auth, limits, idempotence, 2xx only after a write, 5xx while the device is down)."""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request

import pytest

from gridtap import devices, runtime, serve
from gridtap.config import Secret
from gridtap.errors import ConfigError
from gridtap.schedule import Collector
from gridtap_plugins.isg import sgready, webhook
from gridtap_plugins.isg.modbus import LinkError, ModbusLink
from gridtap_plugins.isg.plugin import IsgPlugin
from gridtap_plugins.isg.simulator import IsgSimulator
from tests.conftest import fixture_path


@pytest.mark.parametrize(("text", "state"), [("1", 1), ("2", 2), ("3", 3), ("4", 4), ("lock", 1), ("NORMAL", 2),
                                             ("active", 3), ("force", 4), (" dimm ", 1)])
def test_states_parse(text, state):
    assert sgready.parse_state(text) == state


@pytest.mark.parametrize("text", ["0", "5", "-1", "3.0", "max", "", "33"])
def test_bad_states_are_refused(text):
    with pytest.raises(ValueError, match="1-4"):
        sgready.parse_state(text)


@pytest.mark.parametrize(("state", "inputs"), [(1, [0, 1]), (2, [0, 0]), (3, [1, 0]), (4, [1, 1])])
def test_each_state_is_one_fc16_of_the_two_inputs(state, inputs):
    with IsgSimulator() as sim:
        link = ModbusLink("127.0.0.1", sim.modbus_port_bound)
        result = sgready.apply(link, state)
        assert [(w.function, w.address, w.values) for w in sim.store.writes] == [(16, 4001, inputs)]
        assert sim.store.snapshot("holding", 4001, 2) == inputs
        assert result.status.inputs == tuple(inputs) and result.status.operating_state == state
        assert result.lines()[0].startswith(f"SGReady {state} ({sgready.NAMES[state]}) written")
        link.close()


def test_switch_on_first_when_sg_ready_is_off():
    with IsgSimulator(sgready_on=False) as sim:
        link = ModbusLink("127.0.0.1", sim.modbus_port_bound)
        assert sgready.read_status(link).switch == 0
        assert any("switched off" in line for line in sgready.read_status(link).lines())
        result = sgready.apply(link, 3, switch_on=True)
        assert [(w.function, w.address, w.values) for w in sim.store.writes] == [(6, 4000, [1]), (16, 4001, [1, 0])]
        assert result.switched_on and result.status.operating_state == 3
        sgready.apply(link, 3, switch_on=True)  # already on: not written again
        assert [w.function for w in sim.store.writes] == [6, 16, 16]


def test_a_readback_that_differs_is_a_mismatch():
    with IsgSimulator(sgready_ignore=True) as sim:
        link = ModbusLink("127.0.0.1", sim.modbus_port_bound)
        with pytest.raises(sgready.Mismatch, match="reads back input 1 = 0, input 2 = 0"):
            sgready.apply(link, 3)


def test_an_unavailable_readback_does_not_fail_the_write():
    with IsgSimulator(sgready_unreadable=True) as sim:
        link = ModbusLink("127.0.0.1", sim.modbus_port_bound)
        result = sgready.apply(link, 3)
        assert result.status.inputs is None and result.status.operating_state == 3
        assert any("unavailable (0x8000)" in line for line in result.lines())


def test_comfort_mode_is_said():
    with IsgSimulator(operating_mode="comfort") as sim:
        link = ModbusLink("127.0.0.1", sim.modbus_port_bound)
        status = sgready.read_status(link)
        assert status.family == "wpm" and status.mode == "comfort"
        assert any("ignores SG Ready" in line for line in status.lines())
    with IsgSimulator(controller="lwz", operating_mode="automatic") as sim:
        assert sgready.read_status(ModbusLink("127.0.0.1", sim.modbus_port_bound)).mode is None


def test_the_simulator_reverts_the_inputs_like_the_isg():
    with IsgSimulator(sgready_revert=0.3) as sim:
        link = ModbusLink("127.0.0.1", sim.modbus_port_bound)
        sgready.apply(link, 4)
        time.sleep(0.4)
        assert sgready.read_status(link).operating_state == 2


# --- Alertmanager payloads -----------------------------------------------------------------------------
def _load(*parts: str) -> dict:
    return json.loads(fixture_path(*parts).read_text())


def test_payload_fixtures():
    seed = webhook.decide(_load("isg", "isg_exporter", "alertmanager_webhook_sample.json"))
    assert (seed.state, seed.action, seed.firing) == (3, "active", 1)
    firing = webhook.decide(_load("ecosystem", "alertmanager-webhook-v4-firing.json"))
    assert (firing.state, firing.firing) == (2, 2)  # label sgready="2" on both alerts
    resolved = webhook.decide(_load("ecosystem", "alertmanager-webhook-v4-resolved.json"))
    assert (resolved.state, resolved.action, resolved.resolved) == (2, "normal", 1)


def _alert(status: str, **labels: str) -> dict:
    return {"status": status, "labels": labels}


@pytest.mark.parametrize(("alerts", "state"), [
    ([_alert("firing", target="active"), _alert("firing", target="inactive")], 1),  # inactive beats active
    ([_alert("firing", target="inactive"), _alert("firing", target="active")], 1),  # whatever the order
    ([_alert("resolved", target="inactive"), _alert("firing", target="active")], 3),  # active beats resolved
    ([_alert("resolved", target="active")], 2),
    ([_alert("firing", target="active"), _alert("firing", sgready="force")], 4),  # force beats active
    ([_alert("firing", sgready="1"), _alert("firing", sgready="4")], 1),
    ([_alert("firing", target="elsewhere")], None),  # nothing for us: no write
    ([_alert("firing", alertname="Other")], None),
    ([], None),
])
def test_one_target_per_payload(alerts, state):
    assert webhook.decide({"status": "firing", "alerts": alerts}).state == state


@pytest.mark.parametrize("payload", [[], "firing", {"alerts": "x"}, {"alerts": [1]}, {"alerts": [{"labels": []}]},
                                     {"status": "firing"}])
def test_malformed_payloads(payload):
    with pytest.raises(webhook.PayloadError):
        webhook.decide(payload)


# --- the webhook on the listener ---------------------------------------------------------------------------
class Listener:
    def __init__(self, dev: IsgPlugin, auth: serve.Auth) -> None:
        self.collector = Collector(dev, 60)
        self.server = runtime.open_metrics_server("127.0.0.1:0", [self.collector], auth)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def post(self, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, dict]:
        req = urllib.request.Request(self.url + "/webhooks/alertmanager", data=body, method="POST",
                                     headers={"Content-Type": "application/json", **(headers or {})})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def rig():
    with IsgSimulator() as sim:
        raw = {"mode": "modbus", "host": "127.0.0.1", "modbus_port": sim.modbus_port_bound, "sgready_enable": True,
               "timeout": "2s"}
        dev = devices.device_spec(IsgPlugin, raw, where="isg", default_interval=60).create()
        listener = Listener(dev, serve.Auth(Secret("t0ken")))
        try:
            yield sim, dev, listener
        finally:
            listener.close()
            dev.close()


AUTH = {"Authorization": "Bearer t0ken"}


def payload(status: str, target: str) -> bytes:
    return json.dumps({"version": "4", "status": status, "alerts": [_alert(status, target=target)]}).encode()


def counters(dev: IsgPlugin) -> dict[str, float]:
    out = {}
    for m in dev.diagnostics():
        key = m.name + "".join(f"{{{v}}}" for _, v in m.labels)
        out[key] = m.value
    return out


def test_webhook_writes_then_answers_and_is_idempotent(rig):
    sim, dev, listener = rig
    status, body = listener.post(payload("firing", "active"), AUTH)
    assert (status, body["state"], body["written"]) == (200, 3, True)
    assert [(w.function, w.address, w.values) for w in sim.store.writes] == [(16, 4001, [1, 0])]
    status, body = listener.post(payload("firing", "active"), AUTH)  # Alertmanager repeats itself
    assert (status, body["written"]) == (200, False)
    assert len(sim.store.writes) == 1
    status, body = listener.post(payload("resolved", "active"), AUTH)
    assert (status, body["state"]) == (200, 2)
    assert sim.store.writes[-1].values == [0, 0]
    c = counters(dev)
    assert c["isg_sgready_action_total{active}"] == 2 and c["isg_sgready_action_total{normal}"] == 1
    assert c["isg_sgready_requested_state"] == 2 and c["isg_sgready_error_total"] == 0
    assert dev.status()["sgready"]["requested_state"] == 2


def test_webhook_refuses_without_credentials_and_writes_nothing(rig):
    sim, _, listener = rig
    assert listener.post(payload("firing", "active"))[0] == 401
    assert listener.post(payload("firing", "active"), {"Authorization": "Bearer nope"})[0] == 401
    assert sim.store.writes == []


def test_malformed_and_oversized_bodies_are_4xx_without_a_write(rig):
    sim, dev, listener = rig
    assert listener.post(b"{not json", AUTH)[0] == 400
    assert listener.post(b'{"alerts": 5}', AUTH)[0] == 400
    assert listener.post(b"x" * (300 * 1024), AUTH)[0] == 413
    assert sim.store.writes == []
    assert counters(dev)["isg_sgready_error_total"] == 2


def test_webhook_is_5xx_while_the_device_is_down(rig):
    sim, dev, listener = rig
    sim.stop()
    dev.link().close()
    status, body = listener.post(payload("firing", "inactive"), AUTH)
    assert status == 503 and "Modbus" in body["error"]
    assert counters(dev)["isg_sgready_error_total"] == 1


def test_a_non_loopback_listener_needs_a_token():
    raw = {"mode": "modbus", "host": "127.0.0.1", "sgready_enable": True}
    dev = devices.device_spec(IsgPlugin, raw, where="isg", default_interval=60).create()
    with pytest.raises(ConfigError, match="webhook_token"):
        serve.check_route_auth("0.0.0.0", dev.routes(), serve.Auth(), "0.0.0.0:8080")
    serve.check_route_auth("0.0.0.0", dev.routes(), serve.Auth(Secret("x")), "0.0.0.0:8080")
    serve.check_route_auth("127.0.0.1", dev.routes(), serve.Auth(), "127.0.0.1:8080")
    quiet = devices.device_spec(IsgPlugin, {"mode": "modbus", "host": "h"}, where="isg", default_interval=60).create()
    assert quiet.routes() == ()  # no webhook unless asked for


def sgready_device(sim: IsgSimulator, **settings: object) -> IsgPlugin:
    raw = {"mode": "modbus", "host": "127.0.0.1", "modbus_port": sim.modbus_port_bound, "sgready_enable": True,
           "sgready_reassert": "30s", "timeout": "1s", **settings}
    return devices.device_spec(IsgPlugin, raw, where="isg", default_interval=60).create()


def make_due(dev: IsgPlugin) -> None:
    """Let the re-assert period pass without waiting 30 s for it."""
    dev.sgready._next_reassert = time.monotonic()


def wait_for(condition, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    return bool(condition())


def test_the_requested_state_is_reasserted_after_the_isg_reverted_it():
    with IsgSimulator(sgready_revert=0.2) as sim:
        dev = sgready_device(sim)
        dev.start()
        try:
            assert dev.sgready.request(3)[0]
            assert wait_for(lambda: sim.store.sgready_state() == 2)  # the ISG fell back
            time.sleep(2.5)
            assert len(sim.store.writes) == 1  # the period has not passed: nothing written
            make_due(dev)
            assert wait_for(lambda: sim.store.snapshot("holding", 4001, 2) == [1, 0])
            assert [w.values for w in sim.store.writes] == [[1, 0], [1, 0]]
            time.sleep(2.5)
            assert len(sim.store.writes) == 2  # once per period, never a tight loop
        finally:
            dev.close()


def test_normal_is_written_once_and_not_reasserted():
    """The ISG falls back to normal by itself: re-writing it every period would only wear out
    its flash memory."""
    with IsgSimulator() as sim:
        dev = sgready_device(sim)
        dev.start()
        try:
            assert dev.sgready.request(2)[0]
            make_due(dev)
            time.sleep(2.5)
            assert [w.values for w in sim.store.writes] == [[0, 0]]
            assert dev.sgready.request(3)[0]  # asking for another state changes what is re-asserted
            make_due(dev)
            assert wait_for(lambda: len(sim.store.writes) == 3)
            assert [w.values for w in sim.store.writes] == [[0, 0], [1, 0], [1, 0]]
        finally:
            dev.close()


@pytest.mark.parametrize("period", ["0.05s", "5s", "29s"])
def test_the_reassert_period_has_a_floor(period):
    with pytest.raises(ConfigError, match="sgready_reassert: must be 30s or more"):
        devices.device_spec(IsgPlugin, {"mode": "modbus", "host": "h", "sgready_reassert": period}, where="isg",
                            default_interval=60).create()


def test_after_a_failed_reassertion_a_request_writes_again():
    """A repeated notification for the same state is skipped only while the last write is good:
    after a re-assertion failed, the ISG has fallen back and the request must be written."""
    with IsgSimulator() as sim:
        dev = sgready_device(sim)
        dev.start()
        try:
            assert dev.sgready.request(3)[0]
            sim.store.busy.add("energy_management")  # the read-back answers 06: the re-assertion fails
            make_due(dev)
            assert wait_for(lambda: dev.status()["sgready"]["reassert_error"] is not None)
            sim.store.busy.clear()
            written, lines = dev.sgready.request(3)
            assert written, lines
            assert dev.status()["sgready"]["reassert_error"] is None
        finally:
            dev.close()


def test_a_write_that_cannot_reach_the_device_requests_nothing():
    raw = {"mode": "modbus", "host": "127.0.0.1", "modbus_port": 1, "sgready_enable": True}
    dev = devices.device_spec(IsgPlugin, raw, where="isg", default_interval=60).create()
    with pytest.raises(LinkError):
        dev.sgready.request(3)
    assert dev.sgready.requested is None  # nothing was written, nothing is pretended


def test_reassert_failures_are_logged_once(caplog):
    sim = IsgSimulator().start()
    dev = sgready_device(sim)
    try:
        dev.sgready.request(1)
        sim.stop()
        dev.link().close()
        dev.start()
        def attempts() -> int:
            return sum("re-asserted" in r.getMessage() for r in caplog.records)

        with caplog.at_level(logging.DEBUG, logger="gridtap.isg"):
            for i in range(3):
                make_due(dev)  # an attempt puts the next one a period (30 s) ahead
                assert wait_for(lambda: dev.sgready._next_reassert > time.monotonic() + 20)
                assert wait_for(lambda n=i + 1: attempts() >= n)  # its line is logged after the period is set
        warnings = [r for r in caplog.records if "could not be re-asserted" in r.getMessage()]
        retries = [r for r in caplog.records if "still not re-asserted" in r.getMessage()]
        assert len(warnings) == 1 and len(retries) == 2
        assert dev.sgready.requested == 1  # still wanted: tried again every period
    finally:
        dev.close()


def test_a_revert_seen_on_the_read_back_is_written_again_and_nothing_else_is():
    """Reads cost no flash: the inputs are read back, and the state is written again only when
    the ISG reverted it (or at the latest every period), not every 30 s whether needed or not."""
    with IsgSimulator(sgready_revert=1.0) as sim:
        dev = sgready_device(sim, sgready_reassert="1h")
        dev.sgready.check_every = 0.3
        dev.start()
        try:
            assert dev.sgready.request(3)[0]
            assert wait_for(lambda: len(sim.store.writes) >= 2, timeout=6)  # reverted after 1 s, written again
            assert [w.values for w in sim.store.writes][:2] == [[1, 0], [1, 0]]
            assert dev.status()["sgready"]["reverts_seen"] >= 1
            assert dev.status()["sgready"]["inputs_read_back"] is True
        finally:
            dev.close()
    with IsgSimulator(sgready_revert=3600.0) as sim:  # an ISG that keeps the inputs
        dev = sgready_device(sim, sgready_reassert="1h")
        dev.sgready.check_every = 0.3
        dev.start()
        try:
            assert dev.sgready.request(1)[0]
            time.sleep(2.5)  # ~8 read-backs
            assert [w.values for w in sim.store.writes] == [[0, 1]]  # written once, never again
        finally:
            dev.close()


def test_the_default_period_depends_on_the_read_back():
    """Where the inputs read back, a revert is seen and written again within seconds, so the
    unconditional re-write can be rare (5 min, the spec's "every few minutes"); where they read as
    0x8000, the period is all there is, and 30 s holds a state the ISG reverts after 30-60 s."""
    dev = devices.device_spec(IsgPlugin, {"mode": "modbus", "host": "h", "sgready_enable": True}, where="isg",
                              default_interval=60).create()
    assert dev.sgready.reassert_period() == 300.0
    dev.sgready.readback = False
    assert dev.sgready.reassert_period() == 30.0
    assert dev.status()["sgready"]["reassert_every_seconds"] == 30.0
    set_explicitly = devices.device_spec(IsgPlugin, {"mode": "modbus", "host": "h", "sgready_enable": True,
                                                     "sgready_reassert": "2m"}, where="isg",
                                         default_interval=60).create()
    set_explicitly.sgready.readback = False
    assert set_explicitly.sgready.reassert_period() == 120.0
    assert float(IsgSimulator().sgready_revert) > 30.0  # the simulated ISG reverts after 45 s, as a real one may
