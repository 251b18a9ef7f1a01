"""The README's first promise: `gridtap demo` runs with no hardware and feeds the outputs."""

from __future__ import annotations

import pytest

from tests.integration import servers

pytestmark = pytest.mark.integration


def test_demo_serves_every_plugin(workdir):
    port = servers.free_port()
    demo = servers.spawn("demo", [servers.gridtap_bin(), "demo", "--listen", f"127.0.0.1:{port}", "--interval",
                                  "1s", "--duration", "60s"], workdir, env=servers.gridtap_env())

    def printed() -> list[str]:
        return [ln for ln in demo.log_path.read_text(errors="replace").splitlines()
                if ln.startswith(("intergas,", "goodwe,"))]  # stdout and stderr share the log

    try:
        text = servers.scrape_until(port, 'intergas_up{device="demo-intergas"} 1.0',
                                    'goodwe_up{device="demo-goodwe"} 1.0', timeout=30, proc=demo)
        # The demo prints line protocol once a second, after the first scrape may already succeed.
        servers.wait_until(lambda: {ln.split(",", 1)[0] for ln in printed()} >= {"intergas", "goodwe"},
                           timeout=15, what="line protocol from both plugins", proc=demo)
    finally:
        code = demo.stop()
    assert code == 0, demo.log()
    assert "intergas_temperature_celsius{" in text and "goodwe_meter_power_" in text
    rc, report = servers.promtool_check_metrics(text)
    assert rc == 0 and report.strip() == "", report
    lines = servers.parse_line_protocol("\n".join(printed()) + "\n")
    assert {ln.measurement for ln in lines} >= {"intergas", "goodwe"}
