"""The SEMS man-in-the-middle proxy (asyncio): forward, decode on the side, filter replies.

Why it is shaped like this (spec §1, §9, §12):

* Device -> SEMS bytes are forwarded verbatim, whatever we make of them; decoding works on
  a copy. Only the BATSIGNAL option rewrites (meter power registers, same length and IV).
* SEMS -> device is an allow-list: the ``01 02`` keepalive and valid frames of known ACK /
  set-clock types reach the device; anything else (firmware pushes, remote writes, junk,
  bad CRC) is dropped and counted.
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


class Session:
    """One device connection and its upstream partner."""

    def __init__(self, proxy: GoodweProxy, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.proxy = proxy
        self.opts = proxy.opts
        self.state = proxy.state
        self.reader = reader
        self.writer = writer
        self.upstream: asyncio.StreamWriter | None = None
        self.serial: str | None = None
        self.out_split = _native.GoodweSplitter("outbound")
        self.backlog = bytearray()
        # After held bytes were discarded, the stream is inside a frame whose head is gone:
        # skip to the next frame prefix before holding or forwarding anything again.
        self.resync = False
        self.closed = asyncio.Event()

    async def run(self) -> None:
        self.state.connection(+1)
        up_task = asyncio.create_task(self._upstream_loop()) if self.opts.forward else None
        try:
            await self._device_loop()
        finally:
            self.closed.set()
            if up_task is not None:
                up_task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await up_task
            await _close(self.upstream)
            await _close(self.writer)
            self.state.connection(-1)

    # device -> SEMS
    async def _device_loop(self) -> None:
        while True:
            try:
                data = await self.reader.read(65536)
            except (ConnectionError, OSError):
                return
            if not data:
                return
            units = self.out_split.feed(data)
            forward = bytearray() if self.opts.batsignal else data
            for kind, raw in units:
                decoded = self._decode_outbound(raw) if kind == "frame" else None
                if self.opts.batsignal:
                    if decoded is not None and decoded["type"] in (0x0304, 0x0345):
                        gen, exp = batsignal.watts(self.proxy.clock())
                        raw = batsignal.rewrite_meter_frame(raw, decoded, gen, exp)
                    forward += raw
                if decoded is not None and not self.opts.forward:
                    await self._answer(decoded)
            if self.opts.forward and forward:
                await self._send_upstream(bytes(forward))

    async def _send_upstream(self, data: bytes) -> None:
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
        if self.upstream is None:
            if len(self.backlog) + len(data) > self.opts.backlog_limit:
                self.backlog.clear()
                start = data.find(OUTBOUND_PREFIX)
                if start < 0 or len(data) - start > self.opts.backlog_limit:
                    self.resync = True
                    return
                data = data[start:]
            self.backlog += data
            return
        try:
            self.upstream.write(data)
            self.state.forward("outbound", len(data))
            await self.upstream.drain()
        except (ConnectionError, OSError):
            pass

    def _decode_outbound(self, raw: bytes) -> dict | None:
        try:
            d = _native.goodwe_decode_frame(raw, "outbound")
        except _native.DecodeError as e:
            self.state.error("outbound", error_reason(e))
            log.debug("outbound frame not decoded: %s", e)
            return None
        self.serial = d["device_id"] + d["device_serial"]
        self.state.frame("outbound", d)
        return d

    async def _answer(self, decoded: dict) -> None:
        """No-forward mode: what the SEMS server would send back."""
        ptype = decoded["type"]
        serial = decoded["device_id"] + decoded["device_serial"]
        now = self.proxy.clock().astimezone(encoder.BEIJING)
        replies = []
        if ptype & 0xFF in (0x03, 0x04, 0x45):
            replies.append(encoder.ack(ptype, serial, now, encrypt=_native.goodwe_encrypt))
        if ptype & 0xFF == 0x03:
            replies.append(encoder.set_time(serial, now, encrypt=_native.goodwe_encrypt))
        for r in replies:
            self.writer.write(r)
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.drain()

    # SEMS -> device
    async def _upstream_loop(self) -> None:
        delay = self.opts.backoff_initial
        while not self.closed.is_set():
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(self.opts.upstream_host, self.opts.upstream_port),
                    self.opts.dial_timeout,
                )
            except (TimeoutError, OSError) as e:
                self.state.upstream_failed()
                log.warning("upstream %s:%s unreachable (%s); retrying in %.0fs",
                            self.opts.upstream_host, self.opts.upstream_port, e.__class__.__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.opts.backoff_max)
                continue
            delay = self.opts.backoff_initial
            if self.backlog:
                writer.write(bytes(self.backlog))
                self.state.forward("outbound", len(self.backlog))
                self.backlog.clear()
            self.upstream = writer
            try:
                await self._inbound(reader)
            finally:
                self.upstream = None
                await _close(writer)
            if not self.closed.is_set():
                await asyncio.sleep(delay)

    async def _inbound(self, reader: asyncio.StreamReader) -> None:
        split = _native.GoodweSplitter("inbound")
        while True:
            try:
                if split.pending:
                    data = await asyncio.wait_for(reader.read(65536), self.opts.partial_timeout)
                else:
                    data = await reader.read(65536)
            except TimeoutError:
                for _, raw in split.flush():
                    self.state.drop("length")
                    log.debug("dropped %d-byte partial inbound frame", len(raw))
                continue
            except (ConnectionError, OSError):
                return
            if not data:
                return
            out = bytearray()
            for kind, raw in split.feed(data):
                if kind == "keepalive" or (kind == "frame" and self._inbound_allowed(raw)):
                    out += raw
                elif kind == "junk":
                    self.state.drop("junk")
            if out:
                self.writer.write(bytes(out))
                self.state.forward("inbound", len(out))
                with contextlib.suppress(ConnectionError, OSError):
                    await self.writer.drain()

    def _inbound_allowed(self, raw: bytes) -> bool:
        allowed, reason, decoded = inbound_verdict(raw, self.opts.inbound_allow, self.serial)
        if decoded is not None:
            self.state.frame("inbound", decoded)
        elif reason is not None:
            self.state.error("inbound", reason)
        if not allowed:
            assert reason is not None
            self.state.drop(reason)
            if decoded is not None:
                log.info("dropped inbound packet type 0x%04x (%s)", decoded["type"], reason)
        return allowed


def inbound_verdict(raw: bytes, allow: frozenset[int], serial: str | None) -> tuple[bool, str | None, dict | None]:
    """Whether a SEMS-to-device frame may reach the device: (allowed, drop reason, decoded).

    Allowed: valid CRC/length, a type in ``allow``, exactly one 16-byte cipher block, and
    (once the connection's device is known) addressed to that device.
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


async def _close(writer: asyncio.StreamWriter | None) -> None:
    if writer is None:
        return
    with contextlib.suppress(Exception):
        writer.close()
        await asyncio.wait_for(writer.wait_closed(), 1.0)


class GoodweProxy:
    """Listens for devices; one :class:`Session` per connection."""

    def __init__(self, opts: ProxyOptions, state: GoodweState,
                 clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)) -> None:
        self.opts = opts
        self.state = state
        self.clock = clock
        self.server: asyncio.Server | None = None
        self.sessions: set[asyncio.Task] = set()

    @property
    def address(self) -> tuple[str, int]:
        assert self.server is not None
        host, port = self.server.sockets[0].getsockname()[:2]
        return host, port

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._accept, self.opts.listen_host, self.opts.listen_port)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.sessions.add(task)
        try:
            await Session(self, reader, writer).run()
        except asyncio.CancelledError:
            pass  # stop(): end quietly (asyncio logs a cancelled client_connected task as an error)
        finally:
            self.sessions.discard(task)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        for t in list(self.sessions):
            t.cancel()
        for t in list(self.sessions):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if self.server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 2.0)
