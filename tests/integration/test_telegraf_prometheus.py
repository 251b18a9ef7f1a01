"""The README's promise, proven with the real Telegraf: a series is called the same whether
Prometheus scrapes gridtap's own ``/metrics`` or goes through Telegraf (``inputs.execd`` with
our line protocol, ``outputs.prometheus_client``). Same names, same labels, same values.

Two gridtap processes read the same fixed device state: one serves ``/metrics`` itself, the
other runs under Telegraf. Only values that depend on when a collection ran (timestamps,
durations) may differ; their series must exist on both sides all the same.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from . import servers

pytestmark = pytest.mark.integration

#: Samples whose value depends on the moment of collection, not on the device state.
TIME_DEPENDENT = ("_timestamp_seconds", "_duration_seconds")
#: Our own process, not a device: only on gridtap's /metrics (README: no line-protocol form).
PROCESS_ONLY = ("gridtap_build_info",)


def series(text: str, plugin: str) -> dict[tuple[str, frozenset], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name.startswith(plugin + "_") and not s.name.endswith("_created"):
                out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def compare(ours: dict, theirs: dict) -> None:
    assert ours, "gridtap served no series"
    missing = sorted(k for k in ours if k not in theirs)
    extra = sorted(k for k in theirs if k not in ours)
    assert not missing, f"on gridtap's /metrics but not on Telegraf's: {missing[:10]}"
    assert not extra, f"on Telegraf's /metrics but not on gridtap's: {extra[:10]}"
    differ = [(k, ours[k], theirs[k]) for k in ours
              if not any(t in k[0] for t in TIME_DEPENDENT) and ours[k] != theirs[k]]
    assert not differ, f"values differ: {differ[:10]}"


def test_intergas_series_are_the_same_through_telegraf(
        workdir: Path, telegraf: str, intergas_fixed: tuple[str, dict[str, float]]) -> None:
    sim, _temps = intergas_fixed
    # A serial bridge serves one client at a time: the second reader gets its own simulator,
    # replaying the very same fixed blocks.
    second, addr = servers.start_simulator("intergas", workdir, "--replay", str(workdir / "intergas-replay"))
    sim2 = addr if "://" in addr else f"socket://{addr}"
    own_port, tg_port = servers.free_port(), servers.free_port()
    own = servers.spawn("gridtap-prometheus", [servers.gridtap_bin(), "run", "intergas", "--port", sim, "--name",
                                               "boiler", "--output", "prometheus", "--interval", "1s",
                                               "--listen", f"127.0.0.1:{own_port}"], workdir,
                        env=servers.gridtap_env())
    tg = servers.start_telegraf(workdir / "telegraf", [servers.gridtap_bin(), "run", "intergas", "--port", sim2,
                                                       "--name", "boiler", "--output", "influx", "--signal",
                                                       "STDIN"], prometheus_listen=f"127.0.0.1:{tg_port}")
    try:
        own_text = servers.scrape_until(own_port, 'intergas_up{device="boiler"} 1.0',
                                        "intergas_display_state", timeout=30, proc=own)

        def telegraf_ready() -> str | None:
            try:
                status, _h, body = servers.http_get(f"http://127.0.0.1:{tg_port}/metrics", timeout=2)
            except OSError:
                return None
            text = body.decode()
            return text if status == 200 and "intergas_display_state" in text and "intergas_up" in text else None

        tg_text = servers.wait_until(telegraf_ready, 40, "intergas series on Telegraf's /metrics", tg.proc)
        ours, theirs = series(own_text, "intergas"), series(tg_text, "intergas")
        compare(ours, theirs)
        # the state set made it through (it was a string field before, which Telegraf drops)
        states = {dict(k[1])["intergas_display_state"]: v for k, v in ours.items()
                  if k[0] == "intergas_display_state"}
        assert sum(states.values()) == 1.0 and len(states) > 2, states
    finally:
        tg.proc.stop()
        own.stop()
        second.stop()
