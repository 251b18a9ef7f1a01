"""The push outputs through the CLI with the real intergas plugin: `run --output pushgateway`
into a real Pushgateway, and `serve` publishing to a real Mosquitto with HA discovery."""

from __future__ import annotations

import json

import pytest

from tests.integration import servers
from tests.integration.test_mqtt import broker, subs  # noqa: F401 - fixtures
from tests.integration.test_pushgateway import gateway  # noqa: F401 - fixture

pytestmark = pytest.mark.integration


@pytest.fixture
def boiler(workdir):
    proc, addr = servers.start_simulator("intergas", workdir)
    try:
        yield addr if addr.startswith("socket://") else f"socket://{addr}"
    finally:
        proc.stop()


def test_run_once_pushes_to_the_gateway(boiler, gateway):  # noqa: F811
    proc = servers.run_gridtap(["run", "intergas", "--port", boiler, "--name", "attic", "--output", "pushgateway",
                                "--pushgateway", gateway, "--once"])
    assert proc.returncode == 0, proc.stderr.decode()
    _, _, body = servers.http_get(gateway + "/metrics")
    text = body.decode()
    assert 'intergas_up{device="attic",instance="",job="gridtap",plugin="intergas"} 1' in text
    assert 'intergas_temperature_celsius{device="attic",instance="",job="gridtap",plugin="intergas",sensor="flow"}' \
        in text


def test_run_once_that_cannot_read_the_device_pushes_it_down(boiler, gateway):  # noqa: F811
    """Issue 11: a failed --once pushed nothing, so the gateway kept the last values and up 1."""
    args = ["run", "intergas", "--name", "dead", "--output", "pushgateway", "--pushgateway", gateway, "--once"]
    assert servers.run_gridtap([*args, "--port", boiler]).returncode == 0
    assert 'intergas_up{device="dead",instance="",job="gridtap",plugin="intergas"} 1' in \
        servers.http_get(gateway + "/metrics")[2].decode()
    proc = servers.run_gridtap([*args, "--port", f"socket://127.0.0.1:{servers.free_port()}", "--timeout", "0.3s"])
    assert proc.returncode == 1, proc.stderr.decode()
    text = servers.http_get(gateway + "/metrics")[2].decode()
    assert 'intergas_up{device="dead",instance="",job="gridtap",plugin="intergas"} 0' in text
    assert 'intergas_temperature_celsius{device="dead"' not in text


def test_unreachable_gateway_is_one_line(boiler):
    port = servers.free_port()
    proc = servers.run_gridtap(["run", "intergas", "--port", boiler, "--output", "pushgateway", "--pushgateway",
                                f"http://user:pw@127.0.0.1:{port}", "--once"])
    err = proc.stderr.decode()
    assert proc.returncode == 1 and err.count("\n") == 1 and "Traceback" not in err, err
    assert "pw" not in err.replace("pushgateway", "")


def test_serve_publishes_home_assistant_discovery(boiler, broker, subs, workdir):  # noqa: F811
    cfg = workdir / "gridtap.yaml"
    cfg.write_text(
        f"interval: 1s\nlisten: 127.0.0.1:{servers.free_port()}\n"
        f"mqtt:\n  host: 127.0.0.1\n  port: {broker.port}\n  topic_prefix: gtcli\n  discovery_prefix: hacli\n"
        f"devices:\n  - plugin: intergas\n    name: boiler\n    port: {boiler}\n")
    sub = subs("hacli/#", "gtcli/#")
    serve = servers.spawn("serve", [servers.gridtap_bin(), "serve", "--config", str(cfg)], workdir,
                          env=servers.gridtap_env())
    try:
        def state() -> dict | None:
            raw = sub.last("gtcli/intergas/boiler/state")
            return json.loads(raw) if raw else None

        values = servers.wait_until(lambda: (state() or {}).get("temperature_celsius_flow"), 20,
                                    "intergas state over MQTT", serve)
        assert 0 < values < 100
        def flow_config() -> list[dict]:
            configs = [json.loads(p) for t, p, _retained in sub.snapshot() if t.startswith("hacli/") and p]
            return [c for c in configs if "temperature_celsius_flow" in c.get("value_template", "")]

        flow = servers.wait_until(flow_config, 10, "HA discovery config of the flow temperature", serve)
        assert flow[0]["device_class"] == "temperature" and flow[0]["unit_of_measurement"] == "°C", flow
        assert flow[0]["state_topic"] == "gtcli/intergas/boiler/state"
        assert sub.last("gtcli/intergas/boiler/availability") == b"online"
    finally:
        assert serve.stop() == 0, serve.log()
