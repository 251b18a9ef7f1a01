"""Every gridtap benchmark in one run, and one table of every figure with its goal.

    python bench/run.py [--quick] [--seed-goodwe PATH] [--seed-powerwall PATH] [NAME ...]

Runs each ``bench/*_bench.py`` (``--quick``: smoke sizes, for CI), passing a seed option on to
the benchmarks that take it, shows what each prints, and ends with one table: the figure,
gridtap's value, what was measured beside it in the same run (influxdb-client, pymodbus,
prometheus_client, our Python references, a seed exporter), the goal, and whether it is met.

A benchmark speaks to this script in lines of its output:

* ``result: KEY = VALUE`` — gridtap's figure (``36.0 MB``, ``2481 req/s``, ``33.1x``);
* ``versus: KEY = WHO: VALUE`` — the same figure for something else, measured in the same run;
* ``goal: KEY = TERM [and TERM ...]`` — a TERM is ``>= NUMBER UNIT``, ``<= NUMBER UNIT`` or
  ``>= WHO`` / ``<= WHO`` (better than or as good as a ``versus`` entry of that figure); or a
  plain value the result must equal (``none``).

A benchmark that crashes (non-zero exit) makes this command exit 1; a missed goal never does.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
LINE = re.compile(r"^(?P<tag>result|versus|goal):\s*(?P<key>.+?)\s*=\s*(?P<value>.+?)\s*$")
NUMBER = re.compile(r"^\s*(?P<num>[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?)\s*(?P<unit>.*?)\s*(?:\(.*\))?\s*$", re.I)
TERM = re.compile(r"^\s*(?P<op>>=|<=|≥|≤)\s*(?P<rest>.+?)\s*$")

#: Goals of figures whose benchmark prints none (the issue's bar for the existing ratios).
DEFAULT_GOALS = {
    "lineproto rust vs Point": ">= 30x",
    "intergas rust vs reference": ">= 10x",
    "goodwe decode rust vs reference": ">= 10x",
    "isg rust vs pymodbus (unpack)": ">= 20x",
}

#: Seed options: passed on to every benchmark whose source mentions the option.
SEED_OPTIONS = ("--seed-goodwe", "--seed-powerwall", "--seed-isg", "--seed-intergas", "--seed-growatt")

#: Units that compare after scaling (value in the first unit = number x factor in the second).
SCALES = {("s", "ms"): 1e3, ("us", "ms"): 1e-3, ("µs", "ms"): 1e-3, ("ms", "us"): 1e3, ("GB", "MB"): 1024.0,
          ("k frames/s", "frames/s"): 1e3, ("frames/s", "k frames/s"): 1e-3}


@dataclass
class Figure:
    bench: str
    key: str
    value: str | None = None
    beside: list[tuple[str, str]] = field(default_factory=list)
    goal: str | None = None


def parse_number(text: str) -> tuple[float, str] | None:
    m = NUMBER.match(text)
    if m is None:
        return None
    return float(m["num"]), m["unit"].strip()


def in_unit(value: tuple[float, str], unit: str) -> float | None:
    number, have = value
    if have == unit:
        return number
    factor = SCALES.get((have, unit))
    return None if factor is None else number * factor


def verdict(fig: Figure) -> str:
    """``met`` / ``NOT met (...)`` / ``?`` (a goal this script cannot read, or no value)."""
    if fig.goal is None or fig.value is None:
        return ""
    if TERM.match(fig.goal) is None:  # a goal that is a plain value ("none"): met when equal
        return "met" if fig.value.strip() == fig.goal.strip() else f"NOT met ({fig.value} is not {fig.goal})"
    ours = parse_number(fig.value)
    if ours is None:
        return "?"
    misses, unmeasured = [], []
    for term in re.split(r"\s+and\s+", fig.goal):
        m = TERM.match(term)
        if m is None:
            return "?"
        better_is_more = m["op"] in (">=", "≥")
        target = parse_number(m["rest"])
        who = m["rest"]
        if target is None:  # a contender's figure, e.g. ">= Go seed"
            found = next((v for w, v in fig.beside if w == who), None)
            if found is None:
                unmeasured.append(who)  # not measured in this run: nothing to compare with
                continue
            parsed = parse_number(found)
            if parsed is None:
                return "?"
            target = parsed
        number = in_unit(ours, target[1])
        if number is None:
            return "?"
        ok = number >= target[0] if better_is_more else number <= target[0]
        if not ok:
            ratio = number / target[0] if target[0] else float("inf")
            misses.append(f"{term.strip()}: at {ratio:.0%}" if better_is_more
                          else f"{term.strip()}: {ratio:.2f}x over")
    if misses:
        return "NOT met (" + "; ".join(misses) + ")"
    if unmeasured:
        compared = len(re.split(r"\s+and\s+", fig.goal)) > len(unmeasured)
        return ("met, " if compared else "") + f"no {', '.join(unmeasured)} in this run"
    return "met"


def seed_args(script: Path, args: argparse.Namespace) -> list[str]:
    source = script.read_text(errors="replace")
    out = []
    for option in SEED_OPTIONS:
        value = getattr(args, option[2:].replace("-", "_"), None)
        if value and option in source:
            out += [option, value]
    return out


def table(figures: list[Figure]) -> list[str]:
    head = ("figure", "gridtap", "beside it, same run", "goal", "")
    rows = []
    for f in figures:
        beside = "; ".join(f"{who} {value}" for who, value in f.beside)
        rows.append((f.key, f.value or "-", beside or "-", f.goal or "-", verdict(f)))
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(4)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head[:4], widths, strict=True)) + "  verdict"]
    lines.append("  ".join("-" * w for w in widths) + "  -------")
    lines += ["  ".join(c.ljust(w) for c, w in zip(r[:4], widths, strict=True)) + "  " + r[4] for r in rows]
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Run the gridtap benchmarks; one table of figures and goals.")
    ap.add_argument("--quick", action="store_true", help="smoke sizes (CI): the whole run in well under 2 minutes")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per benchmark (default 900)")
    for option in SEED_OPTIONS:
        ap.add_argument(option, metavar="PATH", help=f"a locally built seed exporter binary ({option[7:]})")
    ap.add_argument("names", nargs="*", help="only these benchmarks (e.g. lineproto process)")
    args = ap.parse_args(argv)

    scripts = sorted(HERE.glob("*_bench.py"))
    if args.names:
        scripts = [s for s in scripts if s.stem.removesuffix("_bench") in args.names]
    if not scripts:
        print("no benchmarks found", file=sys.stderr)
        return 1

    figures: dict[tuple[str, str], Figure] = {}
    summary: list[tuple[str, str, float]] = []
    failed = []
    t_all = time.perf_counter()
    for script in scripts:
        name = script.stem.removesuffix("_bench")
        cmd = [sys.executable, str(script), *(["--quick"] if args.quick else []), *seed_args(script, args)]
        print(f"=== {name} ({script.name}) ===", flush=True)
        t0 = time.perf_counter()
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, cwd=HERE.parent)
            rc, out, err = res.returncode, res.stdout, res.stderr
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
            rc, err = -1, f"timed out after {args.timeout:.0f} s"
        for line in out.splitlines():
            m = LINE.match(line)
            if m is None:
                print(line)
                continue
            fig = figures.setdefault((name, m["key"]), Figure(name, m["key"]))
            if m["tag"] == "result":
                fig.value = m["value"]
            elif m["tag"] == "goal":
                fig.goal = m["value"]
            else:
                who, _, value = m["value"].partition(":")
                fig.beside.append((who.strip(), value.strip()))
        if err.strip():
            print(err.rstrip(), file=sys.stderr)
        status = "ok" if rc == 0 else f"FAILED (exit {rc})"
        summary.append((name, status, time.perf_counter() - t0))
        if rc != 0:
            failed.append(name)
    for fig in figures.values():
        if fig.goal is None:
            fig.goal = DEFAULT_GOALS.get(fig.key)

    print(f"\n=== gridtap figures{' (quick: smoke sizes, not comparable)' if args.quick else ''} ===")
    for line in table(list(figures.values())):
        print("  " + line.rstrip())
    print()
    for name, status, wall in summary:
        print(f"  {name}: {status} in {wall:.1f} s")
    print(f"  total {time.perf_counter() - t_all:.1f} s")
    if failed:
        print(f"benchmarks failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
