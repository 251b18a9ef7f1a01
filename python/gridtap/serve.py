"""The one HTTP listener of a gridtap process: ``/metrics``, ``/status``, ``/ready`` and the
routes plugins add (webhooks). Device-blind: it serves whatever the collectors hold.

* ``GET /metrics``: the latest batch of every device as Prometheus text, or OpenMetrics when
  the scraper asks for it (``Accept``), gzip when it accepts gzip. A scrape never talks to a
  device and never waits for a collection.
* ``GET /status``: the last collection of every device as JSON (state, error, samples);
  errors pass through the secret filter, and settings are never part of it.
* ``GET /ready``: ``ready``, for process supervisors.
* plugin :class:`gridtap.routes.Route` objects, with the body limit and authentication of
  :mod:`gridtap.routes` enforced here.
"""

from __future__ import annotations

import base64
import gzip
import hmac
import html
import ipaddress
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from . import __version__, logs
from .config import Secret
from .errors import ConfigError
from .model import Batch, Kind
from .routes import Request, Response, Route

log = logging.getLogger("gridtap.serve")

TEXT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"


@dataclass(frozen=True)
class Auth:
    """Credentials that routes with ``acts=True`` demand: a bearer token and/or basic auth."""

    token: Secret | None = None
    username: str | None = None
    password: Secret | None = None

    @property
    def configured(self) -> bool:
        return bool(self.token) or (self.username is not None and self.password is not None)

    def allows(self, header: str | None) -> bool:
        if not header:
            return False
        scheme, _, value = header.partition(" ")
        value = value.strip()
        if scheme.lower() == "bearer" and self.token:
            return hmac.compare_digest(value.encode(), self.token.reveal().encode())
        if scheme.lower() == "basic" and self.username is not None and self.password is not None:
            try:
                user, _, pw = base64.b64decode(value, validate=True).decode("utf-8").partition(":")
            except (ValueError, UnicodeDecodeError):
                return False
            return hmac.compare_digest(user.encode(), self.username.encode()) and hmac.compare_digest(
                pw.encode(), self.password.reveal().encode())
        return False


def is_loopback(host: str) -> bool:
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def status_document(entries: Sequence[tuple[Batch | None, dict[str, Any]]]) -> dict[str, Any]:
    """``/status``: one entry per device, from its latest batch and its plugin's own facts."""
    out = []
    for batch, facts in entries:
        if batch is None:
            continue
        up = next((m.value for m in batch.metrics if m.name == f"{batch.plugin}_up"), None)
        state = "up" if up == 1 else "down" if up == 0 else "waiting"
        samples = []
        for m in batch.labelled():
            if m.definition.kind is Kind.INFO:
                value: Any = 1
            elif isinstance(m.value, bool):
                value = int(m.value)
            elif isinstance(m.value, float) and m.value != m.value:
                value = None  # NaN is not JSON
            else:
                value = m.value
            samples.append({"name": m.name, "labels": dict(m.labels), "value": value})
        entry: dict[str, Any] = {
            "plugin": batch.plugin, "device": batch.device, "state": state,
            "collected_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(batch.timestamp_ns / 1e9)),
            "samples": samples,
        }
        if batch.error:
            entry["error"] = logs.redact(batch.error)
        if facts:
            entry["facts"] = facts
        out.append(entry)
    return {"gridtap": {"version": __version__}, "devices": out}


class MetricsServer(ThreadingHTTPServer):
    """The listener; :meth:`shutdown` + :meth:`server_close` stop it."""

    daemon_threads = True
    allow_reuse_address = True
    #: Bounded per-connection idle time, so a client that opens and never talks holds no thread long.
    idle_timeout = 30.0

    def __init__(self, address: tuple[str, int], exposition: Callable[[bool], bytes],
                 status: Callable[[], dict[str, Any]], routes: Callable[[], Sequence[Route]],
                 auth: Auth, metrics_path: str = "/metrics") -> None:
        self.exposition = exposition
        self.metrics_path = metrics_path
        self.status = status
        self.routes = routes
        self.auth = auth
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: MetricsServer
    server_version = f"gridtap/{__version__}"
    sys_version = ""

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.idle_timeout)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self._dispatch("GET")

    def do_HEAD(self) -> None:  # noqa: N802
        self._dispatch("HEAD")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        parts = urlsplit(self.path)
        path = parts.path
        routes = [r for r in self.server.routes() if r.path == path]
        if routes:
            route = next((r for r in routes if r.method == method), None)
            if route is None:
                self._drain()
                allowed = ", ".join(sorted({r.method for r in routes}))
                self._send(Response.json({"error": f"method {method} not allowed"}, 405), {"Allow": allowed})
                return
            self._route(route, method, path, dict(parse_qsl(parts.query)))
            return
        if method not in ("GET", "HEAD"):
            self._drain()
            self._send(Response.json({"error": f"no {method} route at {path}"}, 404))
            return
        if path in ("/metrics", self.server.metrics_path):
            accept = self.headers.get("Accept", "")
            openmetrics = "application/openmetrics-text" in accept
            body = self.server.exposition(openmetrics)
            headers = {}
            if "gzip" in self.headers.get("Accept-Encoding", ""):
                body = gzip.compress(body, compresslevel=1)
                headers["Content-Encoding"] = "gzip"
            self._send(Response(200, body, OPENMETRICS_TYPE if openmetrics else TEXT_TYPE), headers,
                       head=method == "HEAD")
        elif path == "/status":
            body = json.dumps(self.server.status(), ensure_ascii=False, indent=1).encode() + b"\n"
            self._send(Response(200, body, "application/json"), head=method == "HEAD")
        elif path in ("/ready", "/-/ready", "/-/healthy"):
            self._send(Response(200, b"ready\n"), head=method == "HEAD")
        elif path == "/":
            shown = html.escape(self.server.metrics_path, quote=True)
            page = ('<html><head><title>gridtap</title></head><body><h1>gridtap</h1>'
                    f'<p><a href="{shown}">{shown}</a> <a href="/status">/status</a></p></body></html>\n')
            self._send(Response(200, page.encode(), "text/html; charset=utf-8"), head=method == "HEAD")
        else:
            self._send(Response(404, b"not found\n"), head=method == "HEAD")

    def _route(self, route: Route, method: str, path: str, query: dict[str, str]) -> None:
        length_text = self.headers.get("Content-Length")
        try:
            length = int(length_text) if length_text is not None else 0
        except ValueError:
            self.close_connection = True
            self._send(Response.json({"error": "bad Content-Length"}, 400))
            return
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            self._send(Response.json({"error": "chunked bodies are not accepted; send Content-Length"}, 411))
            return
        if length < 0 or length > route.max_body:
            self.close_connection = True  # the body is not read: the connection cannot be reused
            self._send(Response.json({"error": f"body over {route.max_body} bytes"}, 413))
            return
        auth = self.server.auth
        if route.acts and auth.configured and not auth.allows(self.headers.get("Authorization")):
            self._drain(length)
            self._send(Response.json({"error": "authentication required"}, 401),
                       {"WWW-Authenticate": 'Bearer realm="gridtap", Basic realm="gridtap"'})
            return
        body = self.rfile.read(length) if length else b""
        request = Request(method, path, query, {k.lower(): v for k, v in self.headers.items()}, body,
                          self.client_address[0])
        try:
            response = route.handler(request)
        except Exception as e:  # a handler bug must not take the listener down
            log.warning("%s %s: handler failed: %s", method, path, logs.redact(f"{type(e).__name__}: {e}"))
            log.debug("details", exc_info=True)
            response = Response.json({"error": "internal error"}, 500)
        self._send(response)

    def _drain(self, length: int | None = None) -> None:
        if length is None:
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = 0
        if 0 < length <= 1 << 20:
            self.rfile.read(length)
        elif length:
            self.close_connection = True

    def _send(self, response: Response, headers: dict[str, str] | None = None, head: bool = False) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for k, v in {**response.headers, **(headers or {})}.items():
            self.send_header(k, v)
        self.end_headers()
        if not head:
            self.wfile.write(response.body)


RESERVED_PATHS = ("/", "/status", "/ready", "/-/ready", "/-/healthy")


def open_server(host: str, port: int, exposition: Callable[[bool], bytes], status: Callable[[], dict[str, Any]],
                routes: Callable[[], Sequence[Route]], auth: Auth, shown: str,
                metrics_path: str = "/metrics") -> MetricsServer:
    """Bind now and serve on a daemon thread; ConfigError (one line) when the address is unusable.

    ``metrics_path`` serves the exposition beside ``/metrics`` (a replaced exporter's path, so
    existing scrape configs keep working)."""
    if not metrics_path.startswith("/") or "?" in metrics_path or metrics_path in RESERVED_PATHS:
        raise ConfigError("metrics_path", f"expected a path like /metrics (not {', '.join(RESERVED_PATHS[1:])}), "
                                          f"got {metrics_path!r}")
    try:
        server = MetricsServer((host, port), exposition, status, routes, auth, metrics_path)
    except OSError as e:
        raise ConfigError("listen", f"cannot listen on {shown}: {e.strerror}") from None
    threading.Thread(target=server.serve_forever, name="metrics-listener", daemon=True).start()
    return server


def check_route_auth(host: str, routes: Sequence[Route], auth: Auth, shown: str) -> None:
    """Refuse a listener on a non-loopback address that would take unauthenticated device writes."""
    acting = [r for r in routes if r.acts]
    if acting and not auth.configured and not is_loopback(host):
        what = ", ".join(f"{r.method} {r.path}" for r in acting)
        raise ConfigError("webhook_token", f"{shown} is not a loopback address and {what} acts on a device: "
                                           "set webhook_token (or webhook_username and webhook_password), "
                                           "e.g. GRIDTAP_WEBHOOK_TOKEN, or listen on 127.0.0.1")
