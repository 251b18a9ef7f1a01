"""Run every ``bench/*_bench.py`` and show their results side by side.

    python bench/run.py [--quick] [NAME ...]

Each benchmark is a script that accepts ``--quick`` (few rounds, for the CI smoke run) and
prints what it measured. Lines of the form ``result: KEY = VALUE`` are collected into one
table at the end; the rest of each benchmark's output is shown as is. A benchmark that
crashes (non-zero exit) makes this command exit 1; a slow one never does.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULT = re.compile(r"^result:\s*(?P<key>.+?)\s*=\s*(?P<value>.+?)\s*$")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Run the gridtap benchmarks.")
    ap.add_argument("--quick", action="store_true", help="few rounds per benchmark (smoke run)")
    ap.add_argument("--timeout", type=float, default=600, help="seconds per benchmark (default 600)")
    ap.add_argument("names", nargs="*", help="only these benchmarks (e.g. lineproto)")
    args = ap.parse_args(argv)

    scripts = sorted(HERE.glob("*_bench.py"))
    if args.names:
        scripts = [s for s in scripts if s.stem.removesuffix("_bench") in args.names]
    if not scripts:
        print("no benchmarks found", file=sys.stderr)
        return 1

    table: list[tuple[str, str, str]] = []
    summary: list[tuple[str, str, float]] = []
    failed = []
    for script in scripts:
        name = script.stem.removesuffix("_bench")
        cmd = [sys.executable, str(script), *(["--quick"] if args.quick else [])]
        print(f"=== {name} ({script.name}) ===", flush=True)
        t0 = time.perf_counter()
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, cwd=HERE.parent)
            rc, out, err = res.returncode, res.stdout, res.stderr
        except subprocess.TimeoutExpired as exc:
            rc, out, err = -1, str(exc.stdout or ""), f"timed out after {args.timeout:.0f} s"
        wall = time.perf_counter() - t0
        for line in out.splitlines():
            m = RESULT.match(line)
            if m:
                table.append((name, m["key"], m["value"]))
            else:
                print(line)
        if err.strip():
            print(err.rstrip(), file=sys.stderr)
        status = "ok" if rc == 0 else f"FAILED (exit {rc})"
        summary.append((name, status, wall))
        if rc != 0:
            failed.append(name)

    print("\n=== results ===")
    if table:
        wb, wk = max(len(r[0]) for r in table), max(len(r[1]) for r in table)
        for bench, key, value in table:
            print(f"  {bench:<{wb}}  {key:<{wk}}  {value}")
    for name, status, wall in summary:
        print(f"  {name}: {status} in {wall:.1f} s")
    if failed:
        print(f"benchmarks failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
