"""Intergas decode speed: one 5-block cycle (S?, S2, CRC, HN, V?), Rust vs the Python reference.

Why: the native decoder exists to be much cheaper than the spec-literal Python one (goal
≥ 10×); this measures both on the same blocks in one run and prints µs per cycle and the
ratio. Blocks come from the project's own encoder, so no shared fixtures are needed.

The Rust decoder returns read-only mappings whose values become Python objects when read;
so that the ratio cannot flatter it, the run also times "decode + read every value"
(``.to_dict()``), which does all the work the reference's dicts do.

    python bench/intergas_bench.py            # ~2 s
    python bench/intergas_bench.py --quick    # CI smoke, well under a second
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from timing import fastest_runs

from gridtap_plugins.intergas import reference
from gridtap_plugins.intergas.decode import decode_block
from gridtap_plugins.intergas.simulator import BoilerModel

CYCLE = ("S?", "S2", "CRC", "HN", "V?")


def blocks() -> list[tuple[str, bytes]]:
    model = BoilerModel(start=0.0)
    return [(kind, model.block(kind, now=12.5)) for kind in CYCLE]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few iterations (CI smoke)")
    parser.add_argument("-n", type=int, default=None, help="cycles per run (default 5000, quick 1000)")
    args = parser.parse_args(argv)
    n = args.n or (1000 if args.quick else 5000)
    cycle = blocks()
    for kind, data in cycle:  # same answers before we time anything
        assert decode_block(kind, data) == reference.decode_block(kind, data), kind
    def cycles(decode: Callable[[str, bytes], object]) -> Callable[[], None]:
        def run() -> None:
            for _ in range(n):
                for kind, data in cycle:
                    decode(kind, data)
        return run

    times = fastest_runs({
        "rust": cycles(decode_block),
        "rust_read": cycles(lambda kind, data: decode_block(kind, data).to_dict()),
        "python": cycles(reference.decode_block),
    }, rounds=7)
    rust, rust_read, python = (times[k] / n * 1e6 for k in ("rust", "rust_read", "python"))
    print(f"intergas 5-block cycle, {n} cycles: rust {rust:.2f} us/cycle, rust + reading every value "
          f"{rust_read:.2f} us/cycle, python reference {python:.2f} us/cycle")
    print(f"  decode ratio {python / rust:.1f}x (goal >= 10x); decode + read every value {python / rust_read:.1f}x")
    print(f"result: intergas rust us/cycle = {rust:.2f}")
    print(f"result: intergas reference us/cycle = {python:.2f}")
    print(f"result: intergas rust vs reference = {python / rust:.1f}x")
    print(f"result: intergas rust+read vs reference = {python / rust_read:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
