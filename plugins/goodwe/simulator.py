"""Simulated Goodwe devices and a simulated SEMS server, for tests, benches and demos.

Why: the proxy sits between two parties we do not control. The device simulator uploads
frames built by our own encoder (fresh IV and CRC, values that change over time) or replays
captures; the SEMS simulator ACKs uploads, sends keepalives, a set-clock command and a bogus
frame the proxy must drop. Both record every byte so tests can compare checksums.

Both run in-process (``start()``/``stop()`` on a background thread, or ``await run()`` in an
existing loop) or from ``gridtap simulate goodwe``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from gridtap import _native
from gridtap.captures import parse_hex
from gridtap.config import Duration
from gridtap.errors import ConfigError, InputError
from gridtap.simulate import run_in_foreground

from . import encoder, reference

DEFAULT_SERIALS = {"meter": "91000HKU00000001", "inverter": "53000DSC00000001", "et": "9010KETU00000001"}
FAMILY = {"meter": 0x03, "inverter": 0x01, "et": 0x02}
#: A well-formed frame of a type no real server sends: the proxy must drop it.
BOGUS_TYPE = 0x01F0


def _fast_encrypt(iv: bytes, cleartext: bytes) -> bytes:
    """The server side replies a lot: use the Rust AES there (framing is still ours)."""
    return _native.goodwe_encrypt(iv, cleartext)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).astimezone(encoder.BEIJING).replace(microsecond=0)


def info_frame(kind: str, serial: str, when: dt.datetime) -> bytes:
    """The upload a device sends first (0x?303 info / time sync)."""
    if kind == "meter":
        blocks = encoder.meter_info_blocks()
    elif kind == "inverter":
        blocks = encoder.dt_info_blocks("GW3000-DNS-30", e_total=21335, h_total=1721)
    else:
        blocks = encoder.et_info_blocks(serial, "GW10KN-ET")
    return encoder.outbound_frame((FAMILY[kind] << 8) | 0x03, serial, encoder.register_dump(blocks), when,
                                  envelope_pad=1 if kind == "et" else 0)


def data_frame(kind: str, serial: str, when: dt.datetime, step: int, cached: bool = False) -> bytes:
    """A live-data upload (0x?04) whose values move with ``step``; with ``cached`` the upload a
    device sends for a reading it could not deliver earlier (0x?145; the DNS uses another block
    set for it, the meter and ET are assumed to keep theirs: no capture shows them)."""
    wave = (step * 37) % 200
    ptype = (FAMILY[kind] << 8) | (0x45 if cached else 0x04)
    if kind == "meter":
        blocks = encoder.meter_blocks(energy_export=27078 + step, energy_generation=57941 + 2 * step,
                                      energy_import=80155 + step // 2, power_export=1557 - 10 * wave,
                                      power_generation=2601 + wave)
        return encoder.outbound_frame(ptype, serial, encoder.register_dump(blocks), when)
    if kind == "inverter":
        blocks = encoder.dt_blocks(when, vpv=3347 + wave, ipv=31 + wave % 20, vgrid=2425, igrid=50, fgrid=5004,
                                   power=1051 + wave, temperature=471, e_day=209 + step, e_total=20642 + step,
                                   h_total=1667 + step // 60, rssi=59,
                                   layout=encoder.DNS_CACHED if cached else encoder.DNS_DATA)
        return encoder.outbound_frame(ptype, serial, encoder.register_dump(blocks), when)
    blocks = encoder.et_blocks(when, serial, "GW10KN-ET", vpv1=5620 + wave, ipv1=10, vpv2=3000, ipv2=13,
                               vgrid=2322, igrid=16, fgrid=4996, active_power=736 + wave, load_power=180,
                               vbattery=4068, ibattery=-1, pbattery=-53 - wave, e_total=13534 + step,
                               e_day=488 + step, battery_temperature=355, soc=max(0, 100 - step % 100), soh=100,
                               e_battery_charge=7806 + step, e_battery_discharge=6331 + step // 2,
                               e_load_total=15877 + step, meter_export_wh=1122470.0 + 10 * step,
                               meter_import_wh=6472970.0 + 5 * step)
    return encoder.outbound_frame(ptype, serial, encoder.register_dump(blocks), when, envelope_pad=1)


def replay_frames(directory: str | Path) -> list[bytes]:
    """Outbound frames from ``*.hex`` captures in ``directory`` (sorted by name)."""
    frames = []
    for p in sorted(Path(directory).glob("*.hex")):
        data = parse_hex(p.read_text(errors="replace"))
        if data is not None and data.startswith(reference.OUTBOUND_PREFIX):
            frames.append(data)
    return frames


class _Threaded:
    """start()/stop() around an ``async run(stop)`` on a private event loop."""

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self.ready = threading.Event()
        self.error: BaseException | None = None

    async def run(self, stop: asyncio.Event) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def start(self, timeout: float = 5.0) -> None:
        def main() -> None:
            self._loop = asyncio.new_event_loop()
            self._stop = asyncio.Event()
            try:
                self._loop.run_until_complete(self.run(self._stop))
            except BaseException as e:  # noqa: BLE001 - reported to the starter
                self.error = e
                self.ready.set()
            finally:
                self._loop.close()

        self._thread = threading.Thread(target=main, name=type(self).__name__, daemon=True)
        self._thread.start()
        if not self.ready.wait(timeout):
            raise TimeoutError(f"{type(self).__name__} did not become ready")
        if self.error is not None:
            raise self.error

    def stop(self, timeout: float = 5.0) -> None:
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout)


def serial_problem(serial: str) -> str | None:
    """Why ``serial`` cannot be a Goodwe serial (None when it can).

    The serial is written into every frame as 16 ASCII bytes (DeviceID + DeviceSerial); a
    shorter or non-ASCII one would make the encoder fail after the simulator said ``ready``.
    """
    if len(serial) != 16 or not serial.isascii() or not serial.isprintable():
        return f"expected 16 printable ASCII characters, got {serial!r}"
    return None


class DeviceSimulator(_Threaded):
    """A Goodwe dongle: connects, uploads info then data every ``interval`` seconds.

    Answers a 0x0116 set-clock with 0x?310, as real devices do. ``count`` bounds the data
    uploads (None = until stopped). ``sent``/``received`` hold every byte on the wire.

    After the last upload (``count`` or the end of ``replay``) ``done`` is set. By default the
    connection then stays open until ``stop()`` (tests read the late replies); with
    ``finish=True`` ``run()`` returns by itself once the last upload was answered or
    ``reply_timeout`` seconds passed, which is what the command line wants.
    """

    def __init__(self, host: str, port: int, kind: str = "meter", serial: str | None = None,
                 interval: float = 1.0, count: int | None = None, replay: list[bytes] | None = None,
                 finish: bool = False, reply_timeout: float = 5.0, cached: int = 0) -> None:
        super().__init__()
        if kind not in FAMILY:
            raise ValueError(f"kind must be one of {', '.join(FAMILY)}")
        problem = serial_problem(serial) if serial is not None else None
        if problem is not None:
            raise ValueError(f"serial: {problem}")
        self.host, self.port, self.kind = host, port, kind
        self.serial = serial or DEFAULT_SERIALS[kind]
        self.interval, self.count, self.replay = interval, count, replay
        self.finish, self.reply_timeout = finish, reply_timeout
        #: Cached uploads (0x?145) sent after the info upload, before the live ones, the way a
        #: device catches up after an outage (timestamps one interval apart, in the past).
        self.cached = cached
        self.sent = bytearray()
        self.received = bytearray()
        self.received_units: list[tuple[str, bytes]] = []
        self.frames_sent = 0
        self.replies = 0
        self.done = threading.Event()
        self.reply_event: asyncio.Event | None = None

    async def run(self, stop: asyncio.Event) -> None:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), 5.0)
        self.reply_event = asyncio.Event()
        self.ready.set()
        reader_task = asyncio.create_task(self._read(reader, writer))
        try:
            # None = upload until stopped; a replay ends with its captures (or earlier, at count).
            total = self.count
            if self.replay is not None:
                total = len(self.replay) if total is None else min(total, len(self.replay))
            uploaded = False
            if self.replay is None:
                await self._upload(writer, info_frame(self.kind, self.serial, _now()))
                uploaded = True
                for k in range(self.cached, 0, -1):
                    past = _now() - dt.timedelta(seconds=max(self.interval, 60) * k)
                    await self._upload(writer, data_frame(self.kind, self.serial, past, -k, cached=True))
            step = 0
            while not stop.is_set() and (total is None or step < total):
                if self.replay is not None:
                    frame = self.replay[step]
                else:
                    frame = data_frame(self.kind, self.serial, _now(), step)
                await self._upload(writer, frame)
                uploaded = True
                step += 1
                if self.finish and step == total:
                    break  # no pause after the last upload: its answer is awaited below
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.interval)
            self.done.set()
            if not self.finish:
                await stop.wait()
            elif uploaded and not stop.is_set():
                await self._await_reply(stop)
        finally:
            reader_task.cancel()
            with contextlib.suppress(BaseException):
                await reader_task
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _upload(self, writer: asyncio.StreamWriter, frame: bytes) -> None:
        """Send an upload; ``reply_event`` then tells whether anything answered it."""
        assert self.reply_event is not None
        self.reply_event.clear()
        await self._send(writer, frame)

    async def _await_reply(self, stop: asyncio.Event) -> None:
        """Until the last upload is answered, ``stop`` is set or ``reply_timeout`` passes.

        An upstream that never answers (a proxy whose SEMS is down) must not keep a
        ``--count`` run alive forever, hence the timeout rather than waiting for the ACK.
        """
        assert self.reply_event is not None
        waits = [asyncio.ensure_future(self.reply_event.wait()), asyncio.ensure_future(stop.wait())]
        try:
            await asyncio.wait(waits, timeout=self.reply_timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    async def _send(self, writer: asyncio.StreamWriter, frame: bytes) -> None:
        writer.write(frame)
        self.sent += frame
        self.frames_sent += 1
        await writer.drain()

    async def _read(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        split = reference.Splitter("inbound")
        while True:
            data = await reader.read(65536)
            if not data:
                return
            self.received += data
            for kind, raw in split.feed(data):
                self.received_units.append((kind, raw))
                self.replies += 1
                assert self.reply_event is not None
                self.reply_event.set()
                if kind != "frame":
                    continue
                with contextlib.suppress(reference.DecodeError):
                    d = reference.decode_frame(raw, "inbound")
                    if d["type"] == 0x0116:
                        await self._send(writer, encoder.time_sync_ack(FAMILY[self.kind], self.serial, _now()))


class SemsSimulator(_Threaded):
    """The SEMS server: ACKs uploads, sends a set-clock after the info upload, keepalives,
    and one bogus frame per connection (``sent_log`` says which replies are which)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, bogus: bool = True) -> None:
        super().__init__()
        self.host, self.port, self.bogus = host, port, bogus
        self.received = bytearray()
        self.sent_log: list[tuple[str, bytes]] = []
        self.frames: list[dict] = []
        self.address: tuple[str, int] | None = None
        self.connections = 0

    async def run(self, stop: asyncio.Event) -> None:
        server = await asyncio.start_server(self._handle, self.host, self.port)
        self.address = server.sockets[0].getsockname()[:2]
        self.ready.set()
        try:
            await stop.wait()
        finally:
            server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1.0)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        split = reference.Splitter("outbound")
        bogus_sent = not self.bogus
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    return
                self.received += data
                for kind, raw in split.feed(data):
                    if kind != "frame":
                        continue
                    try:
                        d = _native.goodwe_decode_frame(raw, "outbound")
                    except _native.DecodeError:
                        continue
                    self.frames.append(d)
                    ptype, serial = d["type"], d["device_id"] + d["device_serial"]
                    if ptype & 0xFF not in (0x03, 0x04, 0x45):
                        continue
                    self._send(writer, "ack", encoder.ack(ptype, serial, _now(), encrypt=_fast_encrypt))
                    if ptype & 0xFF == 0x03:
                        self._send(writer, "set_time", encoder.set_time(serial, encrypt=_fast_encrypt))
                    self._send(writer, "keepalive", reference.KEEPALIVE)
                    if not bogus_sent:
                        bogus_sent = True
                        self._send(writer, "bogus", encoder.inbound_frame(BOGUS_TYPE, serial, b"\x00" * 32, _now()))
                        self._send(writer, "bogus", b"GW\x00\x00\x00\x31\x03\x04" + b"\x00" * 50)
                await writer.drain()
        except (ConnectionError, OSError):
            return
        finally:
            writer.close()

    def _send(self, writer: asyncio.StreamWriter, label: str, data: bytes) -> None:
        writer.write(data)
        self.sent_log.append((label, data))

    def expected_at_device(self) -> bytes:
        """Everything sent except the bogus frames: what a correct proxy delivers."""
        return b"".join(data for label, data in self.sent_log if label != "bogus")


# --- command line ----------------------------------------------------------------------

def _hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--role", choices=("device", "sems"), default="device",
                        help="play a device uploading to --connect, or the SEMS server on --listen")
    parser.add_argument("--connect", type=_hostport, metavar="HOST:PORT",
                        help="device role: where to upload (the proxy)")
    parser.add_argument("--listen", type=_hostport, metavar="HOST:PORT", default=("127.0.0.1", 20001),
                        help="sems role: address to listen on (port 0 = any)")
    parser.add_argument("--kind", choices=tuple(FAMILY), default="meter",
                        help="device role: meter (HomeKit 1000), inverter (DNS G3) or et (ET hybrid)")
    parser.add_argument("--serial", help="device role: 16-character ASCII serial")
    parser.add_argument("--interval", metavar="DURATION", default="5s",
                        help="device role: time between uploads, e.g. 5s, 500ms, 1m (default 5s)")
    parser.add_argument("--count", type=int, help="device role: exit after this many data uploads")
    parser.add_argument("--cached", type=int, default=0, metavar="N",
                        help="device role: first send N cached uploads (0x?145), as a device does after an outage")
    parser.add_argument("--replay", metavar="DIR", help="device role: send the POSTGW frames of DIR/*.hex, then exit")
    parser.add_argument("--no-bogus", action="store_true", help="sems role: do not send the bogus frame")


def _device_from_args(args: argparse.Namespace) -> DeviceSimulator:
    """The device simulator the flags ask for; ConfigError/InputError (exit 2) on a mistake."""
    if args.connect is None:
        raise ConfigError("--connect", "HOST:PORT is required for the device role")
    try:
        interval = float(Duration.parse(args.interval))
    except ValueError as e:
        raise ConfigError("--interval", str(e)) from None
    if args.count is not None and args.count < 0:
        raise ConfigError("--count", f"must be 0 or more, got {args.count}")
    problem = serial_problem(args.serial) if args.serial is not None else None
    if problem is not None:
        raise ConfigError("--serial", problem)
    replay = None
    if args.replay:
        if not Path(args.replay).is_dir():
            raise InputError(f"--replay {args.replay}: not a directory")
        try:
            replay = replay_frames(args.replay)
        except OSError as e:
            raise InputError(f"--replay {args.replay}: {e.strerror or e}") from None
        if not replay:
            raise InputError(f"no POSTGW frames in {args.replay}/*.hex")
    if args.cached < 0:
        raise ConfigError("--cached", f"must be 0 or more, got {args.cached}")
    return DeviceSimulator(*args.connect, kind=args.kind, serial=args.serial, interval=interval,
                           count=args.count, replay=replay, finish=True, cached=args.cached)


def run(args: argparse.Namespace) -> int:
    """Run a simulator in the foreground; exit 0 on SIGTERM/SIGINT.

    The device role also exits 0 by itself after ``--count`` data uploads or the last
    ``--replay`` frame (once answered, or after a timeout); without either it uploads until
    stopped. A connection lost mid-run is one line and exit 1.
    """
    sim: _Threaded = (_device_from_args(args) if args.role == "device"
                      else SemsSimulator(*args.listen, bogus=not args.no_bogus))

    def address() -> str:
        if isinstance(sim, SemsSimulator):
            assert sim.address is not None
            return f"{sim.address[0]}:{sim.address[1]}"
        return f"{args.connect[0]}:{args.connect[1]}"

    # The device's run() returns by itself when its uploads are over (finish=True): the
    # thread ending is what ends the foreground loop.
    rc = run_in_foreground(sim, address, running=lambda: sim._thread is None or sim._thread.is_alive())
    if rc == 0 and isinstance(sim, DeviceSimulator) and sim.error is not None:
        # run_in_foreground reports start-up failures (rc 1); this one came after "ready".
        err = sim.error
        reason = (err.strerror if isinstance(err, OSError) else None) or str(err) or type(err).__name__
        print(f"gridtap: goodwe simulator: upload to {address()} failed: {reason}", file=sys.stderr)
        return 1
    return rc


@contextlib.contextmanager
def demo_setup(interval: float = 5.0) -> Iterator[dict[str, object]]:
    """For ``gridtap demo``: a SEMS simulator upstream and three simulated devices
    (meter, DNS inverter, ET hybrid) uploading through the proxy the demo configures."""
    import socket

    sems = SemsSimulator(bogus=True)
    sems.start()
    assert sems.address is not None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    devices: list[DeviceSimulator] = []
    stop = threading.Event()

    def start_devices() -> None:
        # The proxy starts listening only once the demo has started the plugin.
        while not stop.is_set():
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                stop.wait(0.2)
        for kind in ("meter", "inverter", "et"):
            if stop.is_set():
                return
            device = DeviceSimulator("127.0.0.1", port, kind=kind, interval=interval)
            with contextlib.suppress(Exception):
                device.start()
                devices.append(device)

    starter = threading.Thread(target=start_devices, name="goodwe-demo-devices", daemon=True)
    starter.start()
    try:
        yield {"listen_host": "127.0.0.1", "listen_port": port, "upstream_host": sems.address[0],
               "upstream_port": sems.address[1]}
    finally:
        stop.set()
        starter.join(5)
        for device in devices:
            device.stop()
        sems.stop()
