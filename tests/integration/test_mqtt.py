"""The MQTT output against a real Mosquitto 2.0.11 on 127.0.0.1.

Checks what a Home Assistant instance would receive: retained discovery configs (JSON with
the expected keys), state JSON equal to the metric values, retained availability that follows
``<plugin>_up``, re-discovery on HA's birth message, the bridge Last Will ``offline`` after the
publishing process is killed with SIGKILL (and only for that process's bridge), the clean-up
of a renamed device's configs at start, and the expiry of a once-run's retained configs.
(tests/integration/test_homeassistant.py checks the same against a real Home Assistant.)
"""

from __future__ import annotations

import json
import signal
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from gridtap.health import health_defs
from gridtap.model import Batch, Display, Kind, MetricDef
from gridtap.outputs.mqtt import MqttPublisher

from . import servers
from .conftest import needs

pytestmark = pytest.mark.integration

P = "mqtest"
TEMP = MetricDef(f"{P}_temperature_celsius", "Temperature", unit="celsius", label_names=("sensor",))
POWER = MetricDef(f"{P}_power_watts", "Power", unit="watts")
ENERGY = MetricDef(f"{P}_energy_joules_total", "Energy", kind=Kind.COUNTER, unit="joules")
RATIO = MetricDef(f"{P}_pump_ratio", "Pump duty", unit="ratio")
MODE = MetricDef(f"{P}_mode", "Mode", kind=Kind.STATESET, states=("off", "heating"))
BURNING = MetricDef(f"{P}_burner_on", "Burner", integer=True, display=Display(name="Burner", binary="running"))
INFO = MetricDef(f"{P}_device_info", "Model", kind=Kind.INFO)
UP, LAST, DURATION = health_defs(P)


@dataclass
class Broker:
    port: int
    proc: servers.Proc


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    with needs():
        server = servers.start_mosquitto(tmp_path_factory.mktemp("mosquitto"))
    try:
        yield Broker(server.port, server.proc)
    finally:
        server.proc.stop()


@dataclass
class Sub:
    """A paho subscriber that records (topic, payload, retain) as they arrive."""

    port: int
    topics: list[str]
    username: str | None = None
    password: str | None = None
    ca_file: Path | None = None  # TLS, verified against this CA
    messages: list[tuple[str, bytes, bool]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-sub-{uuid.uuid4().hex[:8]}")
        if self.username is not None:
            self.client.username_pw_set(self.username, self.password)
        if self.ca_file is not None:
            self.client.tls_set(ca_certs=str(self.ca_file))
        subscribed = threading.Event()

        def on_connect(client: Any, *_a: Any) -> None:
            client.subscribe([(t, 1) for t in self.topics])

        def on_message(_c: Any, _u: Any, msg: Any) -> None:
            with self.lock:
                self.messages.append((msg.topic, msg.payload, bool(msg.retain)))

        self.client.on_connect = on_connect
        self.client.on_subscribe = lambda *_a: subscribed.set()
        self.client.on_message = on_message
        self.client.connect("127.0.0.1", self.port, keepalive=10)
        self.client.loop_start()
        assert subscribed.wait(5), "subscriber did not get SUBACK"

    def wait(self, what: str, check: Callable[[list[tuple[str, bytes, bool]]], Any], timeout: float = 5) -> Any:
        return servers.wait_until(lambda: check(self.snapshot()), timeout, what)

    def snapshot(self) -> list[tuple[str, bytes, bool]]:
        with self.lock:
            return list(self.messages)

    def last(self, topic: str) -> bytes | None:
        found = [p for t, p, _r in self.snapshot() if t == topic]
        return found[-1] if found else None

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def subs(broker: Broker) -> Iterator[Callable[..., Sub]]:
    made: list[Sub] = []

    def make(*topics: str) -> Sub:
        s = Sub(broker.port, list(topics))
        made.append(s)
        return s

    try:
        yield make
    finally:
        for s in made:
            s.close()


def boiler(up: int = 1, device: str = "boiler") -> Batch:
    metrics = [TEMP(47.5, sensor="flow"), TEMP(31.25, sensor="return/line"), POWER(1234.5), ENERGY(7.2e6),
               RATIO(0.25), MODE("heating"), BURNING(1), INFO(1, model="X 24/18"), UP(up), DURATION(0.02)]
    if up:
        metrics.append(LAST(1_700_000_000.0))
    else:
        metrics = [m for m in metrics if m.definition in (UP, DURATION)]
    return Batch(P, device, time.time_ns(), metrics)


def prefixes() -> tuple[str, str]:
    """A fresh (topic_prefix, discovery_prefix) per test: the broker is shared by the module."""
    tag = uuid.uuid4().hex[:8]
    return f"gt{tag}", f"ha{tag}"


def publisher(broker: Broker, tp: str, dp: str, device: str = "boiler", **kw: Any) -> MqttPublisher:
    return MqttPublisher("127.0.0.1", broker.port, topic_prefix=tp, discovery_prefix=dp, devices=[(P, device)], **kw)


def retained(sub: Sub) -> dict[str, bytes]:
    """The latest retained payload per topic (an empty one means cleared)."""
    out: dict[str, bytes] = {}
    for t, p, r in sub.snapshot():
        if r or t in out:
            out[t] = p
    return out


def test_discovery_state_and_availability(broker: Broker, subs: Callable[..., Sub]) -> None:
    tp, dp = prefixes()
    live = subs(f"{tp}/#")
    pub = publisher(broker, tp, dp)
    pub.start()
    bridge = f"{tp}/bridge/{P}-boiler/status"
    try:
        pub.publish([boiler()])
        state_topic = f"{tp}/{P}/boiler/state"
        raw = live.wait("state JSON", lambda _m: live.last(state_topic))
        state = json.loads(raw)
        assert state["temperature_celsius_flow"] == 47.5
        assert state["temperature_celsius_return_line"] == 31.25
        assert state["power_watts"] == 1234.5
        assert state["energy_joules_total"] == 7.2e6
        assert state["pump_ratio"] == 0.25
        assert state["mode"] == "heating"
        assert state["burner_on"] == 1 and state["up"] == 1
        assert not any(k.startswith("device_info") for k in state)

        # a late subscriber sees the retained discovery, availability and bridge status
        late = subs(f"{dp}/#", bridge, f"{tp}/+/+/availability")
        expected = {f"gridtap_{P}_boiler_{k}" for k in state}
        late.wait("retained discovery for every state key",
                  lambda msgs: {t.split("/")[2] for t, _p, r in msgs if r and t.endswith("/config")} >= expected)
        kept = retained(late)
        assert kept[bridge] == b"online"
        assert kept[f"{tp}/{P}/boiler/availability"] == b"online"
        cfg = json.loads(kept[f"{dp}/sensor/gridtap_{P}_boiler_temperature_celsius_flow/config"])
        for key in ("name", "unique_id", "default_entity_id", "state_topic", "value_template", "device_class",
                    "unit_of_measurement", "state_class", "suggested_display_precision", "availability",
                    "availability_mode", "device", "o"):
            assert key in cfg, key
        assert "object_id" not in cfg
        assert cfg["state_topic"] == state_topic
        assert (cfg["device_class"], cfg["unit_of_measurement"], cfg["state_class"]) == ("temperature", "°C",
                                                                                         "measurement")
        assert [a["topic"] for a in cfg["availability"]] == [bridge, f"{tp}/{P}/boiler/availability"]
        assert cfg["device"]["identifiers"] == [f"gridtap_{P}_boiler"] and cfg["device"]["model"] == "X 24/18"
        energy = json.loads(kept[f"{dp}/sensor/gridtap_{P}_boiler_energy_joules_total/config"])
        assert (energy["device_class"], energy["unit_of_measurement"], energy["state_class"]) == (
            "energy", "kWh", "total_increasing")
        burner = json.loads(kept[f"{dp}/binary_sensor/gridtap_{P}_boiler_burner_on/config"])
        assert burner["device_class"] == "running" and burner["name"] == "Burner"
        connected = json.loads(kept[f"{dp}/binary_sensor/gridtap_{P}_boiler_up/config"])
        assert connected["entity_category"] == "diagnostic" and [a["topic"] for a in connected["availability"]] == [
            bridge]

        # up=0: availability goes offline (retained), data keys become null
        pub.publish([boiler(up=0)])
        avail = f"{tp}/{P}/boiler/availability"
        late.wait("availability offline", lambda _m: late.last(avail) == b"offline")
        live.wait("second state", lambda msgs: len([t for t, _p, _r in msgs if t == state_topic]) >= 2)
        state = json.loads(live.last(state_topic) or b"")
        assert state["temperature_celsius_flow"] is None and state["collect_duration_seconds"] == 0.02
        # a batch without <plugin>_up that failed is a device only waiting: availability unchanged
        sent = len(late.snapshot())
        pub.publish([Batch(P, "boiler", time.time_ns(), [DURATION(0.01)], ok=False, error="waiting")])
        time.sleep(0.5)
        assert [t for t, _p, _r in late.snapshot()[sent:] if t == avail] == []
        pub.publish([boiler(up=1)])
        late.wait("availability online again", lambda _m: late.last(avail) == b"online")
    finally:
        pub.stop()
    late.wait("bridge offline after stop()", lambda _m: late.last(bridge) == b"offline")


def test_ha_birth_message_republishes_discovery(broker: Broker, subs: Callable[..., Sub]) -> None:
    tp, dp = prefixes()
    # Subscribe before anything is published, so every config arrives live (never as a
    # retained replay whose timing races the publisher): first the initial set, then, after
    # HA's birth message, the same set again.
    live = subs(f"{dp}/sensor/#")
    pub = publisher(broker, tp, dp)
    pub.start()
    try:
        pub.publish([boiler()])
        seen = [-1]

        def settled(msgs: list) -> bool:  # the first set has arrived and stopped growing
            stable = len(msgs) == seen[0] and len(msgs) > 0
            seen[0] = len(msgs)
            return stable

        servers.wait_until(lambda: settled(live.snapshot()), 10, "the first discovery configs", interval=0.3)
        first = live.snapshot()
        n = len(first)
        ha = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"fake-ha-{uuid.uuid4().hex[:6]}")
        ha.connect("127.0.0.1", broker.port)
        ha.loop_start()
        ha.publish(f"{dp}/status", "online", qos=1).wait_for_publish(5)
        ha.disconnect()
        ha.loop_stop()
        again = live.wait("discovery re-sent after HA birth", lambda msgs: msgs[n:] if len(msgs) >= 2 * n else None)
        assert sorted(t for t, _p, _r in again[:n]) == sorted(t for t, _p, _r in first)  # the same configs again
        assert all(t.endswith("/config") for t, _p, _r in again)
    finally:
        pub.stop()


PUBLISHER = textwrap.dedent("""
    import sys, time
    from gridtap.model import Batch, MetricDef
    from gridtap.health import health_defs
    from gridtap.outputs.mqtt import MqttPublisher
    port, tp, dp, device = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    up = health_defs("mqtest")[0]
    power = MetricDef("mqtest_power_watts", "Power", unit="watts")
    pub = MqttPublisher("127.0.0.1", port, topic_prefix=tp, discovery_prefix=dp, keepalive=5,
                        devices=[("mqtest", device)])
    pub.start()
    pub.publish([Batch("mqtest", device, time.time_ns(), [power(1.0), up(1)])])
    print("ready", flush=True)
    time.sleep(60)
""")


def test_last_will_after_sigkill_marks_only_that_process_offline(broker: Broker, subs: Callable[..., Sub],
                                                                 tmp_path: Path) -> None:
    tp, dp = prefixes()
    status_a, status_b = f"{tp}/bridge/{P}-boiler-a/status", f"{tp}/bridge/{P}-boiler-b/status"
    watch = subs(f"{tp}/bridge/+/status")
    script = tmp_path / "publisher.py"
    script.write_text(PUBLISHER)
    procs = [servers.spawn(f"publisher-{d}", [sys.executable, str(script), str(broker.port), tp, dp, d], tmp_path)
             for d in ("boiler-a", "boiler-b")]
    try:
        watch.wait("both publishers online",
                   lambda _m: watch.last(status_a) == b"online" and watch.last(status_b) == b"online", timeout=10)
        procs[0].stop(timeout=5, sig=signal.SIGKILL)
        watch.wait("Last Will offline after SIGKILL", lambda _m: watch.last(status_a) == b"offline", timeout=15)
        assert watch.last(status_b) == b"online"
        assert [p for t, p, _r in watch.snapshot() if t == status_b] == [b"online"]
        # the other process's entities name only its own bridge
        late = subs(f"{dp}/#")
        late.wait("b's discovery", lambda _m: late.last(f"{dp}/sensor/gridtap_{P}_boiler_b_power_watts/config"))
        cfg = json.loads(late.last(f"{dp}/sensor/gridtap_{P}_boiler_b_power_watts/config") or b"")
        assert [a["topic"] for a in cfg["availability"]] == [status_b, f"{tp}/{P}/boiler-b/availability"]
    finally:
        for proc in procs:
            proc.stop(timeout=5, sig=signal.SIGKILL)
    # the will is retained: a newcomer (HA after a restart) sees the bridge offline too
    late = subs(status_a)
    late.wait("retained offline", lambda msgs: any(t == status_a and p == b"offline" and r for t, p, r in msgs))


def test_renamed_device_configs_are_cleared_at_start(broker: Broker, subs: Callable[..., Sub],
                                                     tmp_path: Path) -> None:
    """The same invocation (ledger) or the same explicit bridge id, started with another device
    name, clears the old device's retained configs and leaves another process's alone."""
    tp, dp = prefixes()
    ledger = tmp_path / "bridges.json"
    other = publisher(broker, tp, dp, device="neighbour")
    other.start()
    old = publisher(broker, tp, dp, device="boiler", invocation="run mqtest -", ledger_path=ledger)
    old.start()
    try:
        other.publish([boiler(device="neighbour")])
        old.publish([boiler(device="boiler")])
    finally:
        old.stop()
    watch = subs(f"{dp}/#")
    watch.wait("old configs retained", lambda _m: watch.last(f"{dp}/sensor/gridtap_{P}_boiler_power_watts/config"))
    new = publisher(broker, tp, dp, device="cv-ketel", invocation="run mqtest -", ledger_path=ledger)
    new.start()  # reads the retained configs, finds the bridge this invocation had before
    try:
        new.publish([boiler(device="cv-ketel")])
        late = subs(f"{dp}/#")
        late.wait("the new device's configs",
                  lambda _m: late.last(f"{dp}/sensor/gridtap_{P}_cv_ketel_power_watts/config"))
        kept = {t for t, p in retained(late).items() if p}
        assert not any("_boiler_" in t for t in kept), sorted(kept)
        assert any("_neighbour_" in t for t in kept)
        assert json.loads(ledger.read_text())
    finally:
        new.stop()
        other.stop()


def test_once_run_has_no_bridge_and_its_retained_configs_expire(broker: Broker, subs: Callable[..., Sub]) -> None:
    tp, dp = prefixes()
    pub = publisher(broker, tp, dp, once_expire_after=2.0)
    pub.start()
    pub.publish([boiler()])
    pub.stop()
    late = subs(f"{dp}/#", f"{tp}/#")
    topic = f"{dp}/sensor/gridtap_{P}_boiler_power_watts/config"
    late.wait("the once-run's retained config", lambda _m: late.last(topic))
    cfg = json.loads(late.last(topic) or b"")
    assert cfg["expire_after"] == 2
    assert [a["topic"] for a in cfg["availability"]] == [f"{tp}/{P}/boiler/availability"]
    assert not any("/bridge/" in t for t, _p, _r in late.snapshot())
    time.sleep(2.5)
    fresh = subs(f"{dp}/#", f"{tp}/#")
    time.sleep(0.5)
    assert [t for t, _p, r in fresh.snapshot() if r] == []


def test_unreachable_broker_is_an_output_error() -> None:
    from gridtap.errors import OutputError

    pub = MqttPublisher("127.0.0.1", servers.free_port(), connect_timeout=2)
    with pytest.raises(OutputError, match=r"mqtt 127\.0\.0\.1:\d+: cannot connect"):
        pub.start()
