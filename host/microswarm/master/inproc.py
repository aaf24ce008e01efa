"""In-process node: a CPython worker that runs the firmware's own kernels module.

It speaks the same frames as a board (HELLO, the mutual HMAC, TASK/RESULT, CANCEL,
HEARTBEAT, CHUNKs) over any link, so a task placed on it takes the same scheduler and
codec path as a task placed on a board. Kernels run on the event loop one at a time;
`slots` tasks may be queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import time
from collections import deque
from typing import Any

from microswarm.firmware import kernels
from microswarm.master.links import Link, MemoryLink, TcpLink
from microswarm.master.messages import (
    CANCEL_TASK_ID,
    RESULT_CODE,
    RESULT_ELAPSED,
    RESULT_ERROR,
    RESULT_TASK_ID,
    RESULT_VALUE,
    TASK_ARGS,
    TASK_ID,
    TASK_KERNEL,
    build,
    fields,
)
from microswarm.protocol.catalog import NONCE_SIZE, PROTOCOL_VERSION, ErrorCode, MsgType
from microswarm.wire import (
    MAX_FRAME,
    FrameError,
    FrameReader,
    Reassembler,
    encode_message,
    master_proof,
    node_mac,
)

log = logging.getLogger(__name__)


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
    ) -> None:
        self.node_id = node_id
        self.key = key
        self.slots = slots
        self.board = board
        self.heap_total = heap_total
        self.max_frame = max_frame
        self.done = 0
        self.joined = asyncio.Event()
        self.link: Link | None = None
        self._queue: deque[tuple[int, str, list]] = deque()
        self._wake = asyncio.Event()
        self._cancelled: set[int] = set()
        self._seq = 0
        self._stream = 0
        self._started = time.monotonic()
        self._tasks: list[asyncio.Task] = []

    # ------------------------------------------------------------------ attach
    async def connect_tcp(self, host: str, port: int) -> None:
        self.start(await TcpLink.connect(host, port))

    def start(self, link: Link) -> None:
        self.link = link
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

    # ------------------------------------------------------------------ frames
    def _send(self, msg_type: MsgType, payload: dict[int, Any]) -> None:
        self._stream = (self._stream + 1) & 0xFFFF
        frames = encode_message(msg_type, payload, seq=self._seq, max_frame=self.max_frame,
                                stream=self._stream, validate=False)
        self._seq = (self._seq + len(frames)) & 0xFFFF
        assert self.link is not None
        self.link.write(b"".join(frames))

    async def _frames(self):
        reader = FrameReader(MAX_FRAME)
        reassembler = Reassembler(1 << 24)
        assert self.link is not None
        while True:
            data = await self.link.read()
            if not data:
                return
            for item in reader.feed(data):
                if isinstance(item, FrameError):
                    if item.fatal:
                        return
                    self._send(MsgType.ERROR, build(MsgType.ERROR, code=int(item.code),
                                                    text=item.text, ref_seq=item.seq))
                    continue
                whole = reassembler.push(item)
                if whole is not None:
                    yield whole

    async def _run(self) -> None:
        nonce = os.urandom(NONCE_SIZE)
        self._send(
            MsgType.HELLO,
            build(
                MsgType.HELLO, node_id=self.node_id, board=self.board, fw_version="cpython",
                proto_version=PROTOCOL_VERSION, **kernels.hello_fields(),
                heap_total=self.heap_total, heap_free=self.heap_total, max_frame=self.max_frame,
                slots=self.slots, nonce=nonce, link=self.link.kind if self.link else "mem",
                max_message=1 << 24,
            ),
        )
        frames = self._frames()
        master_nonce = b""
        try:
            async for frame in frames:
                t = frame.type
                body = frame.payload
                if t == MsgType.TASK:
                    self._queue.append((body[TASK_ID], body[TASK_KERNEL], body[TASK_ARGS]))
                    self._wake.set()
                elif t == MsgType.CANCEL:
                    self._cancelled.add(body[CANCEL_TASK_ID])
                elif t == MsgType.AUTH_CHALLENGE:
                    master_nonce = bytes(fields(t, body)["nonce"])
                    mac = node_mac(self.key, master_nonce, nonce, self.node_id)
                    self._send(MsgType.AUTH_RESPONSE, build(MsgType.AUTH_RESPONSE, mac=mac))
                elif t == MsgType.WELCOME:
                    welcome = fields(t, body)
                    proof = master_proof(self.key, nonce, master_nonce)
                    if not hmac.compare_digest(bytes(welcome["proof"]), proof):
                        log.warning("%s: master proof did not verify", self.node_id)
                        return
                    self.max_frame = welcome["max_frame"]
                    self._tasks.append(asyncio.ensure_future(self._worker()))
                    self._tasks.append(
                        asyncio.ensure_future(self._heartbeat(welcome["heartbeat_ms"]))
                    )
                    self.joined.set()
                elif t == MsgType.ERROR:
                    err = fields(t, body)
                    log.info("%s: master says %s", self.node_id, err["text"])
                elif t == MsgType.BYE:
                    return
        finally:
            if self.link is not None:
                self.link.close()

    async def _heartbeat(self, interval_ms: int) -> None:
        while True:
            await asyncio.sleep(interval_ms / 1000)
            uptime = int((time.monotonic() - self._started) * 1000)
            self._send(MsgType.HEARTBEAT, build(MsgType.HEARTBEAT, uptime_ms=uptime,
                                                queue=len(self._queue), done=self.done))

    async def _worker(self) -> None:
        while True:
            while not self._queue:
                self._wake.clear()
                await self._wake.wait()
            task_id, name, args = self._queue.popleft()
            if task_id in self._cancelled:
                self._cancelled.discard(task_id)
                continue
            start = time.perf_counter()
            payload: dict[int, Any]
            found = kernels.lookup(name)
            try:
                if found is None:
                    raise LookupError(name)
                bad = kernels.check(name, args)
                if bad is not None:
                    raise _BadArgs(bad)
                value = found[0](*args)
                if name in kernels.WAITS:
                    await asyncio.sleep(value / 1000)
                elapsed = int((time.perf_counter() - start) * 1e6)
                payload = {RESULT_TASK_ID: task_id, RESULT_VALUE: value, RESULT_ELAPSED: elapsed}
            except LookupError:
                payload = failure(task_id, ErrorCode.UNKNOWN_KERNEL, f"no kernel {name!r}", 0)
            except MemoryError:
                payload = failure(task_id, ErrorCode.NO_MEMORY, "out of memory", 0)
            except _BadArgs as exc:
                payload = failure(task_id, ErrorCode.BAD_ARGS, str(exc), 0)
            except (TypeError, ValueError) as exc:
                elapsed = int((time.perf_counter() - start) * 1e6)
                payload = failure(task_id, ErrorCode.BAD_ARGS, f"{type(exc).__name__}: {exc}",
                                  elapsed)
            except Exception as exc:
                elapsed = int((time.perf_counter() - start) * 1e6)
                payload = failure(task_id, ErrorCode.KERNEL_FAILED, f"{type(exc).__name__}: {exc}",
                                  elapsed)
            if task_id in self._cancelled:
                self._cancelled.discard(task_id)
                continue
            self.done += 1
            self._send(MsgType.RESULT, payload)
            await asyncio.sleep(0)  # let the link and the master breathe between tasks


class _BadArgs(Exception):
    """The arguments do not fit the kernel's declared kinds (kernels.check)."""


def failure(task_id: int, code: ErrorCode, text: str, elapsed_us: int) -> dict[int, Any]:
    return {RESULT_TASK_ID: task_id, RESULT_ERROR: text, RESULT_ELAPSED: elapsed_us,
            RESULT_CODE: int(code)}
