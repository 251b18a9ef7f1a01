"""The /metrics listener (rust/src/listener.rs behind gridtap.serve): scrapes serve the bytes
rendered after the last collection, in every form; other requests reach the Python routes with
their limits; malformed or hostile clients get a status line, never a dead listener."""

from __future__ import annotations

import gzip
import http.client
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from gridtap import _native, runtime
from gridtap.config import Secret
from gridtap.errors import ConfigError, DeviceError
from gridtap.model import Batch, MetricDef
from gridtap.outputs import exposition
from gridtap.plugin import Plugin
from gridtap.routes import Request, Response, Route
from gridtap.schedule import Collector
from gridtap.serve import Auth

TEMP = MetricDef("fake_temperature_celsius", "Temperature.", unit="celsius")
OM_ACCEPT = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"


class FakePlugin(Plugin):
    """Collects ``values`` one by one; ``hold`` keeps a collection from finishing."""

    name = "fake"
    config_schema = object

    def __init__(self, device: str = "d1") -> None:
        super().__init__(None, device)
        self.values = iter(range(1, 1000))
        self.hold = threading.Event()
        self.hold.set()
        self.calls: list[Request] = []
        self.route_list: list[Route] = [
            Route("POST", "/hook", self._hook, acts=True, max_body=100),
            Route("GET", "/hook", self._hook, acts=False),
            Route("GET", "/boom", self._boom, acts=False),
        ]

    def collect(self) -> list:
        self.hold.wait(10)
        return [TEMP(float(next(self.values)), sensor="flow")]

    def routes(self) -> list[Route]:
        return self.route_list

    def _hook(self, request: Request) -> Response:
        self.calls.append(request)
        return Response.json({"got": request.body.decode(), "query": dict(request.query)}, 202)

    def _boom(self, _request: Request) -> Response:
        raise RuntimeError("handler bug")


@pytest.fixture
def served() -> Iterator[SimpleNamespace]:
    plugin = FakePlugin()
    collector = Collector(plugin, 3600)
    server = runtime.open_metrics_server("127.0.0.1:0", [collector], Auth(token=Secret("s3cret")),
                                         metrics_path="/seed/metrics")
    server.max_body = server.body_limit()
    try:
        yield SimpleNamespace(server=server, port=server.server_address[1], collector=collector, plugin=plugin)
    finally:
        server.shutdown()


def request(port: int, method: str, path: str, headers: dict[str, str] | None = None, body: bytes | None = None
            ) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def raw(port: int, data: bytes, timeout: float = 5) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            out += chunk
        return out


def test_scrapes_serve_the_last_collection_in_every_form(served):
    batch = served.collector.collect_once()
    expected = {False: exposition.render([batch]), True: exposition.render([batch], True)}
    assert b'fake_temperature_celsius{device="d1",sensor="flow"} 1.0' in expected[False]
    for path in ("/metrics", "/seed/metrics"):
        for om, accept in ((False, "text/plain"), (True, OM_ACCEPT)):
            for zipped in (False, True):
                headers = {"Accept": accept, "Accept-Encoding": "gzip" if zipped else "identity"}
                status, got, body = request(served.port, "GET", path, headers)
                assert status == 200
                assert got["content-type"].startswith("application/openmetrics-text" if om else "text/plain")
                assert got.get("content-encoding") == ("gzip" if zipped else None)
                assert (gzip.decompress(body) if zipped else body) == expected[om], (path, om, zipped)
    # Every form has been asked for: the next collection renders them all at once.
    assert served.server._listener.wanted() == (True, True, True, True)
    batch = served.collector.collect_once()
    status, _, body = request(served.port, "GET", "/metrics", {"Accept": OM_ACCEPT, "Accept-Encoding": "gzip"})
    assert gzip.decompress(body) == exposition.render([batch], True)
    assert b"} 2.0\n" in gzip.decompress(body)


def test_head_keep_alive_and_http_1_0(served):
    served.collector.collect_once()
    conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=5)
    try:
        conn.request("HEAD", "/metrics")
        resp = conn.getresponse()
        length = int(resp.getheader("Content-Length"))
        assert resp.status == 200 and resp.read() == b"" and length > 100
        for _ in range(3):  # the same connection, request after request
            conn.request("GET", "/metrics")
            resp = conn.getresponse()
            assert resp.status == 200 and len(resp.read()) == length
            assert resp.getheader("Connection") is None
    finally:
        conn.close()
    reply = raw(served.port, b"GET /metrics HTTP/1.0\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 200 OK\r\n") and b"Connection: close\r\n" in reply
    assert reply.endswith(b"\n") and b"fake_temperature_celsius" in reply
    two = raw(served.port, b"GET /ready HTTP/1.1\r\nHost: x\r\n\r\nGET /ready HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert two.count(b"HTTP/1.1 200 OK") == 2  # pipelined requests are answered in order


def test_a_scrape_never_waits_for_a_collection(served):
    served.collector.collect_once()
    served.plugin.hold.clear()  # the next collection hangs
    collecting = threading.Thread(target=served.collector.collect_once, daemon=True)
    collecting.start()
    try:
        time.sleep(0.1)
        t0 = time.monotonic()
        status, _, body = request(served.port, "GET", "/metrics")
        assert time.monotonic() - t0 < 0.5
        assert status == 200 and b"} 1.0\n" in body  # the last finished collection
    finally:
        served.plugin.hold.set()
        collecting.join(5)
    assert b"} 2.0\n" in request(served.port, "GET", "/metrics")[2]


def test_routes_status_and_errors(served):
    served.collector.collect_once()
    status, headers, body = request(served.port, "GET", "/status")
    doc = json.loads(body)
    assert status == 200 and headers["content-type"] == "application/json"
    assert doc["devices"][0]["device"] == "d1" and doc["devices"][0]["state"] == "up"
    assert request(served.port, "GET", "/hook?a=1&b=x")[0] == 202  # acts=False: no credentials needed
    status, _, body = request(served.port, "POST", "/hook?x=y", {"Authorization": "Bearer s3cret"}, b"hello")
    assert status == 202 and json.loads(body) == {"got": "hello", "query": {"x": "y"}}
    status, headers, _ = request(served.port, "POST", "/hook", {}, b"hello")
    assert status == 401 and "Bearer" in headers["www-authenticate"]
    status, headers, _ = request(served.port, "PUT", "/hook", {}, b"")
    assert status == 405 and headers["allow"] == "GET, POST"
    assert request(served.port, "POST", "/hook", {"Authorization": "Bearer s3cret"}, b"x" * 101)[0] == 413
    assert request(served.port, "GET", "/boom")[0] == 500  # a handler bug is a 500, the listener lives on
    assert request(served.port, "GET", "/nothing")[0] == 404
    assert request(served.port, "DELETE", "/metrics")[0] == 404
    assert request(served.port, "GET", "/")[0] == 200
    assert len(served.plugin.calls) == 2


@pytest.mark.parametrize(("data", "status"), [
    (b"GET / HTTP/1.1\r\n" + b"X-Long: " + b"a" * 20000 + b"\r\n\r\n", 431),
    (b"NOT A REQUEST\r\n\r\n", 400),
    (b"GET / HTTP/2.0\r\n\r\n", 400),
    (b"POST /hook HTTP/1.1\r\nContent-Length: x\r\n\r\n", 400),
    (b"POST /hook HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 411),
    (b"POST /hook HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n", 413),  # refused unread
])
def test_malformed_requests_get_a_status_and_a_closed_connection(served, data, status):
    reply = raw(served.port, data)
    assert reply.startswith(f"HTTP/1.1 {status} ".encode()), reply[:200]
    assert b"Connection: close\r\n" in reply
    assert request(served.port, "GET", "/ready")[0] == 200  # still serving


def test_a_sample_no_exposition_can_carry_leaves_only_its_device_out(caplog):
    good, bad = FakePlugin("good"), FakePlugin("bad")
    collectors = [Collector(good, 3600), Collector(bad, 3600)]
    server = runtime.open_metrics_server("127.0.0.1:0", collectors)
    try:
        collectors[0].collect_once()
        bad.collect = lambda: [SimpleNamespace(definition=TEMP, value="not a number", labels=())]  # type: ignore
        collectors[1].collect_once()
        with caplog.at_level(logging.WARNING, logger="gridtap.serve"):
            server.publish()
            server.publish()
        body = request(server.server_address[1], "GET", "/metrics")[2]
        assert b'device="good"' in body and b'device="bad"' not in body
        said = "fake/bad: left out of /metrics: fake_temperature_celsius: a str value ('not a number') is not a number"
        assert [r.getMessage() for r in caplog.records].count(said) == 1  # once, not per publish
    finally:
        server.shutdown()


def test_a_failed_device_is_down_on_the_next_scrape(served):
    served.collector.collect_once()

    def broken() -> list:
        raise DeviceError("unplugged")

    served.plugin.collect = broken  # type: ignore[method-assign]
    served.collector.collect_once()
    body = request(served.port, "GET", "/metrics")[2]
    assert b'fake_up{device="d1"} 0.0' in body and b"fake_temperature_celsius{" not in body


def test_busy_port_is_one_config_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(ConfigError, match=r"cannot listen on 127\.0\.0\.1:\d+: Address already in use"):
            runtime.open_metrics_server(f"127.0.0.1:{port}", [])


def _listener(**kwargs) -> _native.MetricsListener:
    listener = _native.MetricsListener("127.0.0.1", 0, lambda *a: (200, [], b"py\n", False), lambda form: b"x\n",
                                       "gridtap/test", **kwargs)
    listener.publish(b"text\n")
    listener.start()
    return listener


def test_idle_connections_close_and_the_connection_cap_holds():
    listener = _listener(idle_timeout=0.3, max_connections=2)
    port = listener.address[1]
    try:
        a = socket.create_connection(("127.0.0.1", port))
        b = socket.create_connection(("127.0.0.1", port))
        time.sleep(0.1)
        third = raw(port, b"GET /metrics HTTP/1.1\r\n\r\n", timeout=2)
        assert third.startswith(b"HTTP/1.1 503 ")
        a.settimeout(3)
        t0 = time.monotonic()
        assert a.recv(10) == b""  # closed by the listener after 0.3 s of silence
        assert time.monotonic() - t0 < 2
        a.close()
        b.close()
        time.sleep(0.5)
        assert raw(port, b"GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n").endswith(b"\r\n\r\ntext\n")
    finally:
        listener.close()


def test_close_ends_open_connections_and_frees_the_port():
    listener = _listener()
    port = listener.address[1]
    idle = socket.create_connection(("127.0.0.1", port))
    time.sleep(0.1)
    t0 = time.monotonic()
    listener.close()
    assert time.monotonic() - t0 < 2
    idle.settimeout(2)
    assert idle.recv(10) == b""
    idle.close()
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))  # nothing listens there any more


def test_a_form_never_published_is_rendered_on_demand_once():
    rendered = []

    def render(form: int) -> bytes:
        rendered.append(form)
        return f"form {form}\n".encode()

    listener = _native.MetricsListener("127.0.0.1", 0, lambda *a: (200, [], b"", False), render, "t")
    listener.publish(b"text\n")
    listener.start()
    port = listener.address[1]
    try:
        for _ in range(2):
            assert request(port, "GET", "/metrics", {"Accept": OM_ACCEPT})[2] == b"form 1\n"
        assert rendered == [1]
        assert listener.wanted() == (False, True, False, False)
        listener.publish(b"text 2\n", b"om 2\n")
        assert request(port, "GET", "/metrics", {"Accept": OM_ACCEPT})[2] == b"om 2\n"
        assert request(port, "GET", "/metrics")[2] == b"text 2\n"
        assert listener.scrapes == 4
    finally:
        listener.close()


def test_headers_from_python_cannot_split_the_response():
    listener = _native.MetricsListener(
        "127.0.0.1", 0, lambda *a: (200, [("X-Evil", "a\r\nSet-Cookie: x=1"), ("Content-Length", "1")], b"ok", False),
        lambda form: b"", "t")
    listener.start()
    try:
        reply = raw(listener.address[1], b"GET /x HTTP/1.1\r\nConnection: close\r\n\r\n")
        assert b"Set-Cookie" not in reply and reply.count(b"Content-Length") == 1 and reply.endswith(b"ok")
    finally:
        listener.close()


def test_metrics_served_alongside_a_batch_list_snapshot_at_start():
    """Before any collection /metrics already answers, with gridtap_build_info alone."""
    server = runtime.open_metrics_server("127.0.0.1:0", [])
    try:
        status, _, body = request(server.server_address[1], "GET", "/metrics")
        assert status == 200 and body == exposition.render([])
    finally:
        server.shutdown()


def test_batches_of_many_devices():
    plugins = [FakePlugin(f"d{i}") for i in range(5)]
    collectors = [Collector(p, 3600) for p in plugins]
    server = runtime.open_metrics_server("127.0.0.1:0", collectors)
    server.watch(collectors[0])  # watched already: no second rendering per collection
    assert len(collectors[0]._subscribers) == 1
    try:
        batches = [c.collect_once() for c in collectors]
        assert request(server.server_address[1], "GET", "/metrics")[2] == exposition.render(batches)
        assert isinstance(batches[0], Batch)
    finally:
        server.shutdown()
