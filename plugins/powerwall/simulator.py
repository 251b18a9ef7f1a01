"""A simulated Tesla Energy Gateway: the local HTTPS API on loopback, faults on demand (spec 10).

* HTTPS with a throw-away self-signed certificate made at start (CN/SAN ``powerwall``, ``teg``,
  ``powerpack``; made with the ``openssl`` command, which every Debian has: the project does not
  depend on the ``cryptography`` package). Handshakes with another SNI are refused, as the
  gateway refuses them.
* Documents from :mod:`.documents` (``--firmware``), or replayed from a capture folder in the
  layout of ``shared/fixtures/powerwall`` (``--replay DIR``: ``status.json`` or
  ``api.status.json`` for ``/api/status``, ``.err`` header dumps for error answers).
* ``POST /api/login/Basic`` checks ``username`` customer and the password; a token is accepted
  as the ``AuthCookie`` cookie or ``Authorization: Bearer``. After ``--lockout-after`` bad
  logins within ``--lockout-window`` every login is answered 429 for ``--lockout-time``.
* Faults: revoke every token, stop the sitemaster (502 with an empty body), answer logins 404
  like a Powerwall 3 (``--powerwall3``), drop every connection for N seconds (a gateway off
  Wi-Fi: reset, or ``silent`` = accept and never answer), send answers a byte at a time (a
  link that barely works), rotate the certificate.
* Counters for tests: requests per path, login attempts by result, SNI names seen.

Control: in-process through :class:`PowerwallSimulator`'s methods, or over plain HTTP on a
loopback port (``--control HOST:PORT``): ``GET /counters``, ``GET /certificate``, ``POST /control``
with a JSON object of ``revoke``, ``revoke_on`` (an endpoint: revoke when it is next asked for),
``sitemaster`` (running|stopped), ``drop`` (seconds), ``drop_mode`` (reset|silent), ``drop_on``
(an endpoint: drop for ``drop`` seconds when it is next asked for), ``trickle`` (seconds
between the bytes of an answer's body; 0 ends it), ``rotate_cert``, ``powerwall3``,
``rate_limit`` (seconds), ``password``; ``POST /reset`` zeroes the counters.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import secrets
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from gridtap.config import parse_host_port
from gridtap.errors import ConfigError, InputError
from gridtap.simulate import run_in_foreground

from .documents import GENERATIONS, GatewayDocuments

KNOWN_SNI = {None, "powerwall", "teg", "powerpack"}
#: Endpoints that answer 502 with an empty body while the sitemaster is stopped (spec 5).
STOPPED_502 = ("system_status", "system_status/soe", "system_status/grid_status", "system_status/grid_faults",
               "meters/aggregates")
TOKEN_EXPIRED = {"code": 401, "message": "Token Expired"}
BAD_CREDENTIALS = {"code": 401, "error": "bad credentials", "message": "Login Error"}
RATE_LIMITED = {"code": 429, "error": "Api Limit reached for this endpoint", "message": "API Limit Reached"}


# ----------------------------------------------------------------------------- certificates
def make_certificate(folder: Path, name: str = "gateway") -> tuple[Path, Path]:
    """A new self-signed certificate and key (PEM files in ``folder``) for ``powerwall``."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise OSError("the openssl command is needed to make the simulator's certificate (apt-get install openssl)")
    cert, key = folder / f"{name}.crt", folder / f"{name}.key"
    res = subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "3650", "-subj",
         "/O=Tesla/OU=Tesla Energy Products/CN=powerwall",
         "-addext", "subjectAltName=DNS:powerwall,DNS:teg,DNS:powerpack"],
        capture_output=True, timeout=30)
    if res.returncode != 0:
        raise OSError(f"openssl could not make a certificate: {res.stderr.decode(errors='replace').strip()}")
    return cert, key


# ----------------------------------------------------------------------------- replay
class ReplaySet:
    """Answers from a capture folder: ``a.b.json`` / ``api.a.b.json`` for ``/api/a/b``; ``a.b.err``
    is a raw header dump (``HTTP/2 502`` + headers + body)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise InputError(f"--replay {folder}: not a folder")
        self.answers: dict[str, tuple[int, bytes]] = {}
        for path in sorted(self.folder.iterdir()):
            stem, suffix = path.stem, path.suffix
            if suffix not in (".json", ".err") or stem.startswith(("error.", "login.")):
                continue
            endpoint = stem.removeprefix("api.").replace(".", "/")
            data = path.read_bytes()
            if suffix == ".err":
                self.answers[endpoint] = _parse_header_dump(path, data)
            else:
                self.answers.setdefault(endpoint, (200, data))
        login = next((p for p in (self.folder / "login.Basic.response.json",) if p.exists()), None)
        self.login_body = login.read_bytes() if login is not None else None
        if "status" not in self.answers:
            raise InputError(f"--replay {folder}: no status.json or api.status.json (not a gateway capture folder?)")

    def get(self, endpoint: str) -> tuple[int, bytes]:
        return self.answers[endpoint]


def _parse_header_dump(path: Path, data: bytes) -> tuple[int, bytes]:
    head, _, body = data.replace(b"\r\n", b"\n").partition(b"\n\n")
    m = re.match(rb"HTTP/[0-9.]+ (\d{3})", head)
    if m is None:
        raise InputError(f"{path}: not a header dump (no HTTP status line)")
    return int(m.group(1)), body


# ----------------------------------------------------------------------------- the gateway
class PowerwallSimulator:
    """The gateway. ``start()`` listens (port 0 = any free one), ``stop()`` closes everything."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, password: str = "sim-password", *,
                 firmware: str = "21.44", replay: str | None = None, powerwall3: bool = False,
                 lockout_after: int = 5, lockout_window: float = 300.0, lockout_time: float = 300.0,
                 control: tuple[str, int] | None = None) -> None:
        self.host, self.port = host, port
        self.password = password
        self.documents = GatewayDocuments(firmware) if replay is None else None
        self.replay = ReplaySet(replay) if replay is not None else None
        self.powerwall3 = powerwall3
        self.lockout_after, self.lockout_window, self.lockout_time = lockout_after, lockout_window, lockout_time
        self.control_address = control
        self.lock = threading.Lock()
        self.tokens: set[str] = set()
        self.bad_logins: deque[float] = deque()
        self.locked_until = 0.0
        self.sitemaster_running = True
        self.drop_until = 0.0
        self.drop_mode = "reset"
        #: Seconds between the bytes of every answer body (0: the body at once).
        self.trickle = 0.0
        #: Endpoint whose next request first revokes every token (a token expiring mid-collection).
        self.revoke_on: str | None = None
        #: Endpoint whose next request first starts a drop of this many seconds (Wi-Fi lost mid-collection).
        self.drop_on: tuple[str, float] | None = None
        self.hits: Counter[str] = Counter()
        self.logins: Counter[str] = Counter()
        self.sni: Counter[str] = Counter()
        self.certificates = 0
        self._dir = tempfile.TemporaryDirectory(prefix="gridtap-powerwall-sim-")
        self._context: ssl.SSLContext | None = None
        self._server: _HttpsServer | None = None
        self._control: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []
        self.open_sockets: set[socket.socket] = set()

    # --- lifecycle -------------------------------------------------------------------
    def start(self) -> None:
        self._context = self._new_context()
        self._server = _HttpsServer((self.host, self.port), self)
        self.port = self._server.server_address[1]
        self._spawn(self._server.serve_forever, "powerwall-sim")
        if self.control_address is not None:
            self._control = _ControlServer(self.control_address, self)
            self._spawn(self._control.serve_forever, "powerwall-sim-control")

    def _spawn(self, target: Any, name: str) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def stop(self) -> None:
        for server in (self._server, self._control):
            if server is not None:
                server.shutdown()
                server.server_close()
        self._server = self._control = None
        self.close_connections()
        self._dir.cleanup()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def control_url(self) -> str | None:
        if self._control is None:
            return None
        host, port = self._control.server_address[:2]
        return f"http://{host}:{port}"

    def _new_context(self) -> ssl.SSLContext:
        self.certificates += 1
        cert, key = make_certificate(Path(self._dir.name), f"gateway{self.certificates}")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)

        def check_sni(sock: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> int | None:
            with self.lock:
                self.sni[name or ""] += 1
            return None if name in KNOWN_SNI else ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME

        ctx.sni_callback = check_sni
        self.certificate_pem = cert.read_text()
        return ctx

    # --- faults ----------------------------------------------------------------------
    def revoke_tokens(self) -> None:
        with self.lock:
            self.tokens.clear()

    def set_sitemaster(self, running: bool) -> None:
        self.sitemaster_running = running

    def drop(self, seconds: float, mode: str = "reset") -> None:
        """Behave like a gateway that fell off Wi-Fi for ``seconds``."""
        self.drop_mode = mode
        self.drop_until = time.monotonic() + seconds
        self.close_connections()

    def rotate_certificate(self) -> None:
        """A new key and certificate for every new connection (the old connections are closed)."""
        self._context = self._new_context()
        self.close_connections()

    def rate_limit(self, seconds: float) -> None:
        self.locked_until = time.monotonic() + seconds

    def reset_counters(self) -> None:
        with self.lock:
            self.hits.clear()
            self.logins.clear()
            self.sni.clear()

    def counters(self) -> dict[str, Any]:
        with self.lock:
            return {"hits": dict(self.hits), "logins": dict(self.logins), "sni": dict(self.sni),
                    "login_attempts": sum(self.logins.values()), "tokens": len(self.tokens),
                    "certificates": self.certificates}

    def close_connections(self) -> None:
        for sock in list(self.open_sockets):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()
        self.open_sockets.clear()

    @property
    def dropping(self) -> bool:
        return time.monotonic() < self.drop_until

    def control(self, cmd: dict[str, Any]) -> None:
        """Apply a control request (see the module doc); ValueError naming the key for a bad one,
        before anything is changed."""
        unknown = set(cmd) - CONTROLS
        if unknown:
            raise ValueError(f"unknown control {sorted(unknown)[0]!r} (have {', '.join(sorted(CONTROLS))})")
        seconds = {k: _seconds(k, cmd[k]) for k in ("drop", "trickle", "rate_limit") if k in cmd}
        for key in ("revoke_on", "drop_on", "password"):
            if key in cmd and not isinstance(cmd[key], str):
                raise ValueError(f"{key}: expected a string")
        if cmd.get("sitemaster", "running") not in ("running", "stopped"):
            raise ValueError("sitemaster: expected running or stopped")
        if cmd.get("drop_mode", "reset") not in ("reset", "silent"):
            raise ValueError("drop_mode: expected reset or silent")
        if cmd.get("revoke"):
            self.revoke_tokens()
        if cmd.get("revoke_on"):
            self.revoke_on = cmd["revoke_on"]
        if cmd.get("drop_on"):
            self.drop_on = (cmd["drop_on"], seconds.pop("drop", 1.0))
        if "sitemaster" in cmd:
            self.set_sitemaster(cmd["sitemaster"] == "running")
        if "powerwall3" in cmd:
            self.powerwall3 = bool(cmd["powerwall3"])
        if "password" in cmd:
            self.password = cmd["password"]
        if "trickle" in seconds:
            self.trickle = seconds["trickle"]
        if seconds.get("rate_limit"):
            self.rate_limit(seconds["rate_limit"])
        if cmd.get("rotate_cert"):
            self.rotate_certificate()
        if seconds.get("drop"):
            self.drop(seconds["drop"], cmd.get("drop_mode", "reset"))

    # --- answers ---------------------------------------------------------------------
    def answer(self, method: str, path: str, headers: Any, body: bytes) -> tuple[int, bytes, dict[str, str]]:
        """(status, body, extra headers) for one request."""
        if not path.startswith("/api/"):
            return 404, b"404 page not found\n", {"Content-Type": "text/plain; charset=utf-8"}
        endpoint = path[len("/api/"):]
        with self.lock:
            self.hits[endpoint] += 1
            if self.revoke_on == endpoint:
                self.revoke_on = None
                self.tokens.clear()
        if self.drop_on is not None and self.drop_on[0] == endpoint:
            seconds, self.drop_on = self.drop_on[1], None
            self.drop(seconds)
            return 0, b"", {}  # the connection is gone: no answer
        if endpoint == "login/Basic":
            return self._login(method, headers, body)
        if endpoint == "logout":
            token = self._token_of(headers)
            with self.lock:
                self.tokens.discard(token or "")
            return 204, b"", {}
        if method != "GET":
            return 405, b"", {}
        if endpoint != "status" and self._token_of(headers) not in self.tokens:
            return 401, _json(TOKEN_EXPIRED), {}
        if not self.sitemaster_running and endpoint in STOPPED_502:
            return 502, b"", {"Content-Type": ""}
        return self._document(endpoint)

    def _document(self, endpoint: str) -> tuple[int, bytes, dict[str, str]]:
        try:
            if self.replay is not None:
                status, data = self.replay.get(endpoint)
                return status, data, {}
            assert self.documents is not None
            if endpoint == "sitemaster":
                return 200, _json(self.documents.sitemaster(self.sitemaster_running)), {}
            return 200, _json(self.documents.get(endpoint)), {}
        except KeyError:
            if endpoint == "devices/vitals":
                return 404, _json({"code": 404, "error": "File Not Found",
                                   "message": "Firmware does not support vitals API"}), {}
            return 404, b"404 page not found\n", {"Content-Type": "text/plain; charset=utf-8"}

    def _token_of(self, headers: Any) -> str | None:
        auth = headers.get("Authorization", "")
        if auth.lower().startswith("bearer "):
            return auth[7:].strip()
        for part in headers.get("Cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == "AuthCookie":
                return value
        return None

    def _login(self, method: str, headers: Any, body: bytes) -> tuple[int, bytes, dict[str, str]]:
        if method != "POST":
            return 405, b"", {}
        now = time.monotonic()
        if self.powerwall3:
            with self.lock:
                self.logins["not_found"] += 1
            return 404, b"404 page not found\n", {"Content-Type": "text/plain; charset=utf-8"}
        with self.lock:
            if now < self.locked_until:
                self.logins["rate_limited"] += 1
                return 429, _json(RATE_LIMITED), {}
            fields = _login_fields(headers.get("Content-Type", ""), body)
            if fields.get("username") != "customer" or fields.get("password") != self.password:
                self.logins["bad"] += 1
                self.bad_logins.append(now)
                while self.bad_logins and self.bad_logins[0] < now - self.lockout_window:
                    self.bad_logins.popleft()
                if len(self.bad_logins) >= self.lockout_after:
                    self.locked_until = now + self.lockout_time
                    self.bad_logins.clear()
                return 401, _json(BAD_CREDENTIALS), {}
            self.logins["ok"] += 1
            token = secrets.token_urlsafe(48) + "=="
            self.tokens.add(token)
        if self.replay is not None and self.replay.login_body is not None:
            doc = json.loads(self.replay.login_body)
            doc["token"] = token
        else:
            doc = {"email": fields.get("email", ""), "firstname": "Tesla", "lastname": "Energy",
                   "roles": ["Home_Owner"], "token": token, "provider": "Basic",
                   "loginTime": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())}
        cookies = f"AuthCookie={token}; Path=/"
        return 200, _json(doc), {"Set-Cookie": cookies, "Set-Cookie2": f"UserRecord={secrets.token_hex(16)}; Path=/"}


def _json(doc: Any) -> bytes:
    return json.dumps(doc).encode()


CONTROLS = {"revoke", "revoke_on", "sitemaster", "drop", "drop_mode", "drop_on", "trickle", "rotate_cert",
            "powerwall3", "rate_limit", "password"}


def _seconds(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 86400:
        raise ValueError(f"{key}: expected seconds (a number from 0 to 86400), got {value!r}")
    return float(value)


def _login_fields(content_type: str, body: bytes) -> dict[str, Any]:
    """The login fields, sent as JSON (the seed) or form-encoded (pypowerwall)."""
    try:
        if "json" in content_type:
            doc = json.loads(body.decode("utf-8"))
            return doc if isinstance(doc, dict) else {}
        return {k: v[0] for k, v in parse_qs(body.decode("utf-8")).items()}
    except (UnicodeDecodeError, ValueError):
        return {}


class _HttpsServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], sim: PowerwallSimulator) -> None:
        self.sim = sim
        super().__init__(address, _GatewayHandler)

    def get_request(self) -> tuple[Any, Any]:
        sock, addr = self.socket.accept()
        sim = self.sim
        if sim.dropping:
            if sim.drop_mode == "silent":
                threading.Timer(max(0.0, sim.drop_until - time.monotonic()), sock.close).start()
            else:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                sock.close()
            raise OSError("dropped")  # socketserver ignores a failed get_request
        assert sim._context is not None
        # Headers and body leave in two writes: without NODELAY, Nagle holds the body until the
        # client's delayed ACK of the headers, ~40 ms per answer (a real gateway answers in a few).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        tls = sim._context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return tls, addr

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that hang up mid-handshake are normal here


class _GatewayHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HttpsServer
    server_version = "gateway"
    sys_version = ""

    def setup(self) -> None:
        self.request.settimeout(10)
        try:
            self.request.do_handshake()
        except (OSError, ssl.SSLError):
            self.request.close()
            raise
        self.server.sim.open_sockets.add(self.request)
        super().setup()

    def finish(self) -> None:
        self.server.sim.open_sockets.discard(self.request)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def _handle(self, method: str) -> None:
        sim = self.server.sim
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(min(length, 1 << 16)) if length else b""
        if sim.dropping:
            self.close_connection = True
            return
        status, data, extra = sim.answer(method, urlsplit(self.path).path, self.headers, body)
        if status == 0:
            self.close_connection = True
            return
        self.send_response(status)
        content_type = extra.pop("Content-Type", "application/json")
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Cache-Control", "no-cache, no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for k, v in extra.items():
            self.send_header("Set-Cookie" if k.startswith("Set-Cookie") else k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if not sim.trickle:
            self.wfile.write(data)
            return
        for i in range(len(data)):
            self.wfile.write(data[i:i + 1])
            time.sleep(sim.trickle)

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")


class _ControlServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], sim: PowerwallSimulator) -> None:
        self.sim = sim
        super().__init__(address, _ControlHandler)


class _ControlHandler(BaseHTTPRequestHandler):
    server: _ControlServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def _reply(self, status: int, doc: Any) -> None:
        data = _json(doc)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802
        if self.path == "/counters":
            self._reply(200, self.server.sim.counters())
        elif self.path == "/certificate":
            self._reply(200, {"pem": self.server.sim.certificate_pem})
        else:
            self._reply(404, {"error": "GET /counters or /certificate"})

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        try:
            cmd = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            self._reply(400, {"error": "body is not JSON"})
            return
        if self.path == "/reset":
            self.server.sim.reset_counters()
        elif self.path == "/control" and isinstance(cmd, dict):
            try:
                self.server.sim.control(cmd)
            except ValueError as e:
                self._reply(400, {"error": str(e)})
                return
        else:
            self._reply(404, {"error": "POST /control or /reset"})
            return
        self._reply(200, self.server.sim.counters())


# ----------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tcp", "--listen", dest="listen", metavar="HOST:PORT", default="127.0.0.1:8443",
                        help="HTTPS address of the simulated gateway (default 127.0.0.1:8443; port 0 = any)")
    parser.add_argument("--firmware", choices=GENERATIONS, default="21.44",
                        help="firmware generation whose answers to simulate (default 21.44)")
    parser.add_argument("--replay", metavar="DIR", help="answer from a capture folder instead (status.json, "
                                                         "system_status.soe.json, ... or api.status.json, ...)")
    parser.add_argument("--password", default="sim-password", help="the customer password (default sim-password)")
    parser.add_argument("--powerwall3", action="store_true", help="answer logins 404, like a Powerwall 3")
    parser.add_argument("--stopped", action="store_true", help="start with the sitemaster stopped (502s)")
    parser.add_argument("--lockout-after", type=int, default=5, metavar="N",
                        help="bad logins within --lockout-window that lock logins with 429 (default 5)")
    parser.add_argument("--lockout-window", default="300s", metavar="DURATION", help="(default 300s)")
    parser.add_argument("--lockout-time", default="300s", metavar="DURATION", help="429 for this long (default 300s)")
    parser.add_argument("--control", metavar="HOST:PORT",
                        help="plain-HTTP control endpoint on loopback (GET /counters, POST /control, POST /reset)")


def run(args: argparse.Namespace) -> int:
    from gridtap.config import Duration

    host, port = parse_host_port("--tcp", args.listen, "127.0.0.1")
    control = parse_host_port("--control", args.control, "127.0.0.1") if args.control else None
    if control is not None and control[0] not in ("127.0.0.1", "localhost", "::1"):
        raise ConfigError("--control", "the control endpoint only listens on loopback")
    durations = {}
    for flag in ("lockout_window", "lockout_time"):
        try:
            durations[flag] = float(Duration.parse(getattr(args, flag)))
        except ValueError as e:
            raise ConfigError(f"--{flag.replace('_', '-')}", str(e)) from None
    sim = PowerwallSimulator(host, port, args.password, firmware=args.firmware, replay=args.replay,
                             powerwall3=args.powerwall3, lockout_after=args.lockout_after,
                             lockout_window=durations["lockout_window"], lockout_time=durations["lockout_time"],
                             control=control)
    sim.sitemaster_running = not args.stopped

    def announce() -> str:
        if sim.control_url:
            print(f"control {sim.control_url}", flush=True)
        return sim.address

    return run_in_foreground(sim, announce)


@contextlib.contextmanager
def demo_setup() -> Iterator[dict[str, object]]:
    """A simulated gateway on a free loopback port, and the settings that read it."""
    sim = PowerwallSimulator("127.0.0.1", 0, "demo-password", firmware="23.28")
    sim.start()
    try:
        yield {"gateway_address": sim.address, "login_password": "demo-password", "token_file": "none"}
    finally:
        sim.stop()
