"""A simulated Intergas boiler, so the plugin can be run and tested without one.

It answers the service-port commands on a pseudo-terminal (``--pty``) or a TCP port
(``--tcp``, like a ser2net/ESPHome bridge), or serves the LAN2RF gateway JSON
(``--lan2rf``). Values move over time (temperatures follow a sine, counters grow) and are
turned into bytes by the project's own encoder (:mod:`.encode`), so the simulator also
exercises encoder/decoder agreement. ``--replay DIR`` serves captured ``.hex`` blocks instead.

Fault injection (:meth:`IntergasSimulator.inject`, :meth:`IntergasSimulator.send_stale`)
produces the failures spec §14 is about: 31- and 33-byte replies, silence, stale bytes.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import json
import math
import os
import pty
import select
import socket
import tempfile
import threading
import time
import tty
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from gridtap.captures import read_hex_file
from gridtap.config import parse_host_port
from gridtap.errors import ConfigError, InputError
from gridtap.simulate import run_in_foreground

from .encode import encode_block
from .reference import PARAMETERS
from .transport import COMMANDS

#: Reply bytes by command bytes (both directions of spec §3).
BLOCK_BY_COMMAND = {cmd: kind for kind, cmd in COMMANDS.items()}


# --------------------------------------------------------------------- values over time
class BoilerModel:
    """A boiler heating on OpenTherm whose values drift with time ``t`` (seconds)."""

    def __init__(
        self, start: float | None = None, period: float = 60.0, clock: Callable[[], float] = time.time,
    ) -> None:
        self.clock = clock
        self.start = clock() if start is None else start
        self.period = period

    def values(self, kind: str, now: float | None = None) -> dict[str, Any]:
        t = (self.clock() if now is None else now) - self.start
        s = math.sin(2 * math.pi * t / self.period)
        if kind == "S?":
            return {
                "t1_aanvoer": round(65.0 + 5 * s, 2), "t2_flow": round(47.5 + 3 * s, 2),
                "t3_retour": round(36.5 + 2 * s, 2), "t4_warmwater": round(26.7 + s, 2),
                "t5_boiler": -51.0, "t6_buiten": -51.0, "ch_pressure": round(1.7 + 0.05 * s, 2),
                "temp_set": 50.0, "fanspeed_set_rpm": 3000, "fanspeed_rpm": int(3000 + 200 * s),
                "fan_pwm_pct": round(20 + 5 * s, 1), "io_curr_uA": round(7.3 + 0.5 * s, 2),
                "display_raw": 0, "fault_indicator": 0x40, "fault_code": 0xFF,
                "status_flags1": 0x98, "status_flags2": 0x25,  # pump, dwk, opentherm / gas, io, pressure
            }
        if kind == "S2":
            return {
                "tapflow_lpm": 0.0, "pump_pwm_pct": round(40 + 10 * s, 1), "ot_master_member_id": 0,
                "room_override_zone1": 0.0, "room_set_zone1": 20.5, "room_temp_zone1": round(19.5 + 0.3 * s, 2),
                "room_override_zone2": 327.67, "room_set_zone2": 327.67, "room_temp_zone2": 327.67,
                "override_outside_temp": 327.67, "ot_product_version": 0, "ot_product_type": 0,
            }
        if kind == "CRC":
            return {
                "interrupt_time": 200.0, "interrupt_load_pct": 135.84, "main_load_pct": 25.125,
                "net_frequency_hz": 50.0, "voltage_reference_v": 2.5,
                "checksum1": "12345678", "checksum2": "9abcdef0",
            }
        if kind == "HN":
            hours = int(t // 3600)
            return {
                "line_power_connected_hours": 20000 + hours, "line_power_disconnect": 100,
                "ch_function_hours": 4000 + hours, "dhw_function_hours": 250,
                "burnerstarts": 70000 + int(t // 10), "ignition_failed": 4, "flame_lost": 1, "reset": 3,
                "gasmeter_ch_raw": 53_833_816 + int(t * 5), "gasmeter_dhw_raw": 5_191_142 + int(t),
                "watermeter_raw": 779_017 + int(t // 2), "burnerstarts_dhw": 14_000 + int(t // 60),
            }
        if kind == "V?":
            return dict(zip(PARAMETERS, (1, 0, 80, 60, 3, 0, 0, 0, 0, 0, 65, 75, 25, -7, 25, 5, 1, 0, 0, 1,
                                         20, 20, 25, 1, 35, 67, 60, 0, 10, 0, 40), strict=True))
        if kind == "REV":
            return {
                "hardware_release": "ic2sim   *P000000*", "software_release": "V0.01", "separator": "-",
                "rom_checksum1": "00000000", "rom_checksum2": "ffffffff",
            }
        raise KeyError(kind)

    def block(self, kind: str, now: float | None = None) -> bytes:
        return encode_block(kind, self.values(kind, now))


def _kind_of_file(path: Path) -> str | None:
    """``S_idle.hex`` → S?, ``reconstructed_S2.hex`` → S2 … (first matching ``_`` token)."""
    names = {"S": "S?", "S2": "S2", "CRC": "CRC", "HN": "HN", "V": "V?", "REV": "REV"}
    for token in path.stem.split("_"):
        if token.upper() in names:
            return names[token.upper()]
    return None


class ReplaySource:
    """Blocks from a folder of ``.hex`` files; several files of one block are served in turn."""

    def __init__(self, folder: str | Path) -> None:
        self.blocks: dict[str, collections.deque[bytes]] = {}
        where = Path(folder)
        if not where.exists():
            raise InputError(f"{folder}: no such folder (--replay takes a folder of .hex files)")
        if not where.is_dir():
            raise InputError(f"{folder}: not a folder (--replay takes a folder of .hex files)")
        for path in sorted(where.glob("*.hex")):
            kind = _kind_of_file(path)
            if kind:
                self.blocks.setdefault(kind, collections.deque()).append(read_hex_file(path))
        if not self.blocks:
            raise InputError(f"{folder}: no S*/S2*/CRC*/HN*/V*/REV*.hex files")

    def block(self, kind: str, now: float | None = None) -> bytes | None:
        q = self.blocks.get(kind)
        if not q:
            return None
        data = q[0]
        q.rotate(-1)
        return data


# --------------------------------------------------------------------- the command side
class Responder:
    """Turns received command bytes into reply bytes, applying queued faults."""

    def __init__(self, source: BoilerModel | ReplaySource) -> None:
        self.source = source
        self.faults: collections.deque[str] = collections.deque()
        self.commands: list[str] = []
        self._buf = b""
        self._lock = threading.Lock()

    def reset(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> list[bytes]:
        """Replies for every complete command in ``data`` (unknown ``...\\r`` lines get none)."""
        replies = []
        for byte in data:
            self._buf = (self._buf + bytes([byte]))[-8:]
            for cmd, kind in BLOCK_BY_COMMAND.items():
                if self._buf.endswith(cmd):
                    self._buf = b""
                    reply = self._reply(kind)
                    if reply:
                        replies.append(reply)
                    break
            else:
                if self._buf.endswith(b"\r"):
                    self._buf = b""
        return replies

    def _reply(self, kind: str) -> bytes:
        with self._lock:
            self.commands.append(kind)
            fault = self.faults.popleft() if self.faults else None
        block = self.source.block(kind)
        if block is None or fault == "silent":
            return b""
        if fault == "short":
            return block[:31]
        if fault == "long":
            return block + b"\x00"
        return block


# --------------------------------------------------------------------- servers
def _clear_link(link: str) -> None:
    """Make way for our symlink at ``link``, or refuse with a ConfigError.

    Only a dangling symlink (left by a simulator that was killed) is removed. A regular file
    may be the user's own, and a live link belongs to a running simulator whose clients
    would silently switch over to us.
    """
    if os.path.islink(link):
        if os.path.exists(link):
            raise ConfigError("--pty", f"{link} already links to {os.readlink(link)}, which exists "
                                       "(another simulator running?); pick another path")
        os.unlink(link)
    elif os.path.lexists(link):
        raise ConfigError("--pty", f"{link} exists and is not a symlink; refusing to replace it")


class _PtyServer:
    def __init__(self, link: str, responder: Responder) -> None:
        self.link = link
        self.responder = responder
        _clear_link(link)
        self.master, self.slave = pty.openpty()
        tty.setraw(self.slave)
        self.slave_name = os.ttyname(self.slave)
        try:
            os.symlink(self.slave_name, link)
        except OSError as e:  # a missing folder, no permission, or someone else was quicker
            for fd in (self.master, self.slave):
                os.close(fd)
            raise ConfigError("--pty", f"cannot create the link {link}: {e.strerror}") from None
        self.address = link
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="intergas-sim-pty", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def write(self, data: bytes) -> None:
        os.write(self.master, data)

    def _run(self) -> None:
        while not self._stop.is_set():
            r, _, _ = select.select([self.master], [], [], 0.05)
            if not r:
                continue
            try:
                data = os.read(self.master, 256)
            except OSError:
                time.sleep(0.01)
                continue
            for reply in self.responder.feed(data):
                self.write(reply)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)
        try:
            if os.path.islink(self.link) and os.readlink(self.link) == self.slave_name:
                os.unlink(self.link)
        except OSError:
            pass


class _TcpServer:
    """Raw TCP like ser2net: one client at a time, clients one after another."""

    def __init__(self, host: str, port: int, responder: Responder) -> None:
        self.responder = responder
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(4)
        self.sock.settimeout(0.05)
        h, p = self.sock.getsockname()[:2]
        self.address = f"socket://{h}:{p}"
        self.client: socket.socket | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="intergas-sim-tcp", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def write(self, data: bytes) -> None:
        client = self.client
        if client is not None:
            client.sendall(data)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            client.settimeout(0.05)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no Nagle delay on tiny writes
            self.client = client
            self.responder.reset()
            try:
                while not self._stop.is_set():
                    try:
                        data = client.recv(256)
                    except TimeoutError:
                        continue
                    if not data:
                        break
                    for reply in self.responder.feed(data):
                        client.sendall(reply)
            except OSError:
                pass
            finally:
                self.client = None
                client.close()

    def stop(self) -> None:
        self._stop.set()
        client = self.client
        if client is not None:
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self._thread.join(timeout=2)


class _Lan2rfServer:
    """The gateway's JSON API over HTTP, optionally under ``/protect/`` with basic auth."""

    def __init__(self, host: str, port: int, sim: IntergasSimulator, auth: str | None) -> None:
        self.sim = sim
        expected = "Basic " + base64.b64encode(auth.encode()).decode() if auth else None

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server API
                url = urlsplit(self.path)
                path = url.path
                if expected is not None:
                    if not path.startswith("/protect/"):
                        return self._send(404, b"not found")
                    if self.headers.get("Authorization") != expected:
                        self.send_response(401)
                        self.send_header("WWW-Authenticate", 'Basic realm="intouch"')
                        self.end_headers()
                        return None
                    path = path[len("/protect"):]
                elif path.startswith("/protect/"):
                    return self._send(404, b"not found")
                if path == "/heaterlist.json":
                    return self._send(200, sim.heaterlist_text().encode())
                if path == "/data.json":
                    heater = parse_qs(url.query).get("heater", ["0"])[0]
                    if heater != "0":
                        return self._send(200, b"{}")
                    return self._send(200, json.dumps(sim.lan2rf_payload()).encode())
                return self._send(404, b"not found")

            def _send(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        h, p = self.httpd.server_address[:2]
        self.address = f"http://{h}:{p}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="intergas-sim-lan2rf", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def write(self, data: bytes) -> None:
        raise RuntimeError("stale bytes make no sense on the HTTP gateway")

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=2)


def _check_auth(auth: str) -> None:
    # The value holds a password: it is never echoed.
    user, sep, _password = auth.partition(":")
    if not sep or not user:
        raise ConfigError("--auth", "expected USER:PASSWORD")


class IntergasSimulator:
    """In-process simulator: ``sim = IntergasSimulator(tcp="127.0.0.1:0"); sim.start(); sim.address``.

    Exactly one of ``pty`` (symlink path), ``tcp`` (host:port, port 0 = any) or ``lan2rf``
    (host:port) is given. ``replay`` is a folder of ``.hex`` blocks to serve instead of the
    moving model. ``address`` is what the plugin's ``port``/``gateway_url`` takes.
    """

    def __init__(
        self,
        *,
        pty: str | None = None,
        tcp: str | None = None,
        lan2rf: str | None = None,
        auth: str | None = None,
        replay: str | Path | None = None,
        model: BoilerModel | None = None,
    ) -> None:
        if sum(x is not None for x in (pty, tcp, lan2rf)) != 1:
            raise ValueError("give exactly one of pty, tcp, lan2rf")
        # Checked here, before anything listens, so a mistake is one config error (exit 2).
        self._tcp = parse_host_port("--tcp", tcp, "127.0.0.1") if tcp is not None else None
        self._lan2rf = parse_host_port("--lan2rf", lan2rf, "127.0.0.1") if lan2rf is not None else None
        if auth is not None:
            if lan2rf is None:
                raise ConfigError("--auth", "only the LAN2RF gateway (--lan2rf) has authentication")
            _check_auth(auth)
        if replay is not None and lan2rf is not None:
            raise ConfigError("--replay", "replays service-port blocks; use it with --pty or --tcp, not --lan2rf")
        self.model = model or BoilerModel()
        self.source: BoilerModel | ReplaySource = ReplaySource(replay) if replay else self.model
        self.responder = Responder(self.source)
        self.heater_serial = "2110f25190"
        self.lan2rf_io = 0x0A  # pump + burner
        self._pty = pty
        self._auth = auth
        self._server: _PtyServer | _TcpServer | _Lan2rfServer | None = None

    @property
    def address(self) -> str:
        if self._server is None:
            raise RuntimeError("simulator not started")
        return self._server.address

    @property
    def commands(self) -> list[str]:
        """Every block requested so far, in order."""
        return self.responder.commands

    def start(self) -> IntergasSimulator:
        if self._pty is not None:
            self._server = _PtyServer(self._pty, self.responder)
        elif self._tcp is not None:
            self._server = _TcpServer(*self._tcp, self.responder)
        else:
            assert self._lan2rf is not None
            self._server = _Lan2rfServer(*self._lan2rf, self, self._auth)
        self._server.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.stop()

    def __enter__(self) -> IntergasSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------ fault injection
    def inject(self, *faults: str) -> None:
        """Spoil the next replies, one fault each: ``short`` (31 B), ``long`` (33 B), ``silent``."""
        for f in faults:
            if f not in ("short", "long", "silent", "ok"):
                raise ValueError(f"unknown fault {f!r}")
            self.responder.faults.append(f)

    def send_stale(self, data: bytes = b"\x7e\x00\x13\x37\xff") -> None:
        """Write unsolicited bytes now; they sit in the reader's buffer until it flushes."""
        assert self._server is not None
        self._server.write(data)

    # ------------------------------------------------------------ LAN2RF view
    def heaterlist_text(self) -> str:
        # Written by hand so a serial with a raw backslash comes out as invalid JSON, as the
        # real gateway does (spec §17).
        return '{"heaterlist":["' + self.heater_serial + '",null,null,null,null,null,null,null]}'

    def lan2rf_payload(self) -> dict[str, int]:
        s = self.model.values("S?")
        s2 = self.model.values("S2")

        def pair(name: str, value: float) -> dict[str, int]:
            raw = round(value * 100) & 0xFFFF
            return {f"{name}_lsb": raw & 0xFF, f"{name}_msb": raw >> 8}

        out: dict[str, int] = {"nodenr": 199, "displ_code": s["display_raw"], "IO": self.lan2rf_io,
                               "rf_message_rssi": 40, "rfstatus_cntr": 0}
        out |= pair("ch_temp", s["t1_aanvoer"]) | pair("tap_temp", s["t4_warmwater"])
        out |= pair("ch_pressure", s["ch_pressure"])
        for n in (1, 2):
            out |= pair(f"room_temp_{n}", s2[f"room_temp_zone{n}"])
            out |= pair(f"room_temp_set_{n}", s2[f"room_set_zone{n}"])
            out |= pair(f"room_set_ovr_{n}", s2[f"room_override_zone{n}"])
        out |= {"serial_year": 21, "serial_month": 10, "serial_line": 15, "serial_sn1": 1, "serial_sn2": 2,
                "serial_sn3": 3}
        return out


# --------------------------------------------------------------------- CLI
def add_arguments(parser: Any) -> None:
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--pty", metavar="LINKPATH", help="serve on a pseudo-terminal, symlinked at LINKPATH")
    where.add_argument("--tcp", metavar="HOST:PORT", help="serve raw TCP like a ser2net/ESPHome bridge")
    where.add_argument("--lan2rf", metavar="HOST:PORT", help="serve the LAN2RF gateway's HTTP JSON API")
    parser.add_argument("--auth", metavar="USER:PASS", help="LAN2RF: require basic auth under /protect/")
    parser.add_argument("--replay", metavar="DIR", help="serve the .hex blocks in DIR (S*, S2*, CRC*, HN*, V*, REV*)")


def run(args: Any) -> int:
    """Foreground simulator: prints ``ready <address>``, runs until SIGTERM/SIGINT, returns 0."""
    sim = IntergasSimulator(
        pty=getattr(args, "pty", None), tcp=getattr(args, "tcp", None), lan2rf=getattr(args, "lan2rf", None),
        auth=getattr(args, "auth", None), replay=getattr(args, "replay", None),
    )
    return run_in_foreground(sim, lambda: sim.address)


@contextlib.contextmanager
def demo_setup() -> Iterator[dict[str, object]]:
    """For ``gridtap demo``: the simulated boiler on a pty pair, read through pyserial as a
    real USB-serial adapter would be."""
    with tempfile.TemporaryDirectory(prefix="gridtap-demo-") as tmp:
        sim = IntergasSimulator(pty=str(Path(tmp) / "ttyIntergas"))
        sim.start()
        try:
            yield {"port": sim.address}
        finally:
            sim.stop()
