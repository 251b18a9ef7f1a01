"""The one HTTP listener of a gridtap process: ``/metrics``, ``/status``, ``/ready`` and the
routes plugins add (webhooks). Device-blind: it serves whatever the collectors hold.

* ``GET /metrics``: the latest batch of every device as Prometheus text, or OpenMetrics when
  the scraper asks for it (``Accept``), gzip when it accepts gzip. Rendered once per
  collection (in Rust, :mod:`gridtap.outputs.exposition`) and answered by a listener thread
  in Rust without the GIL (``rust/src/listener.rs``): a scrape never talks to a device, never
  waits for a collection, and costs microseconds.
* ``GET /status``: the last collection of every device as JSON (state, error, samples);
  errors pass through the secret filter, and settings are never part of it.
* ``GET /ready``: ``ready``, for process supervisors.
* plugin :class:`gridtap.routes.Route` objects, with the body limit and authentication of
  :mod:`gridtap.routes` enforced here.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import logs
from .config import Secret
from .errors import ConfigError
from .model import Batch, Kind
from .routes import Request, Response, Route

if TYPE_CHECKING:
    from .schedule import Collector

log = logging.getLogger("gridtap.serve")

TEXT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


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
        import hmac  # hashlib and OpenSSL's libcrypto come with it: only when a request needs it

        scheme, _, value = header.partition(" ")
        value = value.strip()
        if scheme.lower() == "bearer" and self.token:
            return hmac.compare_digest(value.encode(), self.token.reveal().encode())
        if scheme.lower() == "basic" and self.username is not None and self.password is not None:
            import base64

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
    import ipaddress

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
    from . import __version__

    return {"gridtap": {"version": __version__}, "devices": out}


class MetricsServer:
    """The listener: :class:`gridtap._native.MetricsListener` answers ``/metrics`` from bytes
    published once per collection (:meth:`publish`), this class every other request.

    :meth:`shutdown` (or :meth:`server_close`) stops it. ``auth`` and ``max_body`` may be
    changed while it runs.
    """

    #: Bounded per-connection idle time, so a client that opens and never talks holds no thread long.
    idle_timeout = 30.0

    def __init__(self, address: tuple[str, int], snapshot: Callable[[], list[Batch]],
                 status: Callable[[], dict[str, Any]], routes: Callable[[], Sequence[Route]],
                 auth: Auth, metrics_path: str = "/metrics") -> None:
        from . import __version__, _native

        self.snapshot = snapshot
        self.metrics_path = metrics_path
        self.status = status
        self.routes = routes
        self.auth = auth
        self._publish_lock = threading.Lock()
        self._failing: set[tuple[str, str]] = set()
        self._watched: list[Collector] = []
        paths = sorted({"/metrics", metrics_path})
        self._listener = _native.MetricsListener(address[0], address[1], self._handle, self._render,
                                                 f"gridtap/{__version__}", self.idle_timeout,
                                                 self.body_limit(), 256, paths)

    @property
    def server_address(self) -> tuple[str, int]:
        return self._listener.address

    @property
    def scrapes(self) -> int:
        """``/metrics`` requests answered so far."""
        return self._listener.scrapes

    @property
    def max_body(self) -> int:
        """Bodies above this are refused (413) by the listener before they are read."""
        return self._listener.max_body

    @max_body.setter
    def max_body(self, value: int) -> None:
        self._listener.max_body = value

    def body_limit(self) -> int:
        """The largest body any route takes (the listener refuses larger ones unread)."""
        return max([64 * 1024, *(r.max_body for r in self.routes())])

    def start(self) -> None:
        self.publish()
        self._listener.start()

    def shutdown(self) -> None:
        self._listener.close()

    def server_close(self) -> None:
        self._listener.close()

    # --- the exposition ---------------------------------------------------------------------
    def watch(self, collector: Collector) -> None:
        """Re-render after every collection of ``collector`` (once per collector, however often
        it is asked)."""
        if not any(c is collector for c in self._watched):
            self._watched.append(collector)
            collector.subscribe(self.publish)

    def publish(self, _batch: Batch | None = None) -> None:
        """Render the latest batch of every device (the forms scrapes have asked for) and hand
        the bytes to the listener. Called on a collector's thread after each collection
        (``Collector.subscribe``), so a scrape only ever copies bytes."""
        with self._publish_lock:
            batches = self.snapshot()
            wants_text, wants_om, wants_text_gz, wants_om_gz = self._listener.wanted()
            text = self._exposition(batches, False)
            om = self._exposition(batches, True) if wants_om or wants_om_gz else None
            self._listener.publish(text, om, _gzip(text) if wants_text_gz else None,
                                   _gzip(om) if om is not None and wants_om_gz else None)

    def _render(self, form: int) -> bytes:
        """A form of the exposition no scrape had asked for yet (0 text, 1 OpenMetrics, +2 gzip)."""
        with self._publish_lock:
            body = self._exposition(self.snapshot(), bool(form & 1))
        return _gzip(body) if form & 2 else body

    def _exposition(self, batches: list[Batch], openmetrics: bool) -> bytes:
        from .outputs import exposition

        try:
            return exposition.render(batches, openmetrics)
        except exposition.EncodeError:
            pass
        # A plugin produced a sample no exposition can carry: serve every other device, and say
        # which one is left out (once, until it is fixed).
        good, failing = [], set()
        for b in batches:
            try:
                exposition.render([b], openmetrics, build_info=False)
                good.append(b)
            except exposition.EncodeError as e:
                failing.add((f"{b.plugin}/{b.device}", str(e)))
        for name, problem in failing - self._failing:
            log.warning("%s: left out of /metrics: %s", name, logs.redact(problem))
        self._failing = failing
        return exposition.render(good, openmetrics)

    # --- every other request --------------------------------------------------------------------
    def _handle(self, method: str, target: str, headers: list[tuple[str, str]], body: bytes,
                client: str) -> tuple[int, list[tuple[str, str]], bytes, bool]:
        """What the listener calls for a request that is not a scrape: (status, headers, body, close)."""
        try:
            response, extra, close = self._dispatch(method, target, headers, body, client)
        except Exception as e:  # a bug here must not take the listener down
            log.warning("%s %s: failed: %s", method, target, logs.redact(f"{type(e).__name__}: {e}"))
            log.debug("details", exc_info=True)
            response, extra, close = Response.json({"error": "internal error"}, 500), {}, True
        out = [("Content-Type", response.content_type), *response.headers.items(), *extra.items()]
        return response.status, out, response.body, close

    def _dispatch(self, method: str, target: str, headers: list[tuple[str, str]], body: bytes, client: str
                  ) -> tuple[Response, dict[str, str], bool]:
        path, _, query = target.partition("?")
        path = path.partition("#")[0]
        routes = [r for r in self.routes() if r.path == path]
        if routes:
            route = next((r for r in routes if r.method == method), None)
            if route is None:
                allowed = ", ".join(sorted({r.method for r in routes}))
                return Response.json({"error": f"method {method} not allowed"}, 405), {"Allow": allowed}, False
            return self._route(route, method, path, query, dict(reversed(headers)), body, client)
        if method not in ("GET", "HEAD"):
            return Response.json({"error": f"no {method} route at {path}"}, 404), {}, False
        if path in ("/metrics", self.metrics_path):  # the listener answers these; kept for completeness
            return Response(200, self._render(0), TEXT_TYPE), {}, False
        if path == "/status":
            text = json.dumps(self.status(), ensure_ascii=False, indent=1).encode() + b"\n"
            return Response(200, text, "application/json"), {}, False
        if path in ("/ready", "/-/ready", "/-/healthy"):
            return Response(200, b"ready\n"), {}, False
        if path == "/":
            import html

            shown = html.escape(self.metrics_path, quote=True)
            page = ('<html><head><title>gridtap</title></head><body><h1>gridtap</h1>'
                    f'<p><a href="{shown}">{shown}</a> <a href="/status">/status</a></p></body></html>\n')
            return Response(200, page.encode(), "text/html; charset=utf-8"), {}, False
        return Response(404, b"not found\n"), {}, False

    def _route(self, route: Route, method: str, path: str, query: str, headers: dict[str, str], body: bytes,
               client: str) -> tuple[Response, dict[str, str], bool]:
        # The listener refused chunked bodies, a bad Content-Length and bodies over body_limit().
        if len(body) > route.max_body:
            return Response.json({"error": f"body over {route.max_body} bytes"}, 413), {}, True
        auth = self.auth
        if route.acts and auth.configured and not auth.allows(headers.get("authorization")):
            return (Response.json({"error": "authentication required"}, 401),
                    {"WWW-Authenticate": 'Bearer realm="gridtap", Basic realm="gridtap"'}, False)
        from urllib.parse import parse_qsl

        request = Request(method, path, dict(parse_qsl(query)), headers, body, client)
        try:
            response = route.handler(request)
        except Exception as e:  # a handler bug must not take the listener down
            log.warning("%s %s: handler failed: %s", method, path, logs.redact(f"{type(e).__name__}: {e}"))
            log.debug("details", exc_info=True)
            response = Response.json({"error": "internal error"}, 500)
        return response, {}, False


def _gzip(data: bytes) -> bytes:
    """gzip at level 1: a scrape's text compresses 5-10x in well under a millisecond."""
    import zlib

    packer = zlib.compressobj(1, zlib.DEFLATED, 31)
    return packer.compress(data) + packer.flush()


RESERVED_PATHS = ("/", "/status", "/ready", "/-/ready", "/-/healthy")


def open_server(host: str, port: int, snapshot: Callable[[], list[Batch]], status: Callable[[], dict[str, Any]],
                routes: Callable[[], Sequence[Route]], auth: Auth, shown: str,
                metrics_path: str = "/metrics") -> MetricsServer:
    """Bind now and serve (on the listener's own threads); ConfigError (one line) when the
    address is unusable. ``snapshot()`` gives the batches ``/metrics`` shows; call
    :meth:`MetricsServer.publish` when they change.

    ``metrics_path`` serves the exposition beside ``/metrics`` (a replaced exporter's path, so
    existing scrape configs keep working)."""
    if not metrics_path.startswith("/") or "?" in metrics_path or metrics_path in RESERVED_PATHS:
        raise ConfigError("metrics_path", f"expected a path like /metrics (not {', '.join(RESERVED_PATHS[1:])}), "
                                          f"got {metrics_path!r}")
    try:
        server = MetricsServer((host, port), snapshot, status, routes, auth, metrics_path)
    except OSError as e:
        raise ConfigError("listen", f"cannot listen on {shown}: {e.strerror or e}") from None
    server.start()
    return server


def check_route_auth(host: str, routes: Sequence[Route], auth: Auth, shown: str) -> None:
    """Refuse a listener on a non-loopback address that would take unauthenticated device writes."""
    acting = [r for r in routes if r.acts]
    if acting and not auth.configured and not is_loopback(host):
        what = ", ".join(f"{r.method} {r.path}" for r in acting)
        raise ConfigError("webhook_token", f"{shown} is not a loopback address and {what} acts on a device: "
                                           "set webhook_token (or webhook_username and webhook_password), "
                                           "e.g. GRIDTAP_WEBHOOK_TOKEN, or listen on 127.0.0.1")
