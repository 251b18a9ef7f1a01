"""ISG Modbus block decoding: gridtap's Rust ``ModbusMap`` vs pymodbus ``convert_from_registers``.

Why: a Modbus poll of a WPM is eleven blocks of up to 125 registers; what a user would write
with pymodbus alone is one ``convert_from_registers`` call per register (INT16 or UINT16), then
the sentinel check, the scale, the LOW + 1000 x HIGH pairs and the bit fields by hand. Both
sides here do exactly that work on the same 125-register WPM energy block (manual 3501-3625,
every register valid so nothing is skipped), and must agree on every value before anything is
timed. Two figures: the unpack alone (goal >= 20x), and the unpack plus building the metric
samples (``Metric`` tuples) the outputs get.

    python bench/isg_bench.py            # ~3 s
    python bench/isg_bench.py --quick    # CI smoke
"""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Callable
from typing import Any

from timing import fastest_runs

from gridtap.model import Metric
from gridtap_plugins.isg import catalogue


def energy_block() -> tuple[Any, int, list[dict[str, Any]], list[int]]:
    compiled = catalogue.compile_map(catalogue.load("wpm"), 390)
    index = next(i for i, r in enumerate(compiled.reads) if r.block == "energy" and r.count == 125)
    rng = random.Random(7)
    registers = [rng.randrange(0, 1000) for _ in range(125)]  # LOW halves 0-999, everything valid
    return compiled.build(), index, compiled.spec[index][1], registers


def pymodbus_decoder(outputs: list[dict[str, Any]]) -> Callable[[list[int]], list[Any]]:
    """The same outputs the way a pymodbus user writes them: convert_from_registers per register."""
    from pymodbus.client import ModbusTcpClient

    convert = ModbusTcpClient.convert_from_registers
    int16, uint16 = ModbusTcpClient.DATATYPE.INT16, ModbusTcpClient.DATATYPE.UINT16

    def decode(regs: list[int]) -> list[Any]:
        out: list[Any] = []
        for op in outputs:
            kind = op["op"]
            if kind == "value":
                raw = regs[op["reg"]]
                if raw == 0x8000 or raw in op["absent"]:
                    out.append(None)
                    continue
                x = convert([raw], int16 if op["signed"] else uint16)
                if op["div"] == 1 and not op["float"]:
                    out.append(x * op["mul"])
                else:
                    out.append(float(x) * op["mul"] / op["div"])
            elif kind == "pair":
                lo, hi = regs[op["lo"]], regs[op["hi"]]
                if 0x8000 in (lo, hi):
                    out.append(None)
                    continue
                total = convert([lo], uint16) + op["factor"] * convert([hi], uint16)
                out.append(total * op["mul"] if op["div"] == 1 and not op["float"] else
                           float(total) * op["mul"] / op["div"])
            elif kind == "bit":
                raw = convert([regs[op["reg"]]], uint16)
                out.append(None if raw == 0x8000 else (raw >> op["bit"]) & 1)
            else:
                raw = regs[op["reg"]]
                out.append(None if raw == 0x8000 else op["table"].get(raw, op["default"]))
        return out

    return decode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few iterations (CI smoke)")
    parser.add_argument("-n", type=int, default=None, help="blocks per run (default 2000, quick 300)")
    args = parser.parse_args(argv)
    n = args.n or (300 if args.quick else 2000)
    native, index, outputs, regs = energy_block()
    baseline = pymodbus_decoder(outputs)
    templates = [op["metric"] for op in outputs]

    def baseline_metrics(r: list[int]) -> list[Metric]:
        return [Metric(d, v, labels) for (d, labels), v in zip(templates, baseline(r), strict=True) if v is not None]

    rust_values = native.decode(index, regs)
    assert rust_values == baseline(regs), "the two decoders disagree"
    assert [tuple(m) for m in native.metrics(index, regs)] == [tuple(m) for m in baseline_metrics(regs)]
    assert all(v is not None for v in rust_values)

    def runs(fn: Callable[[], object]) -> Callable[[], None]:
        def run() -> None:
            for _ in range(n):
                fn()
        return run

    times = fastest_runs({
        "rust": runs(lambda: native.decode(index, regs)),
        "pymodbus": runs(lambda: baseline(regs)),
        "rust_metrics": runs(lambda: native.metrics(index, regs)),
        "pymodbus_metrics": runs(lambda: baseline_metrics(regs)),
    }, rounds=5 if args.quick else 9)
    us = {k: v / n * 1e6 for k, v in times.items()}
    print(f"isg: 125-register WPM block ({len(outputs)} outputs), {n} blocks per run: "
          f"rust {us['rust']:.2f} us, pymodbus convert_from_registers {us['pymodbus']:.1f} us per block")
    print(f"  unpack ratio {us['pymodbus'] / us['rust']:.1f}x (goal >= 20x); with the metric samples: rust "
          f"{us['rust_metrics']:.2f} us, pymodbus {us['pymodbus_metrics']:.1f} us, "
          f"{us['pymodbus_metrics'] / us['rust_metrics']:.1f}x")
    print(f"result: isg rust us/block = {us['rust']:.2f}")
    print(f"result: isg pymodbus us/block = {us['pymodbus']:.1f}")
    print(f"result: isg rust vs pymodbus (unpack) = {us['pymodbus'] / us['rust']:.1f}x")
    print(f"result: isg rust vs pymodbus (with metrics) = {us['pymodbus_metrics'] / us['rust_metrics']:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
