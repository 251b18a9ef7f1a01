"""The long-running modes behind ``gridtap run`` and ``gridtap serve``.

* influx (Telegraf ``inputs.execd``): ``signal = "STDIN"`` collects once per newline read
  on stdin; ``signal = "none"`` collects on our own interval. Each batch is written whole
  and flushed. Stdin EOF (how Telegraf stops a child) or SIGTERM ends the process cleanly.
* collectd (``exec`` plugin): PUTVAL lines every COLLECTD_INTERVAL seconds.
* prometheus: collection in the background, a scrape serves the latest batches.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import socket
import stat
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from . import console
from .config import Duration, parse_host_port
from .errors import ConfigError
from .model import Batch

if TYPE_CHECKING:
    from .schedule import Collector
    from .sinks import Delivery

# Each mode imports the encoder it writes with when it starts (a /metrics process never loads
# line protocol's Python side, an execd child never loads the listener).

log = logging.getLogger("gridtap.runtime")


class Stopper:
    """Set by SIGTERM/SIGINT; everything that waits, waits on it.

    ``exit_code``: 130 after Ctrl-C (SIGINT), as shells expect of an interrupted command;
    SIGTERM (how Telegraf, collectd and systemd stop us) and stdin EOF are a clean 0.
    """

    def __init__(self) -> None:
        self.event = threading.Event()
        self.exit_code = 0

    def install(self) -> Stopper:
        def stop(signum: int, _frame: Any) -> None:
            if signum == signal.SIGINT:
                self.exit_code = 130
            self.event.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, stop)
        return self

    def wait(self, seconds: float) -> bool:
        return self.event.wait(seconds)

    @property
    def stopped(self) -> bool:
        return self.event.is_set()


def _stdin_is_pipe() -> bool:
    try:
        return stat.S_ISFIFO(os.fstat(sys.stdin.fileno()).st_mode)
    except (OSError, ValueError):
        return False


def _watch_stdin_eof(stopper: Stopper) -> None:
    """Telegraf stops a ``signal = "none"`` child by closing its stdin: treat EOF as stop."""

    def watch() -> None:
        fd = sys.stdin.fileno()
        while not stopper.stopped:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if ready and not os.read(fd, 4096):
                stopper.event.set()

    threading.Thread(target=watch, name="stdin-eof", daemon=True).start()


class StdoutWriter:
    """Writes whole batches to stdout and flushes; a write error stops the process (the
    caller then raises it: one line, see :mod:`gridtap.console`). Safe from several threads."""

    def __init__(self, stopper: Stopper) -> None:
        self.stopper = stopper
        self.error: console.StdoutError | None = None
        self._lock = threading.Lock()

    def write(self, data: bytes) -> None:
        if not data or self.error is not None:
            return
        with self._lock:
            try:
                console.write(data)
            except console.StdoutError as e:
                self.error = e
                self.stopper.event.set()

    def raise_if_failed(self) -> None:
        if self.error is not None:
            raise self.error


def run_influx(collectors: Sequence[Collector], signal_mode: str, stopper: Stopper, uint: bool = False) -> int:
    """Line protocol on stdout for Telegraf's execd.

    ``STDIN``: one collection per newline Telegraf writes (newlines that arrive together, or
    while a collection runs, count as one). ``none``: every device collects in the background
    on its own interval, and a device that pushes (``Plugin.updated``) is written as soon as
    its reading is in; each batch is written whole and flushed.
    """
    from .outputs import lineproto

    writer = StdoutWriter(stopper)
    if signal_mode == "STDIN":
        fd = sys.stdin.fileno()
        pending = b""
        while not stopper.stopped:
            try:
                ready, _, _ = select.select([fd], [], [], 0.5)
            except InterruptedError:
                continue
            if not ready:
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                break  # stdin closed: Telegraf is stopping us
            pending += chunk
            if b"\n" in pending:
                pending = b""  # several newlines queued while busy still mean one collection
                writer.write(lineproto.encode([c.collect_once() for c in collectors], uint))
        writer.raise_if_failed()
        return stopper.exit_code
    if _stdin_is_pipe():
        _watch_stdin_eof(stopper)
    _collect_in_background(collectors, stopper, lambda batch: writer.write(lineproto.encode([batch], uint)))
    writer.raise_if_failed()
    return stopper.exit_code


def _collect_in_background(collectors: Sequence[Collector], stopper: Stopper, handle: Callable[[Batch], None]
                           ) -> None:
    """Every device collects on its own thread (on its interval, and at once when it pushes a
    reading); each batch goes to ``handle`` as it comes, until the process is told to stop."""
    for c in collectors:
        c.subscribe(handle)
        c.start()
    try:
        stopper.event.wait()
    finally:
        for c in collectors:
            c.stop()


def collectd_settings(interval: float, explicit: bool = False) -> tuple[str, float]:
    """Host name and interval for PUTVAL: collectd's COLLECTD_HOSTNAME and COLLECTD_INTERVAL,
    unless the user set the interval themselves (a flag or the config file wins, as everywhere)."""
    host = os.environ.get("COLLECTD_HOSTNAME") or socket.gethostname()
    raw = os.environ.get("COLLECTD_INTERVAL")
    if raw and not explicit:
        try:
            return host, float(Duration.parse(float(raw)))
        except ValueError:
            raise ConfigError("COLLECTD_INTERVAL", f"expected seconds greater than zero, got {raw!r}") from None
    return host, interval


def run_collectd(collectors: Sequence[Collector], interval: float, stopper: Stopper, explicit: bool = False) -> int:
    from .outputs import collectd

    host, interval = collectd_settings(interval, explicit)
    writer = StdoutWriter(stopper)
    while not stopper.stopped:
        t0 = time.monotonic()
        batches = [c.collect_once() for c in collectors]
        writer.write(collectd.encode(batches, host, interval).encode())
        stopper.wait(max(0.0, interval - (time.monotonic() - t0)))
    writer.raise_if_failed()
    return stopper.exit_code


def run_push(collectors: Sequence[Collector], interval: float, delivery: Delivery, stopper: Stopper) -> int:
    """``--output pushgateway|mqtt``: every device collects in the background (on its interval,
    and at once when it pushes a reading); each batch is handed to the sinks as it comes."""
    from .sinks import DeliveryWorker

    worker = DeliveryWorker(delivery)
    try:
        _collect_in_background(collectors, stopper, worker.submit)
    finally:
        worker.close()
    return stopper.exit_code


def parse_listen(listen: str) -> tuple[str, int]:
    return parse_host_port("listen", listen, "0.0.0.0")


def open_metrics_server(listen: str, collectors: Sequence[Collector], auth: Any = None,
                        metrics_path: str = "/metrics") -> Any:
    """Bind ``/metrics`` now (so a bad or busy address is reported before anything starts);
    it serves the latest batch of whatever is in ``collectors``, re-rendered after every
    collection, and the devices' routes (webhooks) beside it (see :mod:`gridtap.serve`)."""
    from . import serve

    host, port = parse_listen(listen)
    auth = auth if auth is not None else serve.Auth()

    def snapshot() -> list[Batch]:
        return [b for b in (c.snapshot() for c in collectors) if b is not None]

    def status() -> dict[str, Any]:
        return serve.status_document([(c.snapshot(), c.plugin.status()) for c in collectors])

    def routes() -> list[Any]:
        return [r for c in collectors for r in c.plugin.routes()]

    server = serve.open_server(host, port, snapshot, status, routes, auth, listen, metrics_path)
    for c in collectors:  # collectors added later are watched by serve_prometheus
        server.watch(c)
    bound_host, bound_port = server.server_address[:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    log.info("serving /metrics on http://%s:%d%s", shown, bound_port, metrics_path)
    return server


def serve_prometheus(
    collectors: Sequence[Collector], listen: str, stopper: Stopper, on_cycle: Callable[[], None] | None = None,
    server: Any = None, webhook: Any = None, metrics_path: str = "/metrics",
) -> int:
    """Collect in the background and serve ``/metrics`` until stopped (``server``: one made
    earlier by :func:`open_metrics_server`; ``webhook``: the settings holding the credentials
    that routes acting on a device demand)."""
    from . import serve

    auth = webhook.webhook_auth() if webhook is not None else serve.Auth()
    host, _port = parse_listen(listen)
    serve.check_route_auth(host, [r for c in collectors for r in c.plugin.routes()], auth, listen)
    if server is None:
        server = open_metrics_server(listen, collectors, auth, metrics_path)
    else:
        server.auth = auth
    server.max_body = server.body_limit()
    # Rendered once per collection, on the collector's thread; a scrape only copies bytes.
    for c in collectors:
        server.watch(c)
    server.publish()
    for c in collectors:
        c.start()
    try:
        while not stopper.wait(1.0):
            if on_cycle:
                on_cycle()
    finally:
        server.shutdown()
        server.server_close()
        for c in collectors:
            c.stop()
    return stopper.exit_code
