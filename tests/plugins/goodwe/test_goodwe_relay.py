"""The relay path of the proxy (issue 12): many devices at once, not one byte altered, and a
slow SEMS or a slow device never makes the proxy buffer without bound.

The proxy, the devices and a recording SEMS run on one asyncio loop on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random

import pytest

from gridtap import _native
from gridtap_plugins.goodwe import encoder, simulator
from gridtap_plugins.goodwe.metrics import GoodweState
from gridtap_plugins.goodwe.proxy import GoodweProxy, ProxyOptions

WHEN = dt.datetime(2024, 6, 1, 12, 0, tzinfo=encoder.BEIJING)


class RecordingSems:
    """Keeps every byte of every upstream connection; ACKs each complete upload."""

    def __init__(self, ack: bool = True) -> None:
        self.streams: list[bytearray] = []
        self.ack = ack
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0, backlog=1024)
        return self.server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        got = bytearray()
        self.streams.append(got)
        split = _native.GoodweSplitter("outbound")
        try:
            while data := await reader.read(65536):
                got += data
                for kind, raw in split.feed(data):
                    if kind != "frame" or not self.ack:
                        continue
                    try:
                        d = _native.goodwe_decode_frame(raw, "outbound")
                    except _native.DecodeError:
                        continue  # SEMS ignores a broken upload
                    writer.write(encoder.ack(d["type"], d["device_id"] + d["device_serial"], WHEN,
                                             encrypt=_native.goodwe_encrypt))
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()


async def _device(port: int, stream: bytes, rng: random.Random) -> bytes:
    """Send ``stream`` in random pieces with random pauses; return what came back."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    back = bytearray()

    async def read() -> None:
        while data := await reader.read(65536):
            back.extend(data)

    reading = asyncio.create_task(read())
    pos = 0
    while pos < len(stream):
        n = rng.randint(1, 400)
        writer.write(stream[pos:pos + n])
        pos += n
        await writer.drain()
        if rng.random() < 0.3:
            await asyncio.sleep(rng.random() * 0.005)
    await asyncio.sleep(0.3)
    writer.close()
    reading.cancel()
    return bytes(back)


def _device_stream(i: int, rng: random.Random) -> bytes:
    """Info + data uploads of one device, with junk and a broken frame mixed in."""
    kind = ("meter", "inverter", "et")[i % 3]
    serial = simulator.DEFAULT_SERIALS[kind][:8] + f"{i:08d}"
    parts = [simulator.info_frame(kind, serial, WHEN)]
    for step in range(8):
        frame = simulator.data_frame(kind, serial, WHEN + dt.timedelta(seconds=step), step)
        if step == 3:
            parts.append(b"\x00junk POSTG")
        if step == 5:
            frame = frame[:50] + bytes([frame[50] ^ 1]) + frame[51:]  # bad CRC: forwarded as is
        parts.append(frame)
    return b"".join(parts)


@pytest.mark.timeout(60)
def test_many_devices_at_once_every_byte_reaches_sems_unaltered() -> None:
    async def main() -> None:
        rng = random.Random(12)
        sems = RecordingSems()
        state = GoodweState()
        proxy = GoodweProxy(ProxyOptions(listen_host="127.0.0.1", listen_port=0, upstream_host="127.0.0.1",
                                         upstream_port=await sems.start()), state)
        await proxy.start()
        try:
            streams = [_device_stream(i, rng) for i in range(60)]
            replies = await asyncio.gather(*(_device(proxy.address[1], s, random.Random(i))
                                             for i, s in enumerate(streams)))
            await asyncio.sleep(0.1)
        finally:
            await proxy.stop()
            await sems.stop()
        # Byte for byte, per connection (a device's stream is identified by its own bytes).
        assert sorted(bytes(s) for s in sems.streams) == sorted(streams)
        # Every valid upload was ACKed back to its own device, and nothing else came back.
        for stream, back in zip(streams, replies, strict=True):
            acks = [raw for kind, raw in _native.GoodweSplitter("inbound").feed(back) if kind == "frame"]
            assert len(acks) == 8 and b"".join(acks) == back  # info + 7 good data uploads
            serial = stream[14:30].decode()
            assert {_native.goodwe_decode_frame(a, "inbound")["device_serial"] for a in acks} == {serial[8:]}
        assert state.forwarded["outbound"] == sum(map(len, streams))
        assert state.errors[("outbound", "checksum")] == 60
        assert sum(n for (d, _), n in state.packets.items() if d == "outbound") == 60 * 8
        assert len(state.measurements()) > 60 * 5  # every device's readings

    asyncio.run(main())


@pytest.mark.timeout(60)
def test_slow_sems_pauses_the_device_instead_of_buffering() -> None:
    """SEMS that stops reading: the proxy stops reading the device (TCP pushes back), so its
    own write buffer stays near asyncio's high-water mark, not at what the device sent."""

    async def main() -> None:
        accepted = asyncio.Event()
        stalled: list[asyncio.StreamWriter] = []

        async def never_read(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            stalled.append(writer)
            accepted.set()
            await asyncio.sleep(30)

        sems = await asyncio.start_server(never_read, "127.0.0.1", 0)
        proxy = GoodweProxy(ProxyOptions(listen_host="127.0.0.1", listen_port=0, upstream_host="127.0.0.1",
                                         upstream_port=sems.sockets[0].getsockname()[1]), GoodweState())
        await proxy.start()
        _, writer = await asyncio.open_connection("127.0.0.1", proxy.address[1])
        await asyncio.wait_for(accepted.wait(), 5)
        frame = simulator.data_frame("meter", simulator.DEFAULT_SERIALS["meter"], WHEN, 0)
        chunk = frame * 400  # 66 KB
        sent = 0
        for _ in range(300):  # try to push ~20 MB
            writer.write(chunk)
            try:
                await asyncio.wait_for(writer.drain(), 0.2)
            except TimeoutError:
                break  # the device is being pushed back
            sent += len(chunk)
        (session,) = proxy.sessions
        assert session.upstream is not None
        buffered = session.upstream.get_write_buffer_size()
        assert sent < 20_000_000  # the device was stopped long before it sent it all
        assert buffered < 1_000_000, buffered
        assert session._device_paused
        writer.transport.abort()
        await proxy.stop()
        sems.close()

    asyncio.run(main())
