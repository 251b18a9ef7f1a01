"""The README's promise, proven with the real Telegraf: a series is called the same whether
Prometheus scrapes gridtap's own ``/metrics`` or goes through Telegraf (``inputs.execd`` with
our line protocol, ``outputs.prometheus_client``). Same names, same labels, same values.

Two gridtap processes read the same fixed device state: one serves ``/metrics`` itself, the
other runs under Telegraf. Only values that depend on when a collection ran (timestamps,
durations) may differ; their series must exist on both sides all the same.
"""

from __future__ import annotations

import time
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


def test_goodwe_series_are_the_same_through_telegraf(workdir: Path, telegraf: str) -> None:
    """Two proxies (no cloud: they answer the devices themselves) get the very same uploads of
    a meter, an inverter and an ET hybrid; one serves /metrics, one runs under Telegraf."""
    import datetime as dt

    from gridtap_plugins.goodwe import encoder, simulator

    replay = workdir / "goodwe-replay"
    replay.mkdir()
    when = dt.datetime(2026, 6, 1, 12, 0, tzinfo=encoder.BEIJING)
    serials = {"meter": "91000HKU00000007", "inverter": "53000DSC00000007", "et": "9010KETU00000007"}
    n = 0
    for kind, serial in serials.items():
        frames = [simulator.info_frame(kind, serial, when)]
        frames += [simulator.data_frame(kind, serial, when + dt.timedelta(minutes=i), i) for i in (1, 2)]
        for frame in frames:
            n += 1
            (replay / f"{n:02d}-{kind}.hex").write_text(frame.hex(" ") + "\n")
    own_port, tg_port = servers.free_port(), servers.free_port()
    proxy_a, proxy_b = servers.free_port(), servers.free_port()
    common = ["--forward", "false", "--listen-host", "127.0.0.1", "--interval", "1s"]
    own = servers.spawn("gridtap-prometheus", [servers.gridtap_bin(), "run", "goodwe", "--name", "proxy",
                                               "--output", "prometheus", "--listen", f"127.0.0.1:{own_port}",
                                               "--listen-port", str(proxy_a), *common], workdir,
                        env=servers.gridtap_env())
    tg = servers.start_telegraf(workdir / "telegraf", [servers.gridtap_bin(), "run", "goodwe", "--name", "proxy",
                                                       "--output", "influx", "--signal", "none",
                                                       "--listen-port", str(proxy_b), *common],
                                signal_mode="none", prometheus_listen=f"127.0.0.1:{tg_port}")
    devices = []
    try:
        for port, proc in ((proxy_a, own), (proxy_b, tg.proc)):
            servers.wait_until(lambda p=port: _listening(p), 20, f"goodwe proxy on {port}", proc)
            devices.append(servers.spawn(f"device-{port}", [servers.gridtap_bin(), "simulate", "goodwe", "--connect",
                                                            f"127.0.0.1:{port}", "--replay", str(replay),
                                                            "--interval", "0.2s"],
                                         workdir, env=servers.gridtap_env()))
        for d in devices:
            servers.wait_until(lambda d=d: d.popen.poll() is not None, 30, "replay sent", d)
        needles = [f'serial="{s}"' for s in serials.values()]
        own_text = servers.scrape_until(own_port, 'goodwe_up{device="proxy"} 1.0', *needles, timeout=30, proc=own)

        def telegraf_ready() -> str | None:
            try:
                status, _h, body = servers.http_get(f"http://127.0.0.1:{tg_port}/metrics", timeout=2)
            except OSError:
                return None
            text = body.decode()
            return text if status == 200 and all(n in text for n in needles) and "goodwe_up" in text else None

        servers.wait_until(telegraf_ready, 40, "goodwe series on Telegraf's /metrics", tg.proc)
        time.sleep(2.5)  # a few more collections on both sides, so both show the final counters
        own_text = servers.http_get(f"http://127.0.0.1:{own_port}/metrics")[2].decode()
        tg_text = servers.http_get(f"http://127.0.0.1:{tg_port}/metrics")[2].decode()
        compare(series(own_text, "goodwe"), series(tg_text, "goodwe"))
    finally:
        for d in devices:
            d.stop()
        tg.proc.stop()
        own.stop()


def _listening(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False
