"""NodeSession: the master's end of one node link, sans-IO.

Bytes and the time go in (``receive(data, now)``, ``on_timer(now)``); frames to write
(``take_output()``) and events for the scheduler (``microswarm.master.events``) come out.
The session never touches a socket, a clock or a task: the asyncio master
(``master/conn.py``) and the simulator (``sim/master.py``) drive this same class, and the
tests drive it with scripted bytes and a fake clock.

States (SPEC.md section 5; the table is in docs/master.md):

    HELLO   waiting for the node's HELLO (a serial port waits as long as it takes; other
            links get `join_timeout_s` from when the link opened)
    AUTH    AUTH_CHALLENGE sent, waiting for AUTH_RESPONSE (`join_timeout_s` from HELLO)
    JOINED  WELCOME sent: tasks, results, heartbeats, liveness, deadlines
    CLOSED  nothing more in or out; the driver closes the link (a serial port keeper
            starts a new session on the same port)

Liveness: a joined node is lost when nothing valid arrived for LOST_BEATS heartbeat
intervals, except that a node without `threads` (its kernels run on the link's own
thread, so it cannot heartbeat during one) is not lost for silence while it holds a
task; that task's deadline (``held.py``) catches a hang. A driver that calls on_timer
more than STALL_BEATS intervals after the session's deadline (its own loop stalled, so it
could not read frames either) does not count that lateness as the node's silence; a
timer that is merely late (a coarse tick, a loaded machine) counts in full.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from enum import Enum
from typing import Any

from microswarm.master.handshake import (
    JoinRefused,
    Limits,
    NodeInfo,
    check_hello,
    check_response,
    welcome,
)
from microswarm.master.held import DEADLINE_FACTOR, DEADLINE_MIN_S, RECONCILE_BEATS, HeldTasks
from microswarm.master.messages import (
    RESULT_CODE,
    RESULT_ELAPSED,
    RESULT_ERROR,
    RESULT_TASK_ID,
    RESULT_VALUE,
    TASK_ARGS,
    TASK_ATTEMPT,
    TASK_ID,
    TASK_KERNEL,
    build,
    fields,
)
from microswarm.master.operands import NodeOperands, Shared, inline
from microswarm.master.session_events import (
    BadFrame,
    Event,
    Joined,
    Left,
    NodeError,
    NodeLog,
    Refused,
    Result,
    TaskFailed,
    TaskLost,
)
from microswarm.protocol.catalog import (
    CATALOG,
    FRAME_OVERHEAD,
    NONCE_SIZE,
    ErrorCode,
    MsgType,
)
from microswarm.wire import (
    MAX_FRAME,
    Frame,
    FrameError,
    FrameReader,
    LinkAuth,
    Reassembler,
    SerialDeframer,
    decode_frame,
    encode_message,
    encode_payload,
    pack_frame,
    serial_encode,
    validate_payload,
)

JOIN_TIMEOUT_S = 10.0  # HANDSHAKE_TIMEOUT: link open (or HELLO, on serial) to AUTH_RESPONSE
LOST_BEATS = 3  # silent this many heartbeat intervals: lost
MAX_STREAMS = 4  # open CHUNK streams a node may hold towards the master
ANSWER_BURST, ANSWERS_PER_S = 20, 10.0  # ERROR answers to a joined node's bad frames
STALL_BEATS = 1  # on_timer this many intervals past the session's deadline: the driver stalled
QUIET_AFTER_BEATS = 1.5  # serial: no master HEARTBEAT to a node silent this many intervals
# LOG lines a node may send at once, then per second: a node that sends more (the firmware
# sends at most 8, then 1 a second: firmware/engine_log.py) has the rest counted, not kept
LOG_BURST = 32
LOG_PER_S = 4.0
TIMER_SLACK_S = 0.001  # timers fire this much early, so a driver ticking exactly on time
                       # does not skip a heartbeat to float rounding

_HELLO, _AUTH_RESPONSE = int(MsgType.HELLO), int(MsgType.AUTH_RESPONSE)
_RESULT, _HEARTBEAT, _ERROR = int(MsgType.RESULT), int(MsgType.HEARTBEAT), int(MsgType.ERROR)
_LOG, _BYE, _CHUNK = int(MsgType.LOG), int(MsgType.BYE), int(MsgType.CHUNK)
_TASK, _CANCEL = int(MsgType.TASK), int(MsgType.CANCEL)
_PUT, _NEED = int(MsgType.PUT), int(MsgType.NEED)
_TASK_REFS = CATALOG[MsgType.TASK].field("refs").key
_HB_OPERANDS = CATALOG[MsgType.HEARTBEAT].field("operands").key
_HB_QUEUE = CATALOG[MsgType.HEARTBEAT].field("queue").key
_HB_RUNNING = CATALOG[MsgType.HEARTBEAT].field("running").key
_HB_HEAP = CATALOG[MsgType.HEARTBEAT].field("heap_free").key
_CANCEL_ID = CATALOG[MsgType.CANCEL].field("task_id").key
_CLOSING_CODES = frozenset(
    int(c) for c in (ErrorCode.AUTH_FAILED, ErrorCode.BAD_VERSION, ErrorCode.NOT_JOINED))


class State(Enum):
    HELLO = "hello"
    AUTH = "auth"
    JOINED = "joined"
    CLOSED = "closed"


H, A, J, C = State.HELLO, State.AUTH, State.JOINED, State.CLOSED
_JOINED, _CLOSED = J, C  # for the hot paths

# (from, to) -> what moves the session. Anything else is a bug.
TRANSITIONS: dict[tuple[State, State], str] = {
    (H, A): "HELLO accepted: AUTH_CHALLENGE sent",
    (A, A): "HELLO again (the node restarted): a new challenge",
    (A, J): "AUTH_RESPONSE verified: WELCOME sent",
    (J, A): "HELLO on the joined link (the node restarted): the node left, a new challenge",
    (H, C): "refused (bad or unexpected frame, bad HELLO), handshake timeout, BYE, close()",
    (A, C): "refused (wrong MAC, unexpected frame), handshake timeout, BYE, close()",
    (J, C): "lost (silent), BYE, fatal frame, ERROR closing the link, close()",
}


_new = tuple.__new__


class InvalidTransition(RuntimeError):
    """A session state change the table above does not allow."""


_BEAT_CACHE: list[Any] = [-1, b""]  # (uptime_ms, encoded HEARTBEAT payload): shared by all


def _heartbeat_payload(uptime_ms: int) -> bytes:
    if _BEAT_CACHE[0] != uptime_ms:
        _BEAT_CACHE[1] = encode_payload({0: uptime_ms})
        _BEAT_CACHE[0] = uptime_ms
    return _BEAT_CACHE[1]


class NodeSession:
    """One link's session; see the module docstring."""

    __slots__ = (
        "key", "cluster", "kind", "peer", "framing", "limits", "state", "info", "bad_frames",
        "master_nonce", "last_rx", "heartbeat_s", "held", "reconcile", "close_cause",
        "_nonce", "_hello", "_hello_seq", "_join_deadline", "_join_timeout_s",
        "_wait_for_hello", "_deframer", "_reassembler", "_out", "_seq", "_stream",
        "_max_frame", "_next_beat", "_origin", "_cobs", "_answer_tokens",
        "_answer_at", "_auth", "operands", "_log_tokens", "_log_at", "_blocked_at",
        "_queued_at", "_taken_at", "__weakref__",
    )

    def __init__(
        self,
        key: bytes,
        *,
        now: float,
        cluster: str | None = None,
        kind: str = "tcp",
        peer: str = "",
        framing: str = "stream",
        limits: Limits | None = None,
        nonce: Callable[[int], bytes] = os.urandom,
        join_timeout_s: float = JOIN_TIMEOUT_S,
        wait_for_hello: bool | None = None,
        origin: float | None = None,
        reconcile: bool = True,
        deadline_factor: float = DEADLINE_FACTOR,
        deadline_min_s: float = DEADLINE_MIN_S,
    ) -> None:
        """`framing`: "stream" (TCP, memory pipe: frames back to back), "cobs" (serial)
        or "packet" (each receive() is exactly one frame). `wait_for_hello` (default: on
        cobs framing) starts the join deadline at HELLO instead of now. `origin` is when
        the master started (HEARTBEAT uptime); `nonce(n)` gives n random bytes."""
        self.key = key
        self.cluster = cluster  # None: accept any HELLO cluster name
        self.kind = kind
        self.peer = peer
        self.framing = framing
        self._cobs = framing == "cobs"
        self.limits = limits or Limits()
        self.state = State.HELLO
        self.info: NodeInfo | None = None
        self.bad_frames = 0
        self.master_nonce = b""
        self.last_rx = now
        self._log_tokens, self._log_at = float(LOG_BURST), now
        self.heartbeat_s = self.limits.heartbeat_ms / 1000
        self.held = HeldTasks(deadline_factor, deadline_min_s)
        self.reconcile = reconcile
        self.close_cause = ""
        self._nonce = nonce
        self._hello: dict[str, Any] | None = None
        self._hello_seq = 0
        self._join_timeout_s = join_timeout_s
        self._wait_for_hello = framing == "cobs" if wait_for_hello is None else wait_for_hello
        self._join_deadline: float | None = None if self._wait_for_hello else now + join_timeout_s
        self._max_frame = min(self.limits.max_frame, MAX_FRAME)
        if framing == "cobs":
            self._deframer: Any = SerialDeframer(self._max_frame, validate=False)
        elif framing == "stream":
            self._deframer = FrameReader(self._max_frame, validate=False)
        elif framing == "packet":
            self._deframer = None
        else:
            raise ValueError(f"framing must be stream, cobs or packet, not {framing!r}")
        self.operands: NodeOperands | None = None  # the node's operand cache, if it has one
        self._reassembler: Reassembler | None = None  # made at WELCOME, never before
        self._auth: LinkAuth | None = None  # frame MACs, from the first frame after WELCOME
        self._out: list[bytes] = []
        self._seq = 0
        self._stream = 0
        self._next_beat = 0.0
        self._origin = now if origin is None else origin
        self._answer_tokens = float(ANSWER_BURST)
        self._answer_at = now
        self._blocked_at: float | None = None  # see output_blocked()
        self._queued_at: float | None = None  # the first TASK queued since take_output()
        self._taken_at: float | None = None  # ... and the one the last take_output() gave

    # ------------------------------------------------------------------ queries
    @property
    def node_id(self) -> str:
        return self.info.node_id if self.info else f"<{self.kind} {self.peer}>"

    @property
    def joined(self) -> bool:
        return self.state is State.JOINED

    @property
    def closed(self) -> bool:
        return self.state is State.CLOSED

    @property
    def has_output(self) -> bool:
        return bool(self._out)

    def take_output(self) -> Sequence[bytes]:
        """The frames to write, in order (each COBS-encoded and delimited on serial)."""
        out = self._out
        if not out:
            return ()
        self._out = []
        self._taken_at, self._queued_at = self._queued_at, None
        return out

    def output_blocked(self, now: float) -> None:
        """The driver could not hand all that the last take_output() gave it to the OS (a
        slow serial link still writing a long CHUNK stream): the TASKs in there are not on
        the wire yet, so a HEARTBEAT's empty queue says nothing of them. Until
        output_drained(), reconciliation looks only at tasks queued before them."""
        since = self._taken_at if self._taken_at is not None else now
        if self._blocked_at is None or since < self._blocked_at:
            self._blocked_at = since

    def output_drained(self, now: float) -> None:
        """What the driver held has left: the tasks queued while it was blocked count as
        sent `now` (reconciliation waits its usual intervals from there)."""
        since = self._blocked_at
        if since is not None:
            self._blocked_at = None
            self.held.restamp(since, now)

    def next_deadline(self) -> float | None:
        """When on_timer() next has something to do (None: nothing until more input)."""
        state = self.state
        if state is State.CLOSED:
            return None
        if state is not State.JOINED:
            return self._join_deadline
        due = self._next_beat
        if not self._excused():
            due = min(due, self.last_rx + LOST_BEATS * self.heartbeat_s)
        task_due = self.held.next_deadline()
        return due if task_due is None else min(due, task_due)

    # ------------------------------------------------------------------ commands
    def send_task(self, task_id: int, kernel: str, args: Any, attempt: int, now: float,
                  estimate_s: float | None = None) -> None:
        """Queue a TASK. Raises FrameError/TypeError/ValueError when it cannot be encoded
        (nothing is queued then). `estimate_s` sets its deadline (see held.py)."""
        payload = {TASK_ID: task_id, TASK_KERNEL: kernel,
                   TASK_ARGS: args if type(args) is list else list(args),
                   TASK_ATTEMPT: attempt}
        if Shared not in map(type, payload[TASK_ARGS]):
            pass  # no shared operand (most tasks): nothing to refer to
        elif self.operands is not None:  # shared operands: PUT what the node lacks, refer
            payload[TASK_ARGS], refs, puts = self.operands.prepare(args, now)
            if refs is not None:
                payload[_TASK_REFS] = refs
            for shared in puts:
                self._send(_PUT, {0: shared.hash, 1: shared.data})
        else:  # a node without a cache
            payload[TASK_ARGS] = inline(args)
        self._send(_TASK, payload)
        self.held.sent(task_id, now, estimate_s)
        if self._queued_at is None:
            self._queued_at = now
        # The TASK is the node's sign of life: the master's next HEARTBEAT is due an
        # interval after it (the node hears from us as often; a busy link sends none).
        self._next_beat = now + self.heartbeat_s
        info = self.info
        if info is not None:
            info.tasks_sent += 1

    def cancel(self, task_id: int) -> None:
        """Queue CANCEL; the node's CANCELLED answer then needs no deadline."""
        self.held.cancelled(task_id)
        self._send(_CANCEL, {_CANCEL_ID: task_id})

    def send_error(self, code: int, text: str, ref_seq: int | None = None,
                   task_id: int | None = None) -> None:
        self._send(_ERROR, build(MsgType.ERROR, code=int(code), text=text, ref_seq=ref_seq,
                                 task_id=task_id))

    def close(self, reason: str = "", cause: str = "") -> list[Event]:
        """End the session: BYE (when `reason` is given) and CLOSED. A joined node's Left
        carries `cause` (default: "closed by the master: <reason>")."""
        if self.state is State.CLOSED:
            return []
        if reason and self.state is not State.CLOSED:
            self._send(_BYE, build(MsgType.BYE, reason=reason))
        return self._close(cause or f"closed by the master: {reason or 'no reason given'}")

    # ------------------------------------------------------------------ input
    def receive(self, data: bytes, now: float) -> list[Event]:
        """Bytes from the link. Returns the events they caused."""
        events: list[Event] = []
        if self.state is _CLOSED or not data:
            return events
        info = self.info
        if info is not None:
            info.bytes_in += len(data)
        deframer = self._deframer
        if deframer is None:
            # a packet: decoded and checked against the catalog in one pass (a payload the
            # catalog refuses comes as the FrameError, as a failed check below would: no
            # difference off a serial line)
            try:
                frame = decode_frame(data, max_frame=self._max_frame, validate=True,
                                     auth=self._auth)
            except FrameError as exc:
                items: Any = (exc,)
            else:
                if frame[0] == _RESULT and self.state is _JOINED:  # the loop's common case
                    self.last_rx = now
                    self._result(frame[3], now, events)
                    return events
                items = (frame,)
        else:
            items = deframer.feed(data)
        for item in items:
            if type(item) is not Frame:
                self._bad(item, None, events, now)
                if item.fatal or self.state is _CLOSED:
                    break
                continue
            msg_type, _, seq, payload = item
            try:
                if deframer is not None:
                    validate_payload(msg_type, payload, seq)
                if msg_type == _CHUNK:
                    item = self._chunk(item)
                    if item is None:
                        continue
                    msg_type, payload = item.type, item.payload
            except FrameError as exc:
                self._bad(exc, msg_type, events, now)
                if self.state is _CLOSED:
                    break
                continue
            if msg_type == _RESULT and self.state is _JOINED:  # _handle's most common case
                self.last_rx = now
                self._result(payload, now, events)
                continue  # a RESULT never closes the session
            self._handle(item, now, events)
            if self.state is _CLOSED:
                break
        return events

    def on_timer(self, now: float) -> list[Event]:
        """Handshake deadline, liveness, task deadlines and the master's HEARTBEAT."""
        events: list[Event] = []
        state = self.state
        if state is State.CLOSED:
            return events
        if state is not State.JOINED:
            if self._join_deadline is not None and now + TIMER_SLACK_S >= self._join_deadline:
                self._refuse(ErrorCode.HANDSHAKE_TIMEOUT,
                             f"the join did not complete within {self._join_timeout_s:g} s",
                             None, events)
            return events
        beat = self.heartbeat_s
        late = now - self.next_deadline()  # (joined: there is always a next HEARTBEAT)
        if late > STALL_BEATS * beat:
            # The driver itself stalled: its loop could not read frames either, so that
            # time is not the node's silence (a frame read meanwhile: none of it is).
            # Lateness below that (a coarse tick, a loaded machine) counts in full, so a
            # timer that is always a little late never postpones a loss.
            self.last_rx = min(now, self.last_rx + late)
        if self.held.tasks:  # the scheduler requeues it and sends CANCEL (timed_out)
            for task_id in self.held.overdue(now, LOST_BEATS * beat):
                events.append(TaskFailed(task_id, int(ErrorCode.DEADLINE),
                                         f"passed its deadline on {self.node_id}"))
        if now - self.last_rx > LOST_BEATS * beat and not self._excused():
            events.extend(self._close(
                f"lost: no frame for {LOST_BEATS} heartbeat intervals "
                f"({now - self.last_rx:.1f} s)"))
            return events
        if now + TIMER_SLACK_S >= self._next_beat:
            self._next_beat = now + beat
            # On serial, not to a node that missed its own heartbeat (busy in a kernel,
            # frozen, or restarting): the frame would only queue up, or reach a board
            # while it boots, before its worker has turned the interrupt key off.
            if not self._cobs or now - self.last_rx <= QUIET_AFTER_BEATS * beat:
                self._send_encoded(_HEARTBEAT,
                                   _heartbeat_payload(int((now - self._origin) * 1000)))
        return events

    # ------------------------------------------------------------------ internals
    def _excused(self) -> bool:
        """Silence is not loss: a node without threads is running one of our tasks."""
        info = self.info
        return info is not None and not info.threads and self.held.active()

    def _move(self, new: State) -> None:
        if (self.state, new) not in TRANSITIONS:
            raise InvalidTransition(f"session cannot go from {self.state.value} to {new.value}")
        self.state = new

    def _send(self, msg_type: int, payload: dict[int, Any]) -> None:
        body = encode_payload(payload)
        if len(body) + FRAME_OVERHEAD <= self._max_frame:
            frame = pack_frame(msg_type, body, self._seq, 0, self._auth)
            self._seq = (self._seq + 1) & 0xFFFF
            if self._cobs:
                self._put(frame)
                return
            info = self.info  # _put(frame), inline: a frame as it is
            if info is not None:
                info.bytes_out += len(frame)
            self._out.append(frame)
            return
        self._stream = (self._stream + 1) & 0xFFFF
        frames = encode_message(msg_type, payload, seq=self._seq, max_frame=self._max_frame,
                                stream=self._stream, validate=False, auth=self._auth)
        self._seq = (self._seq + len(frames)) & 0xFFFF
        for frame in frames:
            self._put(frame)

    def _send_encoded(self, msg_type: int, body: bytes) -> None:
        self._put(pack_frame(msg_type, body, self._seq, 0, self._auth))
        self._seq = (self._seq + 1) & 0xFFFF

    def _enable_auth(self, auth: LinkAuth | None) -> None:
        """Frame authentication on this link from now on (None: off, before a join)."""
        self._auth = auth
        if self._deframer is not None:
            self._deframer.auth = auth

    def _put(self, frame: bytes) -> None:
        data = serial_encode(frame) if self._cobs else frame
        info = self.info
        if info is not None:
            info.bytes_out += len(data)
        self._out.append(data)

    def _close(self, cause: str) -> list[Event]:
        was_joined = self.state is State.JOINED
        self._move(State.CLOSED)
        self.close_cause = cause
        self._reassembler = None
        self._deframer = None
        self.held = HeldTasks()
        if was_joined and self.info is not None:
            return [Left(self.info, cause)]
        return []

    def _refuse(self, code: ErrorCode, text: str, ref_seq: int | None,
                events: list[Event]) -> None:
        self.send_error(code, text, ref_seq)
        events.append(Refused(int(code), text))
        events.extend(self._close(f"refused: {text}"))

    def _bad(self, exc: FrameError, msg_type: int | None, events: list[Event],
             now: float) -> None:
        """A frame that failed a check: counted, answered, logged by the driver; before
        WELCOME it ends the session. On a serial line, bytes without a readable header of
        this protocol version are only counted, and before WELCOME so is any frame that
        fails a check before its type is known."""
        self.bad_frames += 1
        info = self.info
        if info is not None:
            info.bad_frames += 1
        events.append(BadFrame(int(exc.code), exc.text, exc.seq))
        if self._cobs and (exc.seq is None or exc.code == ErrorCode.BAD_VERSION):
            # Not a frame of ours at all (a console's text, boot noise, line noise): an
            # answer could only feed a loop with a console that echoes what it gets.
            return
        if self.state is State.JOINED:
            if exc.fatal:
                self.send_error(exc.code, exc.text, exc.seq)
                events.extend(self._close(f"unrecoverable frame: {exc.text}"))
            elif self._may_answer(now):
                self.send_error(exc.code, exc.text, exc.seq)
            return
        if self._cobs and msg_type is None:
            return
        self._refuse(exc.code, exc.text, exc.seq, events)

    def _may_answer(self, now: float) -> bool:
        """A token bucket for ERROR answers to bad frames: a flood of them is counted in
        full but answered at ANSWERS_PER_S, so it cannot make the master queue output."""
        tokens = min(ANSWER_BURST, self._answer_tokens + (now - self._answer_at) * ANSWERS_PER_S)
        self._answer_at = now
        if tokens < 1:
            self._answer_tokens = tokens
            return False
        self._answer_tokens = tokens - 1
        return True

    def _chunk(self, frame: Frame) -> Frame | None:
        if self._reassembler is None:  # no reassembly before WELCOME
            raise FrameError(ErrorCode.NOT_JOINED, "CHUNK before WELCOME", frame.seq)
        return self._reassembler.push(frame)

    def _handle(self, frame: Frame, now: float, events: list[Event]) -> None:
        t = frame.type
        state = self.state
        if state is _JOINED:
            self.last_rx = now
            if t == _RESULT:
                self._result(frame.payload, now, events)
            elif t == _HEARTBEAT:
                self._heartbeat(frame.payload, now, events)
            else:
                self._joined_other(frame, now, events)
            return
        if t == _HELLO:
            self._on_hello(frame, now, events)
        elif t == _AUTH_RESPONSE and state is State.AUTH:
            self._on_response(frame, now, events)
        elif t == _ERROR:
            self._node_error(fields(t, frame.payload), events)
        elif t == _BYE:
            self._close("the node said BYE before joining")
        else:
            name = MsgType(t).name
            self._refuse(ErrorCode.NOT_JOINED,
                         f"{name} before the join completed: say HELLO, then AUTH_RESPONSE",
                         frame.seq, events)

    def _result(self, body: dict[int, Any], now: float, events: list[Event]) -> None:
        task_id = body[RESULT_TASK_ID]
        held = self.held
        tasks = held.tasks
        if tasks.pop(task_id, None) is not None and tasks:  # held.answered(), inlined
            held.start_oldest(now)
        if held.dropped:
            held.dropped.discard(task_id)
        info = self.info
        assert info is not None
        info.results += 1
        elapsed = body.get(RESULT_ELAPSED, 0)
        info.compute_us += elapsed
        if RESULT_ERROR in body:
            info.errors += 1
            events.append(TaskFailed(task_id, body.get(RESULT_CODE, 0), body[RESULT_ERROR]))
        else:  # Result(...) without the namedtuple's Python-level __new__: one per task
            events.append(_new(Result, (task_id, body.get(RESULT_VALUE), elapsed, body)))

    def _heartbeat(self, body: dict[int, Any], now: float, events: list[Event]) -> None:
        info = self.info
        assert info is not None
        info.node_heartbeat = fields(_HEARTBEAT, body)
        heap = body.get(_HB_HEAP)
        if heap is not None:
            info.heap_free = heap
        listed = body.get(_HB_OPERANDS)
        if listed is not None and self.operands is not None:  # absent: as before
            self.operands.heartbeat(listed, now, 2 * self.heartbeat_s)
            info.operands = len(self.operands.held)
        held = self.held
        if not held.tasks and not held.dropped:
            return
        running = body.get(_HB_RUNNING)
        if running is not None:
            held.running(now, running)
        if body.get(_HB_QUEUE) == 0 and self.reconcile:
            cutoff = now - RECONCILE_BEATS * self.heartbeat_s
            if self._blocked_at is not None and self._blocked_at < cutoff:
                cutoff = self._blocked_at
            lost, cancelled = held.lost(now, cutoff)
            for task_id in lost:
                events.append(TaskLost(task_id))
            for task_id in cancelled:  # the CANCELLED answer that never came
                events.append(TaskFailed(task_id, int(ErrorCode.CANCELLED),
                                         f"cancelled; {self.node_id} no longer holds it"))

    def _joined_other(self, frame: Frame, now: float, events: list[Event]) -> None:
        t = frame.type
        if t == _ERROR:
            self._node_error(fields(t, frame.payload), events)
        elif t == _LOG:
            entry = fields(t, frame.payload)
            info = self.info
            assert info is not None
            info.log_lines += 1
            tokens = min(float(LOG_BURST), self._log_tokens + (now - self._log_at) * LOG_PER_S)
            self._log_at = now
            if tokens < 1.0:
                info.log_dropped += 1
                self._log_tokens = tokens
            else:
                self._log_tokens = tokens - 1.0
                events.append(NodeLog(entry["level"], entry["text"]))
        elif t == _NEED and self.operands is not None:
            for shared in self.operands.need(frame.payload[0], now):
                self._send(_PUT, {0: shared.hash, 1: shared.data})
            if self.info is not None:
                self.info.operand_needs += 1
        elif t == _HELLO:
            info = self.info
            assert info is not None
            events.append(Left(info, "node restarted (HELLO on a joined link)"))
            self.info = None
            self._reassembler = None
            self.held = HeldTasks(self.held.factor, self.held.min_s)
            self.operands = None
            self._on_hello(frame, now, events)
        elif t == _BYE:
            reason = fields(t, frame.payload).get("reason", "")
            events.extend(self._close(f"node said BYE {reason}".strip()))
        else:  # a message of the catalog that a node does not send, or not now
            text = f"{MsgType(t).name} is not a message a joined node sends"
            self.bad_frames += 1
            if self.info is not None:
                self.info.bad_frames += 1
            events.append(BadFrame(int(ErrorCode.UNEXPECTED), text, frame.seq))
            if self._may_answer(now):
                self.send_error(ErrorCode.UNEXPECTED, text, frame.seq)

    def _node_error(self, err: dict[str, Any], events: list[Event]) -> None:
        task_id = err.get("task_id")
        if task_id is not None and self.state is State.JOINED:
            self.held.answered(task_id, self.last_rx)
            if self.info is not None:
                self.info.errors += 1
            events.append(TaskFailed(task_id, err["code"], err["text"]))
        else:
            events.append(NodeError(err["code"], err["text"]))
        if err["code"] in _CLOSING_CODES:
            events.extend(self._close(f"the node refused the link: {err['text']}"))

    def _on_hello(self, frame: Frame, now: float, events: list[Event]) -> None:
        hello = fields(_HELLO, frame.payload)
        try:
            check_hello(hello, frame.seq, self.cluster)
        except JoinRefused as exc:
            self._refuse(exc.code, exc.text, exc.ref_seq, events)
            return
        self._hello = hello
        self._hello_seq = frame.seq
        self._enable_auth(None)  # a new join: frames without MAC until WELCOME
        self.master_nonce = self._nonce(NONCE_SIZE)
        if self._join_deadline is None:  # a serial link, or a restart on a joined link
            self._join_deadline = now + self._join_timeout_s
        self._move(State.AUTH)
        self._send(int(MsgType.AUTH_CHALLENGE), {0: self.master_nonce})

    def _on_response(self, frame: Frame, now: float, events: list[Event]) -> None:
        hello = self._hello
        assert hello is not None
        try:
            check_response(self.key, hello, self.master_nonce,
                           fields(_AUTH_RESPONSE, frame.payload)["mac"], frame.seq,
                           self.cluster)
        except JoinRefused as exc:
            self._refuse(exc.code, exc.text, exc.ref_seq, events)
            return
        payload, info = welcome(self.key, hello, self.master_nonce, self.limits,
                                kind=self.kind, peer=self.peer)
        self._send(int(MsgType.WELCOME), payload)
        # every later frame both ways carries a MAC (SPEC.md section 5)
        self._enable_auth(LinkAuth.master(self.key, self.master_nonce, hello["nonce"]))
        self._move(State.JOINED)
        self.info = info
        self._hello = None
        self._join_deadline = None
        self._max_frame = info.max_frame
        if self._deframer is not None:
            self._deframer.set_max_frame(info.max_frame)
        self._reassembler = Reassembler(self.limits.max_message, max_streams=MAX_STREAMS)
        # an operand over the node's max_message could not arrive: such a one goes inline
        cache = min(info.operand_cache, info.max_message - 64)
        self.operands = NodeOperands(cache) if cache > 0 else None
        self.last_rx = now
        self._next_beat = now + self.heartbeat_s
        events.append(Joined(info))
