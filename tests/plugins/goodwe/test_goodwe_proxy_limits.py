"""The proxy's two bounds (spec §9, proxy.py ProxyOptions): the inbound partial-frame read
deadline and the device->SEMS backlog held while the upstream is unreachable.

The SEMS side here is a scripted socket (not SemsSimulator) so a test decides exactly which
bytes the server sends and when it starts listening. Everything is on 127.0.0.1, port 0,
and every wait is bounded.
"""

from __future__ import annotations

import datetime as dt
import socket
import threading
import time

import pytest

# tests/plugins/goodwe is not a package: pytest's default (prepend) import mode puts this
# directory on sys.path, so the sibling module imports by its plain name.
from test_goodwe_proxy import everything, make_plugin, values, wait_for

from gridtap import _native
from gridtap.errors import Waiting
from gridtap_plugins.goodwe import encoder, reference, simulator
from gridtap_plugins.goodwe.proxy import ProxyOptions
from gridtap_plugins.goodwe.simulator import DeviceSimulator


class ScriptedUpstream:
    """A one-connection SEMS stand-in: records what the proxy sends, sends what the test says.

    The socket is bound at once (so the port is reserved) but accepts connections only
    after :meth:`listen`; until then the proxy's dials are refused.
    """

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.received = bytearray()
        self.connected = threading.Event()
        self.conn: socket.socket | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def listen(self) -> None:
        self.sock.listen(1)
        self.sock.settimeout(0.1)
        self._thread = threading.Thread(target=self._serve, name="scripted-upstream", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
                break
            except TimeoutError:
                continue
        else:
            return
        conn.settimeout(0.1)
        self.conn = conn
        self.connected.set()
        while not self._stop.is_set():
            try:
                data = conn.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                return
            self.received += data

    def send(self, data: bytes) -> None:
        assert self.conn is not None
        self.conn.sendall(data)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self.conn is not None:
            self.conn.close()
        self.sock.close()


@pytest.mark.timeout(30)
def test_inbound_partial_frame_dropped_after_read_deadline() -> None:
    """A SEMS frame whose tail never comes is dropped after ``partial_timeout`` (counted as
    ``length``), never reaches the device, and does not wedge either direction."""
    up = ScriptedUpstream()
    up.listen()
    plugin = make_plugin(upstream_host="127.0.0.1", upstream_port=up.port)
    assert plugin.proxy is not None
    # The real deadline (ProxyOptions default, the reference's 1 s): the test takes ~2 s with it.
    deadline = plugin.proxy.opts.partial_timeout
    assert deadline == ProxyOptions().partial_timeout
    device = DeviceSimulator("127.0.0.1", plugin.address[1], kind="meter", count=0)  # info upload only
    try:
        device.start()
        assert up.connected.wait(5)
        wait_for(lambda: len(device.sent) > 0 and bytes(up.received) == bytes(device.sent))
        ack = encoder.ack(0x0303, device.serial, encrypt=_native.goodwe_encrypt)
        clock = encoder.set_time(device.serial, encrypt=_native.goodwe_encrypt)

        # A frame split over two writes less than the deadline apart is reassembled, not dropped.
        up.send(ack[:20])
        time.sleep(deadline * 0.3)
        up.send(ack[20:])
        wait_for(lambda: bytes(device.received) == ack)
        assert plugin.state.dropped["length"] == 0

        # The first half of a set-clock frame (LEN is in it), then silence.
        half = clock[: len(clock) // 2]
        up.send(half)
        sent_at = time.monotonic()
        wait_for(lambda: plugin.state.dropped["length"] == 1, timeout=deadline + 5)
        elapsed = time.monotonic() - sent_at
        assert deadline * 0.8 <= elapsed < deadline + 2.0, elapsed
        time.sleep(0.1)
        assert bytes(device.received) == ack  # no byte of the half frame reached the device

        # The stream is not wedged: a later set-clock and keepalive reach the device intact,
        # and the device's 0x0310 answer goes back up.
        up.send(clock + reference.KEEPALIVE)
        wait_for(lambda: bytes(device.received) == ack + clock + reference.KEEPALIVE)
        wait_for(lambda: device.frames_sent == 2 and bytes(up.received) == bytes(device.sent))
        assert [k for k, _ in device.received_units] == ["frame", "frame", "keepalive"]

        # The proxy's counters; collect() is still waiting, as only an info upload came.
        with pytest.raises(Waiting, match="waiting for the first upload"):
            plugin.collect()
        samples = plugin.diagnostics()
        assert values(samples, "goodwe_inbound_dropped_total", reason="length") == [1]
        assert sum(values(samples, "goodwe_inbound_dropped_total")) == 1  # not also junk/checksum
        assert values(samples, "goodwe_decode_errors_total", direction="inbound") == [0, 0, 0]
        assert values(samples, "goodwe_packets_total", direction="inbound", type="0x0303") == [1]
        assert values(samples, "goodwe_packets_total", direction="inbound", type="0x0116") == [1]
        assert values(samples, "goodwe_packets_total", direction="outbound", type="0x0310") == [1]
        assert values(samples, "goodwe_forwarded_bytes_total", direction="inbound") == [
            len(ack) + len(clock) + len(reference.KEEPALIVE)]
    finally:
        device.stop()
        plugin.close()
        up.close()


@pytest.mark.timeout(30)
def test_backlog_bounded_while_upstream_down_then_forwarding_resumes() -> None:
    """Device bytes are held (at most ``backlog_limit``) while SEMS refuses connections.

    What proxy.py guarantees after a discard (Session._send_upstream): when the held bytes
    plus a new read would exceed the limit, the held bytes are dropped and holding starts
    again at the first frame prefix of that read; on reconnect the held bytes go out first,
    then live traffic. So SEMS gets a contiguous, in-order suffix of the device's byte stream
    that starts on a frame boundary (no duplicate, no reordering, no frame tail whose head
    was dropped), at most ``backlog_limit`` bytes of it from the outage, then everything
    sent afterwards.
    """
    up = ScriptedUpstream()  # bound but not listening: every dial is refused
    plugin = make_plugin(upstream_host="127.0.0.1", upstream_port=up.port)
    assert plugin.proxy is not None
    opts = plugin.proxy.opts
    # Redial quickly once SEMS is back (default backoff 1 s doubling to 60 s). Set before
    # any device connects, so no session has read the old values.
    opts.backoff_initial = 0.05
    opts.backoff_max = 0.1
    limit = opts.backlog_limit  # the real ProxyOptions default (256 KiB), not patched
    assert limit == ProxyOptions().backlog_limit

    serial = simulator.DEFAULT_SERIALS["meter"]
    base = dt.datetime(2024, 6, 1, 12, 0, tzinfo=encoder.BEIJING)
    info = simulator.info_frame("meter", serial, base)
    frame_len = len(simulator.data_frame("meter", serial, base, 0))
    n_pre = int(1.5 * limit) // frame_len + 1  # ~1.5x the limit during the outage
    n_racing, n_live = 40, 3
    frames = [simulator.data_frame("meter", serial, base + dt.timedelta(seconds=i), i)
              for i in range(n_pre + n_racing + n_live)]
    pre = info + b"".join(frames[:n_pre])
    racing = frames[n_pre:n_pre + n_racing]  # sent while the proxy redials: held or live, in order
    live = frames[n_pre + n_racing:]  # sent once the upstream is certainly connected
    post = racing + live
    # Exactly one discard (reads are at most 64 KiB), then a non-empty backlog that the racing
    # frames cannot push over the limit again.
    assert limit < len(pre) and len(pre) + len(b"".join(racing)) < 2 * limit - 65536

    dev = socket.create_connection(plugin.address, timeout=5)
    try:
        dev.sendall(pre)
        # Decoding goes on while nothing can be forwarded.
        wait_for(lambda: plugin.state.packets.get(("outbound", "0x0304"), 0) == n_pre)
        wait_for(lambda: plugin.state.upstream_failures >= 1)
        assert plugin.state.forwarded["outbound"] == 0

        up.listen()
        # Keep uploading across the redial (every 5 ms, ~0.2 s): each frame is held or goes
        # straight up, but must come after the held bytes either way.
        for f in racing:
            dev.sendall(f)
            time.sleep(0.005)
        assert up.connected.wait(5)
        wait_for(lambda: plugin.state.forwarded["outbound"] > 0)  # held bytes flushed, upstream set
        for f in live:
            dev.sendall(f)
        after = b"".join(post)
        wait_for(lambda: bytes(up.received).endswith(after))
        time.sleep(0.1)  # nothing more (e.g. a second copy) may follow

        got = bytes(up.received)
        sent = pre + after
        assert sent.endswith(got)  # contiguous, in order, nothing duplicated
        assert got.startswith(b"POSTGW")  # a whole frame first, never the tail of a dropped one
        held = len(got) - len(after)
        assert 0 < held <= limit  # bounded: the first len(pre) - held bytes were discarded
        assert len(got) < len(sent)

        samples = everything(plugin)
        assert values(samples, "goodwe_forwarded_bytes_total", direction="outbound") == [len(got)]
        assert values(samples, "goodwe_packets_total", direction="outbound", type="0x0303") == [1]
        assert values(samples, "goodwe_packets_total", direction="outbound", type="0x0304") == [n_pre + len(post)]
        assert values(samples, "goodwe_decode_errors_total", direction="outbound") == [0, 0, 0]
        assert values(samples, "goodwe_upstream_dial_failures_total")[0] >= 1
        last = n_pre + len(post) - 1
        wave = (last * 37) % 200
        assert values(samples, "goodwe_meter_power_generation_watts", serial=serial) == [2601 + wave]
        assert values(samples, "goodwe_meter_energy_export_joules_total", serial=serial) == [
            (27078 + last) * 36000.0]
    finally:
        dev.close()
        plugin.close()
        up.close()
