"""The SEMS man-in-the-middle proxy (asyncio): forward, decode on the side, filter replies.

Why it is shaped like this (spec §1, §9, §12):

* Device -> SEMS bytes are forwarded verbatim, whatever we make of them, and *first*: each
  read is written to SEMS as the very bytes object the socket returned (no copy), and only
  then queued for decoding, which runs once per event-loop pass for every connection's
  queued reads (:meth:`GoodweProxy._scan_queued`). So forwarding latency and the cost of a
  frame on the relay path do not depend on decoding, and a burst of uploads is decoded in
  one batch. Only the BATSIGNAL option rewrites (meter power registers, same length and IV),
  so only it decodes before forwarding.
* Decoding on the side is one Rust call per read (``GoodweSplitter.scan``: split, CRC,
  decrypt, block check) that hands back the frames worth keeping; registers become metrics
  only when a collection asks (``metrics.PhysicalDevice``).
* SEMS -> device is an allow-list (``GoodweInboundFilter``, one Rust call per read): the
  ``01 02`` keepalive and valid frames of known ACK / set-clock types reach the device;
  anything else (firmware pushes, remote writes, junk, bad CRC) is dropped and counted.
  When all of a read may pass, the read itself is forwarded (no copy).
* asyncio Protocols, not streams: no reader task per direction, no buffer copies, and flow
  control by pausing the other side's reads when a write buffer fills.
* Each device connection gets one persistent upstream connection, re-resolved at every dial
  and retried with backoff; while upstream is down we keep decoding and answer nothing.
* No-forward mode answers the device ourselves (ACK per type, a set-clock after the info
  upload), so the cloud can be cut off entirely.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from gridtap import _native

from . import batsignal, encoder
from .metrics import INBOUND_KNOWN, GoodweState

OUTBOUND_PREFIX = b"POSTGW"  # every device->SEMS frame starts with it (spec §2)

log = logging.getLogger("gridtap.goodwe.proxy")

_ERROR_REASONS = (
    (_native.ChecksumError, "checksum"),
    (_native.LengthError, "length"),
    (_native.FormatError, "format"),
)


def error_reason(e: Exception) -> str:
    for cls, reason in _ERROR_REASONS:
        if isinstance(e, cls):
            return reason
    return "format"


@dataclass
class ProxyOptions:
    listen_host: str = "0.0.0.0"
    listen_port: int = 20001
    upstream_host: str = "tcp.goodwe-power.com"
    upstream_port: int = 20001
    forward: bool = True
    batsignal: bool = False
    inbound_allow: frozenset[int] = field(default_factory=lambda: INBOUND_KNOWN)
    dial_timeout: float = 8.0
    backoff_initial: float = 1.0
    backoff_max: float = 60.0
    #: An inbound partial frame older than this is given up (the reference's 1 s read deadline).
    partial_timeout: float = 1.0
    #: Device bytes held while upstream is not (yet) connected; beyond this they are discarded.
    backlog_limit: int = 256 * 1024


class _Upstream(asyncio.Protocol):
    """The SEMS side of one session: its reads go through the session's allow-list."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.transport: asyncio.Transport | None = None
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.session.from_upstream(data)

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)

    # SEMS reads slower than the device uploads: stop reading the device meanwhile.
    def pause_writing(self) -> None:
        self.session.pause_device()

    def resume_writing(self) -> None:
        self.session.resume_device()


class Session(asyncio.Protocol):
    """One device connection (this protocol) and its upstream partner (:class:`_Upstream`)."""

    def __init__(self, proxy: GoodweProxy) -> None:
        self.proxy = proxy
        self.opts = proxy.opts
        self.state = proxy.state
        self.device: asyncio.Transport | None = None
        self.upstream: asyncio.Transport | None = None
        self.serial: str | None = None
        self.scanner = _native.GoodweSplitter("outbound")
        self.inbound = _native.GoodweInboundFilter(sorted(self.opts.inbound_allow))
        # BATSIGNAL rewrites frames before forwarding, so it splits the stream itself.
        self.rewriter = _native.GoodweSplitter("outbound") if self.opts.batsignal else None
        self.backlog = bytearray()
        # After held bytes were discarded, the stream is inside a frame whose head is gone:
        # skip to the next frame prefix before holding or forwarding anything again.
        self.resync = False
        self.closed = False
        self._up_task: asyncio.Task[None] | None = None
        self._partial_timer: asyncio.TimerHandle | None = None
        self._device_paused = False
        self._upstream_paused = False

    # --- device side (asyncio.Protocol) ---------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.device = transport
        self.state.connection(+1)
        self.proxy.sessions.add(self)
        if self.opts.forward:
            self._up_task = asyncio.get_running_loop().create_task(self._upstream_loop())

    def data_received(self, data: bytes) -> None:
        if self.rewriter is not None:
            self._send_upstream(self._rewritten(data))
        elif self.opts.forward:
            self._send_upstream(data)  # first: forwarding never waits for decoding
            self.proxy.queue_scan(self, data)
        else:
            self.proxy.scan(self, data)  # no-forward: decode now, the answers depend on it

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.close()

    # The device reads slower than SEMS answers: stop reading SEMS meanwhile.
    def pause_writing(self) -> None:
        if self.upstream is not None and not self._upstream_paused:
            self._upstream_paused = True
            self.upstream.pause_reading()

    def resume_writing(self) -> None:
        if self.upstream is not None and self._upstream_paused:
            self._upstream_paused = False
            self.upstream.resume_reading()

    def pause_device(self) -> None:
        if self.device is not None and not self._device_paused:
            self._device_paused = True
            self.device.pause_reading()

    def resume_device(self) -> None:
        if self.device is not None and self._device_paused:
            self._device_paused = False
            self.device.resume_reading()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.proxy.sessions.discard(self)
        self.state.connection(-1)
        if self._partial_timer is not None:
            self._partial_timer.cancel()
        if self._up_task is not None:
            self._up_task.cancel()
        if self.upstream is not None:
            self.upstream.close()
        if self.device is not None:
            self.device.close()

    # --- device -> SEMS --------------------------------------------------------------
    def _send_upstream(self, data: bytes) -> None:
        """Write to SEMS, or hold (bounded) until the first/next dial succeeds.

        Past ``backlog_limit`` the held bytes are dropped (too old for SEMS anyway) and holding
        starts again at the next frame boundary, so SEMS never gets the tail of a frame whose
        head was thrown away. (A prefix split across two reads costs that one frame too.)
        """
        if self.resync:
            start = data.find(OUTBOUND_PREFIX)
            if start < 0:
                return
            data, self.resync = data[start:], False
        upstream = self.upstream
        if upstream is not None:
            upstream.write(data)
            self.state.forwarded["outbound"] += len(data)
            return
        if not self.opts.forward:
            return
        if len(self.backlog) + len(data) > self.opts.backlog_limit:
            self.backlog.clear()
            start = data.find(OUTBOUND_PREFIX)
            if start < 0 or len(data) - start > self.opts.backlog_limit:
                self.resync = True
                return
            data = data[start:]
        self.backlog += data

    def _rewritten(self, data: bytes) -> bytes:
        """BATSIGNAL: the stream with meter power rewritten in every valid meter data frame."""
        assert self.rewriter is not None
        out = bytearray()
        keep = []
        for kind, raw in self.rewriter.feed(data):
            if kind == "frame":
                try:
                    d = _native.goodwe_decode_frame(raw, "outbound")
                except _native.DecodeError as e:
                    self.state.error("outbound", error_reason(e))
                else:
                    self._learn_serial(d["device_id"] + d["device_serial"])
                    keep.append((d["type"], self.serial or "", d if d["blocks"] is not None else None))
                    if d["type"] in (0x0304, 0x0345):
                        gen, exp = batsignal.watts(self.proxy.clock())
                        raw = batsignal.rewrite_meter_frame(raw, d, gen, exp)
            out += raw
        if keep:
            self.state.outbound(keep)
        return bytes(out)

    def _learn_serial(self, serial: str) -> None:
        if self.serial != serial:
            self.serial = serial
            self.inbound.set_serial(serial)

    def answer(self, ptype: int, serial: str) -> None:
        """No-forward mode: what the SEMS server would send back."""
        if self.device is None or self.closed:
            return
        now = self.proxy.clock().astimezone(encoder.BEIJING)
        if ptype & 0xFF in (0x03, 0x04, 0x45):
            self.device.write(encoder.ack(ptype, serial, now, encrypt=_native.goodwe_encrypt))
        if ptype & 0xFF == 0x03:
            self.device.write(encoder.set_time(serial, now, encrypt=_native.goodwe_encrypt))

    # --- SEMS -> device --------------------------------------------------------------
    async def _upstream_loop(self) -> None:
        loop = asyncio.get_running_loop()
        delay = self.opts.backoff_initial
        while not self.closed:
            try:
                transport, protocol = await asyncio.wait_for(
                    loop.create_connection(lambda: _Upstream(self), self.opts.upstream_host, self.opts.upstream_port),
                    self.opts.dial_timeout,
                )
            except (TimeoutError, OSError) as e:
                self.state.upstream_failed()
                # One warning when SEMS becomes unreachable; the retries (counted in
                # goodwe_upstream_dial_failures_total) are debug lines until it is back.
                first = delay == self.opts.backoff_initial
                log.log(logging.WARNING if first else logging.DEBUG, "upstream %s:%s unreachable (%s); retrying in "
                        "%.0fs", self.opts.upstream_host, self.opts.upstream_port, e.__class__.__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.opts.backoff_max)
                continue
            if delay != self.opts.backoff_initial:
                log.info("upstream %s:%s reachable again", self.opts.upstream_host, self.opts.upstream_port)
            delay = self.opts.backoff_initial
            try:
                if self.closed:
                    return
                # Held bytes first, then live ones: both happen in this one callback, so
                # nothing from the device can get between them.
                if self.backlog:
                    transport.write(bytes(self.backlog))
                    self.state.forwarded["outbound"] += len(self.backlog)
                    self.backlog.clear()
                self.upstream = transport
                await protocol.lost
            finally:
                self.upstream = None
                self._upstream_paused = False
                transport.close()
                self.resume_device()
            if not self.closed:
                await asyncio.sleep(delay)

    def from_upstream(self, data: bytes) -> None:
        forward, events = self.inbound.feed(data)
        if forward is not None and self.device is not None:
            self.device.write(forward)
            self.state.forwarded["inbound"] += len(forward)
        if events:
            self.state.inbound(events)
            for ptype, reason, _ in events:
                if ptype is not None and reason is not None:
                    log.info("dropped inbound packet type 0x%04x (%s)", ptype, reason)
        # A frame whose tail does not come within the deadline is given up (the deadline
        # runs from the last read, like the reference's 1 s read deadline).
        if self._partial_timer is not None:
            self._partial_timer.cancel()
            self._partial_timer = None
        if self.inbound.pending:
            self._partial_timer = asyncio.get_running_loop().call_later(
                self.opts.partial_timeout, self._partial_expired)

    def _partial_expired(self) -> None:
        self._partial_timer = None
        n = self.inbound.flush()
        if n:
            self.state.drop("length")
            log.debug("dropped %d-byte partial inbound frame", n)


def inbound_verdict(raw: bytes, allow: frozenset[int], serial: str | None) -> tuple[bool, str | None, dict | None]:
    """Whether a SEMS-to-device frame may reach the device: (allowed, drop reason, decoded).

    Allowed: valid CRC/length, a type in ``allow``, exactly one 16-byte cipher block, and
    (once the connection's device is known) addressed to that device. This is the readable
    statement of the rule ``GoodweInboundFilter`` applies in the proxy (tested to agree).
    """
    try:
        d = _native.goodwe_decode_frame(raw, "inbound")
    except _native.DecodeError as e:
        return False, error_reason(e), None
    if d["type"] not in allow or len(d["cleartext"]) != 16:
        return False, "unknown_type", d
    if serial is not None and d["device_id"] + d["device_serial"] != serial:
        return False, "device_mismatch", d
    return True, None, d


def filter_inbound(units: list[tuple[str, bytes]], allow: frozenset[int] = INBOUND_KNOWN,
                   serial: str | None = None) -> bytes:
    """The bytes of ``units`` (from an inbound splitter) that the proxy forwards."""
    out = bytearray()
    for kind, raw in units:
        if kind == "keepalive" or (kind == "frame" and inbound_verdict(raw, allow, serial)[0]):
            out += raw
    return bytes(out)


class GoodweProxy:
    """Listens for devices; one :class:`Session` per connection."""

    def __init__(self, opts: ProxyOptions, state: GoodweState,
                 clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)) -> None:
        self.opts = opts
        self.state = state
        self.clock = clock
        self.server: asyncio.Server | None = None
        self.sessions: set[Session] = set()
        self._queue: list[tuple[Session, bytes]] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def address(self) -> tuple[str, int]:
        assert self.server is not None
        host, port = self.server.sockets[0].getsockname()[:2]
        return host, port

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        # A deep accept queue: a fleet reconnecting at once (after an outage) must not see
        # SYNs dropped and retried a second later.
        self.server = await self._loop.create_server(lambda: Session(self), self.opts.listen_host,
                                                     self.opts.listen_port, backlog=1024)

    # --- decoding on the side ------------------------------------------------------------
    def queue_scan(self, session: Session, data: bytes) -> None:
        """Decode ``data`` after this event-loop pass (every connection's reads at once)."""
        if not self._queue:
            assert self._loop is not None
            self._loop.call_soon(self._scan_queued)
        self._queue.append((session, data))

    def _scan_queued(self) -> None:
        queue, self._queue = self._queue, []
        now = time.time()
        keep: list[tuple[int, str, bytes | None]] = []
        for session, data in queue:
            self._scan_into(session, data, keep)
        if keep:
            self.state.outbound(keep, now)

    def scan(self, session: Session, data: bytes) -> None:
        """Decode ``data`` now (no-forward mode answers what it decodes)."""
        keep: list[tuple[int, str, bytes | None]] = []
        self._scan_into(session, data, keep)
        if keep:
            self.state.outbound(keep)
        for ptype, serial, _ in keep:
            session.answer(ptype, serial)

    def _scan_into(self, session: Session, data: bytes, keep: list[tuple[int, str, bytes | None]]) -> None:
        for _offset, ptype, serial, error, raw in session.scanner.scan(data):
            if error is None:
                if session.serial != serial:
                    session._learn_serial(serial)
                keep.append((ptype, serial, raw))
            else:
                self.state.error("outbound", error)
                log.debug("outbound frame not decoded: %s", error)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        tasks = [s._up_task for s in self.sessions if s._up_task is not None]
        for s in list(self.sessions):
            s.close()
        if tasks:
            await asyncio.wait(tasks, timeout=2.0)
        if self.server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 2.0)
