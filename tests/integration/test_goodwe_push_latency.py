"""Issue 11, acceptance 3: a Goodwe upload reaches /metrics, MQTT and the Pushgateway within
100 ms of arriving (it used to wait for the next collection tick: 6.6 s with the default 10 s).

One `gridtap serve` fronts the device (a proxy, a 60 s interval so no tick can help) and feeds
a real Mosquitto and a real Pushgateway; the test plays the meter itself, so it knows the
moment each upload left, and watches the three outputs for that upload's value.
"""

from __future__ import annotations

import datetime as dt
import re
import socket
import statistics
import threading
import time
from pathlib import Path

import pytest

from tests.integration import servers
from tests.integration.test_goodwe_outputs import sems  # noqa: F401 - fixture
from tests.integration.test_mqtt import broker  # noqa: F401 - fixture
from tests.integration.test_pushgateway import gateway  # noqa: F401 - fixture

pytestmark = pytest.mark.integration

SERIAL = "91000HKU00000042"
UPLOADS = 5
GOAL = 0.1


def _power(step: int) -> float:
    """The generation power `simulator.data_frame("meter", ...)` writes for ``step``."""
    return float(2601 + (step * 37) % 200)


def test_an_upload_reaches_every_output_within_100_ms(sems, broker, gateway, workdir: Path):  # noqa: F811
    from gridtap_plugins.goodwe import encoder, simulator

    proxy_port, http = servers.free_port(), servers.free_port()
    host, _, sport = sems.rpartition(":")
    cfg = workdir / "gridtap.yaml"
    cfg.write_text(f"""interval: 60s
listen: 127.0.0.1:{http}
devices:
  - plugin: goodwe
    name: proxy
    listen_host: 127.0.0.1
    listen_port: {proxy_port}
    upstream_host: {host}
    upstream_port: {sport}
mqtt:
  host: 127.0.0.1
  port: {broker.port}
  topic_prefix: latency
pushgateway:
  url: {gateway}
""")
    serve = servers.spawn("serve", [servers.gridtap_bin(), "serve", "--config", str(cfg)], workdir,
                          env=servers.gridtap_env())
    seen: dict[str, dict[float, float]] = {"metrics": {}, "mqtt": {}, "pushgateway": {}}
    stop = threading.Event()

    def note(where: str, text: str) -> None:
        for step in range(UPLOADS + 2):
            value = _power(step)
            if value not in seen[where] and re.search(rf"\b{value:.1f}\b|\b{int(value)}\b(?!\.)", text):
                seen[where][value] = time.monotonic()

    def poll(where: str, url: str) -> None:
        while not stop.is_set():
            try:
                _s, _h, body = servers.http_get(url, timeout=1)
            except OSError:
                time.sleep(0.01)
                continue
            lines = [ln for ln in body.decode().splitlines() if ln.startswith("goodwe_meter_power_generation_watts")]
            note(where, "\n".join(lines))
            time.sleep(0.002)

    def on_message(_c: object, _u: object, msg: object) -> None:  # paho's thread: the arrival time
        payload = msg.payload.decode(errors="replace")  # type: ignore[attr-defined]
        for match in re.finditer(r'"[a-z0-9_]*power_generation[a-z0-9_]*"\s*:\s*([-0-9.]+)', payload):
            note("mqtt", match.group(1))

    try:
        servers.wait_until(lambda: _listening(proxy_port), 15, "goodwe proxy listening", serve)
        import paho.mqtt.client as mqtt

        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="latency-test")
        client.on_connect = lambda c, *_a: c.subscribe("latency/#", qos=0)
        client.on_message = on_message
        client.connect("127.0.0.1", broker.port, keepalive=10)
        client.loop_start()
        threads = [threading.Thread(target=poll, args=("metrics", f"http://127.0.0.1:{http}/metrics"), daemon=True),
                   threading.Thread(target=poll, args=("pushgateway", f"{gateway}/metrics"), daemon=True)]
        for t in threads:
            t.start()
        sent: dict[float, float] = {}
        with socket.create_connection(("127.0.0.1", proxy_port), timeout=5) as device:
            when = dt.datetime.now(encoder.BEIJING)
            for step in range(UPLOADS + 1):
                frame = simulator.data_frame("meter", SERIAL, when + dt.timedelta(seconds=step), step)
                sent[_power(step)] = time.monotonic()
                device.sendall(frame)
                # Step 0 warms everything up (MQTT discovery, the first Pushgateway group).
                servers.wait_until(lambda s=step: all(_power(s) in seen[w] for w in seen), 10,
                                   f"upload {step} on every output", serve)
                time.sleep(0.2)
        delays = {w: [seen[w][_power(s)] - sent[_power(s)] for s in range(1, UPLOADS + 1)] for w in seen}
    finally:
        stop.set()
        serve.stop()
        if "client" in locals():
            client.loop_stop()
    report = {w: [f"{d * 1000:.0f} ms" for d in ds] for w, ds in delays.items()}
    print("upload -> output delays:", report)
    for where, ds in delays.items():
        # Every upload within the goal, allowing one (of five) a scheduling hiccup on a loaded CI box.
        assert sorted(ds)[-2] < GOAL and statistics.median(ds) < GOAL, (where, report)


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False
