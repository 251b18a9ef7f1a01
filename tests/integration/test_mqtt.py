"""The MQTT output against a real Mosquitto 2.0.11 on 127.0.0.1.

Checks what a Home Assistant instance would receive: retained discovery configs (JSON with
the expected keys), state JSON equal to the metric values, retained availability that follows
``<plugin>_up``, re-discovery on HA's birth message, and the bridge Last Will ``offline``
after the publishing process is killed with SIGKILL.
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
from gridtap.model import Batch, Kind, MetricDef
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
INFO = MetricDef(f"{P}_device_info", "Model", kind=Kind.INFO)
UP, LAST, DURATION = health_defs(P)


@dataclass
class Broker:
    port: int
    proc: servers.Proc


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    with needs():
        mosquitto = servers.require("mosquitto", "install the Debian package `mosquitto` (tests/setup-and-run.sh)")
        mosquitto_pub = servers.require("mosquitto_pub", "install the Debian package `mosquitto-clients`")
    workdir = tmp_path_factory.mktemp("mosquitto")
    port = servers.free_port()
    conf = workdir / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stdout\n")
    proc = servers.spawn("mosquitto", [mosquitto, "-c", str(conf)], workdir)

    def ready() -> bool:
        import subprocess

        res = subprocess.run([mosquitto_pub, "-h", "127.0.0.1", "-p", str(port), "-t", "ready", "-n"],
                             capture_output=True, timeout=5)
        return res.returncode == 0

    try:
        servers.wait_until(ready, 10, f"mosquitto on 127.0.0.1:{port}", proc, interval=0.1)
        yield Broker(port, proc)
    finally:
        proc.stop()


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


def boiler(up: int = 1) -> Batch:
    metrics = [TEMP(47.5, sensor="flow"), TEMP(31.25, sensor="return/line"), POWER(1234.5), ENERGY(7.2e6),
               RATIO(0.25), MODE("heating"), INFO(1, model="X 24/18"), UP(up), DURATION(0.02)]
    if up:
        metrics.append(LAST(1_700_000_000.0))
    else:
        metrics = [m for m in metrics if m.definition in (UP, DURATION)]
    return Batch(P, "boiler", time.time_ns(), metrics)


def prefixes() -> tuple[str, str]:
    """A fresh (topic_prefix, discovery_prefix) per test: the broker is shared by the module."""
    tag = uuid.uuid4().hex[:8]
    return f"gt{tag}", f"ha{tag}"


def test_discovery_state_and_availability(broker: Broker, subs: Callable[..., Sub]) -> None:
    tp, dp = prefixes()
    live = subs(f"{tp}/#")
    pub = MqttPublisher("127.0.0.1", broker.port, topic_prefix=tp, discovery_prefix=dp)
    pub.start()
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
        assert "up" not in state and not any(k.startswith("device_info") for k in state)

        # a late subscriber sees the retained discovery, availability and bridge status
        late = subs(f"{dp}/#", f"{tp}/status", f"{tp}/+/+/availability")
        expected = {f"gridtap_{P}_boiler_{k}" for k in state}
        late.wait("retained discovery for every state key",
                  lambda msgs: {t.split("/")[2] for t, _p, r in msgs if r and t.endswith("/config")} >= expected)
        retained = {t: p for t, p, r in late.snapshot() if r}
        assert retained[f"{tp}/status"] == b"online"
        assert retained[f"{tp}/{P}/boiler/availability"] == b"online"
        cfg = json.loads(retained[f"{dp}/sensor/gridtap_{P}_boiler_temperature_celsius_flow/config"])
        for key in ("name", "unique_id", "state_topic", "value_template", "device_class", "unit_of_measurement",
                    "state_class", "availability", "availability_mode", "device", "o"):
            assert key in cfg, key
        assert cfg["state_topic"] == state_topic
        assert cfg["value_template"] == "{{ value_json.temperature_celsius_flow }}"
        assert (cfg["device_class"], cfg["unit_of_measurement"], cfg["state_class"]) == ("temperature", "°C",
                                                                                         "measurement")
        assert [a["topic"] for a in cfg["availability"]] == [f"{tp}/status", f"{tp}/{P}/boiler/availability"]
        assert cfg["device"]["identifiers"] == [f"gridtap_{P}_boiler"] and cfg["device"]["model"] == "X 24/18"
        energy = json.loads(retained[f"{dp}/sensor/gridtap_{P}_boiler_energy_joules_total/config"])
        assert (energy["device_class"], energy["unit_of_measurement"], energy["state_class"]) == (
            "energy", "kWh", "total_increasing")

        # up=0: availability goes offline (retained), data keys become null
        pub.publish([boiler(up=0)])
        avail = f"{tp}/{P}/boiler/availability"
        late.wait("availability offline", lambda _m: late.last(avail) == b"offline")
        live.wait("second state", lambda msgs: len([t for t, _p, _r in msgs if t == state_topic]) >= 2)
        state = json.loads(live.last(state_topic) or b"")
        assert state["temperature_celsius_flow"] is None and state["collect_duration_seconds"] == 0.02
        pub.publish([boiler(up=1)])
        late.wait("availability online again", lambda _m: late.last(avail) == b"online")
    finally:
        pub.stop()
    late.wait("bridge offline after stop()", lambda _m: late.last(f"{tp}/status") == b"offline")


def test_ha_birth_message_republishes_discovery(broker: Broker, subs: Callable[..., Sub]) -> None:
    tp, dp = prefixes()
    # Subscribe before anything is published, so every config arrives live (never as a
    # retained replay whose timing races the publisher): first the initial set, then, after
    # HA's birth message, the same set again.
    live = subs(f"{dp}/sensor/#")
    pub = MqttPublisher("127.0.0.1", broker.port, topic_prefix=tp, discovery_prefix=dp)
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
    port, tp, dp = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    up = health_defs("mqtest")[0]
    power = MetricDef("mqtest_power_watts", "Power", unit="watts")
    pub = MqttPublisher("127.0.0.1", port, topic_prefix=tp, discovery_prefix=dp, keepalive=5)
    pub.start()
    pub.publish([Batch("mqtest", "boiler", time.time_ns(), [power(1.0), up(1)])])
    print("ready", flush=True)
    time.sleep(60)
""")


def test_last_will_after_sigkill(broker: Broker, subs: Callable[..., Sub], tmp_path: Path) -> None:
    tp, dp = prefixes()
    status = f"{tp}/status"
    watch = subs(status)
    script = tmp_path / "publisher.py"
    script.write_text(PUBLISHER)
    proc = servers.spawn("publisher", [sys.executable, str(script), str(broker.port), tp, dp], tmp_path,
                         stdout_pipe=True)
    try:
        watch.wait("publisher online", lambda _m: watch.last(status) == b"online", timeout=10)
        proc.stop(timeout=5, sig=signal.SIGKILL)
        watch.wait("Last Will offline after SIGKILL", lambda _m: watch.last(status) == b"offline")
    finally:
        proc.stop(timeout=5, sig=signal.SIGKILL)
    # the will is retained: a newcomer (HA after a restart) sees the bridge offline too
    late = subs(status)
    late.wait("retained offline", lambda msgs: any(t == status and p == b"offline" and r for t, p, r in msgs))


def test_unreachable_broker_is_an_output_error() -> None:
    from gridtap.errors import OutputError

    pub = MqttPublisher("127.0.0.1", servers.free_port(), connect_timeout=2)
    with pytest.raises(OutputError, match=r"mqtt 127\.0\.0\.1:\d+: cannot connect"):
        pub.start()
