"""Running collections: one thread per device, each isolated from the others.

A device that hangs or fails only affects itself: its ``<plugin>_up`` goes to 0 and its
series disappear from the next batch (nothing stale is served), while other devices and
the HTTP server carry on. Failures are logged once per change of state, not per attempt.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .errors import DeviceError, Waiting
from .health import health_defs
from .model import Batch
from .plugin import Plugin

log = logging.getLogger("gridtap.schedule")


@dataclass
class DeviceState:
    ok: bool | None = None
    error: str = ""
    last_success_ns: int | None = None
    waiting: bool = False


class Collector:
    """Collects one device and keeps its latest batch.

    In the background (:meth:`start`) it collects every ``interval`` and also at once when the
    plugin says a new reading arrived (:meth:`Plugin.updated`), so pushed readings reach the
    outputs without waiting for the next tick. Every new batch goes to each :meth:`subscribe`-d
    callback, on the collector's thread.
    """

    #: Pushed readings closer together than this are collected once (a burst of uploads).
    min_push_gap = 0.005
    #: Pushed collections (their outputs included) may keep this process busy a share of the
    #: time of ``push_cost_budget`` / the last one's duration: a 1 ms collection can follow the
    #: next upload 5 ms later, a 15 ms one (a proxy of 1,000 devices, 21,000 samples to render)
    #: waits 450 ms. Long collections are what another thread of the process feels (a relay
    #: waiting for the GIL), so they are made rare, not merely spaced.
    push_cost_budget = 0.0005
    #: The longest a pushed reading waits for its collection.
    max_push_gap = 1.0

    def __init__(self, plugin: Plugin, interval: float) -> None:
        self.plugin = plugin
        self.interval = interval
        self.state = DeviceState()
        self.latest: Batch | None = None
        self._lock = threading.Lock()
        self._collect_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._subscribers: list[Callable[[Batch], None]] = []
        self._generation = 0  # odd while a collection runs
        self._diagnostics: list = []
        self._overdue_reported: set[int] = set()
        plugin.set_update_callback(self._wake.set)

    @property
    def name(self) -> str:
        return f"{self.plugin.name}/{self.plugin.device}"

    def subscribe(self, callback: Callable[[Batch], None]) -> None:
        """Call ``callback(batch)`` with every batch collected from now on."""
        self._subscribers.append(callback)

    def collect_once(self) -> Batch:
        """Collect now (blocking) and return the batch, health metrics and diagnostics included."""
        with self._collect_lock:
            batch = self._collect()
        for callback in self._subscribers:
            try:
                callback(batch)
            except Exception:  # an output's bug must not stop collection
                log.warning("%s: delivering a batch failed", self.name, exc_info=True)
        return batch

    def _collect(self) -> Batch:
        started_ns = time.time_ns()
        t0 = time.monotonic()
        up, last_success, duration = health_defs(self.plugin.name)
        waiting = False
        with self._lock:
            self._generation += 1
            generation = self._generation
        try:
            metrics = list(self.plugin.collect())
            ok, error = True, ""
        except Waiting as e:
            metrics, ok, error, waiting = [], False, str(e), True
        except DeviceError as e:
            metrics, ok, error = [], False, str(e)
        except Exception as e:  # a plugin bug must not kill the device's thread
            log.debug("%s: unexpected error", self.name, exc_info=True)
            metrics, ok, error = [], False, f"unexpected {type(e).__name__}: {e}"
        took = time.monotonic() - t0
        self._note_state(ok, error, waiting)
        if ok:
            self.state.last_success_ns = started_ns
        try:
            diagnostics = list(self.plugin.diagnostics())
        except Exception as e:  # noqa: BLE001 - diagnostics are best effort
            log.debug("%s: diagnostics failed: %s", self.name, e, exc_info=True)
            diagnostics = []
        metrics.extend(diagnostics)
        if not waiting:
            # Waiting for a device that pushes on its own schedule is not "down": no _up at all.
            metrics.append(up(1 if ok else 0))
            metrics.append(duration(took))
        if self.state.last_success_ns is not None:
            metrics.append(last_success(self.state.last_success_ns / 1e9))
        batch = Batch(self.plugin.name, self.plugin.device, started_ns, metrics, ok, error,
                      self.plugin.subdevice_labels)
        with self._lock:
            self.latest = batch
            self._diagnostics = diagnostics
            self._generation += 1  # this collection is over: an overdue notice for it is void
        if generation in self._overdue_reported:
            self._overdue_reported.discard(generation)
            if ok:
                log.info("%s: the overdue collection finished after %.1f s", self.name, took)
        return batch

    def _overdue(self, generation: int) -> None:
        """The collection ``generation`` runs longer than the interval (a device that trickles its
        answer, retries that outlast the interval): until it ends, the device is shown down —
        its measurements go, its diagnostics stay — instead of serving the last reading as if
        it were fresh. Runs on a timer thread; a collection that ended meanwhile wins."""
        up, last_success, _duration = health_defs(self.plugin.name)
        with self._lock:
            if self._generation != generation or self.latest is None:
                return
            metrics = [*self._diagnostics, up(0)]
            if self.state.last_success_ns is not None:
                metrics.append(last_success(self.state.last_success_ns / 1e9))
            error = f"no answer within the {self.interval:g} s interval (collection still running)"
            batch = Batch(self.plugin.name, self.plugin.device, time.time_ns(), metrics, False, error,
                          self.plugin.subdevice_labels)
            self.latest = batch
            self._overdue_reported.add(generation)
        log.warning("%s: %s; shown down until it ends", self.name, error)
        for callback in self._subscribers:
            try:
                callback(batch)
            except Exception:  # noqa: BLE001 - an output's bug must not stop the watchdog
                log.warning("%s: delivering a batch failed", self.name, exc_info=True)

    def _note_state(self, ok: bool, error: str, waiting: bool = False) -> None:
        previous = self.state.ok
        if ok and previous is not True:
            if previous is False and not self.state.waiting:
                log.info("%s: device is back", self.name)
            else:
                log.info("%s: first collection succeeded", self.name)
        elif waiting:
            if not self.state.waiting or error != self.state.error:
                log.info("%s: %s", self.name, error)
        elif not ok and (previous is not False or self.state.waiting or error != self.state.error):
            level = logging.WARNING if previous is not False or self.state.waiting else logging.DEBUG
            log.log(level, "%s: collection failed: %s", self.name, error)
        self.state.ok, self.state.error, self.state.waiting = ok, error, waiting

    def snapshot(self) -> Batch | None:
        with self._lock:
            return self.latest

    # --- background mode ------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        next_due = time.monotonic()
        while not self._stop.is_set():
            self._wake.clear()
            # A watchdog for this collection: past the interval the device is shown down.
            watchdog = threading.Timer(self.interval, self._overdue, args=(self._generation + 1,))
            watchdog.daemon = True
            watchdog.start()
            started = time.monotonic()
            try:
                self.collect_once()
            finally:
                watchdog.cancel()
            now = time.monotonic()
            cost = now - started
            push_gap = min(self.max_push_gap, max(self.min_push_gap, cost * cost / self.push_cost_budget))
            if next_due <= now:  # a tick (not a pushed reading): keep the cadence, unless far behind
                next_due += self.interval
                if next_due <= now:
                    next_due = now + self.interval
            # Sleep until the next tick, or until the plugin reports a pushed reading.
            while not self._stop.is_set():
                if self._wake.wait(max(0.0, next_due - time.monotonic())):
                    self._stop.wait(push_gap)  # let a burst of uploads settle into one collection
                    break
                if time.monotonic() >= next_due:
                    break

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None


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
