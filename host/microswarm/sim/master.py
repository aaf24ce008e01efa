"""The master's side of the simulation: the real sans-IO scheduler and the real sans-IO
node sessions (microswarm.master.session, the same class the asyncio master drives), on
virtual time.

This module is only the driver: it gives each node connection a NodeSession, carries the
bytes between the sessions and the link models, calls the sessions' timers once per
heartbeat interval (as the real master's ticker does, but on the virtual clock), turns
session events into scheduler calls and scheduler decisions into session commands, and
journals every finished task in the real SQLite journal so that a restarted master
resubmits only what is missing. Join, authentication, liveness, task deadlines, lost-frame
reconciliation and bad-frame handling are the session's.

A connection is named by an epoch per node: frames of a connection the master no longer
serves are refused (the node sees a reset, as over TCP).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from microswarm.master import session_events as ev
from microswarm.master.handshake import Limits
from microswarm.master.master import resolve_version, wire_size
from microswarm.master.scheduler import (
    Cancel,
    Dispatch,
    JobDone,
    JobFailed,
    NodeCaps,
    Scheduler,
    TaskDone,
)
from microswarm.master.session import NodeSession, State
from microswarm.protocol.catalog import ErrorCode
from microswarm.sim.journal import SimJournal
from microswarm.sim.links import known_rate
from microswarm.sim.speed import compute_seconds, prior_speed

if TYPE_CHECKING:
    from microswarm.sim.cluster import Simulation
    from microswarm.sim.node import SimNode

_Result, _TaskFailed, _TaskLost = ev.Result, ev.TaskFailed, ev.TaskLost
_JOINED, _CLOSED = State.JOINED, State.CLOSED


class SimMaster:
    def __init__(self, sim: Simulation, nodes: list[SimNode]) -> None:
        self.sim = sim
        self.cfg = sim.scenario.master
        self.heartbeat_s = self.cfg.heartbeat_ms / 1000.0
        self.limits = Limits(heartbeat_ms=self.cfg.heartbeat_ms, window=self.cfg.window)
        self.sessions: list[NodeSession | None] = [None] * len(nodes)
        self.epochs = [0] * len(nodes)
        self.down_until = 0.0
        self.restarts = 0
        self.results: dict[int, Any] = {}  # what the user got: task index -> first value
        # (incarnation << 32 | index) -> TaskDones: an int key, not a tuple that the
        # garbage collector would scan for every task
        self.deliveries: dict[int, int] = {}
        self.recomputed = 0  # results computed again after a restart (journal batch lost)
        self.journal = SimJournal(sim.workdir if self.cfg.journal else None)
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

            return make_for(self.sim, clock=self.sim.events.clock_reader(),
                            retries=self.cfg.retries,
                            **opts)
        return Scheduler(clock=self.sim.events.clock_reader(), retries=self.cfg.retries,
                         **opts)

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
            self.sim.events.halt()  # Simulation.finished() from now on
            return
        todo = [tasks[i] for i in self.index_of]
        # sizes as the real master passes them: the link's share of a finish-time estimate
        # pinned to the kernel's version as this process has it, as the real master does
        kernel = self.sim.job.kernel
        self.scheduler.submit(kernel, todo, sizes=[wire_size(t) for t in todo],
                              version=resolve_version(kernel, None))
        self.pump()

    def restart(self, down_s: float) -> None:
        """The master process dies and comes back: links close, sessions and scheduler
        state are gone, the journal survives."""
        now = self.sim.events.now
        self.restarts += 1
        self.duplicates += self.scheduler.duplicates
        self.dispatches += self.scheduler.dispatches
        self.down_until = now + down_s
        for i in range(len(self.sessions)):
            self.sessions[i] = None
            self.epochs[i] += 1
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
        i = node.index
        old = self.sessions[i]
        if old is not None and not old.closed:
            self._events(node, old.close(cause="reconnected"))
        framing = "cobs" if node.link.serial else ("stream" if node.real else "packet")
        self.sessions[i] = NodeSession(
            self.sim.key, now=self.sim.events.now, kind="serial" if node.link.serial else "tcp",
            peer=node.node_id, framing=framing, limits=self.limits,
            nonce=self.sim.rng_nonce.randbytes, origin=self.up_since,
            reconcile=self.cfg.recover_lost, wait_for_hello=False,
        )
        self.epochs[i] += 1
        return self.epochs[i]

    def nonce_for(self, node: SimNode) -> bytes:
        session = self.sessions[node.index]
        return session.master_nonce if session is not None else b""

    def _flush(self, node: SimNode, session: NodeSession) -> None:
        out = session.take_output()
        if not out:
            return
        if node.real:
            for data in out:
                node.write(data)
            return
        link = node.link
        events = self.sim.events
        epoch = self.epochs[node.index]
        for data in out:
            delivered = link.send(link.rx, data, events.now)
            if delivered is not None:
                events.at(delivered[0], node.receive, node.boot, epoch, delivered[1])

    # ------------------------------------------------------------------ receiving
    def receive(self, node: SimNode, epoch: int, data: bytes) -> None:
        now = self.sim.events.now
        if now < self.down_until:
            return
        session = self.sessions[node.index]
        if epoch != self.epochs[node.index] or session is None or session.state is _CLOSED:
            if node.link.connected:  # the closed connection answers with a reset
                self.sim.events.after(node.link.latency_s, node.reset_by_peer, node.boot,
                                      epoch)
            return
        events = session.receive(data, now)
        if session.has_output:
            self._flush(node, session)
        if events:
            self._events(node, events)
        self.pump()

    def _events(self, node: SimNode, events: list) -> None:
        sim = self.sim
        for e in events:
            kind = type(e)
            if kind is _Result:
                if node.real:
                    elapsed = e.elapsed_us / 1e6
                    task = self.scheduler.tasks.get(e.task_id)
                    node.task_finished(elapsed, 0.0 if task is None else compute_seconds(
                        task.kernel, task.args, e.value, 1.0))
                    now = sim.events.now
                    sim.gantt_add(node.index, e.task_id, now - elapsed, now, "ok")
                task_id = e.task_id
                self.scheduler.result(node.node_id, task_id, e.value, e.elapsed_us)
                copies = self.outstanding.get(task_id)  # _settle(task_id), inline
                if copies is not None:
                    self.outstanding[task_id] = copies - 1
            elif kind is _TaskFailed:
                self._task_error(node, e.task_id, e.code, e.text)
            elif kind is _TaskLost:
                self.recovered += 1
                sim.trace("recover", node.node_id, e.task_id)
                self._settle(e.task_id)
                self.scheduler.lost(node.node_id, e.task_id)
            elif kind is ev.Joined:
                sim.trace("join", node.node_id)
                sim.joined_at.setdefault(node.index, sim.events.now)  # the lower bound's start
                info = e.info
                self.scheduler.add_node(node.node_id, NodeCaps(
                    kernels=frozenset(info.kernels), window=info.window,
                    kernel_hashes=dict(info.kernel_hashes),
                    max_message=info.max_message, speed=prior_speed(node.board),
                    bandwidth=known_rate(node.link), operand_cache=info.operand_cache))
            elif kind is ev.Left:
                self._lose(node, e.cause)
            elif kind is ev.BadFrame:
                sim.count("master_bad_frames")
                sim.trace("bad_frame", node.node_id, ErrorCode(e.code).name)
            elif kind is ev.NodeError:
                sim.count("node_error_frames")
            elif kind is ev.Refused:
                sim.count("refused")
                sim.trace("refused", node.node_id, e.text)

    def _task_error(self, node: SimNode, task_id: int, code: int, text: str) -> None:
        """As the real master: CANCELLED frees the node's slot, BUSY requeues without a
        penalty."""
        self._settle(task_id)
        if code == ErrorCode.CANCELLED:
            self.scheduler.error(node.node_id, task_id, text, penalty=False)
            return
        if code == ErrorCode.MISSING_OPERAND:  # as the real master: again, operands inline
            self.sim.count("missing_operand")
            self.scheduler.inline_operands(task_id)
            self.scheduler.error(node.node_id, task_id, text, penalty=False)
            return
        if code == ErrorCode.BUSY:
            self.sim.count("busy")
        elif code == ErrorCode.DEADLINE:  # requeued elsewhere, CANCEL to the node
            self.sim.count("deadline")
            self.sim.trace("deadline", node.node_id, task_id)
            self.scheduler.timed_out(node.node_id, task_id, text)
            return
        self.scheduler.error(node.node_id, task_id, text or "error",
                             penalty=code != ErrorCode.BUSY)

    def _settle(self, task_id: int) -> None:
        copies = self.outstanding.get(task_id)
        if copies is not None:
            self.outstanding[task_id] = copies - 1

    def _lose(self, node: SimNode, why: str) -> None:
        """The node's session ended: the connection is closed, its tasks requeued."""
        self.epochs[node.index] += 1
        self.sim.node_lost(node, why)
        state = self.scheduler.nodes.get(node.node_id)
        if state is not None:
            for task_id in state.inflight:
                self._settle(task_id)
        self.scheduler.remove_node(node.node_id, f"node {node.node_id} {why}")

    # ------------------------------------------------------------------ periodic
    def tick(self) -> None:
        if not self.is_down():
            self.scheduler.tick()
            self.pump()

    def sweep(self) -> None:
        """Once per heartbeat interval, as the real master's ticker: every session's
        timers (handshake deadline, liveness, task deadlines, the master's HEARTBEAT), then
        commit the journal."""
        if self.is_down():
            return
        now = self.sim.events.now
        nodes = self.sim.nodes
        for i, session in enumerate(self.sessions):
            if session is None or session.closed:
                continue
            events = session.on_timer(now)
            node = nodes[i]
            held = session.operands.take_changes() if session.operands is not None else None
            if held is not None and session.joined:
                self.scheduler.holds(node.node_id, held)
            self._flush(node, session)
            if events:
                self._events(node, events)
        self.journal.flush()
        self.pump()

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
                    node = nodes[a.node_id]
                    session = self.sessions[node.index]
                    if session is not None and session.joined:
                        session.cancel(a.task_id)
                        self._flush(node, session)
                elif type(a) is TaskDone:
                    self._done(a)
                elif type(a) is JobDone:
                    self.job_done = True
                    self.sim.events.halt()  # Simulation.finished() from now on
                    self.sim.trace("job_done", "")
                elif type(a) is JobFailed:
                    self.failed_cause = a.cause
                    if a.cause:  # Simulation.finished() from now on
                        self.sim.events.halt()
                    self.sim.trace("job_failed", "", a.cause)

    def _dispatch(self, node: SimNode, a: Dispatch) -> None:
        session = self.sessions[node.index]
        if session is None or session.state is not _JOINED:
            return  # its removal is already queued
        node_id, task_id, attempt, kernel, args = a
        copies = self.outstanding.get(task_id, 0)
        if copies > 0:
            self.speculative += 1
        elif task_id in self.dispatched:
            self.retries += 1
        self.dispatched.add(task_id)
        sim = self.sim
        sim.trace("dispatch", node_id, (task_id, attempt))
        self.outstanding[task_id] = copies + 1
        scheduler = self.scheduler
        estimate = scheduler.nodes[node_id].inflight.get(task_id)
        session.send_task(task_id, kernel, args, attempt, sim.events.now, estimate)
        self._flush(node, session)
        scheduler.sent(node_id, task_id)

    def _done(self, a: TaskDone) -> None:
        index = self.index_of[a.index]
        once = self.restarts << 32 | index
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
