"""The listener serves the exposition on a configured path too (an exporter's web.metrics_path),
so a scrape config written for the replaced exporter keeps working."""

from __future__ import annotations

import urllib.request

import pytest

from gridtap import devices, runtime
from gridtap.errors import ConfigError


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_configured_path_serves_the_exposition_beside_metrics():
    server = runtime.open_metrics_server("127.0.0.1:0", [], metrics_path="/powerwall/metrics")
    try:
        port = server.server_address[1]
        for path in ("/powerwall/metrics", "/metrics"):
            status, body = _get(port, path)
            assert status == 200 and "gridtap_build_info" in body, path
        status, page = _get(port, "/")
        assert status == 200 and 'href="/powerwall/metrics"' in page
        assert _get(port, "/other")[0] == 404
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("path", ["metrics", "/status", "/", "/x?y=1"])
def test_unusable_metrics_path_is_one_config_error(path: str):
    with pytest.raises(ConfigError, match="metrics_path"):
        runtime.open_metrics_server("127.0.0.1:0", [], metrics_path=path)


def test_metrics_path_is_a_top_level_setting():
    assert devices.load_common({}).metrics_path == "/metrics"
    assert devices.load_common({"metrics_path": "/pw"}).metrics_path == "/pw"
