"""Prometheus exposition: the Rust renderer vs prometheus_client vs our Python reference.

The same 205 series (10 devices x labelled gauges, counters, a state set and an info metric,
escaping in label values) are rendered as /metrics serves them:

* ``gridtap.outputs.exposition.render`` (Rust, one call for all batches), text and OpenMetrics;
* prometheus_client's ``generate_latest`` over the families gridtap builds for it (what
  /metrics served before the Rust renderer), text and OpenMetrics;
* ``gridtap.outputs.exposition_ref.render`` (pure Python, the byte-identical reference).

All outputs are checked byte-identical first. Prints microseconds per scrape and the ratios.
A benchmark, not a test; ``--quick`` runs fewer rounds (CI smoke run).
"""

from __future__ import annotations

import argparse
import sys

from timing import fastest_runs

from gridtap.model import Batch, Kind, MetricDef
from gridtap.outputs import exposition, exposition_ref

TEMPS = [MetricDef(f"bench_temperature_{i}_celsius", "Temperature.", unit="celsius") for i in range(8)]
POWER = MetricDef("bench_power_watts", "Power.", unit="watts")
ENERGY = MetricDef("bench_energy_joules_total", "Energy.", kind=Kind.COUNTER, unit="joules")
STATE = MetricDef("bench_mode", "Mode.", kind=Kind.STATESET, states=("standby", "heating", "tapwater"))
INFO = MetricDef("bench_device_info", "Device.", kind=Kind.INFO)


def make_batches() -> list[Batch]:
    out = []
    for d in range(10):
        metrics = []
        for i, t in enumerate(TEMPS):
            metrics.append(t(20.0 + d + i * 0.37, sensor=("flow", "return", 'out"door', "tap\\water")[i % 4]))
        for phase in ("L1", "L2", "L3"):
            metrics += [POWER(1234.5 + d, phase=phase), ENERGY(3.6e9 + d * 1e6, phase=phase)]
        metrics += [STATE(("standby", "heating")[d % 2]), INFO(1, model="HRE 28/24", firmware="1.2")]
        out.append(Batch("bench", f"device-{d}", 1_700_000_000_000_000_000, metrics))
    return out


def client_render(batches: list[Batch], openmetrics: bool) -> bytes:
    from gridtap.outputs import prometheus

    return prometheus.encode_with_client(batches, openmetrics)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="few rounds (smoke run)")
    args = ap.parse_args(argv)
    batches = make_batches()
    head = exposition.build_info_samples()
    text = exposition.render(batches)
    series = sum(1 for line in text.splitlines() if not line.startswith(b"#"))
    for om in (False, True):
        rust = exposition.render(batches, om)
        if rust != client_render(batches, om) or rust != exposition_ref.render(batches, om, head):
            print(f"renderers differ (openmetrics={om})!", file=sys.stderr)
            return 1
    best = fastest_runs({
        "rust": lambda: exposition.render(batches),
        "rust_om": lambda: exposition.render(batches, True),
        "client": lambda: client_render(batches, False),
        "client_om": lambda: client_render(batches, True),
        "reference": lambda: exposition_ref.render(batches, False, head),
    }, rounds=10 if args.quick else 50)
    us = {k: v * 1e6 for k, v in best.items()}
    print(f"exposition, {series} series ({len(text)} bytes){' [quick]' if args.quick else ''}")
    print(f"  rust text {us['rust']:.0f} us, OpenMetrics {us['rust_om']:.0f} us; prometheus_client text "
          f"{us['client']:.0f} us, OpenMetrics {us['client_om']:.0f} us; python reference {us['reference']:.0f} us")
    print(f"result: exposition rust us/scrape = {us['rust']:.1f} us")
    print(f"versus: exposition rust us/scrape = prometheus_client: {us['client']:.0f} us")
    print(f"versus: exposition rust us/scrape = reference: {us['reference']:.0f} us")
    print(f"result: exposition rust vs prometheus_client = {us['client'] / us['rust']:.1f}x")
    print(f"result: exposition rust vs prometheus_client (OpenMetrics) = {us['client_om'] / us['rust_om']:.1f}x")
    print(f"result: exposition rust vs reference = {us['reference'] / us['rust']:.1f}x")
    print("goal: exposition rust vs reference = >= 10x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
