"""Frames injected into a joined TCP stream, between a real VM board and the real master,
by a man in the middle on loopback: forged RESULTs (no MAC, a made-up MAC, a replay of a
genuine one) never reach the job, a forged TASK never runs on the board; each is refused
with BAD_MAC and counted, and the job's results are exactly the genuine ones."""

from __future__ import annotations

import asyncio
import logging
import os
import zlib

import pytest

from microswarm.master import Master
from microswarm.protocol.catalog import FLAG_MAC, MAC_TRAILER_SIZE, ErrorCode, MsgType
from microswarm.vboard import VirtualBoard
from microswarm.wire import encode_frame

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

KEY = b"frame-auth-test-cluster-key"


def split_frames(buf: bytearray) -> list[bytes]:
    """Whole frames at the front of a TCP byte stream (removed from `buf`)."""
    out = []
    while len(buf) >= 7:
        length = buf[5] | buf[6] << 8
        size = length + 11 + (MAC_TRAILER_SIZE if buf[2] & FLAG_MAC else 0)
        if len(buf) < size:
            break
        out.append(bytes(buf[:size]))
        del buf[:size]
    return out


class Middle:
    """A TCP relay that forwards whole frames and can slip frames in between them."""

    def __init__(self, master_port: int) -> None:
        self.master_port = master_port
        self.to_master: asyncio.StreamWriter | None = None
        self.to_node: asyncio.StreamWriter | None = None
        self.results: list[bytes] = []  # genuine RESULT frames seen going to the master
        self.joined = asyncio.Event()

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _accept(self, node_r, node_w) -> None:
        master_r, master_w = await asyncio.open_connection("127.0.0.1", self.master_port)
        self.to_master, self.to_node = master_w, node_w
        await asyncio.gather(self._pump(node_r, master_w, up=True),
                             self._pump(master_r, node_w, up=False), return_exceptions=True)

    async def _pump(self, reader, writer, up: bool) -> None:
        buf = bytearray()
        while data := await reader.read(65536):
            buf += data
            for frame in split_frames(buf):
                if up and frame[1] == MsgType.RESULT:
                    self.results.append(frame)
                if not up and frame[1] == MsgType.WELCOME:
                    self.joined.set()
                writer.write(frame)
        writer.close()

    def inject(self, frame: bytes, up: bool = True) -> None:
        (self.to_master if up else self.to_node).write(frame)


def test_forged_frames_injected_into_a_joined_tcp_stream_are_refused(caplog):
    async def main():
        async with Master(key=KEY, cluster="t", tcp_port=0, udp_port=None) as m:
            middle = Middle(m.tcp_port)
            port = await middle.start()
            board = VirtualBoard(link="tcp", node_id="vm-mitm", cluster="t", key=KEY,
                                 master=f"127.0.0.1:{port}", native=False)
            try:
                await asyncio.to_thread(board.start)
                await m.wait_for_nodes(1, 30)
                await asyncio.wait_for(middle.joined.wait(), 10)
                first = await m.run("echo", [[i] for i in range(4)])
                assert first == list(range(4)) and len(middle.results) == 4
                handle = m.submit("sleep_ms", [[300], [300]])
                await asyncio.sleep(0.1)
                task_ids = range(5, 7)  # the master numbers tasks from 1: these run now
                for task_id in task_ids:
                    forged = {0: task_id, 1: 666, 3: 1}
                    middle.inject(encode_frame(MsgType.RESULT, forged, 900))  # no MAC
                    with_mac = bytearray(encode_frame(MsgType.RESULT, forged, 901))
                    with_mac[2] |= FLAG_MAC  # claims a MAC: CRC recomputed below
                    body = bytes(with_mac[:-4])
                    frame = body + zlib.crc32(body).to_bytes(4, "little")
                    middle.inject(frame + (1 << 20).to_bytes(4, "little") + os.urandom(8))
                middle.inject(middle.results[0])  # a genuine RESULT, replayed
                # and a TASK forged towards the board: it must not run
                middle.inject(encode_frame(MsgType.TASK, {0: 77, 1: "echo", 2: ["x"], 3: 0},
                                           902), up=False)
                assert await asyncio.wait_for(handle, 30) == [300, 300]
                (info,) = m.nodes
                assert info.bad_frames == 5
                assert info.results == 4 + 2  # only the genuine ones
                await asyncio.sleep(0.3)
            finally:
                await asyncio.to_thread(board.stop)
                middle.server.close()

    with caplog.at_level(logging.WARNING, logger="microswarm"):
        asyncio.run(main())
    refused = [r.getMessage() for r in caplog.records if "BAD_MAC" in r.getMessage()
               or f"ERROR {int(ErrorCode.BAD_MAC)}" in r.getMessage()]
    assert len([r for r in refused if "bad frame" in r]) == 5, refused
    # the board refused the forged TASK and said so (ERROR BAD_MAC over the real link)
    assert any(f"ERROR {int(ErrorCode.BAD_MAC)}" in r for r in refused), refused
