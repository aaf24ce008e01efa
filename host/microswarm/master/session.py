"""NodeSession: the master's end of one node link, whatever the link is.

It runs the join (HELLO -> AUTH_CHALLENGE -> AUTH_RESPONSE -> WELCOME, mutual HMAC),
then turns frames into calls on its owner: results, task errors, heartbeats. It counts
bad frames and answers each with an ERROR; a frame that breaks the stream's framing
closes the link. A node that fails the join gets an ERROR saying why and is closed; the
master keeps serving the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

from microswarm.master.links import Link
from microswarm.master.messages import (
    RESULT_CODE,
    RESULT_ELAPSED,
    RESULT_ERROR,
    RESULT_TASK_ID,
    TASK_ARGS,
    TASK_ATTEMPT,
    TASK_ID,
    TASK_KERNEL,
    build,
    fields,
)
from microswarm.protocol.catalog import NONCE_SIZE, PROTOCOL_VERSION, ErrorCode, MsgType
from microswarm.wire import (
    MAX_FRAME,
    Frame,
    FrameError,
    FrameReader,
    Reassembler,
    SerialDeframer,
    encode_message,
    master_proof,
    node_mac,
    serial_encode,
)

log = logging.getLogger(__name__)

JOIN_TIMEOUT_S = 10.0

_TASK = int(MsgType.TASK)
_RESULT = int(MsgType.RESULT)


class JoinRefused(Exception):
    def __init__(self, code: ErrorCode, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text


@dataclass
class NodeInfo:
    """What the master knows about a joined node (HELLO plus live counters)."""

    node_id: str
    board: str
    fw_version: str
    link: str
    peer: str
    kernels: list[str]
    native_kernels: list[str]
    native_arch: str | None
    heap_total: int
    heap_free: int
    max_frame: int
    max_message: int
    slots: int
    window: int
    joined_at: float = field(default_factory=time.time)
    tasks_sent: int = 0
    results: int = 0
    errors: int = 0
    bad_frames: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    compute_us: int = 0
    node_heartbeat: dict[str, Any] = field(default_factory=dict)
    kernel_hashes: dict[str, str] = field(default_factory=dict)  # kernel -> version hash

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class SessionOwner(Protocol):
    def session_joined(self, session: NodeSession) -> None: ...
    def session_result(self, session: NodeSession, task_id: int, body: dict[str, Any],
                       nbytes: int) -> None: ...
    def session_task_error(self, session: NodeSession, task_id: int, code: int,
                           text: str) -> None: ...
    def session_idle(self, session: NodeSession) -> None: ...
    def session_closed(self, session: NodeSession, cause: str) -> None: ...
    def session_refused(self, session: NodeSession, text: str) -> None: ...
    def session_log(self, session: NodeSession, level: int, text: str) -> None: ...


class NodeSession:
    def __init__(
        self,
        link: Link,
        owner: SessionOwner,
        *,
        key: bytes,
        cluster: str | None = None,
        heartbeat_ms: int,
        window: int,
        max_frame: int = MAX_FRAME,
        max_message: int = 1 << 20,
    ) -> None:
        self.link = link
        self.owner = owner
        self.key = key
        self.cluster = cluster  # None: accept any HELLO cluster name
        self.heartbeat_ms = heartbeat_ms
        self.window = window
        self.max_frame = max_frame
        self.max_message = max_message
        self.info: NodeInfo | None = None
        self.last_seen = time.monotonic()
        self.closed = False
        self._seq = 0
        self._stream = 0
        self._serial = link.framing == "cobs"
        self._deframer: FrameReader | SerialDeframer = (
            SerialDeframer(MAX_FRAME) if self._serial else FrameReader(MAX_FRAME)
        )
        self._reassembler = Reassembler(max_message)
        self._inbox: deque[Frame] = deque()
        self._restart_hello: Frame | None = None  # a HELLO that arrived on a joined link

    @property
    def node_id(self) -> str:
        return self.info.node_id if self.info else f"<{self.link.kind} {self.link.peer}>"

    # ------------------------------------------------------------------ sending
    def send(self, msg_type: MsgType, payload: dict[int, Any]) -> None:
        self._stream = (self._stream + 1) & 0xFFFF
        frames = encode_message(
            msg_type, payload, seq=self._seq, max_frame=self.max_frame, stream=self._stream,
            validate=False,
        )
        self._seq = (self._seq + len(frames)) & 0xFFFF
        data = b"".join(serial_encode(f) for f in frames) if self._serial else b"".join(frames)
        if self.info is not None:
            self.info.bytes_out += len(data)
        self.link.write(data)

    def send_task(self, task_id: int, kernel: str, args: Any, attempt: int) -> None:
        self.send(MsgType.TASK, {TASK_ID: task_id, TASK_KERNEL: kernel, TASK_ARGS: list(args),
                                 TASK_ATTEMPT: attempt})
        if self.info is not None:
            self.info.tasks_sent += 1

    def send_error(self, code: ErrorCode, text: str, ref_seq: int | None = None) -> None:
        self.send(MsgType.ERROR, build(MsgType.ERROR, code=int(code), text=text,
                                       ref_seq=ref_seq))

    def close(self, reason: str = "") -> None:
        if self.closed:
            return
        if reason:
            with contextlib.suppress(Exception):  # the link may already be gone
                self.send(MsgType.BYE, build(MsgType.BYE, reason=reason))
        self.closed = True
        self.link.close()

    # ------------------------------------------------------------------ receiving
    async def _next_frame(self) -> Frame | None:
        """The next whole message; None when the link closed. Bad frames are answered."""
        while not self._inbox:
            data = await self.link.read()
            if not data:
                return None
            if self.info is not None:
                self.info.bytes_in += len(data)
            for item in self._deframer.feed(data):
                if isinstance(item, FrameError):
                    self._bad_frame(item)
                    if item.fatal:
                        return None
                    continue
                try:
                    whole = self._reassembler.push(item)
                except FrameError as exc:
                    self._bad_frame(exc)
                    continue
                if whole is not None:
                    self._inbox.append(whole)
        return self._inbox.popleft()

    def _bad_frame(self, exc: FrameError) -> None:
        if self.info is not None:
            self.info.bad_frames += 1
        log.warning("%s: bad frame: %s", self.node_id, exc)
        if not self.closed:
            self.send_error(exc.code, exc.text, exc.seq)

    # ------------------------------------------------------------------ join
    async def _join(self, hello: Frame | None = None) -> NodeInfo:
        frame = hello if hello is not None else await self._next_frame()
        if frame is None:
            raise JoinRefused(ErrorCode.NOT_JOINED, "link closed before HELLO")
        if frame.type != MsgType.HELLO:
            raise JoinRefused(ErrorCode.NOT_JOINED, "the first message must be HELLO")
        hello = fields(frame.type, frame.payload)
        if hello["proto_version"] != PROTOCOL_VERSION:
            raise JoinRefused(
                ErrorCode.BAD_VERSION,
                f"node speaks protocol {hello['proto_version']}, master speaks "
                f"{PROTOCOL_VERSION}: update the firmware",
            )
        if len(hello["nonce"]) != NONCE_SIZE:
            raise JoinRefused(ErrorCode.BAD_PAYLOAD, f"HELLO nonce must be {NONCE_SIZE} bytes")
        node_id = hello["node_id"]
        cluster = self.cluster
        if "cluster" in hello and cluster is not None and hello["cluster"] != cluster:
            raise JoinRefused(
                ErrorCode.AUTH_FAILED,
                f"node {node_id!r} is configured for cluster {hello['cluster']!r}, this master "
                f"serves cluster {cluster!r}: give both the same cluster name",
            )
        master_nonce = os.urandom(NONCE_SIZE)
        self.send(MsgType.AUTH_CHALLENGE, build(MsgType.AUTH_CHALLENGE, nonce=master_nonce))
        frame = await self._next_frame()
        if frame is None:
            raise JoinRefused(ErrorCode.NOT_JOINED, "link closed during authentication")
        if frame.type != MsgType.AUTH_RESPONSE:
            raise JoinRefused(ErrorCode.NOT_JOINED, "expected AUTH_RESPONSE after the challenge")
        mac = fields(frame.type, frame.payload)["mac"]
        expected = node_mac(self.key, master_nonce, hello["nonce"], node_id)
        if not hmac.compare_digest(bytes(mac), expected):
            raise JoinRefused(
                ErrorCode.AUTH_FAILED,
                f"node {node_id!r}: wrong cluster key (its proof does not verify with the key "
                f"of this master's cluster {cluster!r}): give both the same key file",
            )
        max_frame = min(hello["max_frame"], self.max_frame)
        max_message = min(hello.get("max_message", max_frame), self.max_message)
        window = max(1, min(hello["slots"], self.window))
        self.send(
            MsgType.WELCOME,
            build(
                MsgType.WELCOME,
                node_id=node_id,
                heartbeat_ms=self.heartbeat_ms,
                window=window,
                max_frame=max_frame,
                proof=master_proof(self.key, hello["nonce"], master_nonce),
                max_message=self.max_message,
            ),
        )
        self.max_frame = max_frame
        return NodeInfo(
            node_id=node_id,
            board=hello["board"],
            fw_version=hello["fw_version"],
            link=self.link.kind,
            peer=self.link.peer,
            kernels=list(hello["kernels"]),
            native_kernels=list(hello.get("native_kernels", [])),
            native_arch=hello.get("native_arch"),
            kernel_hashes={str(k): str(v) for k, v in hello.get("kernel_hashes", {}).items()},
            heap_total=hello["heap_total"],
            heap_free=hello["heap_free"],
            max_frame=max_frame,
            max_message=max_message,
            slots=hello["slots"],
            window=window,
        )

    # ------------------------------------------------------------------ main loop
    async def run(self) -> None:
        """Join, serve, and join again when the node restarts on the same link (a board
        behind a USB-UART bridge keeps its port when it resets, and says HELLO again)."""
        hello: Frame | None = None
        while True:
            _cause, hello = await self._run_once(hello)
            if hello is None or self.closed:
                break
        self.closed = True
        self.link.close()

    async def _run_once(self, hello: Frame | None) -> tuple[str, Frame | None]:
        cause = "link closed"
        self._restart_hello = None
        try:
            try:
                self.info = await asyncio.wait_for(self._join(hello), JOIN_TIMEOUT_S)
            except (JoinRefused, TimeoutError, KeyError, TypeError) as exc:
                code, text = (
                    (exc.code, exc.text)
                    if isinstance(exc, JoinRefused)
                    else (ErrorCode.BAD_PAYLOAD, f"join failed: {exc!r}")
                )
                log.warning("refused a node on %s %s: %s", self.link.kind, self.link.peer, text)
                if not self.closed:
                    self.send_error(code, text)
                self.owner.session_refused(self, text)
                return f"refused: {text}", None
            self.last_seen = time.monotonic()
            log.info("node %s joined over %s (%s)", self.info.node_id, self.link.kind,
                     self.link.peer)
            self.owner.session_joined(self)
            cause = await self._serve()
            return cause, self._restart_hello
        finally:
            if self.info is not None:
                self.owner.session_closed(self, cause)
                self.info = None

    async def _serve(self) -> str:
        info = self.info
        assert info is not None
        while True:
            frame = await self._next_frame()
            if frame is None:
                return "link closed" if not self.closed else "closed by the master"
            self.last_seen = time.monotonic()
            t = frame.type
            if t == _RESULT:
                body = frame.payload
                task_id = body[RESULT_TASK_ID]
                info.results += 1
                info.compute_us += body.get(RESULT_ELAPSED, 0)
                if RESULT_ERROR in body:
                    info.errors += 1
                    self.owner.session_task_error(self, task_id, body.get(RESULT_CODE, 0),
                                                  body[RESULT_ERROR])
                else:
                    self.owner.session_result(self, task_id, body, 0)
            elif t == MsgType.HEARTBEAT:
                info.node_heartbeat = fields(t, frame.payload)
                if "heap_free" in info.node_heartbeat:
                    info.heap_free = info.node_heartbeat["heap_free"]
                if info.node_heartbeat.get("queue") == 0:
                    self.owner.session_idle(self)
            elif t == MsgType.ERROR:
                err = fields(t, frame.payload)
                log.warning("%s: ERROR %s: %s", info.node_id, err["code"], err["text"])
                if "task_id" in err:
                    self.owner.session_task_error(self, err["task_id"], err["code"], err["text"])
            elif t == MsgType.LOG:
                entry = fields(t, frame.payload)
                log.log(10 + 10 * min(entry["level"], 3), "%s: %s", info.node_id, entry["text"])
                self.owner.session_log(self, entry["level"], entry["text"])
            elif t == MsgType.HELLO:
                self._restart_hello = frame
                return "node restarted (HELLO on a joined link)"
            elif t == MsgType.BYE:
                reason = fields(t, frame.payload).get("reason", "")
                return f"node said BYE {reason}".strip()
            else:
                self.send_error(ErrorCode.UNKNOWN_TYPE,
                                f"message type {t} is not expected from a node", frame.seq)
