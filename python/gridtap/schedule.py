"""Running collections: one thread per device, each isolated from the others.

A device that hangs or fails only affects itself: its ``<plugin>_up`` goes to 0 and its
series disappear from the next batch (nothing stale is served), while other devices and
the HTTP server carry on. Failures are logged once per change of state, not per attempt.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from .errors import DeviceError
from .health import health_defs
from .model import Batch
from .plugin import Plugin

log = logging.getLogger("gridtap.schedule")


@dataclass
class DeviceState:
    ok: bool | None = None
    error: str = ""
    last_success_ns: int | None = None


class Collector:
    """Collects one device and keeps its latest batch."""

    def __init__(self, plugin: Plugin, interval: float) -> None:
        self.plugin = plugin
        self.interval = interval
        self.state = DeviceState()
        self.latest: Batch | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def name(self) -> str:
        return f"{self.plugin.name}/{self.plugin.device}"

    def collect_once(self) -> Batch:
        """Collect now (blocking) and return the batch, health metrics included."""
        started_ns = time.time_ns()
        t0 = time.monotonic()
        up, last_success, duration = health_defs(self.plugin.name)
        try:
            metrics = list(self.plugin.collect())
            ok, error = True, ""
        except DeviceError as e:
            metrics, ok, error = [], False, str(e)
        except Exception as e:  # a plugin bug must not kill the device's thread
            log.debug("%s: unexpected error", self.name, exc_info=True)
            metrics, ok, error = [], False, f"unexpected {type(e).__name__}: {e}"
        took = time.monotonic() - t0
        self._note_state(ok, error)
        if ok:
            self.state.last_success_ns = started_ns
        metrics.append(up(1 if ok else 0))
        metrics.append(duration(took))
        if self.state.last_success_ns is not None:
            metrics.append(last_success(self.state.last_success_ns / 1e9))
        batch = Batch(self.plugin.name, self.plugin.device, started_ns, metrics, ok)
        with self._lock:
            self.latest = batch
        return batch

    def _note_state(self, ok: bool, error: str) -> None:
        previous = self.state.ok
        if ok and previous is not True:
            if previous is False:
                log.info("%s: device is back", self.name)
            else:
                log.info("%s: first collection succeeded", self.name)
        elif not ok and (previous is not False or error != self.state.error):
            level = logging.WARNING if previous is not False else logging.DEBUG
            log.log(level, "%s: collection failed: %s", self.name, error)
        self.state.ok, self.state.error = ok, error

    def snapshot(self) -> Batch | None:
        with self._lock:
            return self.latest

    # --- background mode ------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            t0 = time.monotonic()
            self.collect_once()
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - t0)))

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)


class FreshBatches:
    """The batches of ``collectors`` that were not handed on yet (each batch once)."""

    def __init__(self, collectors: list[Collector]) -> None:
        self.collectors = collectors
        self._seen: dict[int, int] = {}

    def take(self) -> list[Batch]:
        fresh = []
        for i, c in enumerate(self.collectors):
            batch = c.snapshot()
            if batch is not None and self._seen.get(i) != batch.timestamp_ns:
                self._seen[i] = batch.timestamp_ns
                fresh.append(batch)
        return fresh
