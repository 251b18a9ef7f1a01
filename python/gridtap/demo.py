"""``gridtap demo``: every plugin's simulator feeding the real outputs, no hardware needed.

Each plugin that offers a demo starts its simulator on loopback and says which settings
read it; from there on it is the same code path as ``gridtap serve``.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time

from . import devices, plugin, runtime
from .outputs import lineproto
from .schedule import Collector, FreshBatches

log = logging.getLogger("gridtap.demo")


def run_demo(listen: str, interval: float, duration: float | None) -> int:
    stopper = runtime.Stopper().install()
    collectors: list[Collector] = []
    server = runtime.open_metrics_server(listen, collectors)  # a busy --listen fails before any simulator starts
    with contextlib.ExitStack() as stack:
        stack.callback(server.server_close)
        for name in plugin.names():
            cls = plugin.load(name)
            demo = cls.demo()
            if demo is None:
                continue
            settings = stack.enter_context(demo)
            spec = devices.device_spec(cls, {"name": f"demo-{name}", **settings}, where=f"demo.{name}",
                                       default_interval=interval)
            device = spec.create()
            device.start()
            stack.callback(device.close)
            collectors.append(Collector(device, spec.interval))
            log.info("demo: %s simulator started", name)
        if not collectors:
            print("gridtap: no installed plugin offers a demo", file=sys.stderr)
            return 1
        deadline = None if duration is None else time.monotonic() + duration

        fresh = FreshBatches(collectors)
        writer = runtime.StdoutWriter(stopper)

        def print_latest() -> None:
            writer.write(lineproto.encode(fresh.take()))
            if deadline is not None and time.monotonic() >= deadline:
                stopper.event.set()

        # A log line on stderr (in the chosen log format), so stdout carries nothing but line
        # protocol (it can be piped to influx).
        log.info("gridtap demo: Prometheus metrics on http://%s/metrics; line protocol on stdout. Ctrl-C stops.",
                    listen)
        code = runtime.serve_prometheus(collectors, listen, stopper, on_cycle=print_latest, server=server)
        writer.raise_if_failed()
        return code
