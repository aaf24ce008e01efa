"""A master's half of the protocol, synchronous and by hand, to examine one board.

The conformance suite and `microswarm bench board` use it: they need to say exactly what
a master might say (including bad frames), and to count every byte on the wire. The
production master is `microswarm.master`; this probe shares its codec, not its logic.

    probe = Probe(SerialTransport("/dev/ttyACM0"), key)
    hello = probe.join()
    result = probe.task("echo", [42])          # the RESULT payload, as a dict
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import serial

from microswarm.protocol.catalog import ErrorCode, MsgType
from microswarm.protocol.catalog import key as field_key
from microswarm.wire import (
    FrameError,
    FrameReader,
    LinkAuth,
    Reassembler,
    SerialDeframer,
    encode_message,
    master_proof,
    node_mac,
    pack_frame,
    serial_encode,
)
from microswarm.wire.frame import Frame

HEARTBEAT_MS = 1000
IDLE_TICK_S = 0.1  # how often a waiting transport hands control back to the probe
WINDOW = 4


class ProbeError(RuntimeError):
    """The board said something a conforming node would not, or said nothing in time."""


class SessionEnded(ProbeError):
    """The board said HELLO after the join: it ended the session (it found this master
    silent for 3 heartbeat intervals, e.g. while this process did not run) and joins again.
    `hello` is that HELLO, for join(hello=...)."""

    def __init__(self, text: str, hello: Frame) -> None:
        super().__init__(text)
        self.hello = hello


@dataclass
class WireCounters:
    bytes_out: int = 0
    bytes_in: int = 0
    frames_out: int = 0
    frames_in: int = 0


class Transport:
    """Moves raw frames; counts the bytes that actually cross the link."""

    kind = "?"

    def __init__(self) -> None:
        self.counters = WireCounters()
        # Decoded but not yet handed out: one read can complete several frames, and a
        # caller that stops iterating after the one it waited for must not lose the rest.
        self._pending: deque[Frame | FrameError] = deque()

    def send_frame(self, frame: bytes) -> None:
        raise NotImplementedError

    def send_bytes(self, data: bytes) -> None:
        raise NotImplementedError

    def decoder(self) -> FrameReader | SerialDeframer:
        """The object that decodes what the board sends (its `auth` checks frame MACs)."""
        return getattr(self, "deframer", None) or self.reader  # type: ignore[attr-defined]

    def frames(self, timeout: float) -> Iterator[Frame | FrameError | None]:
        """Frames (or per-frame errors) that arrive within `timeout` seconds, and None on
        each idle tick (so the caller may send a HEARTBEAT while it waits)."""
        deadline = time.monotonic() + timeout
        pending = self._pending
        while True:
            while pending:
                yield pending.popleft()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            items = self._read(min(remaining, IDLE_TICK_S))
            if items is None:
                yield None
                continue
            self.counters.frames_in += len(items)
            pending.extend(items)

    def _read(self, timeout: float) -> list[Frame | FrameError] | None:
        """What the next bytes (waiting at most `timeout` s) complete; None if none came."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class SerialTransport(Transport):
    """COBS frames with a 0x00 delimiter on a serial port, pty or pyserial URL."""

    kind = "serial"

    def __init__(self, port: str, baudrate: int = 115200) -> None:
        super().__init__()
        self.port = serial.serial_for_url(port, baudrate=baudrate, timeout=0.02,
                                          exclusive=True)
        self.deframer = SerialDeframer(validate=False)

    def send_frame(self, frame: bytes) -> None:
        self.send_bytes(serial_encode(frame))
        self.counters.frames_out += 1

    def send_bytes(self, data: bytes) -> None:
        self.port.write(data)
        self.port.flush()
        self.counters.bytes_out += len(data)

    def _read(self, timeout: float) -> list[Frame | FrameError] | None:
        data = self.port.read(self.port.in_waiting or 1)  # the port's own 20 ms timeout
        if not data:
            return None
        self.counters.bytes_in += len(data)
        return self.deframer.feed(data)

    def close(self) -> None:
        self.port.close()


class TcpTransport(Transport):
    """Frames back to back on the TCP connection the board dialled."""

    kind = "tcp"

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self.sock = sock
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = FrameReader(validate=False)

    @classmethod
    def accept(cls, listener: socket.socket, timeout: float,
               peer: str | None = None) -> TcpTransport:
        """Wait for the board to dial; with `peer`, ignore connections from elsewhere."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ProbeError(f"the board did not dial {listener.getsockname()} "
                                 f"in {timeout:g} s")
            listener.settimeout(remaining)
            try:
                sock, address = listener.accept()
            except TimeoutError:
                continue
            if peer is None or address[0] == peer:
                sock.settimeout(None)
                return cls(sock)
            sock.close()

    def send_frame(self, frame: bytes) -> None:
        self.send_bytes(frame)
        self.counters.frames_out += 1

    def send_bytes(self, data: bytes) -> None:
        self.sock.sendall(data)
        self.counters.bytes_out += len(data)

    def _read(self, timeout: float) -> list[Frame | FrameError] | None:
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return None
        except OSError as exc:
            raise ProbeError(f"the TCP link broke: {exc}") from exc
        if not data:
            raise ProbeError("the board closed the TCP link")
        self.counters.bytes_in += len(data)
        try:
            return self.reader.feed(data)
        except FrameError as exc:
            return [exc]

    def close(self) -> None:
        self.sock.close()


@dataclass
class Probe:
    """One session with one board: join, tasks, raw frames, heartbeats observed."""

    transport: Transport
    key: bytes = field(repr=False)
    heartbeat_ms: int = HEARTBEAT_MS
    window: int = WINDOW
    max_frame: int = 0
    hello: dict = field(default_factory=dict)
    heartbeats: list[dict] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)
    seq: int = 0
    next_task: int = 1
    stream: int = 1
    rejoins: int = 0  # joins that answered a HELLO after a session (SessionEnded)

    def __post_init__(self) -> None:
        self._joined_at: float | None = None
        self._last_beat = 0.0
        self.reassembler = Reassembler()
        self.results: dict[int, dict] = {}
        self.frame_errors: list[FrameError] = []  # what the board sent that did not decode

    # ---- sending -------------------------------------------------------------------

    def send(self, msg_type: int, payload: dict, *, max_frame: int | None = None) -> None:
        limit = max_frame or self.max_frame or 16384
        frames = encode_message(msg_type, payload, seq=self.seq, max_frame=limit,
                                stream=self.stream, auth=self.transport.decoder().auth)
        if len(frames) > 1:
            self.stream = self.stream % 60000 + 1
        for frame in frames:
            self.transport.send_frame(frame)
        self.seq = (self.seq + len(frames)) & 0xFFFF

    def seal(self, frame: bytes) -> bytes:
        """`frame` (a golden vector's bytes) as this joined master sends it: the same type,
        seq, flags and payload bytes, with the MAC every frame after WELCOME carries."""
        length = frame[5] | frame[6] << 8
        return pack_frame(frame[1], frame[7:7 + length], frame[3] | frame[4] << 8, frame[2],
                          self.transport.decoder().auth)

    # ---- receiving -----------------------------------------------------------------

    def receive(self, timeout: float) -> Iterator[Frame | FrameError]:
        """Whole messages (CHUNKs reassembled); heartbeats and logs are recorded here."""
        for item in self.transport.frames(timeout):
            self._keep_alive()
            if item is None:
                continue
            if isinstance(item, FrameError):
                self.frame_errors.append(item)
                yield item
                continue
            try:
                whole = self.reassembler.push(item)
            except FrameError as exc:
                self.frame_errors.append(exc)
                yield exc
                continue
            if whole is None:
                continue
            if whole.type == MsgType.HEARTBEAT:
                self.heartbeats.append(whole.payload)
                continue
            if whole.type == MsgType.LOG:
                self.logs.append(str(whole.payload.get(1, "")))
                continue
            yield whole

    def expect(self, msg_type: MsgType, timeout: float = 10.0) -> Frame:
        for item in self.receive(timeout):
            if isinstance(item, Frame) and item.type == msg_type:
                return item
            if isinstance(item, Frame) and item.type == MsgType.ERROR:
                self.errors.append(item.payload)
        raise ProbeError(f"no {msg_type.name} from the board in {timeout:g} s")

    # ---- the join --------------------------------------------------------------------

    def join(self, timeout: float = 20.0, *, proof: bytes | None = None,
             hello: Frame | None = None, answer: dict | None = None) -> dict:
        """HELLO -> AUTH_CHALLENGE -> AUTH_RESPONSE -> WELCOME; returns the HELLO payload.
        `hello`: a HELLO already received (SessionEnded.hello), answered instead of waiting
        for the next. `answer`: the payload of a HELLO the board sent on this link a moment
        ago and nobody answered (deploy's at boot), answered the same way; not a rejoin."""
        self.transport.decoder().auth = None  # a new join: no MACs until WELCOME
        self._joined_at = None  # no HEARTBEAT until the WELCOME
        self.reassembler = Reassembler()
        if hello is not None:
            self.rejoins += 1
            answer = hello.payload
        hello = answer if answer is not None else self.expect(MsgType.HELLO, timeout).payload
        node_nonce = hello[field_key(MsgType.HELLO, "nonce")]
        node_id = hello[field_key(MsgType.HELLO, "node_id")]
        master_nonce = os.urandom(16)
        self.seq = 0
        self.send(MsgType.AUTH_CHALLENGE, {0: master_nonce})
        response = self.expect(MsgType.AUTH_RESPONSE, timeout).payload
        if response[0] != node_mac(self.key, master_nonce, node_nonce, node_id):
            raise ProbeError("the board's AUTH_RESPONSE does not prove the cluster key")
        node_max = hello[field_key(MsgType.HELLO, "max_frame")]
        self.max_frame = min(node_max, 16384)
        self.send(MsgType.WELCOME, {
            0: node_id,
            1: self.heartbeat_ms,
            2: self.window,
            3: self.max_frame,
            4: proof if proof is not None else master_proof(self.key, node_nonce, master_nonce),
        })
        # every later frame carries a MAC, both ways (SPEC.md section 5)
        self.transport.decoder().auth = LinkAuth.master(self.key, master_nonce, node_nonce)
        self.hello = hello
        self._joined_at = self._last_beat = time.monotonic()
        return hello

    def _keep_alive(self) -> None:
        """HEARTBEAT the board as a master does, so a test waiting on slow results does
        not look like a silent master (the node ends a session silent for 3 intervals)."""
        if self._joined_at is None:
            return
        now = time.monotonic()
        if now - self._last_beat >= self.heartbeat_ms / 2000:
            self._last_beat = now
            self.send(MsgType.HEARTBEAT, {0: int((now - self._joined_at) * 1000)})

    # ---- tasks -------------------------------------------------------------------------

    def submit(self, kernel: str, args: list[Any]) -> int:
        task_id = self.next_task
        self.next_task += 1
        self.send(MsgType.TASK, {0: task_id, 1: kernel, 2: list(args)})
        return task_id

    def result(self, task_id: int, timeout: float = 30.0) -> dict:
        if task_id in self.results:
            return self.results.pop(task_id)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for item in self.receive(deadline - time.monotonic()):
                if not isinstance(item, Frame):
                    continue
                if item.type == MsgType.HELLO:
                    raise SessionEnded(f"no RESULT for task {task_id}: the board ended the "
                                       "session and joins again", item)
                if item.type == MsgType.RESULT:
                    got = item.payload[0]
                    if got == task_id:
                        return item.payload
                    self.results[got] = item.payload
                elif item.type == MsgType.ERROR:
                    self.errors.append(item.payload)
                    if item.payload.get(3) == task_id:
                        return {0: task_id, 2: item.payload.get(1), 5: item.payload.get(0)}
        raise ProbeError(f"no RESULT for task {task_id} in {timeout:g} s"
                         f"{self._recent_trouble()}")

    def _recent_trouble(self) -> str:
        said = [f"ERROR {error_name(e.get(0, 0))}: {e.get(1)}" for e in self.errors[-3:]]
        said += [f"undecodable frame: {e}" for e in self.frame_errors[-3:]]
        return ("; the board said: " + "; ".join(said)) if said else ""

    def task(self, kernel: str, args: list[Any], timeout: float = 30.0) -> dict:
        return self.result(self.submit(kernel, args), timeout)

    def errors_seen(self, timeout: float, count: int) -> list[dict]:
        """Collect ERROR payloads until `count` have arrived or `timeout` passes."""
        deadline = time.monotonic() + timeout
        while len(self.errors) < count and time.monotonic() < deadline:
            for item in self.receive(min(0.2, deadline - time.monotonic())):
                if isinstance(item, Frame) and item.type == MsgType.ERROR:
                    self.errors.append(item.payload)
                    if len(self.errors) >= count:
                        break
        return list(self.errors)

    def close(self, reason: str = "probe done") -> None:
        with contextlib.suppress(OSError):
            self.send(MsgType.BYE, {0: reason})
        self.transport.close()


def error_name(code: int) -> str:
    try:
        return ErrorCode(code).name
    except ValueError:
        return str(code)
