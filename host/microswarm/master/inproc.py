"""A CPython node: the firmware's node engine (firmware/engine.py) and kernels on asyncio.

What the node says and answers is the engine's, the same code a board runs; this file
moves bytes over a master link (memory pipe or TCP) with the host's codec and runs the
kernels the engine starts. A computing kernel runs on a thread of its own, so the event
loop keeps reading the link and heartbeating while it runs (HELLO says threads=true).

In-process nodes share the master's process and its interpreter lock: they are for tests
and demos. For real parallelism, `microswarm.master.local` runs the same node in processes
of its own (`Cluster(local=N)`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import operator
import os
import time
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any

from microswarm.firmware import engine as E
from microswarm.firmware import engine_join as J
from microswarm.firmware import kernels, msw_boot, msw_kernel
from microswarm.master.links import Link, MemoryLink, TcpLink
from microswarm.protocol.catalog import NONCE_SIZE
from microswarm.wire import MAX_FRAME, FrameError, FrameReader, LinkAuth
from microswarm.wire.writer import MessageWriter

log = logging.getLogger(__name__)

FW_VERSION = "cpython"
OPERAND_CACHE = 64 << 20  # bytes of shared operands a CPython node keeps (HELLO operand_cache)
# Kernels that only hand back their argument run on the loop, right after the engine call
# that started them, as on a board (firmware/worker.py INLINE): a thread's round trip costs
# far more than such a call.
INLINE = frozenset({"echo"})

def _now_ms() -> float:
    return time.monotonic() * 1000.0


def _ticks_us() -> int:
    """The kernel runner's clock (msw_kernel.call, .waited): microseconds."""
    return time.perf_counter_ns() // 1000


_ticks_diff = operator.sub


class _Wait:
    """A waiting kernel (sleep_ms) on the loop: a timer, which CANCEL cuts short."""

    __slots__ = ("node", "task", "value", "start", "timer")

    def __init__(self, node: InprocNode, task: E.Task, fn: Any) -> None:
        self.node = node
        self.task = task
        self.start = _ticks_us()
        loop = asyncio.get_running_loop()
        # the kernel checks its argument and says how long to wait
        self.value, error, elapsed = msw_kernel.call(fn, task.args, [None, None, 0],
                                                     _ticks_us, _ticks_diff)
        if error is not None:
            self.timer = loop.call_soon(node._finished, task, None, error, elapsed)
            return
        self.timer = loop.call_later(self.value / 1000, self._end, False)

    def _end(self, cancelled: bool) -> None:
        elapsed = _ticks_diff(_ticks_us(), self.start)
        self.node._finished(self.task, self.value, None,
                            msw_kernel.waited(self.value, None, cancelled, elapsed))

    def cut(self) -> None:
        """CANCEL: the wait ends now."""
        self.timer.cancel()
        self.timer = asyncio.get_running_loop().call_soon(self._end, True)

    def cancel(self) -> None:
        """The session ended: nothing more to answer."""
        self.timer.cancel()


class InprocNode:
    def __init__(
        self,
        node_id: str,
        key: bytes,
        *,
        slots: int = 4,
        board: str = "cpython",
        heap_total: int = 64 << 20,
        max_frame: int = MAX_FRAME,
        executor: Executor | None = None,
    ) -> None:
        self.node_id = node_id
        self.key = key
        self.slots = slots
        self.board = board
        self.heap_total = heap_total
        self.max_frame = max_frame
        self.stats = E.Stats(_now_ms(), None)
        self.joined = asyncio.Event()
        self.ended = asyncio.Event()
        self.link: Link | None = None
        self.engine: E.Engine | None = None
        self._writer = MessageWriter()  # seq and stream numbers, frame MACs from WELCOME on
        self._reader = FrameReader(MAX_FRAME)
        # its kernels' thread; or threads shared with other nodes (`executor`, which this
        # node does not shut down: a load generator's thousands of nodes need not hold a
        # thread each)
        self._own_threads = executor is None
        self._threads = executor or ThreadPoolExecutor(1, thread_name_prefix=f"kernel-{node_id}")
        self._tasks: list[asyncio.Future] = []
        self._inline: list[tuple[E.Task, Any]] = []  # INLINE kernels the engine started
        self._inlining = False
        self._timer: asyncio.TimerHandle | None = None  # the engine's clock (_tick)
        self._timer_at = math.inf  # when it fires (ms)

    @property
    def done(self) -> int:
        return self.stats.done

    # ------------------------------------------------------------------ attach
    async def connect_tcp(self, host: str, port: int) -> None:
        self.start(await TcpLink.connect(host, port))

    def start(self, link: Link) -> None:
        self.link = link
        self.ended.clear()
        self._tasks.append(asyncio.ensure_future(self._run()))

    @classmethod
    def memory_pair(cls, node_id: str, key: bytes, **kw: Any) -> tuple[InprocNode, MemoryLink]:
        """A node started on one end of an in-memory pipe; the other end is returned."""
        node = cls(node_id, key, **kw)
        near, far = MemoryLink.pair(f"inproc:{node_id}")
        node.start(near)
        return node, far

    async def stop(self) -> None:
        if self.link is not None:
            self.link.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        self._stop_clock()
        if self._own_threads:
            self._threads.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------ session
    def hello(self, link_kind: str) -> dict[int, Any]:
        return J.hello(self.node_id, self.board, FW_VERSION, self.heap_total, self.heap_total,
                       self.max_frame, self.slots, link_kind, 1 << 24, OPERAND_CACHE, True,
                       msw_boot.hello_fields())

    async def _run(self) -> None:
        link = self.link
        assert link is not None
        eng = self.engine = E.Engine(self, self.hello(link.kind), self.key, kernels.KERNELS,
                                     kernels.WAITS, self.stats)
        self._inline.clear()  # an ended session's, never to be answered
        try:
            eng.start(_now_ms(), os.urandom(NONCE_SIZE))
            self._wake()  # the join deadline
            self._reader = FrameReader(MAX_FRAME)  # a new session: fresh numbering, no MACs
            self._writer = MessageWriter()
            while eng.end_reason is None:
                data = await link.read()
                if not data:
                    eng.end("link closed")
                    break
                self.feed(data, _now_ms())
                await link.drain()
        except Exception as exc:  # a bug: end the session, keep the process
            log.exception("%s: session failed", self.node_id)
            eng.end(f"{type(exc).__name__}: {exc}")
        finally:
            self._stop_clock()
            for task in eng.running:
                if task.handle is not None:
                    task.handle.cancel()
            link.close()
            self.ended.set()
        log.info("%s: session ended: %s", self.node_id, eng.end_reason)

    def feed(self, data: bytes, now: float) -> None:
        """Link bytes in: each whole frame (or the codec's refusal) goes to the engine."""
        eng = self.engine
        assert eng is not None
        eng.last_rx = now
        for item in self._reader.feed(data):
            if isinstance(item, FrameError):
                eng.bad_frame(int(item.code), item.text, item.seq, item.fatal, now)
            else:
                eng.receive(item.type, item.flags, item.seq, item.payload, now)
                if self._inline:
                    self._run_inline()

    # The engine's clock: one timer handle at its next deadline (at most a second away),
    # moved earlier when something may have brought the deadline forward (a join, a
    # finished kernel, the end). A timer, not a task waiting on an event with a timeout:
    # a load generator runs thousands of these clocks on one loop, and each wait_for
    # made a task, a future and a timeout handle and then cancelled them.
    def _wake(self) -> None:
        """The engine's next deadline may be earlier now: bring the clock forward."""
        eng = self.engine
        if eng is None:
            return
        deadline = eng.next_deadline()
        if deadline is not None and deadline < self._timer_at:
            self._arm(deadline, _now_ms())

    def _arm(self, deadline: float, now: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        wait = min(max(deadline - now, 0.0), 1000.0)
        self._timer_at = now + wait
        self._timer = asyncio.get_running_loop().call_later(wait / 1000.0, self._tick)

    def _tick(self) -> None:
        self._timer, self._timer_at = None, math.inf
        eng = self.engine
        if eng is None or eng.end_reason is not None:
            return
        now = _now_ms()
        deadline = eng.next_deadline()
        if deadline is not None and deadline <= now:
            eng.on_timer(now)
            if self._inline:
                self._run_inline()
            deadline = eng.next_deadline()
        if deadline is not None:
            self._arm(deadline, now)

    def _stop_clock(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._timer_at = None, math.inf

    # ------------------------------------------------------------------ the engine's io
    def challenged(self, key: bytes | None, master_nonce: bytes | None,
                   node_nonce: bytes | None) -> None:
        """Frame MACs from WELCOME on (SPEC.md section 5); key None: off again."""
        self._writer.auth = self._reader.auth = (
            None if key is None else LinkAuth.node(key, master_nonce, node_nonce))

    def send(self, msg_type: int, payload: dict[int, Any]) -> None:
        eng = self.engine
        assert eng is not None and self.link is not None
        frames = self._writer.frames(msg_type, payload, eng.max_frame, eng.peer_max_message)
        self.link.write(frames[0] if len(frames) == 1 else b"".join(frames))

    def run(self, task: E.Task) -> None:
        fn, task.native = kernels.lookup(task.kernel)
        task.native = None  # no native module in CPython: RESULT does not say
        if task.waits:
            task.handle = _Wait(self, task, fn)
        elif task.kernel in INLINE:
            task.handle = None
            self._inline.append((task, fn))  # run by _run_inline, once the engine returns
        else:
            task.handle = asyncio.ensure_future(self._compute(task, fn))

    def _run_inline(self) -> None:
        """The INLINE kernels the engine started, each answered at once (an answer may
        start the next)."""
        todo = self._inline
        self._inlining = True
        try:
            while todo:
                task, fn = todo.pop(0)
                value, error, elapsed = msw_kernel.call(fn, task.args, [None, None, 0],
                                                        _ticks_us, _ticks_diff)
                self._finished(task, value, error, elapsed)
        finally:
            self._inlining = False

    def cancel(self, task: E.Task) -> None:
        if task.waits and task.handle is not None:
            task.handle.cut()

    def close(self, reason: str) -> None:
        self._wake()

    def on_joined(self) -> None:
        self.joined.set()
        self._wake()  # the heartbeat clock starts

    def heap_free(self) -> None:
        return None

    async def _compute(self, task: E.Task, fn: Any) -> None:
        loop = asyncio.get_running_loop()
        value, error, elapsed = await loop.run_in_executor(
            self._threads, msw_kernel.call, fn, task.args, [None, None, 0], _ticks_us,
            _ticks_diff)
        self._finished(task, value, error, elapsed)

    def _finished(self, task: E.Task, value: Any, error: BaseException | None,
                  elapsed_us: int) -> None:
        eng = self.engine
        if eng is None or eng.end_reason is not None:
            return
        eng.finished(task, value, error, elapsed_us, _now_ms())  # may start an INLINE one
        if self._inline and not self._inlining:
            self._run_inline()
        self._wake()
