"""The Pushgateway output against a real ``prometheus-pushgateway`` 1.5.1 on 127.0.0.1.

Checks what the gateway serves after our pushes: values, the ``job``/``plugin``/``device``
grouping, label values with ``/`` (base64 in the URL), PUT replacing a whole group, refusals
reported as one-line OutputErrors, and ``delete``.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gridtap.errors import OutputError
from gridtap.health import health_defs
from gridtap.model import Batch, Kind, MetricDef
from gridtap.outputs import pushgateway

from . import servers
from .conftest import needs

pytestmark = pytest.mark.integration

P = "pgtest"
TEMP = MetricDef(f"{P}_temperature_celsius", "Temperature", unit="celsius", label_names=("sensor",))
POWER = MetricDef(f"{P}_power_watts", "Power", unit="watts")
ENERGY = MetricDef(f"{P}_energy_joules_total", "Energy", kind=Kind.COUNTER, unit="joules")
MODE = MetricDef(f"{P}_mode", "Mode", kind=Kind.STATESET, states=("off", "heating"))
UP, _LAST, DURATION = health_defs(P)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with needs():
        binary = servers.require("prometheus-pushgateway",
                                 "install the Debian package `prometheus-pushgateway` (tests/setup-and-run.sh)")
    port = servers.free_port()
    work = tmp_path_factory.mktemp("pushgateway")
    # Its own persistence file: without one Debian's gateway reads and rewrites the package's
    # default file, shared with every other run on the machine.
    proc = servers.spawn("pushgateway", [binary, f"--web.listen-address=127.0.0.1:{port}",
                                         f"--persistence.file={work / 'persistence'}",
                                         "--persistence.interval=1s"], work)
    url = f"http://127.0.0.1:{port}"
    try:
        servers.wait_until(lambda: servers.http_get(url + "/-/ready", timeout=1)[0] == 200, 10,
                           "pushgateway /-/ready", proc)
        yield url
    finally:
        proc.stop()


def samples(url: str) -> dict[tuple[str, frozenset], float]:
    """{(sample name, labels): value} served by the gateway's /metrics, ours only."""
    status, _h, body = servers.http_get(url + "/metrics", timeout=5)
    assert status == 200
    out = {}
    for fam in text_string_to_metric_families(body.decode()):
        for s in fam.samples:
            if s.name.startswith(P) or s.name in ("push_time_seconds", "push_failure_time_seconds"):
                out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def lbl(**kw: str) -> frozenset:
    return frozenset({"job": "gridtap", "instance": "", **kw}.items())


def boiler(*, flow: bool = True, device: str = "boiler") -> Batch:
    metrics = [TEMP(31.25, sensor="return/line"), POWER(1234.5), ENERGY(7.2e6), MODE("heating"), UP(1),
               DURATION(0.5)]
    if flow:
        metrics.insert(0, TEMP(47.5, sensor="flow"))
    return Batch(P, device, 1_700_000_000_000_000_000, metrics)


def test_push_serves_values_with_plugin_device_grouping(gateway: str) -> None:
    pushgateway.push([boiler(), boiler(device="attic/heater")], gateway)
    got = samples(gateway)
    g = {"plugin": P, "device": "boiler"}
    assert got[(f"{P}_temperature_celsius", lbl(**g, sensor="flow"))] == 47.5
    assert got[(f"{P}_temperature_celsius", lbl(**g, sensor="return/line"))] == 31.25
    assert got[(f"{P}_power_watts", lbl(**g))] == 1234.5
    assert got[(f"{P}_energy_joules_total", lbl(**g))] == 7.2e6
    assert got[(f"{P}_mode", lbl(**g, **{f"{P}_mode": "heating"}))] == 1.0
    assert got[(f"{P}_mode", lbl(**g, **{f"{P}_mode": "off"}))] == 0.0
    assert got[(f"{P}_up", lbl(**g))] == 1.0
    # a device name with "/" travels base64-encoded in the URL and comes back intact
    assert got[(f"{P}_power_watts", lbl(plugin=P, device="attic/heater"))] == 1234.5
    assert ("push_time_seconds", lbl(plugin=P, device="attic/heater")) in got

    with urllib.request.urlopen(gateway + "/api/v1/metrics", timeout=5) as resp:
        groups = json.load(resp)["data"]
    keys = [g["labels"] for g in groups if g["labels"].get("plugin") == P]
    assert {"job": "gridtap", "plugin": P, "device": "boiler"} in keys


def test_second_push_replaces_the_group(gateway: str) -> None:
    pushgateway.push([boiler(), boiler(device="other")], gateway)
    assert (f"{P}_temperature_celsius", lbl(plugin=P, device="boiler", sensor="flow")) in samples(gateway)
    pushgateway.push([boiler(flow=False)], gateway)  # PUT: the vanished series goes
    got = samples(gateway)
    assert (f"{P}_temperature_celsius", lbl(plugin=P, device="boiler", sensor="flow")) not in got
    assert got[(f"{P}_temperature_celsius", lbl(plugin=P, device="boiler", sensor="return/line"))] == 31.25
    # another device's group is untouched
    assert (f"{P}_temperature_celsius", lbl(plugin=P, device="other", sensor="flow")) in got


def test_failed_collection_leaves_only_health(gateway: str) -> None:
    pushgateway.push([boiler()], gateway)
    pushgateway.push([Batch(P, "boiler", 1, [UP(0), DURATION(0.1)], ok=False)], gateway)
    got = samples(gateway)
    mine = {name for (name, labels) in got if ("device", "boiler") in labels and name.startswith(P)}
    assert mine == {f"{P}_up", f"{P}_collect_duration_seconds"}
    assert got[(f"{P}_up", lbl(plugin=P, device="boiler"))] == 0.0


def test_type_conflict_is_a_one_line_output_error(gateway: str) -> None:
    gauge = MetricDef(f"{P}_conflict_watts", "A gauge here, a counter in another group", unit="watts")
    conflicting = f"# TYPE {gauge.name} counter\n{gauge.name} 1\n".encode()
    req = urllib.request.Request(f"{gateway}/metrics/job/gridtap/plugin/foreign/device/x", data=conflicting,
                                 method="PUT")
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.status in (200, 202)
    try:
        with pytest.raises(OutputError) as exc:
            pushgateway.push([Batch(P, "conflict", 1, [gauge(2.0), UP(1)])], gateway)
        msg = str(exc.value)
        assert "\n" not in msg and "HTTP 400" in msg and f"{P}/conflict" in msg and "COUNTER" in msg.upper()
    finally:
        pushgateway.delete([("foreign", "x")], gateway)


def test_delete_removes_the_groups(gateway: str) -> None:
    b = boiler(device="to-delete")
    pushgateway.push([b], gateway)
    assert any(("device", "to-delete") in labels for _n, labels in samples(gateway))
    pushgateway.delete([b, ("never", "pushed")], gateway)
    assert not any(("device", "to-delete") in labels for _n, labels in samples(gateway))


def test_unreachable_gateway(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="cannot reach the gateway"):
        pushgateway.push([boiler()], f"127.0.0.1:{servers.free_port()}", timeout=2)


SERIAL = "GW-4711"
INVERTER_POWER = MetricDef(f"{P}_inverter_power_watts", "Power of one inverter", unit="watts")


def proxy_batch(*serials: str, ok: bool = True) -> Batch:
    """A batch like a Goodwe proxy's: health under the configured name, and physical devices
    that label themselves (device=inverter, serial=...)."""
    metrics = [INVERTER_POWER(float(s[-4:]) / 47.11, device="inverter", serial=s) for s in serials]
    metrics += [UP(1 if ok else 0), DURATION(0.1)]
    return Batch(P, "sems-proxy", 1, metrics, ok, subdevice_labels=("serial",))


def test_physical_devices_keep_their_own_device_label_and_group(gateway: str, tmp_path: Path) -> None:
    """Issue 11: the grouping key device=sems-proxy used to override the series' device="inverter"."""
    from gridtap.sinks import PushgatewaySettings, PushgatewaySink

    sink = PushgatewaySink(PushgatewaySettings(url=gateway), ledger_path=tmp_path / "ledger.json")
    sink.publish([proxy_batch(SERIAL, "GW-4712")])
    got = samples(gateway)
    inverter = {"plugin": P, "device": "inverter", "serial": SERIAL}
    assert got[(f"{P}_inverter_power_watts", lbl(**inverter))] == 100.0
    assert got[(f"{P}_inverter_power_watts", lbl(plugin=P, device="inverter", serial="GW-4712"))] == 4712 / 47.11
    assert got[(f"{P}_up", lbl(plugin=P, device="sems-proxy"))] == 1.0
    # the same series /metrics serves: no label renamed, none added but job/instance
    assert not any(name == f"{P}_inverter_power_watts" and ("device", "sems-proxy") in labels
                   for name, labels in got)

    # One inverter goes stale (drops out of the batch): its group goes, the other stays.
    sink.publish([proxy_batch("GW-4712")])
    got = samples(gateway)
    assert (f"{P}_inverter_power_watts", lbl(**inverter)) not in got
    assert got[(f"{P}_inverter_power_watts", lbl(plugin=P, device="inverter", serial="GW-4712"))] == 4712 / 47.11

    # A later process (the next --once run) reads the ledger and cleans up after a failed read.
    later = PushgatewaySink(PushgatewaySettings(url=gateway), ledger_path=tmp_path / "ledger.json")
    later.publish([proxy_batch(ok=False)])
    got = samples(gateway)
    assert not any(name == f"{P}_inverter_power_watts" for name, _ in got)
    assert got[(f"{P}_up", lbl(plugin=P, device="sems-proxy"))] == 0.0
