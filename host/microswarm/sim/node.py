"""A simulated node: the firmware worker's behaviour, as events instead of a loop.

It joins with the real handshake (HELLO, AUTH_CHALLENGE, AUTH_RESPONSE, WELCOME with the
HMAC proofs), takes TASK frames up to its slot count (BUSY beyond), runs the real kernels
(`microswarm.firmware.kernels`) one at a time, charges the virtual time of the speed
model, answers RESULT frames, honours CANCEL and sends HEARTBEATs. All of its state is
in __slots__ and it owns no thread or task: the event queue drives it.

`boot` counts power cycles: events scheduled for an earlier boot are ignored, which is
how a crash wipes what was in progress. `epoch` names the node's current connection to
the master; frames of an older connection are dropped at the master (as TCP would).
"""

from __future__ import annotations

import hmac
from collections import deque
from typing import TYPE_CHECKING, Any

from microswarm.protocol.catalog import PROTOCOL_VERSION, ErrorCode
from microswarm.sim import speed
from microswarm.sim import wire as w
from microswarm.sim.links import Link
from microswarm.wire import FrameError, master_proof, node_mac

if TYPE_CHECKING:
    from microswarm.sim.cluster import Simulation

FW_VERSION = "sim-1"
HEAP_TOTAL = 200_000
MAX_FRAME = 16_384
# As firmware/worker.py: re-dial after [b/2, b) with b doubling from 0.2 s up to 10 s, and
# end a session when the master has been silent for SILENT_BEATS heartbeat intervals.
BACKOFF_MIN_S = 0.2
BACKOFF_MAX_S = 10.0
SILENT_BEATS = 3
JOIN_TIMEOUT_S = 5.0  # no WELCOME this long after dialling: hang up and dial again


class SimNode:
    real = False
    __slots__ = (
        "sim", "index", "node_id", "board", "factor", "slowdown", "slots", "link", "rx",
        "alive", "frozen_until", "boot", "epoch", "joined", "nonce", "seq", "queue",
        "running", "run_token", "done", "busy_s", "booted_at", "last_rx", "backoff_s",
        "heartbeat_s",
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
        self.alive = False
        self.frozen_until = 0.0
        self.boot = 0
        self.epoch = 0
        self.joined = False
        self.nonce = b""
        self.seq = 0
        self.queue: deque[tuple[int, str, list]] = deque()
        self.running: list | None = None  # [task_id, value, error, start, seconds, cancelled]
        self.run_token = 0
        self.done = 0
        self.busy_s = 0.0
        self.booted_at = 0.0
        self.last_rx = 0.0
        self.backoff_s = BACKOFF_MIN_S
        self.heartbeat_s = 1.0

    # ------------------------------------------------------------------ power
    def power_on(self) -> None:
        self.boot += 1
        self.alive = True
        self.frozen_until = 0.0
        self.booted_at = self.sim.events.now
        self._reset_work()
        self.connect()

    def crash(self) -> None:
        self.alive = False
        self.boot += 1
        self.joined = False
        self._reset_work()

    def frozen(self) -> bool:
        return self.frozen_until > self.sim.events.now

    def _reset_work(self) -> None:
        if self.running is not None:
            self.sim.gantt_close(self, self.running, "aborted")
        self.queue.clear()
        self.running = None
        self.run_token += 1

    # ------------------------------------------------------------------ connection
    def connect(self) -> None:
        """Open a new connection to the master and say HELLO (retry while unreachable)."""
        if not self.alive:
            return
        self.joined = False
        self._reset_work()
        epoch = self.sim.master.accept(self)
        if epoch is None:
            self.redial()
            return
        self.epoch = epoch
        self.last_rx = self.sim.events.now
        self.sim.events.after(JOIN_TIMEOUT_S, self._join_deadline, self.boot, epoch)
        self.nonce = self.sim.rng_nonce.randbytes(16)
        self.send(w.HELLO, {
            w.H["node_id"]: self.node_id,
            w.H["board"]: self.board,
            w.H["fw_version"]: FW_VERSION,
            w.H["proto_version"]: PROTOCOL_VERSION,
            w.H["kernels"]: self.sim.kernel_names,
            w.H["heap_total"]: HEAP_TOTAL,
            w.H["heap_free"]: HEAP_TOTAL,
            w.H["max_frame"]: MAX_FRAME,
            w.H["slots"]: self.slots,
            w.H["nonce"]: self.nonce,
            w.H["link"]: "serial" if self.link.serial else "tcp",
            w.H["threads"]: True,  # it heartbeats while a kernel runs
        })

    def redial(self) -> None:
        """Dial again after a jittered, doubling backoff (the firmware's reconnect)."""
        delay = self.backoff_s * (0.5 + 0.5 * self.sim.rng_nonce.random())
        self.backoff_s = min(BACKOFF_MAX_S, self.backoff_s * 2)
        self.sim.events.after(delay, self._retry_connect, self.boot)

    def _join_deadline(self, boot: int, epoch: int) -> None:
        if boot == self.boot and epoch == self.epoch and self.alive and not self.joined:
            self.sim.trace("join_timeout", self.node_id)
            self.end_session()

    def _retry_connect(self, boot: int) -> None:
        if boot == self.boot and not self.joined:
            self.connect()

    def end_session(self) -> None:
        """The master fell silent: drop the session and its work, then re-dial."""
        self.joined = False
        self.epoch = -1
        self._reset_work()
        self.redial()

    def reset_by_peer(self, boot: int) -> None:
        """The master refused a frame of a closed connection (TCP RST): reconnect."""
        if boot == self.boot and self.alive and not self.frozen():
            self.connect()

    def send(self, msg_type: int, payload: dict[int, Any]) -> None:
        self.seq += 1
        data = w.pack(msg_type, payload, self.seq, self.link.serial)
        sim = self.sim
        delivered = self.link.send(self.link.tx, data, sim.events.now)
        if delivered is not None:
            sim.events.at(delivered[0], sim.master.receive, self, self.epoch, delivered[1])

    # ------------------------------------------------------------------ receiving
    def receive(self, boot: int, epoch: int, data: bytes) -> None:
        if boot != self.boot or not self.alive or epoch != self.epoch or self.frozen():
            return
        self.last_rx = self.sim.events.now
        for frame in self.rx.feed(data):
            if isinstance(frame, FrameError):
                self.sim.count("node_bad_frames")
                error: dict[int, Any] = {w.E_CODE: int(frame.code), w.E_TEXT: frame.text}
                if frame.seq is not None:
                    error[w.E_REF] = frame.seq
                self.send(w.ERROR, error)
                continue
            self._handle(frame.type, frame.payload)

    def _handle(self, msg_type: int, p: dict[int, Any]) -> None:
        if msg_type == w.TASK:
            self._task(p)
        elif msg_type == w.CANCEL:
            self._cancel(p[w.C_ID])
        elif msg_type == w.CHALLENGE:
            mac = node_mac(self.sim.key, p[w.CH_NONCE], self.nonce, self.node_id)
            self.send(w.RESPONSE, {w.RS_MAC: mac})
        elif msg_type == w.WELCOME:
            proof = master_proof(self.sim.key, self.nonce, self.sim.master.nonce_for(self))
            if hmac.compare_digest(proof, p[w.W["proof"]]):
                self.joined = True
                self.backoff_s = BACKOFF_MIN_S
                self.heartbeat_s = p[w.W["heartbeat_ms"]] / 1000.0
        elif msg_type == w.ERROR and p[w.E_CODE] in (ErrorCode.NOT_JOINED,
                                                      ErrorCode.BAD_VERSION):
            self.end_session()

    def _task(self, p: dict[int, Any]) -> None:
        task_id = p[w.T_ID]
        if not self.joined:
            return
        if len(self.queue) + (self.running is not None) >= self.slots:
            self._fail(task_id, ErrorCode.BUSY, "all slots taken")
            return
        self.queue.append((task_id, p[w.T_KERNEL], p[w.T_ARGS]))
        self._start_next()

    def _fail(self, task_id: int, code: ErrorCode, text: str) -> None:
        self.send(w.RESULT, {w.R_ID: task_id, w.R_ELAPSED: 0, w.R_ERROR: text,
                             w.R_CODE: int(code)})

    def _cancel(self, task_id: int) -> None:
        for item in self.queue:
            if item[0] == task_id:
                self.queue.remove(item)
                self._fail(task_id, ErrorCode.CANCELLED, "cancelled before it ran")
                return
        if self.running is not None and self.running[0] == task_id:
            self.running[5] = True

    # ------------------------------------------------------------------ running
    def _start_next(self) -> None:
        if self.running is not None or not self.queue:
            return
        task_id, kernel, args = self.queue.popleft()
        value, error = self.sim.run_kernel(kernel, args)
        seconds = speed.compute_seconds(kernel, args, value, self.factor, self.slowdown)
        now = self.sim.events.now
        self.running = [task_id, value, error, now, seconds, False]
        self.run_token += 1
        self.sim.events.at(now + seconds, self._finish, self.boot, self.run_token)

    def _finish(self, boot: int, token: int) -> None:
        if boot != self.boot or token != self.run_token or self.running is None:
            return
        now = self.sim.events.now
        if self.frozen_until > now:
            self.sim.events.at(self.frozen_until, self._finish, boot, token)
            return
        task_id, value, error, start, seconds, cancelled = self.running
        self.running = None
        self.busy_s += now - start
        self.done += 1
        self.sim.gantt_add(self.index, task_id, start, now,
                           "cancelled" if cancelled else ("error" if error else "ok"))
        if not cancelled:
            # Built in key order, as the encoder then takes its no-sort fast path.
            elapsed_us = int(seconds * 1e6)
            if error is None:
                payload: dict[int, Any] = {w.R_ID: task_id, w.R_VALUE: value,
                                           w.R_ELAPSED: elapsed_us}
            else:
                payload = {w.R_ID: task_id, w.R_ERROR: error, w.R_ELAPSED: elapsed_us,
                           w.R_CODE: int(ErrorCode.KERNEL_FAILED)}
            self.send(w.RESULT, payload)
        self._start_next()

    def set_slowdown(self, slowdown: float) -> None:
        """Change the node's speed; the kernel it is running stretches (or shrinks) too."""
        running = self.running
        if running is not None:
            now = self.sim.events.now
            left = max(0.0, running[3] + running[4] - now) * slowdown / self.slowdown
            running[4] = now + left - running[3]
            self.run_token += 1
            self.sim.events.at(now + left, self._finish, self.boot, self.run_token)
        self.slowdown = slowdown

    def heartbeat(self) -> None:
        if not (self.alive and self.joined) or self.frozen():
            return
        now = self.sim.events.now
        if now - self.last_rx > SILENT_BEATS * self.heartbeat_s:
            self.sim.trace("master_silent", self.node_id)
            self.end_session()
            return
        self.send(w.HEARTBEAT, {
            w.HB_UPTIME: int((now - self.booted_at) * 1000),
            w.HB_QUEUE: len(self.queue) + (self.running is not None),
            w.HB_DONE: self.done,
            w.HB_BAD: self.rx.bad_frames,
        })
