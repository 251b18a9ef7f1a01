"""A real Alertmanager (Debian prometheus-alertmanager, 127.0.0.1) drives the SGReady webhook of
``gridtap run isg`` (issue 7, acceptance 4): a firing alert becomes a write the simulator
records, its resolution writes state 2, and a listener on a non-loopback address refuses
requests without the token (401, nothing written) and refuses to start without one."""

from __future__ import annotations

import datetime as dt
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from . import servers
from .conftest import needs

pytestmark = pytest.mark.integration


@pytest.fixture
def isg(workdir: Path, gridtap: str) -> Iterator[servers.IsgSim]:
    sim = servers.start_isg_simulator(workdir / "sim", "--sgready-revert", "600")
    try:
        yield sim
    finally:
        sim.proc.stop()


def exporter(workdir: Path, sim: servers.IsgSim, listen: str, env: dict[str, str] | None = None) -> servers.Proc:
    argv = [servers.gridtap_bin(), "run", "isg", "--mode", "modbus", "--host", "127.0.0.1", "--modbus-port",
            str(sim.modbus_port), "--sgready-enable", "true", "--output", "prometheus", "--listen", listen,
            "--interval", "2s"]
    return servers.spawn("gridtap-isg", argv, workdir, env=(env or servers.gridtap_env()))


def alert(target: str, *, resolved: bool = False) -> dict:
    body = {"labels": {"alertname": "PVSurplus", "target": target, "site": "home"},
            "annotations": {"summary": "PV surplus"}, "generatorURL": "http://127.0.0.1/graph"}
    if resolved:
        body["endsAt"] = (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)).isoformat()
    return body


def writes(sim: servers.IsgSim) -> list[list[int]]:
    return [w["values"] for w in sim.state()["modbus"]["writes"] if w["address"] == 4001]


def test_alertmanager_drives_sgready(workdir: Path, isg: servers.IsgSim):
    port = servers.free_port()
    proc = exporter(workdir, isg, f"127.0.0.1:{port}")
    try:
        servers.scrape_until(port, "isg_up", "isg_sgready_error_total", timeout=30, proc=proc)
        with needs():
            am = servers.start_alertmanager(workdir / "am", f"http://127.0.0.1:{port}/webhooks/alertmanager")
        try:
            am.post_alerts([alert("active")])
            servers.wait_until(lambda: writes(isg) == [[1, 0]], 30, "SGReady 3 written by the webhook", am.proc)
            assert isg.state()["modbus"]["sgready"]["state"] == 3
            am.post_alerts([alert("active", resolved=True)])
            servers.wait_until(lambda: writes(isg)[-1:] == [[0, 0]], 30, "SGReady 2 written on resolve", am.proc)
            assert isg.state()["modbus"]["sgready"]["state"] == 2
            assert [w for w in writes(isg) if w != [1, 0]] == [[0, 0]]
            text = servers.scrape_until(port, 'isg_sgready_action_total{action="normal",device="isg"} 1',
                                        timeout=15, proc=proc)
            assert 'isg_sgready_action_total{action="active",device="isg"} 1' in text
            assert "isg_sgready_requested_state" in text
            status, _, body = servers.http_get(f"http://127.0.0.1:{port}/status")
            facts = json.loads(body)["devices"][0]["facts"]
            assert status == 200 and facts["sgready"]["requested_state"] == 2
        finally:
            am.proc.stop()
    finally:
        proc.stop()


def post(url: str, body: bytes, headers: dict[str, str] | None = None) -> int:
    req = urllib.request.Request(url, data=body, method="POST",
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as e:
        return e.code


def test_non_loopback_listener_demands_the_token(workdir: Path, isg: servers.IsgSim):
    port = servers.free_port()
    refused = servers.run_gridtap(["run", "isg", "--mode", "modbus", "--host", "127.0.0.1", "--modbus-port",
                                   str(isg.modbus_port), "--sgready-enable", "true", "--output", "prometheus",
                                   "--listen", f"0.0.0.0:{port}"])
    assert refused.returncode == 2
    assert "webhook_token" in servers.one_error_line(refused)
    env = servers.gridtap_env() | {"GRIDTAP_WEBHOOK_TOKEN": "tok-3n"}
    proc = exporter(workdir, isg, f"0.0.0.0:{port}", env)  # bound on every address, talked to over loopback only
    try:
        servers.scrape_until(port, "isg_up", timeout=30, proc=proc)
        url = f"http://127.0.0.1:{port}/webhooks/alertmanager"
        payload = json.dumps({"status": "firing", "alerts": [{"status": "firing", "labels": {"target": "active"}}]})
        assert post(url, payload.encode()) == 401
        assert post(url, payload.encode(), {"Authorization": "Bearer wrong"}) == 401
        assert writes(isg) == []
        assert post(url, payload.encode(), {"Authorization": "Bearer tok-3n"}) == 200
        assert writes(isg) == [[1, 0]]
        assert b"tok-3n" not in proc.log().encode()
    finally:
        proc.stop()
