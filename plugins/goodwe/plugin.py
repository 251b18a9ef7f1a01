"""gridtap plugin "goodwe": Goodwe devices read by sitting between them and the SEMS cloud.

Why a proxy and not polling: Goodwe dongles push to ``tcp.goodwe-power.com:20001`` on their
own, and many no longer answer (or encrypt) the local protocol. Pointing the device's DNS
at gridtap gives every upload for free: :mod:`proxy` forwards it, decodes a copy, and
``collect()`` serves the latest decoded values. See README.md for the metric table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import socket
import sys
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gridtap import _native
from gridtap.config import Duration, check_port, setting
from gridtap.errors import ConfigError, DeviceError, InputError, Waiting
from gridtap.model import Metric
from gridtap.plugin import Plugin

from . import batsignal
from .metrics import INBOUND_KNOWN, METRICS, PACKETS, GoodweState, device_label, frame_metrics

#: Seconds a thread may keep the GIL while the relay waits for it (Python's default is 0.005).
RELAY_SWITCH_INTERVAL = 0.001

if TYPE_CHECKING:
    import asyncio

    from .proxy import GoodweProxy

log = logging.getLogger("gridtap.goodwe")


@dataclass
class GoodweConfig:
    listen_host: str = setting("0.0.0.0", help="address the proxy listens on for devices")
    listen_port: int = setting(20001, help="port the proxy listens on (devices dial 20001)")
    upstream_host: str = setting("tcp.goodwe-power.com",
                                 help="SEMS server to forward to; resolved again at every dial")
    upstream_port: int = setting(20001, help="SEMS server port")
    forward: bool = setting(True, help="forward to SEMS; false = answer the devices ourselves (no cloud)")
    batsignal: bool = setting(False, help="draw the bat signal on the SEMS chart (rewrites forwarded meter power)")
    stale_after: Duration = setting(Duration(300.0),
                                    help="a device's readings are dropped when it sent no data upload for this "
                                         "long; with no fresh device at all collect() fails")
    inbound_allow: list[str] = setting(
        [f"0x{t:04x}" for t in sorted(INBOUND_KNOWN)],
        help="SEMS-to-device packet types forwarded to the device; all others are dropped")
    dial_timeout: Duration = setting(Duration(8.0), help="upstream connect timeout")


def _parse_types(values: list[str], key: str = "goodwe.inbound_allow") -> frozenset[int]:
    """Packet types as written in the config (``0x0116``, ``278``); each fits the 16-bit TYPE field."""
    out = set()
    for v in values:
        try:
            t = int(v, 0)
        except ValueError:
            raise ConfigError(key, f"not a packet type: {v!r}") from None
        if not 0 <= t <= 0xFFFF:
            # A type that does not fit the frame's 2-byte field would never match: the user
            # meant something else, and silently allowing nothing hides it.
            raise ConfigError(key, f"packet type {v!r} is outside 0x0000-0xffff")
        out.add(t)
    return frozenset(out)


def _packet_type(text: str) -> int:
    """``--body`` argument: a packet type such as ``0x0104`` (argparse says so when it is not)."""
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a packet type: {text!r} (e.g. 0x0104)") from None
    if not 0 <= value <= 0xFFFF:
        raise argparse.ArgumentTypeError(f"packet type {text!r} is outside 0x0000-0xffff")
    return value


def _decoded_metrics(frames: list[dict]) -> list[Metric]:
    """Samples of decoded frames, as `gridtap decode` prints them: a packet count per frame,
    then the frame's readings (the model named by an earlier upload of the device kept)."""
    out: list[Metric] = []
    models: dict[str, str] = {}
    for d in frames:
        out.append(PACKETS(1, direction=d["direction"], type=f"0x{d['type']:04x}"))
        if d["blocks"] is not None and d["direction"] == "outbound":
            serial = d["device_id"] + d["device_serial"]
            samples = frame_metrics(d, models.get(serial))
            models[serial] = dict(samples[0].labels)["model"]
            out.extend(samples)
    return out


def _listen_failure(e: BaseException) -> str:
    """The OS's reason, without asyncio's "error while attempting to bind on address ..." wrapper."""
    if isinstance(e, socket.gaierror):
        return e.strerror or str(e)
    if isinstance(e, OSError) and e.errno:
        return os.strerror(e.errno)
    return str(e) or type(e).__name__


class GoodwePlugin(Plugin):
    name = "goodwe"
    description = "Goodwe inverters, ET hybrids and HomeKit meters via a SEMS-portal proxy"
    config_schema = GoodweConfig
    simulator_module = ".simulator"
    metrics = METRICS
    default_interval = 10.0
    once_wait = 300.0  # devices upload every 1-5 minutes; `run --once` waits for one
    # One proxy serves several physical devices: the sample's own `device` label (meter,
    # inverter) plus the serial tell them apart (Pushgateway groups, HA devices).
    subdevice_labels = ("serial",)

    def __init__(self, config: GoodweConfig, device: str) -> None:
        super().__init__(config, device)
        # Keys name the device too: under `gridtap serve` several goodwe proxies may be configured.
        where = f"{self.name}/{device}"
        self.where = where
        check_port(f"{where}.listen_port", config.listen_port, lowest=0)  # 0 = any free port (tests)
        check_port(f"{where}.upstream_port", config.upstream_port)
        # The proxy (and asyncio) only for a running device: `decode`/`simulate` never get here.
        from .proxy import ProxyOptions  # noqa: PLC0415
        # Every decoded data upload is a new reading: outputs get it at once (Plugin.updated).
        self.state = GoodweState(on_data=self.updated)
        self.started = time.time()
        self.options = ProxyOptions(
            listen_host=config.listen_host, listen_port=config.listen_port,
            upstream_host=config.upstream_host, upstream_port=config.upstream_port,
            forward=config.forward, batsignal=config.batsignal,
            inbound_allow=_parse_types(config.inbound_allow, f"{where}.inbound_allow"),
            dial_timeout=float(config.dial_timeout),
        )
        self.proxy: GoodweProxy | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None

    # --- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        """Run the proxy on a background thread; raises if the listen address is unusable."""
        if self._thread is not None:
            return
        # The relay thread needs the GIL within a millisecond of a packet, while the collecting
        # thread builds samples in Python: by default that thread keeps the GIL up to 5 ms
        # before it is asked to hand over, which was most of the added p99 with 1,000 devices.
        sys.setswitchinterval(min(sys.getswitchinterval(), RELAY_SWITCH_INTERVAL))

        import asyncio  # noqa: PLC0415

        from .proxy import GoodweProxy  # noqa: PLC0415

        def main() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            self.proxy = GoodweProxy(self.options, self.state)
            try:
                loop.run_until_complete(self.proxy.start())
            except BaseException as e:  # noqa: BLE001 - handed to start()
                self._error = e
                self._started.set()
                loop.close()
                return
            self._started.set()
            try:
                loop.run_forever()
                loop.run_until_complete(self.proxy.stop())
            finally:
                loop.close()

        self.started = time.time()
        self._thread = threading.Thread(target=main, name=f"goodwe-proxy-{self.device}", daemon=True)
        self._thread.start()
        self._started.wait(10.0)
        if self._error is not None:
            self._thread = None
            # Worded like the /metrics listener's error (runtime.serve_prometheus), naming the
            # device and setting since several proxies may run in one `gridtap serve`.
            raise ConfigError(f"{self.where}.listen_port", f"cannot listen on {self.options.listen_host}:"
                                                           f"{self.options.listen_port}: "
                                                           f"{_listen_failure(self._error)}")
        log.info("goodwe proxy listening on %s:%s", *self.address)

    @property
    def address(self) -> tuple[str, int]:
        """Where the proxy actually listens (useful with listen_port 0)."""
        assert self.proxy is not None
        return self.proxy.address

    def close(self) -> None:
        if self._loop is not None and self._thread is not None:
            if not self._loop.is_closed():
                self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5.0)
        self._thread = None

    def collect(self) -> list[Metric]:
        """The readings of every physical device that uploaded data within ``stale_after``.

        Each device goes stale on its own; the proxy's counters are :meth:`diagnostics`.
        Until the first data upload (and at most ``stale_after`` after start) this is
        :class:`Waiting`: devices push every few minutes, and a restart is not an outage.
        """
        now = time.time()
        stale_after = float(self.config.stale_after)
        samples = self.state.measurements(now, stale_after)
        if samples:
            return samples
        last = self.state.last_data
        if last is None:
            waited = now - self.started
            if waited < stale_after:
                raise Waiting(f"goodwe: waiting for the first upload (no device has sent data yet; "
                              f"devices upload every 1-5 minutes, stale_after {self.config.stale_after:g}s)")
            raise DeviceError(f"goodwe: no device has sent data in the {waited:.0f}s since start "
                              f"(stale_after {self.config.stale_after:g}s)")
        raise DeviceError(f"goodwe: no device data for {now - last:.0f}s (stale_after {self.config.stale_after:g}s)")

    def diagnostics(self) -> list[Metric]:
        """The proxy's own counters (packets, decode errors, drops, bytes, connections, dial
        failures): published before the first upload and while every device is stale."""
        if self.config.batsignal:
            self.state.batsignal = batsignal.curves(dt.datetime.now(dt.UTC))
        return self.state.diagnostics()

    def status(self) -> dict[str, object]:
        now = time.time()
        return {"devices": [
            {"serial": d.serial, "device": device_label(d.family << 8),
             "last_upload_age_seconds": None if d.last_data is None else round(now - d.last_data, 1)}
            for d in self.state.seen()]}

    # --- gridtap decode goodwe FILE -----------------------------------------------------
    @classmethod
    def add_decode_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--direction", choices=("outbound", "inbound"), default="outbound",
                            help="outbound = device to SEMS (POSTGW), inbound = SEMS to device (GW)")
        parser.add_argument("--body", metavar="TYPE", type=_packet_type,
                            help="the file is one frame body without its envelope (bytes after TYPE, before "
                                 "the CRC, like the *.body.hex captures) of this packet type, e.g. 0x0104")

    @classmethod
    def decode(cls, data: bytes, args: argparse.Namespace) -> list[Metric]:
        """Decode every frame in a capture; junk between frames is skipped.

        Each frame that does not decode is reported on its own log line (its number, offset
        and why) and skipped; InputError only when not one frame decoded. With ``--body``
        the data is a single frame body of the given type.
        """
        direction = getattr(args, "direction", None) or "outbound"
        body_type = getattr(args, "body", None)
        if body_type is not None:
            try:
                d = _native.goodwe_decode_body(data, direction, body_type)
            except _native.DecodeError as e:
                raise InputError(f"goodwe: {len(data)}-byte {direction} body of type 0x{body_type:04x}: {e}") from None
            return _decoded_metrics([d])
        want = "POSTGW" if direction == "outbound" else "GW"
        splitter = _native.GoodweSplitter(direction)
        units = splitter.feed(data) + splitter.flush()
        decoded: list[dict] = []
        bad = 0
        offset = number = 0
        for kind, raw in units:
            at = offset
            offset += len(raw)
            if kind == "keepalive":
                continue
            if kind == "junk":
                if raw.startswith(want.encode()) and len(raw) >= len(want) + 4:
                    # The capture ends inside a frame: the splitter held it, waiting for the rest.
                    number += 1
                    bad += 1
                    declared = int.from_bytes(raw[len(want):len(want) + 4], "big") + len(want) + 7
                    log.warning("frame %d at offset %d: truncated: its LEN says %d bytes, the capture has %d",
                                number, at, declared, len(raw))
                else:
                    log.debug("offset %d: skipped %d bytes that start no %s frame", at, len(raw), direction)
                continue
            number += 1
            try:
                decoded.append(_native.goodwe_decode_frame(raw, direction))
            except _native.DecodeError as e:
                bad += 1
                log.warning("frame %d at offset %d (%d bytes): %s", number, at, len(raw), e)
        if not decoded:
            found = f"{bad} bad frame{'s' * (bad != 1)}" if bad else f"no complete {direction} frame ({want}...)"
            hint = "" if bad or data.startswith(want.encode()) else "; a frame body alone needs --body TYPE"
            raise InputError(f"goodwe: nothing decoded in {len(data)} bytes: {found}{hint}")
        return _decoded_metrics(decoded)
