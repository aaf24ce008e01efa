"""The master's side of the simulation: the real sans-IO scheduler behind a session
layer that does what the asyncio master's sessions do, on virtual time.

Per node link it runs the join handshake (checking the node's HMAC and proving its own),
feeds RESULT, ERROR and HEARTBEAT frames to the scheduler, turns the scheduler's Dispatch
and Cancel decisions into TASK and CANCEL frames, declares a node lost after three silent
heartbeat intervals, and journals every finished task so that a restarted master
resubmits only what is missing.

Lost frames. A TASK or RESULT lost on the wire leaves a task in flight that no node
holds. A node's HEARTBEAT reports how many tasks it holds; when it holds none while the
scheduler still counts tasks sent to it more than two heartbeat intervals ago, those
tasks are handed back to the scheduler (requeued without a failure penalty).
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING, Any

from microswarm.master.journal import Journal
from microswarm.master.master import wire_size
from microswarm.master.scheduler import (
    Cancel,
    Dispatch,
    JobDone,
    JobFailed,
    NodeCaps,
    Scheduler,
    TaskDone,
)
from microswarm.protocol.catalog import ErrorCode
from microswarm.sim import wire as w
from microswarm.sim.links import known_rate
from microswarm.sim.speed import prior_speed
from microswarm.wire import FrameError, master_proof, node_mac

if TYPE_CHECKING:
    from microswarm.sim.cluster import Simulation
    from microswarm.sim.node import SimNode

LOST_AFTER_HEARTBEATS = 3


class Session:
    """The master's end of one node's link."""

    __slots__ = ("epoch", "joined", "nonce", "node_nonce", "last_heard", "rx", "seq", "slots",
                 "kernels")

    def __init__(self, rx: Any) -> None:
        self.epoch = 0
        self.joined = False
        self.nonce = b""
        self.node_nonce = b""
        self.last_heard = 0.0
        self.rx = rx
        self.seq = 0
        self.slots = 1
        self.kernels: frozenset[str] = frozenset()


def _receiver_for(node: Any) -> Any:
    if node.real:
        from microswarm.sim.realtime import StreamReceiver

        return StreamReceiver()
    return w.Receiver(node.link.serial)


class SimMaster:
    def __init__(self, sim: Simulation, nodes: list[SimNode]) -> None:
        self.sim = sim
        self.cfg = sim.scenario.master
        self.heartbeat_s = self.cfg.heartbeat_ms / 1000.0
        self.sessions = [Session(_receiver_for(n)) for n in nodes]
        self.down_until = 0.0
        self.restarts = 0
        self.results: dict[int, Any] = {}  # what the user got: task index -> first value
        self.deliveries: dict[tuple[int, int], int] = {}  # (incarnation, index) -> TaskDones
        self.recomputed = 0  # results computed again after a restart (journal batch lost)
        self.journal = _Journal(sim.workdir if self.cfg.journal else None)
        self.up_since = 0.0
        self.index_of: list[int] = []  # current job's task index -> original index
        self.outstanding: dict[int, int] = {}  # task_id -> copies on nodes
        self.dispatched: set[int] = set()
        self.retries = 0
        self.speculative = 0
        self.duplicates = 0
        self.recovered = 0
        self.failed_cause = ""
        self.job_done = False
        self.dispatches = 0
        self.scheduler = self._new_scheduler()

    # ------------------------------------------------------------------ lifecycle
    def _new_scheduler(self) -> Scheduler:
        opts = dict(self.cfg.options)
        policy = getattr(self.sim, "policy", "ours")
        if policy != "ours":  # a baseline placement policy, to compare against
            from microswarm.sim.policies import make_for

            return make_for(self.sim, clock=self.sim.events.clock, retries=self.cfg.retries,
                            **opts)
        return Scheduler(clock=self.sim.events.clock, retries=self.cfg.retries, **opts)

    def start_job(self) -> None:
        """Submit what the journal does not hold yet (all of it on a fresh master)."""
        tasks = self.sim.job.tasks
        known = self.journal.begin(self.sim.job.kernel, tasks)
        self.up_since = self.sim.events.now
        self.index_of = [i for i in range(len(tasks)) if i not in known]
        self.outstanding.clear()
        self.dispatched.clear()
        if not self.index_of:
            self.job_done = True
            return
        todo = [tasks[i] for i in self.index_of]
        # sizes as the real master passes them: the link's share of a finish-time estimate
        self.scheduler.submit(self.sim.job.kernel, todo, sizes=[wire_size(t) for t in todo])
        self.pump()

    def restart(self, down_s: float) -> None:
        """The master process dies and comes back: links close, scheduler state is gone,
        the journal survives."""
        now = self.sim.events.now
        self.restarts += 1
        self.duplicates += self.scheduler.duplicates
        self.dispatches += self.scheduler.dispatches
        self.down_until = now + down_s
        for s in self.sessions:
            s.joined = False
            s.epoch += 1
        self.scheduler = self._new_scheduler()
        self.journal.reopen()
        self.sim.trace("master_restart", "", down_s)
        self.sim.events.at(self.down_until, self.start_job)

    def is_down(self) -> bool:
        return self.sim.events.now < self.down_until

    # ------------------------------------------------------------------ connections
    def accept(self, node: SimNode) -> int | None:
        """A node opens a new connection; the old one (if any) is closed. None when the
        master or the link is down (connection refused / unreachable)."""
        if self.is_down() or not node.link.connected:
            return None
        s = self.sessions[node.index]
        if s.joined:
            self._lose(node, "reconnected")
        s.epoch += 1
        return s.epoch

    def nonce_for(self, node: SimNode) -> bytes:
        return self.sessions[node.index].nonce

    def send(self, node: SimNode, msg_type: int, payload: dict[int, Any]) -> None:
        s = self.sessions[node.index]
        s.seq += 1
        self._put(node, s, w.pack(msg_type, payload, s.seq, node.link.serial))

    def _put(self, node: SimNode, s: Session, data: bytes) -> None:
        if node.real:
            node.write(data)
            return
        link = node.link
        delivered = link.send(link.rx, data, self.sim.events.now)
        if delivered is not None:
            self.sim.events.at(delivered[0], node.receive, node.boot, s.epoch, delivered[1])

    # ------------------------------------------------------------------ receiving
    def receive(self, node: SimNode, epoch: int, data: bytes) -> None:
        if self.is_down():
            return
        s = self.sessions[node.index]
        if epoch != s.epoch:
            if node.link.connected:  # the closed connection answers with a reset
                self.sim.events.after(node.link.latency_s, node.reset_by_peer, node.boot)
            return
        for frame in s.rx.feed(data):
            if isinstance(frame, FrameError):
                self.sim.count("master_bad_frames")
                self.sim.trace("bad_frame", node.node_id, frame.code.name)
                error: dict[int, Any] = {w.E_CODE: int(frame.code), w.E_TEXT: frame.text}
                if frame.seq is not None:
                    error[w.E_REF] = frame.seq
                self.send(node, w.ERROR, error)
                continue
            self._handle(node, s, frame.type, frame.payload)
        self.pump()

    def _handle(self, node: SimNode, s: Session, msg_type: int, p: dict[int, Any]) -> None:
        now = self.sim.events.now
        if msg_type == w.RESULT and s.joined:
            s.last_heard = now
            task_id = p[w.R_ID]
            if w.R_VALUE in p:
                if node.real:
                    elapsed = p[w.R_ELAPSED] / 1e6
                    node.task_finished(elapsed)
                    self.sim.gantt_add(node.index, task_id, now - elapsed, now, "ok")
                self.scheduler.result(node.node_id, task_id, p[w.R_VALUE], p[w.R_ELAPSED])
                self._settle(task_id)
            else:
                self._task_error(node, task_id, p.get(w.R_CODE, 0), p.get(w.R_ERROR, ""))
            return
        if msg_type == w.HELLO:
            s.node_nonce = p[w.H["nonce"]]
            s.slots = p[w.H["slots"]]
            s.kernels = frozenset(p[w.H["kernels"]])
            s.nonce = self.sim.rng_nonce.randbytes(16)
            self.send(node, w.CHALLENGE, {w.CH_NONCE: s.nonce})
            return
        if msg_type == w.RESPONSE:
            expected = node_mac(self.sim.key, s.nonce, s.node_nonce, node.node_id)
            if not hmac.compare_digest(expected, p[w.RS_MAC]):
                self.send(node, w.ERROR, {w.E_CODE: int(ErrorCode.AUTH_FAILED),
                                          w.E_TEXT: "wrong cluster key"})
                return
            s.joined = True
            s.last_heard = now
            window = min(self.cfg.window, s.slots)
            self.send(node, w.WELCOME, {
                w.W["node_id"]: node.node_id, w.W["heartbeat_ms"]: self.cfg.heartbeat_ms,
                w.W["window"]: window, w.W["max_frame"]: 16_384,
                w.W["proof"]: master_proof(self.sim.key, s.node_nonce, s.nonce),
            })
            self.sim.trace("join", node.node_id)
            self.sim.joined_at.setdefault(node.index, now)  # the lower bound's start
            self.scheduler.add_node(node.node_id, NodeCaps(
                kernels=s.kernels, window=window, speed=prior_speed(node.board),
                bandwidth=known_rate(node.link)))
            return
        if not s.joined:
            self.send(node, w.ERROR, {w.E_CODE: int(ErrorCode.NOT_JOINED),
                                      w.E_TEXT: "say HELLO first"})
            return
        s.last_heard = now
        if msg_type == w.HEARTBEAT:
            if p.get(w.HB_QUEUE) == 0 and self.cfg.recover_lost:
                self._recover_lost(node)
        elif msg_type == w.ERROR:
            self.sim.count("node_error_frames")
            task_id = p.get(w.E_TASK)
            if task_id is not None:
                self._task_error(node, task_id, p[w.E_CODE], p[w.E_TEXT])

    def _task_error(self, node: SimNode, task_id: int, code: int, text: str) -> None:
        """As the real master: CANCELLED is ignored, BUSY requeues without a penalty."""
        self._settle(task_id)
        if code == ErrorCode.CANCELLED:
            return
        if code == ErrorCode.BUSY:
            self.sim.count("busy")
        self.scheduler.error(node.node_id, task_id, text or "error",
                             penalty=code != ErrorCode.BUSY)

    def _settle(self, task_id: int) -> None:
        copies = self.outstanding.get(task_id)
        if copies is not None:
            self.outstanding[task_id] = copies - 1

    def _recover_lost(self, node: SimNode) -> None:
        cutoff = self.sim.events.now - 2 * self.heartbeat_s
        for task_id in self.scheduler.reconcile(node.node_id, cutoff):
            self.recovered += 1
            self.sim.trace("recover", node.node_id, task_id)
            self._settle(task_id)

    # ------------------------------------------------------------------ periodic
    def tick(self) -> None:
        if not self.is_down():
            self.scheduler.tick()
            self.pump()

    def sweep(self) -> None:
        """Once per heartbeat interval, as the real master's ticker: declare lost every
        joined node silent for LOST_AFTER_HEARTBEATS intervals, HEARTBEAT the others, and
        commit the journal."""
        if self.is_down():
            return
        now = self.sim.events.now
        limit = now - LOST_AFTER_HEARTBEATS * self.heartbeat_s
        beat = w.encode({w.HB_UPTIME: int((now - self.up_since) * 1000)})
        nodes = self.sim.nodes
        for i, s in enumerate(self.sessions):
            if not s.joined:
                continue
            if s.last_heard < limit:
                self._lose(nodes[i], "silent")
                s.epoch += 1
            else:
                node = nodes[i]
                s.seq += 1
                self._put(node, s, w.pack_encoded(w.HEARTBEAT, beat, s.seq, node.link.serial))
        self.journal.flush()
        self.pump()

    def _lose(self, node: SimNode, why: str) -> None:
        s = self.sessions[node.index]
        s.joined = False
        self.sim.node_lost(node, why)
        state = self.scheduler.nodes.get(node.node_id)
        if state is not None:
            for task_id in state.inflight:
                self._settle(task_id)
        self.scheduler.remove_node(node.node_id, f"node {node.node_id} {why}")

    # ------------------------------------------------------------------ decisions
    def pump(self) -> None:
        sched = self.scheduler
        nodes = self.sim.node_by_id
        while True:
            actions = sched.poll()
            if not actions:
                return
            for a in actions:
                if type(a) is Dispatch:
                    self._dispatch(nodes[a.node_id], a)
                elif type(a) is Cancel:
                    self.send(nodes[a.node_id], w.CANCEL, {w.C_ID: a.task_id})
                elif type(a) is TaskDone:
                    self._done(a)
                elif type(a) is JobDone:
                    self.job_done = True
                    self.sim.trace("job_done", "")
                elif type(a) is JobFailed:
                    self.failed_cause = a.cause
                    self.sim.trace("job_failed", "", a.cause)

    def _dispatch(self, node: SimNode, a: Dispatch) -> None:
        copies = self.outstanding.get(a.task_id, 0)
        if copies > 0:
            self.speculative += 1
        elif a.task_id in self.dispatched:
            self.retries += 1
        self.dispatched.add(a.task_id)
        self.sim.trace("dispatch", a.node_id, (a.task_id, a.attempt))
        self.outstanding[a.task_id] = copies + 1
        args = a.args if type(a.args) is list else list(a.args)
        self.send(node, w.TASK, {w.T_ID: a.task_id, w.T_KERNEL: a.kernel, w.T_ARGS: args,
                                 w.T_ATTEMPT: a.attempt})
        self.scheduler.sent(a.node_id, a.task_id)

    def _done(self, a: TaskDone) -> None:
        index = self.index_of[a.index]
        once = (self.restarts, index)
        self.deliveries[once] = self.deliveries.get(once, 0) + 1
        self.outstanding.pop(a.task_id, None)
        self.journal.record(index, a.value, a.node_id)
        self.sim.trace("done", a.node_id, index)
        if index in self.results:
            self.recomputed += 1
            if self.results[index] != a.value:
                self.sim.count("recomputed_differently")
            return
        self.results[index] = a.value


class _Journal:
    """The master's SQLite journal (microswarm.master.journal) in a scratch folder, or
    nothing when the scenario's master runs without one. A restart drops the Journal
    object without flushing it, as a killed process would: rows still in its batch are
    lost and their tasks are computed again."""

    KEY = "sim-job"

    def __init__(self, folder: str | None) -> None:
        self.path = None if folder is None else f"{folder}/journal.sqlite"
        self.db: Journal | None = None
        self.kernel = ""
        self.tasks: list = []
        self.reopen()

    def reopen(self) -> None:
        if self.path is not None:
            self.db = Journal(self.path)

    def begin(self, kernel: str, tasks: list) -> dict[int, Any]:
        self.kernel, self.tasks = kernel, tasks
        return {} if self.db is None else self.db.begin(self.KEY, kernel, tasks)

    def record(self, index: int, value: Any, node_id: str) -> None:
        if self.db is not None:
            self.db.record(self.KEY, index, value, node_id)

    def flush(self) -> None:
        if self.db is not None:
            self.db.flush()

    def stored(self) -> dict[int, Any] | None:
        """Every result the journal holds (None without a journal)."""
        if self.db is None:
            return None
        self.db.flush()
        return self.db.begin(self.KEY, self.kernel, self.tasks)

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None
