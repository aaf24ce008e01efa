"""The real master on a real pty whose node end stops reading: what the master could not
hand to the OS waits in its serial link, and the TASKs in there are not "lost on the link"
when the node's HEARTBEAT reports an empty queue. The test plays the node with the
protocol's own codec (microswarm.wire), so it can hold its reads as a slow port does."""

from __future__ import annotations

import asyncio
import logging
import os
import tty

from microswarm.master import Master
from microswarm.protocol.catalog import MsgType
from microswarm.wire import (
    LinkAuth,
    Reassembler,
    SerialDeframer,
    encode_message,
    node_mac,
    serial_encode,
)

from .test_session import KEY, NODE, NONCE, frame, hello

HEARTBEAT_MS = 200  # the master reconciles after 2 intervals: 0.4 s
BIG = bytes(range(256)) * 800  # an echo of 204,800 bytes: ~210 CHUNK frames of 1 KB


class _Node:
    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.seq = 0
        self.deframer = SerialDeframer(1024 + 64)
        self.chunks = Reassembler(1 << 20)
        self.tasks: list[int] = []  # TASK ids in the order they arrived

    def send(self, msg_type: int, payload: dict) -> None:
        os.write(self.fd, frame(msg_type, payload, self.seq, "cobs"))
        self.seq += 1

    async def read(self) -> list:
        """The next whole messages from the master (waits for bytes)."""
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                await asyncio.sleep(0.01)
                continue
            out = []
            for f in self.deframer.feed(data):
                assert not isinstance(f, Exception), f
                whole = self.chunks.push(f)
                if whole is not None:
                    out.append(whole)
            if out:
                return out

    async def join(self) -> None:
        os.write(self.fd, hello(0, "cobs", node_id="slow", link="serial", cluster="backlog",
                                max_frame=1024, max_message=1 << 20, heap_free=1 << 22,
                                heap_total=1 << 22))
        self.seq = 1
        (challenge,) = [f for f in await self.read() if f.type == MsgType.AUTH_CHALLENGE]
        nonce = bytes(challenge.payload[0])
        self.send(MsgType.AUTH_RESPONSE, {0: node_mac(KEY, nonce, NONCE, "slow")})
        NODE.auth = self.deframer.auth = LinkAuth.node(KEY, nonce, NONCE)
        while not [f for f in await self.read() if f.type == MsgType.WELCOME]:
            pass

    async def answer(self, task_id: int, value: object) -> None:
        frames = encode_message(MsgType.RESULT, {0: task_id, 1: value, 3: 5}, seq=self.seq,
                                max_frame=1024, stream=task_id, auth=NODE.auth)
        self.seq += len(frames)
        data = memoryview(b"".join(serial_encode(f) for f in frames))
        while data:  # (the pty takes a few KB at a time; the master reads on this loop)
            try:
                data = data[os.write(self.fd, data):]
            except BlockingIOError:
                await asyncio.sleep(0.005)


def test_tasks_behind_a_long_chunk_stream_are_not_lost_while_the_port_still_writes(caplog):
    node_fd, port_fd = os.openpty()
    tty.setraw(port_fd)
    tty.setraw(node_fd)
    os.set_blocking(node_fd, False)
    path = os.ttyname(port_fd)

    async def scenario() -> list:
        async with Master(key=KEY, cluster="backlog", tcp_port=None, udp_port=None,
                          heartbeat_ms=HEARTBEAT_MS) as master:
            await master.open_serial(path)
            node = _Node(node_fd)
            await node.join()
            await master.wait_for_nodes(1, 10)
            job = asyncio.ensure_future(master.submit("echo", [[BIG], [7]], timeout=30,
                                                     version=""))
            # the node reads nothing for 1.5 s (3.75 reconcile windows) and says its queue
            # is empty: the big TASK's CHUNKs and the small TASK behind them are still in
            # the master's serial link, not lost
            for k in range(8):
                await asyncio.sleep(HEARTBEAT_MS / 1000)
                node.send(MsgType.HEARTBEAT, {0: 1000 + k, 2: 0})
            port = master.serial_ports[0]
            backlogged = port.link.backlogged()
            while not job.done():
                for msg in await asyncio.wait_for(node.read(), 10):
                    if msg.type == MsgType.TASK:
                        node.tasks.append(msg.payload[0])
                        await node.answer(msg.payload[0], msg.payload[2][0])
            return [await job, backlogged, sorted(node.tasks)]

    with caplog.at_level(logging.WARNING, logger="microswarm"):
        try:
            results, backlogged, tasks = asyncio.run(scenario())
        finally:
            os.close(node_fd)
            os.close(port_fd)
    assert backlogged  # the case under test: the port still held the master's bytes
    assert results == [BIG, 7]
    assert len(tasks) == 2 and len(set(tasks)) == 2  # each TASK sent once
    lost = [r.getMessage() for r in caplog.records if "lost" in r.getMessage()]
    assert not lost, lost
