"""Real time: simulated nodes beside real MicroPython VM boards.

The event queue is paced to the wall clock (virtual second = wall second) inside an
asyncio loop, and the simulated master listens on a loopback TCP port. Each `[[vms]]`
group of a scenario starts virtual boards (`microswarm.vboard.VirtualBoard`: the real
firmware in the real VM) that dial that port; their frames go through the same session
code as the simulated nodes' (handshake, scheduler, journal), so both kinds share one job.
A run in real time is not deterministic: the VMs run at the host's pace.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any

from microswarm.sim import wire as w
from microswarm.wire import FrameError, FrameReader

if TYPE_CHECKING:
    from microswarm.sim.cluster import Simulation

POLL_S = 0.005  # longest the pacer sleeps before looking at the queue again
JOIN_WAIT_S = 30.0  # wall seconds the clock waits at most for every VM board to join


class StreamLink:
    """What the master needs of a real node's link: a TCP stream, no model."""

    __slots__ = ("writer", "connected", "latency_s")
    serial = False

    def __init__(self) -> None:
        self.writer: asyncio.StreamWriter | None = None
        self.connected = True
        self.latency_s = 0.0


class VmNode:
    """A real virtual board as the simulated master sees it."""

    __slots__ = ("sim", "index", "node_id", "board", "link", "boot", "epoch", "joined",
                 "alive", "busy_s", "work_s", "done", "vboard", "slowdown")
    real = True

    def __init__(self, sim: Simulation, index: int, node_id: str, board: str) -> None:
        self.sim = sim
        self.index = index
        self.node_id = node_id
        self.board = board
        self.link = StreamLink()
        self.boot = 1
        self.epoch = 0
        self.joined = False
        self.alive = True
        self.busy_s = 0.0
        self.work_s = 0.0  # the same tasks' work in the speed model at factor 1
        self.done = 0
        self.vboard: Any = None
        self.slowdown = 1.0

    def write(self, data: bytes) -> None:
        writer = self.link.writer
        if writer is not None and not writer.is_closing():
            writer.write(data)

    def reset_by_peer(self, boot: int, epoch: int) -> None:
        writer, self.link.writer = self.link.writer, None
        if writer is not None:
            writer.close()

    def heartbeat(self) -> None:
        """The board sends its own."""

    def task_finished(self, elapsed_s: float, work_s: float) -> None:
        self.busy_s += elapsed_s
        self.work_s += work_s
        self.done += 1

    def factor(self) -> float | None:
        """The pace the board ran its kernels at in this run, as a board factor: its
        reported kernel time over the model's work for the same tasks (None before a
        result)."""
        return self.busy_s / self.work_s if self.work_s > 0 and self.busy_s > 0 else None


async def _serve(sim: Simulation, port_box: list[int]) -> asyncio.Server:
    by_id = {n.node_id: n for n in sim.nodes if getattr(n, "real", False)}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first = await _first_frame(reader)
        node = _claim(by_id, first)
        if node is None:
            writer.close()
            return
        sim.catch_up()
        node.link.writer = writer
        epoch = sim.master.accept(node)
        if epoch is None:
            writer.close()
            return
        node.epoch = epoch
        sim.master.receive(node, epoch, first)
        with contextlib.suppress(ConnectionError):  # the board stopped at the run's end
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                sim.catch_up()
                sim.master.receive(node, epoch, data)
        if node.link.writer is writer:
            node.link.writer = None
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port_box.append(server.sockets[0].getsockname()[1])
    return server


async def _first_frame(reader: asyncio.StreamReader) -> bytes:
    """The bytes of a new connection up to its first whole frame (or whatever came before
    the peer closed or sent too much)."""
    data = b""
    probe = FrameReader()
    while len(data) < 65536:
        chunk = await reader.read(4096)
        if not chunk:
            break
        data += chunk
        if probe.feed(chunk):
            break
    return data


def _claim(by_id: dict, first: bytes) -> VmNode | None:
    """The VmNode a new connection belongs to, by the node_id of its HELLO."""
    items = FrameReader().feed(first)
    if not items or isinstance(items[0], FrameError) or items[0].type != w.HELLO:
        return None
    return by_id.get(items[0].payload.get(w.H["node_id"]))


async def _run(sim: Simulation, duration_s: float) -> None:
    from microswarm.vboard import VirtualBoard

    port_box: list[int] = []
    server = await _serve(sim, port_box)
    boards = []
    try:
        for node in sim.nodes:
            if getattr(node, "real", False):
                vb = VirtualBoard(board=node.board, link="tcp", node_id=node.node_id,
                                  key=sim.key, master=f"127.0.0.1:{port_box[0]}")
                boards.append(vb)
                node.vboard = vb
        await asyncio.gather(*(asyncio.to_thread(vb.start) for vb in boards))
        # The clock starts once every VM board has joined (their joins run at virtual 0):
        # how long a VM process takes to boot and join on a loaded host is no part of the
        # job, and a job that started without them ran on the simulated boards alone
        real = [n.index for n in sim.nodes if getattr(n, "real", False)]
        until = time.monotonic() + JOIN_WAIT_S
        while any(i not in sim.joined_at for i in real) and time.monotonic() < until:
            await asyncio.sleep(POLL_S)
        sim.t0 = time.monotonic() - sim.events.now
        while not sim.finished() and sim.events.now < duration_s:
            sim.catch_up()
            await asyncio.sleep(POLL_S)
    finally:
        server.close()
        for vb in boards:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(vb.stop)


def run_realtime(sim: Simulation, duration_s: float) -> None:
    asyncio.run(_run(sim, duration_s))
