"""Limits before (and around) authentication, on real loopback TCP: connection caps, the
handshake deadline, no CHUNK reassembly before WELCOME, memory given back when peers go,
and a flood of bad frames that neither floods the log nor starves the other nodes."""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
import time
import weakref

import pytest

from microswarm.master import Master
from microswarm.master.messages import build
from microswarm.master.ratelog import BURST, LINES_PER_S
from microswarm.protocol.catalog import PROTOCOL_VERSION, ErrorCode, MsgType
from microswarm.wire import FrameReader, LinkAuth, encode_frame, encode_message, node_mac

KEY = b"test cluster key"
MIB = 1 << 20

pytestmark = pytest.mark.timeout(120)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 110))


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def hello(node_id: str, seq: int = 0, kernels=("echo",)) -> bytes:
    return encode_frame(MsgType.HELLO, build(
        MsgType.HELLO, node_id=node_id, board="unix", fw_version="t",
        proto_version=PROTOCOL_VERSION, kernels=list(kernels), heap_total=MIB, heap_free=MIB,
        max_frame=65546, slots=2, nonce=b"n" * 16, link="tcp", max_message=4 * MIB), seq)


async def errors_until_closed(reader: asyncio.StreamReader) -> list[int]:
    codes, frames = [], FrameReader()
    try:
        while data := await reader.read(65536):
            codes += [f.payload[0] for f in frames.feed(data) if f.type == MsgType.ERROR]
    except ConnectionError:  # closed with our bytes unread: a reset may drop its answer
        pass
    return codes


async def chunk_peer(port: int, i: int) -> list[int]:
    """HELLO, then four CHUNK streams declaring 1 MiB each, sent in full while the master
    lets us; returns the ERROR codes it got before the link closed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(hello(f"peer{i}"))
    seq = 1
    try:
        for stream in range(4):
            for piece in encode_message(MsgType.RESULT, {0: 1, 1: bytes(MIB - 16), 3: 0},
                                        seq=seq, stream=stream, validate=False):
                writer.write(piece)
                seq += 1
            await writer.drain()
    except ConnectionError:
        pass
    codes = await errors_until_closed(reader)
    writer.close()
    return codes


def test_chunk_streams_before_joining_leave_no_memory_behind():
    async def main():
        async with Master(key=KEY, tcp_port=0, udp_port=None, max_pending_per_address=64) as m:
            for _ in range(2):  # warm up the allocator on one round
                await asyncio.gather(*(chunk_peer(m.tcp_port, i) for i in range(4)))
            gc.collect()
            start = rss()
            results = await asyncio.gather(*(chunk_peer(m.tcp_port, i) for i in range(40)))
            # refused at the first CHUNK (a reset may overtake the ERROR)
            assert all(codes in ([ErrorCode.NOT_JOINED], []) for codes in results), results
            await asyncio.sleep(0)
            assert not m.connections and m.admission.waiting == 0
            grown = rss() - start
            assert grown < 20 * MIB, f"master grew by {grown / MIB:.1f} MiB"
            assert m.stats["refused"] >= 48

    run(main())


def test_links_not_yet_joined_are_capped_and_expire():
    async def main():
        async with Master(key=KEY, tcp_port=0, udp_port=None, max_pending_per_address=3,
                          join_timeout_s=0.5) as m:
            idle = [await asyncio.open_connection("127.0.0.1", m.tcp_port) for _ in range(4)]
            # the fourth from this address was closed at once, unanswered
            assert await asyncio.wait_for(idle[3][0].read(), 5) == b""
            assert m.stats["connections_refused"] == 1
            # the others get HANDSHAKE_TIMEOUT at their deadline and are closed
            for reader, _ in idle[:3]:
                assert await asyncio.wait_for(errors_until_closed(reader), 5) == [
                    ErrorCode.HANDSHAKE_TIMEOUT]
            await m.add_inproc_nodes(1, via="tcp")
            await m.wait_for_nodes(1, 10)
            assert await m.run("echo", [[1]]) == [1]
            for _, writer in idle:
                writer.close()

    run(main())


def test_sessions_of_peers_that_left_are_freed_without_the_cycle_collector():
    async def main():
        async with Master(key=KEY, tcp_port=0, udp_port=None) as m:
            refs = []
            gc.disable()
            try:
                for i in range(20):
                    reader, writer = await asyncio.open_connection("127.0.0.1", m.tcp_port)
                    writer.write(hello(f"p{i}") if i % 2 else b"\x01\x02garbage" * 8)
                    await writer.drain()
                    while not m.connections:
                        await asyncio.sleep(0.001)
                    refs += [weakref.ref(c) for c in m.connections]
                    refs += [weakref.ref(c.session) for c in m.connections]
                    refs += [weakref.ref(c.link) for c in m.connections]
                    writer.close()
                    await reader.read()
                    while m.connections:
                        await asyncio.sleep(0.001)
                for _ in range(5):
                    await asyncio.sleep(0)
                alive = [r() for r in refs if r() is not None]
                assert not alive, alive[:3]
            finally:
                gc.enable()

    run(main())


class RawJoined:
    def __init__(self) -> None:
        self.frames = FrameReader()

    async def join(self, port: int) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", port)
        self.writer.write(hello("flood", kernels=()))  # takes no task: only floods
        challenge = await self.next(MsgType.AUTH_CHALLENGE)
        mac = node_mac(KEY, bytes(challenge.payload[0]), b"n" * 16, "flood")
        self.writer.write(encode_frame(MsgType.AUTH_RESPONSE, {0: mac}, 1))
        # frames after WELCOME carry a MAC (SPEC.md section 5)
        self.auth = self.frames.auth = LinkAuth.node(KEY, bytes(challenge.payload[0]),
                                                     b"n" * 16)
        await self.next(MsgType.WELCOME)

    async def next(self, msg_type: int):
        while True:
            data = await self.reader.read(65536)
            assert data
            for f in self.frames.feed(data):
                if f.type == msg_type:
                    return f


def test_a_flood_of_bad_frames_is_counted_rate_limits_the_log_and_spares_other_jobs(caplog):
    """A joined link pours bad-CRC frames while two in-process nodes run jobs: every bad
    frame is counted, the log grows no faster than its rate limit, and the jobs finish
    exactly (how much slower is `microswarm bench flood`'s figure, not a timed test)."""
    bad = bytearray(encode_frame(MsgType.HEARTBEAT, {0: 1}, 9))
    bad[-1] ^= 0xFF
    # 56 KB of bad-CRC frames a write, then one good HEARTBEAT (bad frames are no sign of
    # life: without it the flooding node would be lost after 3 intervals)
    bad_part = bytes(bad) * 4095

    async def job(m: Master) -> None:
        assert await m.run("echo", [[i] for i in range(1000)]) == list(range(1000))

    async def main():
        async with Master(key=KEY, tcp_port=0, udp_port=None) as m:
            await m.add_inproc_nodes(2)
            await m.wait_for_nodes(2, 10)
            flood = RawJoined()
            await flood.join(m.tcp_port)
            # a small send buffer: the flood waits on TCP flow control, not in the kernel
            flood.writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET,
                                                             socket.SO_SNDBUF, 32768)
            flood.writer.transport.set_write_buffer_limits(high=65536)
            stop = asyncio.Event()
            sent = 0

            async def pour():
                nonlocal sent
                while not stop.is_set():
                    flood.writer.write(bad_part + encode_frame(MsgType.HEARTBEAT, {0: 1}, 10,
                                                               auth=flood.auth))
                    sent += 4095
                    await flood.writer.drain()

            caplog.clear()
            started = time.monotonic()
            with caplog.at_level(logging.WARNING, logger="microswarm.master.master"):
                pouring = asyncio.ensure_future(pour())
                for _ in range(3):
                    await job(m)
                stop.set()
                await pouring
                while m.stats["bad_frames"] < sent:
                    await asyncio.sleep(0.05)
            elapsed = time.monotonic() - started
            assert m.stats["bad_frames"] == sent  # every one counted
            (info,) = [n for n in m.nodes if n.node_id == "flood"]
            assert info.bad_frames == sent
            lines = [r for r in caplog.records if "bad frame" in r.getMessage()]
            assert len(lines) <= BURST + LINES_PER_S * elapsed + 1

    run(main())

