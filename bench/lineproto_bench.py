"""Line protocol: the Rust encoder vs influxdb-client's ``Point`` vs our Python reference.

The same 10,000 metrics (20 batches x 10 label sets x 50 fields, floats/ints/bools/strings,
escaping in tag values) are encoded three ways:

* ``gridtap.outputs.lineproto.encode`` (Rust, one call for all batches);
* influxdb-client: one ``Point`` per line-protocol line (tags, fields, ns time), grouped
  from the metrics in Python as a user of that library would, ``.to_line_protocol()``, joined;
* ``gridtap.outputs.lineproto_ref.encode`` (pure Python, the byte-identical reference).

Prints microseconds per metric and the ratios; the goal is Rust >= 30x Point. A benchmark,
not a test: it never fails on speed. ``--quick`` runs fewer rounds (smoke run in CI).
Lines ``result: KEY = VALUE`` are what ``bench/run.py`` tabulates.
"""

from __future__ import annotations

import argparse
import sys

from timing import fastest_runs

from gridtap.model import Batch, Kind, MetricDef
from gridtap.outputs import lineproto, lineproto_ref

PLUGIN = "bench"
GOAL = 30.0

DEVICES = ["boiler", "heat pump, attic", 'inverter="main"', "Küche ☀", "C:\\dir x"]
LABEL_SETS = [
    {}, {"sensor": "flow"}, {"sensor": "return temp", "zone": "ground floor"}, {"sensor": "a,b", "zone": "x=y"},
    {"phase": "L1", "sensor": 'say "hi"'}, {"sensor": "back\\slash"}, {"sensor": "ünïcödé ✓"},
    {"sensor": "eq=uals"}, {"alpha": "1", "sensor": "many", "zeta": "z z"}, {"sensor": "plain"},
]
FLOATS = [MetricDef(f"{PLUGIN}_temperature_{i}_celsius", "t", unit="celsius") for i in range(30)]
INTS = [MetricDef(f"{PLUGIN}_count_{i}", "n", integer=True) for i in range(10)]
BOOLS = [MetricDef(f"{PLUGIN}_flag_{i}", "b") for i in range(5)]
# Both states declared (as a plugin declares its states); the second one needs escaping as a tag value.
STRS = [MetricDef(f"{PLUGIN}_state_{i}", "s", kind=Kind.STATESET, states=("on", 'o"ff\\')) for i in range(5)]


def make_batches() -> list[Batch]:
    batches, k = [], 0
    for t in range(4):
        for d, device in enumerate(DEVICES):
            b = Batch(PLUGIN, device, 1_700_000_000_000_000_000 + t * 10**10 + d)
            for labels in LABEL_SETS:
                for m in FLOATS:
                    k += 1
                    b.metrics.append(m(k * 0.37 - 1000.0, **labels))
                for m in INTS:
                    k += 1
                    b.metrics.append(m(k * 7919, **labels))
                for m in BOOLS:
                    k += 1
                    b.metrics.append(m(k % 2 == 0, **labels))
                for m in STRS:
                    k += 1
                    b.metrics.append(m(("on", 'o"ff\\')[k % 2], **labels))
            batches.append(b)
    return batches


def encode_with_points(batches: list[Batch]) -> bytes:
    from influxdb_client import Point, WritePrecision

    out = []
    for b in batches:
        prefix = b.plugin + "_"
        lines: dict[tuple, dict] = {}
        for m in b.metrics:
            labels = dict(m.labels)
            labels.setdefault("device", b.device)
            field = m.name.removeprefix(prefix)
            if m.definition.kind is Kind.STATESET:
                # As gridtap writes a state set: one 0/1 line per state, the state as a tag.
                d = m.definition
                for state in d.states if m.value in d.states else (*d.states, m.value):
                    tags = tuple(sorted({**labels, d.family: state}.items()))
                    lines.setdefault(tags, {})[field] = int(state == m.value)
                continue
            lines.setdefault(tuple(sorted(labels.items())), {})[field] = m.value
        for tags, fields in lines.items():
            p = Point(b.plugin)
            for k, v in tags:
                p.tag(k, v)
            for k, v in fields.items():
                p.field(k, v)
            p.time(b.timestamp_ns, WritePrecision.NS)
            out.append(p.to_line_protocol())
    return ("\n".join(out) + "\n").encode()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="few rounds (smoke run)")
    args = ap.parse_args(argv)

    batches = make_batches()
    n = sum(len(b.metrics) for b in batches)
    rust_out = lineproto.encode(batches)
    ref_out = lineproto_ref.encode(batches)
    if rust_out != ref_out:
        print("rust and reference line protocol differ!", file=sys.stderr)
        return 1
    point_out = encode_with_points(batches)
    if len(point_out.splitlines()) != len(rust_out.splitlines()):
        print("Point produced a different number of lines", file=sys.stderr)
        return 1

    times = fastest_runs({
        "rust": lambda: lineproto.encode(batches),
        "point": lambda: encode_with_points(batches),
        "reference": lambda: lineproto_ref.encode(batches),
    }, rounds=10 if args.quick else 20)
    rust, point, ref = times["rust"], times["point"], times["reference"]

    us = 1e6 / n
    print(f"line protocol, {n} metrics in {len(rust_out.splitlines())} lines ({len(rust_out)} bytes)"
          f"{' [quick]' if args.quick else ''}")
    print(f"  rust (gridtap._native)    {rust * us:8.3f} us/metric")
    print(f"  influxdb-client Point     {point * us:8.3f} us/metric")
    print(f"  python reference          {ref * us:8.3f} us/metric")
    ratio_point, ratio_ref = point / rust, ref / rust
    verdict = "met" if ratio_point >= GOAL else "NOT met"
    print(f"  rust vs Point: {ratio_point:.1f}x (goal >= {GOAL:.0f}x: {verdict}); rust vs reference: {ratio_ref:.1f}x")
    print(f"result: lineproto rust us/metric = {rust * us:.3f}")
    print(f"result: lineproto Point us/metric = {point * us:.3f}")
    print(f"result: lineproto reference us/metric = {ref * us:.3f}")
    print(f"result: lineproto rust vs Point = {ratio_point:.1f}x")
    print(f"result: lineproto rust vs reference = {ratio_ref:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
