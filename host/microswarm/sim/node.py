"""A simulated node: the firmware's node engine (firmware/engine.py) on virtual time.

What the node says and answers (the join with its HMAC proofs, heartbeats, slots and BUSY,
CANCEL, error codes, the silence and join clocks) is the engine's, the very code a board
runs. This file only drives it: frames from the link model go in, the engine's messages go
out as frames, its timers become events, and a kernel it starts really runs (in CPython)
while the speed model says how much virtual time it takes. A node whose board runs kernels
on the event loop (no parallel thread: the ESP32 port, see firmware/worker.py) cannot
heartbeat during a kernel, and neither can its simulation: the engine is told so in HELLO.

`boot` counts power cycles: events scheduled for an earlier boot are ignored, which is
how a crash wipes what was in progress. `epoch` names the node's current connection to
the master; frames of an older connection are dropped at the master (as TCP would).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from microswarm.firmware import engine as E
from microswarm.firmware import engine_join as J
from microswarm.firmware import kernels
from microswarm.sim import speed
from microswarm.sim import wire as w
from microswarm.sim.links import Link
from microswarm.wire import Frame, FrameError, LinkAuth, decode_frame, serial_encode
from microswarm.wire.writer import MessageWriter

if TYPE_CHECKING:
    from microswarm.sim.cluster import Simulation

FW_VERSION = "sim-1"
HEAP_TOTAL = 200_000
MAX_FRAME = 16_384
# Boards whose MicroPython port runs _thread under a global interpreter lock: the worker
# runs their kernels on the event loop and says threads=false in HELLO.
NO_THREADS = frozenset({"esp32", "esp32s3"})



class SimNode:
    real = False
    __slots__ = (
        "sim", "index", "node_id", "board", "factor", "slowdown", "slots", "link", "rx",
        "alive", "frozen_until", "boot", "epoch", "joined", "writer", "engine", "stats",
        "threads", "timer", "timer_at", "busy_s", "busy_since", "booted_at", "backoff",
        "heartbeat_s", "auth", "kernel_about",
    )

    def __init__(
        self, sim: Simulation, index: int, node_id: str, board: str, factor: float,
        slowdown: float, slots: int, link: Link,
    ) -> None:
        self.sim = sim
        self.index = index
        self.node_id = node_id
        self.board = board
        self.factor = factor
        self.slowdown = slowdown
        self.slots = slots
        self.link = link
        self.rx = w.Receiver(link.serial)
        self.auth: LinkAuth | None = None  # frame MACs from WELCOME on
        self.alive = False
        self.frozen_until = 0.0
        self.boot = 0
        self.epoch = 0
        self.joined = False
        self.writer = MessageWriter()  # as the firmware's: numbering, chunks, MACs
        self.engine: E.Engine | None = None
        self.stats = E.Stats(0, None)
        self.threads = board not in NO_THREADS
        self.timer: list | None = None
        self.timer_at = 0.0
        self.busy_s = 0.0
        self.busy_since = -1.0
        self.booted_at = 0.0
        self.backoff = E.BACKOFF_MIN_MS  # ms: E.backoff()
        self.heartbeat_s = 1.0
        self.kernel_about = sim.kernel_about  # HELLO's kernels and their versions

    @property
    def done(self) -> int:
        return self.stats.done

    @property
    def running(self) -> list | None:
        """[task_id, value, error, start_s] of the oldest running kernel, or None."""
        eng = self.engine
        if eng is None or not eng.running:
            return None
        task = eng.running[0]
        return [task.task_id, None, None, task.handle[2]]

    # ------------------------------------------------------------------ power
    def power_on(self) -> None:
        self.boot += 1
        self.alive = True
        self.frozen_until = 0.0
        self.booted_at = self.sim.events.now
        self.stats = E.Stats(self._now_ms(), None)
        self._drop_session()
        self.connect()

    def crash(self) -> None:
        self.alive = False
        self.boot += 1
        self._drop_session()

    def frozen(self) -> bool:
        return self.frozen_until > self.sim.events.now

    def _now_ms(self) -> float:
        return self.sim.events.now * 1000.0

    def _drop_session(self) -> None:
        """Forget the session and the work in it (a crash, or the link went down)."""
        eng, self.engine = self.engine, None
        self.joined = False
        self.auth = None  # a new session: no MACs until WELCOME, numbering from 0
        self.writer = MessageWriter()
        self.rx.set_auth(None)
        self.sim.events.cancel(self.timer)
        self.timer = None
        if eng is None:
            return
        now = self.sim.events.now
        for task in eng.running:
            self.sim.gantt_add(self.index, task.task_id, task.handle[2], now, "aborted")
            self.sim.events.cancel(task.handle[3])
        if eng.running:
            self._idle(now)
        eng.running = []
        eng.queue = []

    # ------------------------------------------------------------------ connection
    def connect(self) -> None:
        """Open a new connection to the master and say HELLO (retry while unreachable)."""
        if not self.alive:
            return
        self._drop_session()
        epoch = self.sim.master.accept(self)
        if epoch is None:
            self.redial()
            return
        self.epoch = epoch
        sim = self.sim
        # recycle: the engine reuses its Task records and RESULT payload; this driver
        # keeps neither (a task's handle is cleared before finished(), the writer
        # encodes a payload before send() returns)
        # known: HELLO's kernels as a set (the engine looks each TASK's kernel up there)
        self.engine = E.Engine(self, self.hello(), sim.key,
                               known=frozenset(self.kernel_about["kernels"]),
                               waits=kernels.WAITS, stats=self.stats, recycle=True)
        self.engine.start(self._now_ms(), sim.rng_nonce.randbytes(16))
        self._arm()

    def hello(self) -> dict[int, Any]:
        """The HELLO payload (without its nonce) of each new session."""
        return J.hello(self.node_id, self.board, FW_VERSION, HEAP_TOTAL, HEAP_TOTAL,
                       MAX_FRAME, self.slots, "serial" if self.link.serial else "tcp",
                       *J.heap_limits(HEAP_TOTAL), self.threads,
                       self.kernel_about)

    def redial(self) -> None:
        """Dial again after a jittered, doubling backoff (the firmware's reconnect)."""
        delay_ms, self.backoff = E.backoff(self.backoff, self.sim.rng_nonce.random())
        self.sim.events.after(delay_ms / 1000.0, self._retry_connect, self.boot)

    def _retry_connect(self, boot: int) -> None:
        if boot == self.boot and not self.joined and self.engine is None:
            self.connect()

    def end_session(self) -> None:
        """The session is over: drop it and its work, then re-dial."""
        self.epoch = -1
        self._drop_session()
        self.redial()

    def reset_by_peer(self, boot: int, epoch: int) -> None:
        """The master refused a frame of a closed connection (TCP RST): reconnect, unless
        the node has a newer connection already (a reset names its connection)."""
        if boot == self.boot and epoch == self.epoch and self.alive and not self.frozen():
            self.connect()

    # ------------------------------------------------------------------ the engine's io
    def send(self, msg_type: int, payload: dict[int, Any]) -> None:
        eng = self.engine
        assert eng is not None
        frames = self.writer.frames(msg_type, payload, eng.max_frame, eng.peer_max_message)
        sim = self.sim
        link = self.link
        events = sim.events
        for frame in frames:
            data = serial_encode(frame) if link.serial else frame
            delivered = link.send(link.tx, data, events.now)
            if delivered is not None:
                events.at(delivered[0], sim.master.receive, self, self.epoch, delivered[1])

    def close(self, reason: str) -> None:
        self.sim.trace("session_end", self.node_id, reason)
        self.sim.events.after(0.0, self._closed, self.boot, self.engine)

    def _closed(self, boot: int, engine: E.Engine) -> None:
        if boot == self.boot and engine is self.engine:
            self.end_session()

    def challenged(self, key: bytes | None, master_nonce: bytes | None,
                   node_nonce: bytes | None) -> None:
        """Frame MACs from WELCOME on, as a board (SPEC.md section 5); key None: off."""
        self.auth = None if key is None else LinkAuth.node(key, master_nonce, node_nonce)
        self.writer.auth = self.auth
        self.rx.set_auth(self.auth)

    def on_joined(self) -> None:
        self.joined = True
        self.backoff = E.BACKOFF_MIN_MS
        assert self.engine is not None
        self.heartbeat_s = self.engine.heartbeat_ms / 1000.0

    def heap_free(self) -> None:
        return None

    def run(self, task: E.Task) -> None:
        sim = self.sim
        now = sim.events.now
        value, error = sim.run_kernel(task.kernel, task.args)
        seconds = speed.compute_seconds(task.kernel, task.args, value, self.factor,
                                        self.slowdown)
        if self.busy_since < 0:
            self.busy_since = now
        # handle: [value, error, start_s, finish event, seconds]
        task.handle = [value, error, now, None, seconds]
        task.handle[3] = sim.events.at(now + seconds, self._finish, self.engine, task)

    def cancel(self, task: E.Task) -> None:
        if task.waits:  # the firmware cuts a waiting kernel short
            self.sim.events.cancel(task.handle[3])
            task.handle[3] = self.sim.events.after(0.0, self._finish, self.engine, task)

    # ------------------------------------------------------------------ events
    def _finish(self, engine: E.Engine, task: E.Task) -> None:
        if engine is not self.engine:
            return
        now = self.sim.events.now
        if self.frozen_until > now:
            task.handle[3] = self.sim.events.at(self.frozen_until, self._finish, engine, task)
            return
        value, error, start, _event, _seconds = task.handle
        # the handle holds this very event, whose arguments hold the task: without it the
        # task, its handle and its event are freed at once, not by the cycle collector
        # (five objects a task, 200,000 of them in bench sim's run)
        task.handle = None
        outcome = "cancelled" if task.cancelled else ("error" if error else "ok")
        sim = self.sim  # sim.gantt_add(self.index, ...), inline: once per task
        if sim.keep_gantt:
            sim.gantt.append((self.index, task.task_id, start, now, outcome))
        sim.trace("ran", self.node_id, (task.task_id, outcome))
        engine.finished(task, value, error, int((now - start) * 1e6), now * 1000.0)
        if not engine.running:
            self._idle(now)
        self._arm()

    def _idle(self, now: float) -> None:
        if self.busy_since >= 0:
            self.busy_s += now - self.busy_since
            self.busy_since = -1.0

    def receive(self, boot: int, epoch: int, data: bytes) -> None:
        eng = self.engine
        now = self.sim.events.now
        if (boot != self.boot or not self.alive or epoch != self.epoch or eng is None
                or self.frozen_until > now):
            return
        now_ms = now * 1000.0
        eng.last_rx = now_ms
        rx = self.rx
        if rx.deframer is None:  # a packet: exactly one frame (rx.feed, inline)
            try:
                frame = decode_frame(data, auth=rx.auth)
            except FrameError as exc:
                rx.bad_frames += 1
                self._bad_frame(eng, exc, now_ms)
            else:
                eng.receive(*frame, now_ms)  # (type, flags, seq, payload)
            self._arm()
            return
        for frame in rx.feed(data):
            if type(frame) is Frame:
                eng.receive(*frame, now_ms)
            else:
                self._bad_frame(eng, frame, now_ms)
        self._arm()

    def _bad_frame(self, eng: E.Engine, error: FrameError, now_ms: float) -> None:
        self.sim.count("node_bad_frames")
        eng.bad_frame(int(error.code), error.text, error.seq, False, now_ms)

    def _arm(self) -> None:
        """Schedule the engine's next deadline (once: a later one replaces nothing)."""
        eng = self.engine
        if eng is None:
            return
        deadline = eng.next_deadline()
        if deadline is None:
            return
        if self.timer is not None and self.timer[2] is not None and self.timer_at <= deadline:
            return
        self.sim.events.cancel(self.timer)
        self.timer_at = deadline
        self.timer = self.sim.events.at(deadline / 1000.0, self._on_timer, self.engine)

    def _on_timer(self, engine: E.Engine) -> None:
        if engine is not self.engine:
            return
        self.timer = None
        now = self.sim.events.now
        if self.frozen_until > now:  # a frozen board runs nothing, its clock included
            self.timer_at = self.frozen_until * 1000.0
            self.timer = self.sim.events.at(self.frozen_until, self._on_timer, engine)
            return
        # the deadline itself, not now * 1000 (which float rounding may put just before it)
        engine.on_timer(max(now * 1000.0, self.timer_at))
        self._arm()

    def heartbeat(self) -> None:
        """Let the engine look at its clock now (it heartbeats when one is due)."""
        if self.engine is not None and self.alive and not self.frozen():
            self.engine.on_timer(self.sim.events.now * 1000.0)
            self._arm()

    def set_slowdown(self, slowdown: float) -> None:
        """Change the node's speed; the kernel it is running stretches (or shrinks) too."""
        eng = self.engine
        if eng is not None:
            now = self.sim.events.now
            for task in eng.running:
                if task.waits:
                    continue
                handle = task.handle
                left = max(0.0, handle[2] + handle[4] - now) * slowdown / self.slowdown
                handle[4] = now + left - handle[2]
                self.sim.events.cancel(handle[3])
                handle[3] = self.sim.events.at(now + left, self._finish, eng, task)
        self.slowdown = slowdown
