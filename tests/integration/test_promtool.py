"""``gridtap run intergas --output prometheus`` serves /metrics that promtool finds clean."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from . import servers

pytestmark = pytest.mark.integration

PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)


@pytest.fixture
def exporter(workdir: Path, intergas_fixed: tuple[str, dict[str, float]]) -> Iterator[tuple[str, dict]]:
    """The prometheus output on a free port; yields (metrics URL, expected temperatures)."""
    sim, temps = intergas_fixed
    port = servers.free_port()
    proc = servers.spawn(
        "gridtap-prometheus",
        [servers.gridtap_bin(), "run", "intergas", "--port", sim, "--name", "boiler", "--output", "prometheus",
         "--listen", f"127.0.0.1:{port}", "--interval", "1s"],
        workdir, env=servers.gridtap_env(),
    )
    url = f"http://127.0.0.1:{port}/metrics"

    def device_up() -> bytes | None:
        status, _headers, body = servers.http_get(url, {"Accept": "text/plain"}, timeout=5)
        return body if status == 200 and UP.search(body.decode()) else None

    try:
        servers.wait_until(device_up, 30, f"intergas_up{{device=\"boiler\"}} 1 on {url}", proc)
        yield url, temps
    finally:
        proc.stop()


UP = re.compile(r'^intergas_up\{(?:[^}]*,)?device="boiler"(?:,[^}]*)?\} 1(?:\.0)?$', re.M)


def samples(text: str) -> dict[str, float]:
    """``{'name{labels}': value}`` of a text exposition (labels as printed)."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


def test_metrics_pass_promtool(exporter: tuple[str, dict], promtool: str) -> None:
    url, temps = exporter
    status, headers, body = servers.http_get(url, {"Accept": "text/plain"})
    assert status == 200
    ctype = {k.lower(): v for k, v in headers.items()}.get("content-type", "")
    assert ctype.startswith("text/plain"), ctype
    text = body.decode()

    rc, out = servers.promtool_check_metrics(body)
    assert (rc, out) == (0, ""), f"promtool check metrics: exit {rc}\n{out}\n--- /metrics ---\n{text}"

    assert UP.search(text), text
    got = samples(text)
    ours = [k for k in got if k.startswith("intergas_") and not k.startswith("intergas_up")]
    assert len(ours) >= 10, f"too few intergas samples: {ours}"
    for sensor, value in temps.items():
        key = f'intergas_temperature_celsius{{device="boiler",sensor="{sensor}"}}'
        assert key in got, f"{key} missing from /metrics:\n{text}"
        assert got[key] == pytest.approx(value, abs=0.005), (key, got[key], value)
    for line in text.splitlines():
        if line.startswith("# TYPE intergas_"):
            assert line.split()[3] in ("gauge", "counter", "info", "stateset", "untyped"), line


def test_openmetrics_negotiation(exporter: tuple[str, dict], promtool: str) -> None:
    """Prometheus 2.42's own Accept header gets OpenMetrics ending in ``# EOF``."""
    url, _temps = exporter
    status, headers, body = servers.http_get(url, {"Accept": PROMETHEUS_ACCEPT})
    assert status == 200
    ctype = {k.lower(): v for k, v in headers.items()}.get("content-type", "")
    assert ctype.startswith("application/openmetrics-text"), ctype
    assert body.endswith(b"# EOF\n"), body[-200:]
    assert UP.search(body.decode()), body.decode()
