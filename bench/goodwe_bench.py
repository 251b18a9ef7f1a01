"""Goodwe benchmarks: Rust vs pure-Python frame decode, and proxy throughput/latency.

Why: the proxy decodes every upload of every device on one event loop, so decode cost and
per-hop latency bound how many devices one gridtap can front. Run:

    python bench/goodwe_bench.py            # full run
    python bench/goodwe_bench.py --quick    # CI smoke run, well under 15 s

Everything runs on 127.0.0.1; frames come from our own encoder, so no fixtures are needed.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import statistics
import time
from collections.abc import Callable

from timing import fastest_runs

from gridtap import _native
from gridtap_plugins.goodwe import encoder, reference, simulator
from gridtap_plugins.goodwe.metrics import GoodweState
from gridtap_plugins.goodwe.proxy import GoodweProxy, ProxyOptions

WHEN = dt.datetime(2024, 4, 12, 17, 23, 43, tzinfo=encoder.BEIJING)


def sample_frames() -> list[bytes]:
    return [simulator.data_frame(kind, simulator.DEFAULT_SERIALS[kind], WHEN, 3)
            for kind in ("meter", "inverter", "et")]


def bench_decode(quick: bool) -> float:
    frames = sample_frames()
    for f in frames:  # same answer first
        assert _native.goodwe_decode_frame(f, "outbound") == reference.decode_frame(f, "outbound")
    loops = {"native": 100, "reference": 1}  # ~10 ms a run each

    def frames_run(decode: Callable[[bytes, str], object], times: int) -> Callable[[], None]:
        def run() -> None:
            for _ in range(times):
                for f in frames:
                    decode(f, "outbound")
        return run

    best = fastest_runs({"native": frames_run(_native.goodwe_decode_frame, loops["native"]),
                         "reference": frames_run(reference.decode_frame, loops["reference"])},
                        rounds=5 if quick else 30)
    native, ref = (best[k] / (loops[k] * len(frames)) * 1e6 for k in ("native", "reference"))
    sizes = "/".join(str(len(f)) for f in frames)
    print(f"decode ({sizes}-byte meter/DNS/ET frames): rust {native:.1f} us/frame, "
          f"python reference {ref:.0f} us/frame, ratio {ref / native:.0f}x (goal >= 10x)")
    return ref / native


async def _device(port: int, frame: bytes, count: int, rtts: list[float]) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    split = _native.GoodweSplitter("inbound")
    ptype = int.from_bytes(frame[10:12], "big")
    acked = 0
    try:
        for _ in range(count):
            t0 = time.perf_counter()
            writer.write(frame)
            await writer.drain()
            got = False
            while not got:
                data = await asyncio.wait_for(reader.read(65536), 5.0)
                if not data:
                    return acked
                for kind, raw in split.feed(data):
                    if kind == "frame" and int.from_bytes(raw[6:8], "big") == ptype:
                        got = True
            rtts.append(time.perf_counter() - t0)
            acked += 1
    finally:
        writer.close()
    return acked


async def _run_devices(port: int, devices: int, count: int) -> tuple[float, int, list[float]]:
    rtts: list[float] = []
    frames = [simulator.data_frame("meter", f"91000HKU{i:08d}", WHEN, i) for i in range(devices)]
    t0 = time.perf_counter()
    acked = await asyncio.gather(*(_device(port, frames[i], count, rtts) for i in range(devices)))
    return time.perf_counter() - t0, sum(acked), rtts


async def bench_proxy(devices: int, count: int) -> None:
    sems = simulator.SemsSimulator("127.0.0.1", 0, bogus=False)
    sems.start()
    try:
        assert sems.address is not None
        direct_time, direct_n, direct_rtts = await _run_devices(sems.address[1], devices, count)
        state = GoodweState()
        proxy = GoodweProxy(ProxyOptions(listen_host="127.0.0.1", listen_port=0, upstream_host="127.0.0.1",
                                         upstream_port=sems.address[1]), state)
        await proxy.start()
        try:
            proxy_time, proxy_n, proxy_rtts = await _run_devices(proxy.address[1], devices, count)
        finally:
            await proxy.stop()
    finally:
        sems.stop()
    med_direct = statistics.median(direct_rtts) * 1e3
    med_proxy = statistics.median(proxy_rtts) * 1e3
    p95 = sorted(proxy_rtts)[int(0.95 * (len(proxy_rtts) - 1))] * 1e3
    print(f"proxy: {devices} devices x {count} uploads: {proxy_n}/{devices * count} acked via proxy "
          f"({proxy_n / proxy_time:.0f} frames/s, {direct_n / direct_time:.0f} frames/s direct)")
    print(f"proxy: upload->ACK round trip median {med_proxy:.2f} ms via proxy vs {med_direct:.2f} ms direct "
          f"(added {med_proxy - med_direct:.2f} ms; p95 {p95:.2f} ms); "
          f"decoded {state.packets[('outbound', '0x0304')]} uploads")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run for CI")
    parser.add_argument("--devices", type=int, default=50)
    args = parser.parse_args()
    ratio = bench_decode(args.quick)
    asyncio.run(bench_proxy(10 if args.quick else args.devices, 20 if args.quick else 200))
    return 0 if ratio >= 10 else 1


if __name__ == "__main__":
    raise SystemExit(main())
