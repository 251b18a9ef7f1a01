"""Ways to reach an Intergas boiler: its service port (local tty or raw TCP) or a LAN2RF gateway.

The service port has no framing: a frame is "exactly 32 bytes after the command" (spec §2),
so one late or extra byte would shift every later frame if the reader trusted the stream.
:class:`SerialTransport` therefore follows the robust read procedure of spec §14: discard
pending input before each command, read exactly 32 bytes with a timeout, reject a short or
long reply, and reopen the port with backoff after it vanishes. pyserial's
``serial_for_url`` gives the same API for a tty and for ``socket://host:port`` bridges
(ser2net raw, ESPHome stream_server, esp-link).

:class:`Lan2rfClient` talks to the InComfort LAN2RF HTTP gateway (spec §17).
"""

from __future__ import annotations

import contextlib
import logging
import re
import socket
import time

import serial

from gridtap.errors import DeviceError

log = logging.getLogger(__name__)

BLOCK_LEN = 32

#: Bytes sent for each command (spec §3). CRC and REV have no CR.
COMMANDS: dict[str, bytes] = {
    "S?": b"S?\r", "S2": b"S2\r", "CRC": b"CRC", "HN": b"HN\r", "V?": b"V?\r", "REV": b"REV",
}

try:  # a tty whose other end vanished fails in termios calls, which raise their own type
    import termios

    LINK_FAILURES: tuple[type[BaseException], ...] = (serial.SerialException, OSError, termios.error)
except ImportError:  # pragma: no cover - Windows
    LINK_FAILURES = (serial.SerialException, OSError)

_HOST_PORT = re.compile(r"^[A-Za-z0-9.\-]+:\d{1,5}$")


class BlockError(DeviceError):
    """This block's reply was unusable (short, long, silent); the link itself is fine."""


class LinkError(DeviceError):
    """The port or connection failed (vanished, refused, reset); it must be reopened."""


def port_url(port: str) -> str:
    """A tty path, a pyserial URL (``socket://``, ``rfc2217://``) or a bare ``host:port``."""
    if "://" in port or port.startswith("/"):
        return port
    if _HOST_PORT.match(port):
        return "socket://" + port
    return port


class SerialTransport:
    """One service port, local or over TCP, read with the robust procedure of spec §14."""

    def __init__(
        self,
        port: str,
        timeout: float = 1.0,
        *,
        drain: float = 0.03,
        settle: float = 0.02,
        backoff: tuple[float, float] = (1.0, 30.0),
    ) -> None:
        self.url = port_url(port)
        self.timeout = float(timeout)
        self.drain = drain  # listen this long for stale bytes before a command
        self.settle = settle  # and this long after 32 bytes for a too-long reply
        self.backoff_min, self.backoff_max = backoff
        self._port: serial.SerialBase | None = None
        self._next_open = 0.0
        self._delay = 0.0
        self._opened_before = False
        self.discarded = 0  # stale bytes dropped so far (diagnostics, tests)

    # ---------------------------------------------------------------- link lifetime
    @property
    def is_open(self) -> bool:
        return self._port is not None

    def open(self) -> None:
        if self._port is not None:
            return
        now = time.monotonic()
        if now < self._next_open:
            raise LinkError(f"{self.url}: reopening in {self._next_open - now:.1f} s")
        try:
            self._port = serial.serial_for_url(
                self.url, baudrate=9600, bytesize=8, parity="N", stopbits=1,
                timeout=self.timeout, write_timeout=self.timeout,
            )
        except (serial.SerialException, OSError, ValueError) as e:
            self._schedule_reopen()
            raise LinkError(f"{self.url}: cannot open: {e}") from None
        # Logged once per change of state: the first open, and the first after a failure.
        log.log(logging.INFO if self._delay or not self._opened_before else logging.DEBUG, "opened %s", self.url)
        self._delay = 0.0
        self._opened_before = True

    def _schedule_reopen(self) -> None:
        self._delay = min(self.backoff_max, max(self.backoff_min, self._delay * 2))
        self._next_open = time.monotonic() + self._delay

    def close(self) -> None:
        port, self._port = self._port, None
        if port is None:
            return
        sock = getattr(port, "_socket", None)
        if isinstance(sock, socket.socket):
            # pyserial's socket:// close() sleeps 0.3 s "for quick reconnects"; our reopen has
            # its own backoff, so close the socket ourselves and skip that stall.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
            port._socket = None  # type: ignore[attr-defined]
            port.is_open = False
            return
        with contextlib.suppress(*LINK_FAILURES):
            port.close()

    def fail(self, reason: str) -> LinkError:
        """Close after a link failure and schedule the reopen; returns the error to raise."""
        self.close()
        first = self._delay == 0.0
        self._schedule_reopen()
        # One warning when the link breaks; the retries after it (with a growing back-off)
        # are debug, so a dead bridge is not a warning every few seconds.
        log.log(logging.WARNING if first else logging.DEBUG, "%s: %s; reopening in %.1f s", self.url, reason,
                self._delay)
        return LinkError(f"{self.url}: {reason}")

    # ---------------------------------------------------------------- one command
    def _discard_pending(self, port: serial.SerialBase) -> None:
        waiting = port.in_waiting
        if waiting:
            self.discarded += len(port.read(waiting))
        port.reset_input_buffer()
        deadline = time.monotonic() + self.drain
        while True:
            waiting = port.in_waiting
            if waiting:
                self.discarded += len(port.read(waiting))
            if time.monotonic() >= deadline:
                return
            time.sleep(0.005)

    def query(self, command: str) -> bytes:
        """Send ``command`` and return its 32-byte reply.

        BlockError for a short, long or missing reply; LinkError if the port failed (the
        port is then closed and reopened on a later call, after the backoff).
        """
        self.open()
        port = self._port
        assert port is not None
        try:
            self._discard_pending(port)
            port.write(COMMANDS[command])
            port.flush()
            reply = port.read(BLOCK_LEN)
            extra = b""
            if len(reply) == BLOCK_LEN:
                deadline = time.monotonic() + self.settle
                while time.monotonic() < deadline:
                    if port.in_waiting:
                        extra += port.read(port.in_waiting)
                        break
                    time.sleep(0.003)
        except LINK_FAILURES as e:
            raise self.fail(f"{command}: {e}") from None
        if extra:
            log.debug("%s: reply too long: %s + %s", command, reply.hex(" "), extra.hex(" "))
            raise BlockError(f"{command}: reply longer than {BLOCK_LEN} bytes")
        if len(reply) != BLOCK_LEN:
            log.debug("%s: short reply (%d bytes): %s", command, len(reply), reply.hex(" "))
            raise BlockError(f"{command}: {len(reply)} of {BLOCK_LEN} bytes within {self.timeout:g} s")
        log.debug("%s: %s", command, reply.hex(" "))
        return reply
