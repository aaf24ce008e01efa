"""The scheduler: a sans-IO state machine that places tasks on nodes.

Nothing here does I/O or reads the wall clock on its own. The caller reports what
happened (``add_node``, ``remove_node``, ``sent``, ``result``, ``error``, ``tick``,
``submit``, ``cancel_job``) and collects what to do next with ``poll()``: ``Dispatch``
and ``Cancel`` decisions for the links, ``TaskDone``, ``JobDone`` and ``JobFailed``
events for the user. The master drives it with real links and ``time.monotonic``; the
simulator drives it with a virtual clock and thousands of nodes.

Placement. Tasks fall into classes by (kernel, native, version). Each class keeps a heap of its
pending tasks (priority first, then submission order) and a heap of the capable nodes
that have a free credit, keyed by the node's expected finish time for one more task of
that kernel: ``backlog + compute estimate + transfer estimate``. A job that names a
kernel version (a content hash, see firmware/msw_kernel.py) is placed only on nodes whose
HELLO reported that very hash for the kernel; a node with another version is never used.
Node entries are invalidated lazily by a per-node version number, so a dispatch costs
O(log n) heap work per active class and never scans all nodes. Estimates are exponential
moving averages learned online per (node, kernel) for compute time and per node for link
bandwidth.

Waiting for a faster node (``hold_ratio``, off by default; the master sets 0.7): when a
node without a free credit would still finish the next task in less than ``hold_ratio``
times the best free node's expected finish time, the task waits for that node instead of
going to the slow one. Without it every free credit is filled at once (work-conserving).

Credits. A node holds at most ``window`` tasks (the WELCOME window); with a window of
two or more the next task is already on the wire while the current one runs. A task
cancelled on a node (another copy won, its job ended, it passed its deadline) keeps its
credit until the node answers (CANCELLED: ``error(..., penalty=False)``) or is lost: the
node holds the slot until its kernel returns, and a new TASK there would be answered BUSY.

Failure. A task whose node is lost, or whose kernel failed, is requeued (avoiding the
node that failed it) until it has failed ``retries + 1`` times; then its job fails with
the last cause and the job's other tasks are cancelled. Three rules end it sooner: an
error the node calls deterministic (``error(..., fatal=True)``: its arguments are bad)
fails the job at once; a task that took down two nodes (it was the oldest task in flight,
i.e. the running one, on a node that was lost and came back restarted since it was sent,
``uptime``; or it ran past its deadline, ``timed_out``) fails the job instead of taking
down a third; a task lost on the link of
the same node twice counts as a failure there. A node that reported its free heap
(``NodeCaps.heap_free``, ``heap``) gets no task that needs more (``submit(heaps=)``,
else HEAP_FACTOR times its encoded size). A job may have a ``timeout`` (seconds on the
clock): past it the job fails. A result for a task that is
already finished is dropped (and counted): the user sees each task's result once. A node
whose HEARTBEAT reports an empty queue while it still holds tasks sent long before lost
them on the link (a TASK or RESULT frame dropped by CRC): ``reconcile`` requeues those
without a penalty, so a lossy serial link cannot leak credits.

Stragglers. When no task is pending and a running task is well past its expected finish
time, ``tick`` places a second copy on an idle capable node; the first result wins and
the other copy is cancelled.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from microswarm.master.operands import Shared, inline, operands_of
from microswarm.master.states import TERMINAL, TRANSITIONS, TaskState, transition_name

ClassKey = tuple[str, bool, str]  # (kernel, needs native, version hash or "" for any)

# A node needs about this many times a task's encoded size free: the frame, the decoded
# arguments and room for the result. (A submitter that knows better passes `heaps`: the
# master counts a chunked message once plus what a node decodes out of it, master.heap_need.)
HEAP_FACTOR = 2
KILLS_TO_FAIL = 2  # nodes a task may take down (lost while running it, or timed out)
DEFAULT_COMPUTE_S = 0.001
# End game: a copy goes to an idle node only if it would finish there in under 1/MARGIN of
# the time its holder still needs; the holders are scanned at most once per EVERY_S.
ENDGAME_MARGIN = 2.0
ENDGAME_EVERY_S = 0.02
# A full scan looks at every node: with more than this many, the scans are spaced in
# proportion (5,000 nodes: 0.4 s apart), so the scans cost the master a bounded share of
# its time (at 5,000 sessions, one scan each 20 ms took most of the master's CPU)
ENDGAME_SCAN_NODES = 250
ENDGAME_COPIES = 3  # at most this many nodes hold one task
ENDGAME_MIN_S = 0.05  # a copy that could save less is not worth the master's time
# What is cached per membership (class rates, the slow nodes) is recomputed after every
# len(nodes) / MEMBERSHIP_STEPS joins and losses, not after each: a recompute visits every
# node, and a burst of losses at 5,000 sessions (each requeues and dispatches) then cost
# a pass over all of them per loss, blocking the loop for seconds: the other nodes fell
# silent and were lost in turn.
MEMBERSHIP_STEPS = 64
ENDGAME_LATE = 32  # late tasks (alike nodes) copied at most per scan: each searches the heap
DEFAULT_BANDWIDTH = 10e6  # bytes/s, until a node's link is measured
EWMA_ALPHA = 0.3
OPERAND_LOOKAHEAD = 8  # free nodes a task with shared operands compares (transfer saved)


# ----------------------------------------------------------------------------- decisions
class Dispatch(NamedTuple):
    """Send TASK(task_id, kernel, args, attempt) to node_id."""

    node_id: str
    task_id: int
    attempt: int
    kernel: str
    args: Sequence[Any]


class Cancel(NamedTuple):
    """Send CANCEL(task_id) to node_id."""

    node_id: str
    task_id: int


class TaskDone(NamedTuple):
    job_id: int
    index: int
    task_id: int
    value: Any
    node_id: str


class JobDone(NamedTuple):
    job_id: int
    results: list[Any]


class JobFailed(NamedTuple):
    job_id: int
    cause: str


Action = Dispatch | Cancel | TaskDone | JobDone | JobFailed

# A decision built as tuple.__new__(Dispatch, (...)): the same record without the
# namedtuple's Python-level __new__ (several of these per task dispatched)
_new = tuple.__new__
# for the hot paths, where a transition the table allows is made without _move's lookup
_PENDING, _ASSIGNED = TaskState.PENDING, TaskState.ASSIGNED
_RUNNING, _DONE = TaskState.RUNNING, TaskState.DONE


# ----------------------------------------------------------------------------- model
@dataclass(slots=True)
class NodeCaps:
    """What a node told us in HELLO, reduced to what placement needs."""

    kernels: frozenset[str]
    native_kernels: frozenset[str] = frozenset()
    max_message: int = 1 << 30  # largest task payload it accepts (bytes)
    window: int = 4
    kernel_hashes: Mapping[str, str] = field(default_factory=dict)  # kernel -> version
    heap_free: int | None = None  # free heap it reported (HELLO, HEARTBEAT); None: unknown
    # Priors until the node's own figures are learned: compute speed relative to the
    # reference (the unix-port VM on a PC: 1.0; an RP2350 about 1/84, from its board file)
    # and link bytes/s (0: unknown, DEFAULT_BANDWIDTH).
    speed: float = 1.0
    bandwidth: float = 0.0
    operand_cache: int = 0  # bytes it keeps for shared operands (HELLO operand_cache)


@dataclass(slots=True, eq=False)
class NodeState:
    node_id: str
    caps: NodeCaps
    inflight: dict[int, float] = field(default_factory=dict)  # task_id -> estimate (s)
    backlog: float = 0.0  # sum of the in-flight estimates
    version: int = 0
    alive: bool = True
    compute: dict[str, float] = field(default_factory=dict)  # kernel -> EWMA seconds
    bandwidth: float = DEFAULT_BANDWIDTH
    last_result: float = 0.0
    done: int = 0
    failed: int = 0
    busy_s: float = 0.0
    heap_best: int = 0  # the most free heap it ever reported
    operands: set[bytes] = field(default_factory=set)  # shared operands it holds (hashes)
    # the classes it can serve (can_run), as of the scheduler's class count `serves_at`
    serves: list[_Class] = field(default_factory=list)
    serves_at: int = -1

    def free(self) -> int:
        return self.caps.window - len(self.inflight)

    def can_run(self, key: ClassKey) -> bool:
        kernel, native, version = key
        if version and self.caps.kernel_hashes.get(kernel) != version:
            return False
        return kernel in (self.caps.native_kernels if native else self.caps.kernels)


@dataclass(slots=True, eq=False)
class Task:
    task_id: int
    job: Job
    index: int
    kernel: str
    args: Sequence[Any]
    size: int
    state: TaskState = TaskState.PENDING
    failures: int = 0
    attempt: int = 0
    holders: dict[str, float] = field(default_factory=dict)  # node_id -> sent time
    # Nodes that failed it; replaced, never mutated, so the many tasks that never fail
    # share one empty frozenset instead of each holding a set.
    excluded: frozenset[str] = frozenset()
    speculated: bool = False
    cause: str = ""
    kills: tuple[str, ...] = ()  # causes of the nodes it took down (lost running it, timed out)
    lost_on: frozenset[str] = frozenset()  # nodes whose link lost it once
    refs: tuple[Shared, ...] = ()  # its shared operands (sent to a node once)
    heap: int = 0  # free heap a node needs for it (bytes)


@dataclass(slots=True, eq=False)
class Job:
    job_id: int
    priority: int
    key: ClassKey
    tasks: list[Task]
    results: list[Any]
    remaining: int
    state: str = "running"  # running, done, failed, cancelled
    cause: str = ""
    deadline: float | None = None  # clock time past which the job fails


class _Class:
    """Pending tasks and candidate nodes of one (kernel, native) class."""

    __slots__ = ("key", "pending", "nodes", "idle", "everyone", "parked", "rate",
                 "rate_stamp", "speeds", "fastest")

    def __init__(self, key: ClassKey) -> None:
        self.key = key
        self.pending: list[tuple[int, int, int, Task]] = []  # (-priority, job, index, task)
        self.nodes: list[tuple[float, int, int, NodeState]] = []  # free nodes: (eft, seq, version)
        # the entries of nodes that held nothing when entered (a version change, which
        # every change of inflight makes, leaves them stale): the end game's and
        # speculation's idle-node searches pop only these, not every busy node's entry
        self.idle: list[tuple[float, int, int, NodeState]] = []
        self.everyone: list[tuple[float, int, int, NodeState]] = []  # free or full (hold_ratio)
        self.parked: list[Task] = []  # no free node fits them right now
        self.rate = 0.0  # tasks per second all its nodes together finish (cached)
        self.rate_stamp: tuple[tuple[int, int], int] = ((-1, 0), -1)
        # (estimates ascending, tasks per second of the nodes up to each), same cache
        self.speeds: tuple[list[float], list[float]] = ([], [])
        # (membership count, the highest speed prior of its alive capable nodes)
        self.fastest: tuple[int, float] = (-1, 0.0)


# ----------------------------------------------------------------------------- scheduler
class Scheduler:
    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        retries: int = 3,
        speculate_after: float = 3.0,
        speculate_min_s: float = 0.5,
        hold_ratio: float | None = None,
    ) -> None:
        self.clock = clock
        self.hold_ratio = hold_ratio
        self.retries = retries
        self.speculate_after = speculate_after
        self.speculate_min_s = speculate_min_s
        self.nodes: dict[str, NodeState] = {}
        self.jobs: dict[int, Job] = {}
        self.tasks: dict[int, Task] = {}  # tasks not yet finished
        self.duplicates = 0
        self.dispatches = 0
        self._classes: dict[ClassKey, _Class] = {}
        self._kernel_avg: dict[str, float] = {}  # seconds on a speed-1 node (EWMA)
        self._kernel_dev: dict[str, float] = {}  # their mean absolute deviation (EWMA)
        self.copies = 0  # copies of running tasks placed (stragglers, end game)
        self._deadlines: list[tuple[float, int]] = []  # (when, task_id): straggler checks
        self._job_deadlines: list[tuple[float, int]] = []  # (when, job_id): job timeouts
        self._suspects: dict[str, tuple[float, int, str]] = {}  # node -> (sent, task, cause)
        self._out: list[Action] = []
        self._task_ids = itertools.count(1)
        self._job_ids = itertools.count(1)
        self._seq = itertools.count()
        self._pending_count = 0
        self._membership = 0  # bumped when a node joins or leaves (class rates go stale)
        self._learned = 0  # results learned from
        self._fastest = 0.0  # the highest speed prior of any node seen
        self._endgame_next = 0.0  # clock time of the next end-game scan
        self._held_slow = False  # the last _pick passed over slow nodes (untimed kernel)
        # (membership step, slow nodes)
        self._slow: tuple[tuple[int, int], list[NodeState]] = ((-1, 0), [])

    # ------------------------------------------------------------------ outputs
    def poll(self) -> list[Action]:
        """Decisions and events produced since the last poll, in order."""
        out, self._out = self._out, []
        return out

    @property
    def pending_count(self) -> int:
        return self._pending_count

    # ------------------------------------------------------------------ nodes
    def add_node(self, node_id: str, caps: NodeCaps) -> None:
        if node_id in self.nodes and self.nodes[node_id].alive:
            self.remove_node(node_id, f"node {node_id} joined again")
        node = NodeState(node_id, caps, last_result=self.clock(), heap_best=caps.heap_free or 0,
                         bandwidth=caps.bandwidth or DEFAULT_BANDWIDTH)
        self.nodes[node_id] = node
        self._membership += 1
        self._fastest = max(self._fastest, caps.speed)
        self._offer(node)
        self._unpark_all()
        self._dispatch()

    def remove_node(self, node_id: str, cause: str = "", *, blame: bool = True) -> None:
        """The node is gone (lost, left, or closed): requeue what it held. With `blame`
        (not for a node that said BYE) the oldest task it held, the one it was running,
        is its suspect: if the node comes back having restarted since that task was sent
        (``uptime``), the task took it down."""
        node = self.nodes.get(node_id)
        if node is None or not node.alive:
            return
        node.alive = False
        node.version += 1
        self._membership += 1
        cause = cause or f"node {node_id} lost"
        if blame:
            sent = [(t.holders.get(node_id, 0.0), t.task_id) for t in
                    map(self.tasks.get, node.inflight) if t is not None]
            sent = [s for s in sent if s[0] > 0]
            if sent:
                self._suspects[node_id] = (*min(sent), cause)
        for task_id in list(node.inflight):
            self._release(node, task_id)
            task = self.tasks.get(task_id)
            if task is None or task.holders.pop(node_id, None) is None:
                continue  # cancelled there (finished, or requeued elsewhere)
            if not task.holders:
                self._retry(task, cause, node_id)
        self._dispatch()

    def uptime(self, node_id: str, uptime_s: float) -> None:
        """The node (joined again) says how long it has been up (HEARTBEAT uptime_ms). If
        it restarted after its suspect task was sent, that task took it down; a task that
        took down two nodes fails instead of going to a third. A node that only redialled
        (a link glitch) has been up longer and blames nothing."""
        suspect = self._suspects.pop(node_id, None)
        if suspect is None:
            return
        sent_at, task_id, cause = suspect
        task = self.tasks.get(task_id)
        if uptime_s >= self.clock() - sent_at or task is None or task.state in TERMINAL:
            return
        self._strike(task, f"{cause} (restarted while running it)")
        self._dispatch()

    def _strike(self, task: Task, cause: str) -> bool:
        """Count a node the task took down; fail it at the second. True if it failed."""
        task.kills += (cause,)
        if len(task.kills) < KILLS_TO_FAIL:
            return False
        self._fail(task, f"took down {len(task.kills)} nodes: " + "; ".join(task.kills))
        return True

    def heap(self, node_id: str, heap_free: int) -> None:
        """The node reported its free heap (HEARTBEAT): placement respects it."""
        node = self.nodes.get(node_id)
        if node is None or not node.alive or node.caps.heap_free == heap_free:
            return
        grew = node.caps.heap_free is not None and heap_free > node.caps.heap_free
        node.caps.heap_free = heap_free
        node.heap_best = max(node.heap_best, heap_free)
        if grew:
            self._offer(node)
            self._unpark_all()
            self._dispatch()

    # ------------------------------------------------------------------ jobs
    def submit(
        self,
        kernel: str,
        arg_lists: Iterable[Sequence[Any]],
        *,
        priority: int = 0,
        native: bool = False,
        sizes: Sequence[int] | None = None,
        version: str = "",
        timeout: float | None = None,
        heaps: Sequence[int] | None = None,
    ) -> Job:
        """A job: one task per argument list. Higher priority runs first. A `version`
        (kernel content hash) restricts it to nodes that have exactly that version. With
        `timeout` (seconds) the job fails if it is not done by then. `heaps`: the free heap
        a node needs for each task (default: HEAP_FACTOR times its size)."""
        key = (kernel, native, version)
        job = Job(next(self._job_ids), priority, key, [], [], 0)
        if timeout is not None:
            job.deadline = self.clock() + timeout
            heapq.heappush(self._job_deadlines, (job.deadline, job.job_id))
        cls = self._class(key)
        for index, args in enumerate(arg_lists):
            size = sizes[index] if sizes is not None else 0
            task = Task(next(self._task_ids), job, index, kernel, args, size,
                        heap=heaps[index] if heaps is not None else size * HEAP_FACTOR)
            if Shared in map(type, args):
                task.refs = operands_of(args)
            job.tasks.append(task)
            self.tasks[task.task_id] = task
            heapq.heappush(cls.pending, (-priority, job.job_id, index, task))
        job.results = [None] * len(job.tasks)
        job.remaining = len(job.tasks)
        self._pending_count += job.remaining
        self.jobs[job.job_id] = job
        if not job.tasks:
            job.state = "done"
            self._out.append(JobDone(job.job_id, []))
        self._dispatch()
        return job

    def cancel_job(self, job_id: int, cause: str = "cancelled") -> None:
        job = self.jobs.get(job_id)
        if job is None or job.state != "running":
            return
        job.state, job.cause = "cancelled", cause
        self._close_tasks(job, TaskState.CANCELLED)
        self._dispatch()

    # ------------------------------------------------------------------ link reports
    def sent(self, node_id: str, task_id: int) -> None:
        """The TASK frame is on the node's link: the task runs (for the clock too)."""
        task = self.tasks.get(task_id)
        if task is None or node_id not in task.holders:
            return
        now = self.clock()
        task.holders[node_id] = now
        if task.state is _ASSIGNED:
            task.state = _RUNNING  # _move(task, RUNNING): (ASSIGNED, RUNNING) is allowed
        # this task finishes when the node's queue drains (its backlog)
        wait = self.speculate_after * self.nodes[node_id].backlog
        if not wait > self.speculate_min_s:  # max(speculate_min_s, wait)
            wait = self.speculate_min_s
        heapq.heappush(self._deadlines, (now + wait, task_id))

    def result(
        self, node_id: str, task_id: int, value: Any, elapsed_us: int = 0, nbytes: int = 0
    ) -> None:
        """A RESULT with a value arrived from node_id."""
        node = self.nodes.get(node_id)
        task = self.tasks.get(task_id)
        if node is not None and task_id in node.inflight:
            inflight = node.inflight
            if task is not None:  # learn from it: compute time, link bandwidth
                now = self.clock()
                compute = elapsed_us / 1e6
                self._learned += 1
                kernel = task.kernel
                old = node.compute.get(kernel)
                node.compute[kernel] = compute if old is None else old + EWMA_ALPHA * (
                    compute - old)
                reference = compute * node.caps.speed  # on a speed-1 node
                avg = self._kernel_avg.get(kernel)
                self._kernel_avg[kernel] = (
                    reference if avg is None else avg + EWMA_ALPHA * (reference - avg)
                )
                if avg is not None:  # mean absolute deviation, as an EWMA too
                    dev = self._kernel_dev.get(kernel, 0.0)
                    self._kernel_dev[kernel] = dev + EWMA_ALPHA * (abs(reference - avg) - dev)
                sent = task.holders.get(node_id, 0.0)
                last = node.last_result
                service = now - (sent if sent > last else last)
                node.last_result = now
                transfer = service - compute
                size = task.size + nbytes
                if size > 256 and transfer > 1e-5:
                    node.bandwidth += EWMA_ALPHA * (size / transfer - node.bandwidth)
            backlog = node.backlog - inflight.pop(task_id, 0.0)  # _release(), inline
            node.backlog = backlog if inflight and backlog > 0.0 else 0.0
            node.done += 1
            node.busy_s += elapsed_us / 1e6
            self._offer(node)
        if task is None or task.state in TERMINAL:
            self.duplicates += 1
            self._dispatch()
            return
        task.holders.pop(node_id, None)
        if task.state is _PENDING:
            self._pending_count -= 1  # its queue entry is skipped when it comes up
        task.state = _DONE  # _move(task, DONE): allowed from every state but the terminal
        job = task.job
        job.results[task.index] = value
        job.remaining -= 1
        del self.tasks[task_id]  # _forget(task)
        self._out.append(_new(TaskDone, (job.job_id, task.index, task_id, value, node_id)))
        for other in task.holders:
            self._cancel_on(other, task_id)
        task.holders.clear()
        if job.remaining == 0 and job.state == "running":
            job.state = "done"
            self._out.append(JobDone(job.job_id, job.results))
        self._dispatch()

    def error(self, node_id: str, task_id: int, cause: str, *, penalty: bool = True,
              fatal: bool = False) -> None:
        """A RESULT with an error (or an ERROR naming the task) arrived from node_id.

        ``penalty=False`` (the node was busy) requeues without counting a failure;
        ``fatal=True`` (its arguments are bad: no node can run it) fails the job at once.
        """
        node = self.nodes.get(node_id)
        if node is not None and task_id in node.inflight:
            self._release(node, task_id)
            if penalty:
                node.failed += 1
            self._offer(node)
        self._task_error(node_id, task_id, cause, penalty, fatal)

    def _task_error(self, node_id: str, task_id: int, cause: str, penalty: bool,
                    fatal: bool) -> None:
        task = self.tasks.get(task_id)
        if task is None or task.state in TERMINAL or node_id not in task.holders:
            self._dispatch()
            return
        del task.holders[node_id]
        if fatal:
            self._fail(task, f"bad arguments: {cause} (on {node_id})")
        elif not task.holders:
            if penalty:
                self._retry(task, f"{cause} (on {node_id})", node_id)
            else:
                self._requeue(task)
        self._dispatch()

    def reconcile(self, node_id: str, sent_before: float) -> list[int]:
        """The node reports an empty queue: every task it holds that was sent before
        `sent_before` was lost on the link (a dropped TASK or RESULT frame). Requeue those
        without a penalty and return their ids; a late RESULT is still dropped by task id."""
        node = self.nodes.get(node_id)
        if node is None or not node.inflight:
            return []
        lost = []
        for task_id in list(node.inflight):
            task = self.tasks.get(task_id)
            sent = task.holders.get(node_id) if task is not None else None
            if sent is not None and 0 < sent < sent_before:
                lost.append(task_id)
                self.lost(node_id, task_id)
        return lost

    def lost(self, node_id: str, task_id: int) -> None:
        """One task the node no longer holds (the master's session reconciled the node's
        HEARTBEAT queue): requeued without a penalty."""
        task = self.tasks.get(task_id)
        if task is None:
            self.error(node_id, task_id, "frame lost on the link", penalty=False)
            return
        # Lost twice on one node is no accident (a TASK the node cannot hold is
        # answered by an ERROR without its id): a failure there, not a free retry.
        again = node_id in task.lost_on
        task.lost_on = task.lost_on | {node_id}
        self.error(node_id, task_id, "lost twice on the link: the node may not have "
                   "the heap for it" if again else "frame lost on the link",
                   penalty=again)

    def timed_out(self, node_id: str, task_id: int, cause: str = "") -> None:
        """The task ran on node_id past its deadline: requeue it elsewhere (the caller
        sends CANCEL); the second node it times out on fails the job."""
        task = self.tasks.get(task_id)
        if task is None or task.state in TERMINAL or node_id not in task.holders:
            return
        cause = cause or f"ran past its deadline on {node_id}"
        if not self._strike(task, cause):
            self._cancel_on(node_id, task_id)  # its credit stays taken until it answers
            self.nodes[node_id].failed += 1
            self._task_error(node_id, task_id, cause, True, False)
        self._dispatch()

    def tick(self) -> None:
        """Look for stragglers and jobs past their timeout; call it now and then (every
        100 ms or so)."""
        now = self.clock()
        while self._job_deadlines and self._job_deadlines[0][0] <= now:
            _, job_id = heapq.heappop(self._job_deadlines)
            job = self.jobs.get(job_id)
            if job is not None and job.state == "running":
                total = len(job.tasks)
                self._fail_job(job, f"timed out: {total - job.remaining} of {total} tasks "
                                    "done by the job's timeout" + self._heap_wait(job))
        deadlines = self._deadlines
        while deadlines and deadlines[0][0] <= now:
            _, task_id = heapq.heappop(deadlines)
            task = self.tasks.get(task_id)
            if task is None or task.state is not TaskState.RUNNING or task.speculated:
                continue
            self._overdue(task, now)
            if self._pending_count or not self._speculate(task):
                heapq.heappush(deadlines, (now + self.speculate_min_s, task_id))
                break
        self._dispatch()

    # ------------------------------------------------------------------ queries
    def node_stats(self) -> dict[str, dict[str, Any]]:
        return {
            n.node_id: {
                "alive": n.alive,
                "inflight": len(n.inflight),
                "done": n.done,
                "failed": n.failed,
                "busy_s": round(n.busy_s, 6),
                "compute_ms": {k: round(v * 1e3, 3) for k, v in n.compute.items()},
                "bandwidth": round(n.bandwidth),
            }
            for n in self.nodes.values()
        }

    # ------------------------------------------------------------------ internals
    def _class(self, key: ClassKey) -> _Class:
        cls = self._classes.get(key)
        if cls is None:
            cls = self._classes[key] = _Class(key)
            for node in self.nodes.values():
                if node.alive and node.can_run(key):
                    self._push_node(cls, node)
        return cls

    def _estimate(self, node: NodeState, kernel: str, size: int) -> float:
        compute = node.compute.get(kernel)
        if compute is None:  # the kernel's time on a reference node, scaled by the prior
            compute = self._kernel_avg.get(kernel, DEFAULT_COMPUTE_S) / node.caps.speed
        return compute + size / node.bandwidth

    def _overdue(self, task: Task, now: float) -> None:
        """A running task is past its straggler deadline: its node is slower than learned
        (it slowed down, or it is stuck); count the time it has taken so far, shared with
        the tasks ahead of it, so that placement stops feeding it before a result says so."""
        for node_id, sent in task.holders.items():
            node = self.nodes.get(node_id)
            if node is None or not node.alive or not sent:
                continue
            taken = (now - sent) / max(1, len(node.inflight))
            if taken > node.compute.get(task.kernel, 0.0):
                node.compute[task.kernel] = taken
                self._offer(node)

    def _membership_step(self) -> tuple[int, int]:
        """Joins and losses so far, in steps of len(nodes) / MEMBERSHIP_STEPS (of 1 below
        that many nodes), and the step."""
        step = max(1, len(self.nodes) // MEMBERSHIP_STEPS)
        return self._membership // step, step

    def _class_rate(self, cls: _Class, below: float | None = None) -> float:
        """Tasks per second the class's alive nodes finish together (1 / estimate each),
        or only those whose estimate is below `below`; recomputed after every
        len(nodes) / MEMBERSHIP_STEPS joins and losses, on the first results, and then after
        every len(nodes) / 8 results."""
        learned = self._learned
        stamp = (self._membership_step(),
                 learned if learned < 16 else learned // max(1, len(self.nodes) // 8))
        if cls.rate_stamp != stamp:
            kernel = cls.key[0]
            estimates = sorted(max(self._estimate(n, kernel, 0), 1e-9)
                               for n in self.nodes.values() if n.alive and n.can_run(cls.key))
            cumulative, total = [], 0.0
            for e in estimates:
                total += 1.0 / e
                cumulative.append(total)
            cls.speeds = (estimates, cumulative)
            cls.rate = total
            cls.rate_stamp = stamp
        if below is None:
            return cls.rate
        estimates, cumulative = cls.speeds
        n = bisect.bisect_left(estimates, below)
        return cumulative[n - 1] if n else 0.0

    def _tail(self, cls: _Class, eft: float, estimate: float) -> bool:
        """Whether a node that would finish the task at `eft` (`estimate` for one task
        there) might finish after the rest of the class's queue is done by the nodes
        faster than it (then one of them should take it). The estimate is stretched by how
        much the kernel's task times vary (a Mandelbrot tile's by 100x, a matmul block's
        not at all). Counting only the faster nodes: the slower ones get no more of the
        queue either, so counting them drains it on paper sooner than it will be."""
        rate = self._class_rate(cls, estimate)
        if rate <= 0:
            return False  # no faster node: nothing to wait for
        drain = len(cls.pending) / rate
        best = cls.everyone[0][0] if cls.everyone else 0.0
        kernel = cls.key[0]
        avg = self._kernel_avg.get(kernel)
        spread = min(2.0, 2 * self._kernel_dev.get(kernel, 0.0) / avg) if avg else 0.0
        return (1 + spread) * eft > drain + best

    def _entry(self, cls: _Class, node: NodeState) -> tuple[float, int, int, NodeState]:
        """The node's heap entry for the class: (expected finish time of one more task,
        seq, version, node)."""
        kernel = cls.key[0]
        compute = node.compute.get(kernel)  # self._estimate(node, kernel, 0), inline
        if compute is None:
            compute = self._kernel_avg.get(kernel, DEFAULT_COMPUTE_S) / node.caps.speed
        return (node.backlog + compute, next(self._seq), node.version, node)

    def _push_node(self, cls: _Class, node: NodeState) -> None:
        entry = self._entry(cls, node)
        if self.hold_ratio is not None:  # only _better_busy_node reads it
            heapq.heappush(cls.everyone, entry)
        inflight = len(node.inflight)
        if inflight < node.caps.window:
            heapq.heappush(cls.nodes, entry)
            if not inflight:
                heapq.heappush(cls.idle, entry)
        limit = 4 * len(self.nodes) + 64
        if len(cls.nodes) > limit or len(cls.idle) > limit or len(cls.everyone) > limit:
            self._compact(cls)

    @staticmethod
    def _compact(cls: _Class) -> None:
        """Drop the stale entries of a class's node heaps (one outgrew its bound)."""
        cls.nodes = [e for e in cls.nodes if e[2] == e[3].version]
        cls.idle = [e for e in cls.idle if e[2] == e[3].version]
        cls.everyone = [e for e in cls.everyone if e[2] == e[3].version]
        heapq.heapify(cls.nodes)
        heapq.heapify(cls.idle)
        heapq.heapify(cls.everyone)

    def _offer(self, node: NodeState) -> None:
        """The node's load changed: (re)enter it in every class it can serve."""
        node.version += 1
        if not node.alive:
            return
        classes = node.serves
        if node.serves_at != len(self._classes):  # classes are added, never removed
            classes = node.serves = [c for c in self._classes.values() if node.can_run(c.key)]
            node.serves_at = len(self._classes)
        inflight = len(node.inflight)
        free = inflight < node.caps.window
        if not free and self.hold_ratio is None:
            # a full node enters no heap (its old entries are stale by the version): no
            # entry to make. (The entries' seq numbers only order alike estimates, and
            # those made stay in the order they were made.)
            return
        for cls in classes:
            self._push_node(cls, node)
            if free and cls.parked:
                self._unpark(cls)

    def _unpark(self, cls: _Class) -> None:
        for task in cls.parked:
            heapq.heappush(cls.pending, (-task.job.priority, task.job.job_id, task.index, task))
        cls.parked.clear()

    def _unpark_all(self) -> None:
        for cls in self._classes.values():
            if cls.parked:
                self._unpark(cls)

    def _pick(
        self, cls: _Class, task: Task, idle_only: bool = False
    ) -> tuple[float, NodeState] | None:
        """Pop the best valid free node for task from the class heap (O(log n) amortised);
        its expected finish time comes with it. `idle_only`: from the idle nodes' heap (a
        search of the free-node heap would pop and push back every busy node's entry:
        with thousands of nodes, each holding a task at a job's end, 32 such searches per
        end-game scan blocked the master's loop for seconds)."""
        heap = cls.idle if idle_only else cls.nodes
        aside = []
        chosen = None
        # A kernel nobody has timed yet: a node whose prior says it is much slower than the
        # fastest capable one gets no task while tasks are out (on the faster nodes, which
        # the heap offers first): their first result says how long the kernel takes, and
        # the hold rule (_tail) then decides with it. Placed on the untimed default instead,
        # each slow node took one task at once, and one such task could set the job's end:
        # mixed-vm's RP2040 boards on UART held tiles for 24-73 ms that the VM boards did
        # in under a millisecond (docs/master.md). With no task out nothing would time the
        # kernel, so then the slow nodes take tasks.
        probe = (self.hold_ratio is not None and task.kernel not in self._kernel_avg
                 and len(self.tasks) > self._pending_count)
        slow = self._class_fastest(cls) * self.hold_ratio if probe and self.hold_ratio else 0.0
        self._held_slow = False
        while heap:
            entry = heapq.heappop(heap)
            node = entry[3]
            if (entry[2] != node.version or not node.alive
                    or len(node.inflight) >= node.caps.window):
                continue  # stale: a fresher entry exists if the node is still eligible
            if node.caps.speed < slow and self._fits(task, node):
                self._held_slow = True
                aside.append(entry)
                continue
            if not self._fits(task, node) or (idle_only and node.inflight):
                aside.append(entry)
                continue
            chosen = (entry[0], node)
            if task.refs:
                chosen = self._nearer_operands(heap, task, entry, aside, idle_only, slow)
            break
        for entry in aside:
            heapq.heappush(heap, entry)
        return chosen

    # ---- shared operands (master/operands.py): a node that holds them saves their transfer
    def _operand_cost(self, task: Task, node: NodeState) -> float:
        """Seconds to send the task's shared operands that the node does not hold."""
        cache = node.caps.operand_cache
        missing = sum(s.size for s in task.refs if s.size > cache or s.hash not in node.operands)
        return missing / node.bandwidth

    def _nearer_operands(self, heap: list, task: Task, first: tuple, aside: list,
                         idle_only: bool, slow: float) -> tuple[float, NodeState]:
        """Among the next few free nodes after `first` (the soonest), the one that would
        finish the task first once the operands it lacks are counted; its eft with them."""
        best, best_eft = first, first[0] + self._operand_cost(task, first[3])
        looked = 0
        while heap and looked < OPERAND_LOOKAHEAD and best_eft > heap[0][0]:
            entry = heapq.heappop(heap)
            node = entry[3]
            if entry[2] != node.version or not node.alive or node.free() <= 0:
                continue
            looked += 1
            aside.append(entry)
            if (not self._fits(task, node) or (idle_only and node.inflight)
                    or node.caps.speed < slow):
                continue
            eft = entry[0] + self._operand_cost(task, node)
            if eft < best_eft:
                best, best_eft = entry, eft
        if best is not first:
            aside.remove(best)
            aside.append(first)
        return best_eft, best[3]

    def holds(self, node_id: str, hashes: Iterable[bytes]) -> None:
        """What the node's operand cache holds (its session's view: PUTs, HEARTBEATs)."""
        node = self.nodes.get(node_id)
        if node is not None and node.alive:
            node.operands = set(hashes)

    def inline_operands(self, task_id: int) -> None:
        """The task's shared operands go inside its TASK from now on (a node answered
        MISSING_OPERAND: the next try cannot miss)."""
        task = self.tasks.get(task_id)
        if task is not None and task.refs:
            task.size += sum(s.size for s in task.refs)
            task.heap += HEAP_FACTOR * sum(s.size for s in task.refs)
            task.args, task.refs = inline(task.args), ()

    @staticmethod
    def _fits(task: Task, node: NodeState) -> bool:
        heap = node.caps.heap_free
        return (
            node.node_id not in task.excluded
            and node.node_id not in task.holders
            and task.size <= node.caps.max_message
            and (heap is None or task.heap <= heap)
        )

    def _heap_wait(self, job: Job) -> str:
        """Why a job's tasks still waited at its timeout, when the cause is free heap: every
        node that can run them reported less than they need (more than it reported once,
        so they waited rather than failed). '' otherwise."""
        count = need = most = 0
        for cls in self._classes.values():
            waiting = [t for t in (*cls.parked, *(entry[3] for entry in cls.pending))
                       if t.job is job and t.state is _PENDING]
            frees = [n.caps.heap_free for n in self.nodes.values()
                     if n.alive and n.can_run(cls.key) and n.caps.heap_free is not None]
            if not waiting or not frees:
                continue
            short = [t.heap for t in waiting if t.heap > max(frees)]
            if short:
                count += len(short)
                need = max(need, *short)
                most = max(most, *frees)
        if not count:
            return ""
        return (f"; {count} waited for free heap: they need up to about {need} bytes and the "
                f"nodes that can run them report at most {most} now (split the input, or "
                "give submit(heaps=) if that estimate is too high)")

    def _heap_too_small(self, cls: _Class, task: Task) -> int | None:
        """The most free heap any capable node ever reported, if that is too small for the
        task on every one of them (it would wait for ever); None otherwise."""
        need = task.heap
        best = None
        for node in self.nodes.values():
            if not node.alive or not node.can_run(cls.key):
                continue
            if node.caps.heap_free is None or node.heap_best >= need:
                return None
            best = max(best or 0, node.heap_best)
        return best

    def _better_busy_node(self, cls: _Class, task: Task, eft: float) -> bool:
        """Whether a node with no free credit would still finish the task sooner, by the
        margin ``hold_ratio``, than the free node at hand (then the task waits for that
        node's next credit)."""
        everyone = cls.everyone
        while everyone:
            best_eft, _, version, node = everyone[0]
            if version == node.version and node.alive:
                return (node.free() <= 0 and best_eft < eft * self.hold_ratio
                        and self._fits(task, node))
            heapq.heappop(everyone)
        return False

    def _dispatch(self) -> None:
        if len(self._classes) == 1:  # one kernel (most clusters): no list to build or sort
            for c in self._classes.values():
                classes = [c] if c.pending and c.nodes else []
        else:
            classes = [c for c in self._classes.values() if c.pending and c.nodes]
            if len(classes) > 1:
                classes.sort(key=lambda c: c.pending[0][:2])  # highest priority, oldest job
        for cls in classes:
            pending = cls.pending
            while pending and cls.nodes:
                entry = heapq.heappop(pending)
                task = entry[3]
                if task.state is not _PENDING:
                    continue  # cancelled or failed while queued
                picked = self._pick(cls, task)
                if picked is None and self._held_slow:
                    heapq.heappush(pending, entry)  # for a faster node (untimed kernel)
                    break
                if picked is None:
                    best = self._heap_too_small(cls, task)
                    if best is not None:
                        self._fail(task, f"needs about {task.heap} bytes of free "
                                         f"heap; the nodes that can run it had at most {best}")
                        continue
                    cls.parked.append(task)
                    continue
                eft, node = picked
                if (self.hold_ratio is not None and self._better_busy_node(cls, task, eft)
                        and self._tail(cls, eft, self._estimate(node, task.kernel, 0))):
                    heapq.heappush(pending, entry)
                    # back on the free-node heap _pick took it from. Entered everywhere
                    # (_push_node), each hold left one more live entry in the full and
                    # idle heaps: in mixed-vm up to 94 for one node, and the heaps were
                    # compacted on 275-416 of about 910 pushes
                    heapq.heappush(cls.nodes, self._entry(cls, node))
                    break
                self._pending_count -= 1  # _assign(task, node), inline
                task.state = _ASSIGNED  # _move: (PENDING, ASSIGNED) is allowed
                self._place(task, node)
        if self.hold_ratio is not None and not self._pending_count and self.tasks:
            self._endgame()

    def _endgame(self) -> None:
        """Nothing waits: free credits take copies of the running tasks whose holders will
        finish them last, where a free node would finish them in under 1/ENDGAME_MARGIN of
        that time (the first result wins, the other copy is cancelled), and either is a
        board ENDGAME_MARGIN times faster than the holder's, or is idle and the task
        overdue by `tick`'s rule. So a slow node holding one of a job's last tasks does
        not set the job's end however well the rest was placed, without waiting for it to
        be late.

        What a holder still needs: for the task it runs, the estimate less the time it has
        run, or that time again once past the estimate (a task that has run for t is
        expected to need about t more); for a task queued behind others, theirs plus its
        own estimate."""
        now = self.clock()
        if now < self._endgame_next:
            # between full scans, only the nodes ENDGAME_MARGIN slower than the fastest
            # (few; none on a cluster of alike nodes), so that a fast node going idle takes
            # over their tasks at once rather than at the next scan
            nodes = self._slow_nodes()
            if not nodes:
                return
        else:
            self._endgame_next = now + ENDGAME_EVERY_S * max(
                1.0, len(self.nodes) / ENDGAME_SCAN_NODES)
            nodes = list(self.nodes.values())
        tops = {key: e for key, cls in self._classes.items()
                if (e := self._peek_free(cls)) is not None}
        if not tops:
            return  # no free credit anywhere
        floor = min(e[0] for e in tops.values()) * ENDGAME_MARGIN
        slow = max(e[3].caps.speed for e in tops.values()) / ENDGAME_MARGIN
        held: dict[int, tuple[float, list[NodeState], bool, bool]] = {}
        for node in nodes:
            inflight = node.inflight
            if not inflight or not node.alive:
                continue
            quick = node.caps.speed <= slow  # a free node is that much faster
            ahead = 0.0
            late = False
            order = (sorted(inflight, key=lambda t, n=node.node_id: self._sent(t, n))
                     if len(inflight) > 1 else inflight)
            for i, task_id in enumerate(order):
                estimate = inflight[task_id]
                if i == 0:
                    sent = self._sent(task_id, node.node_id)
                    ran = now - max(sent, node.last_result) if sent else 0.0
                    ahead = max(estimate - ran, ran)
                    late = ran > max(self.speculate_min_s, self.speculate_after * estimate)
                else:
                    ahead += estimate
                if ahead < ENDGAME_MIN_S or ahead <= floor or not (quick or late):
                    continue  # a copy could save little, or nobody would run it
                known = held.get(task_id)
                if known is None:
                    held[task_id] = (ahead, [node], late, quick)
                else:  # copies elsewhere: the soonest holder counts
                    held[task_id] = (min(known[0], ahead), [*known[1], node], known[2] and late,
                                     known[3] and quick)
        candidates = sorted((-v[0], task_id) for task_id, v in held.items()
                            if len(v[1]) < ENDGAME_COPIES)
        any_quick = any(v[3] for v in held.values())
        no_idle: set[ClassKey] = set()
        late_left = ENDGAME_LATE  # idle-node searches this scan may cost
        for _, task_id in candidates:
            if not any_quick and (late_left <= 0 or no_idle.issuperset(tops)):
                break  # only late tasks, and no search left that could place one
            task = self.tasks.get(task_id)
            if task is None or task.state is not TaskState.RUNNING:
                continue
            remaining, holders, late, _ = held[task_id]
            key = task.job.key
            cls = self._classes[key]
            top = self._peek_free(cls)
            if top is None or top[0] * ENDGAME_MARGIN >= remaining:
                continue  # (the rest of this class's candidates need even less)
            node = top[3]
            # faster by its board (the prior: learned times of small tasks are too noisy
            # to tell nodes of one kind apart) and by what it has shown so far
            mine = self._estimate(node, task.kernel, 0)
            if (self._fits(task, node) and all(
                    node.caps.speed >= ENDGAME_MARGIN * h.caps.speed
                    and mine < self._estimate(h, task.kernel, 0) for h in holders)):
                heapq.heappop(cls.nodes)  # that top entry; _place enters the node again
            elif late and key not in no_idle and late_left > 0:
                late_left -= 1
                picked = self._pick(cls, task, idle_only=True)
                if picked is None:
                    no_idle.add(key)
                    continue
                node = picked[1]
                if picked[0] * ENDGAME_MARGIN >= remaining:
                    # the soonest idle node is too slow for this copy, and so for the rest
                    # of the class's candidates (they need less); back on the idle heap it
                    # came from, its other entries still stand
                    heapq.heappush(cls.idle, self._entry(cls, node))
                    no_idle.add(key)
                    continue
            else:
                continue
            task.speculated = True
            self.copies += 1
            self._place(task, node)

    def _class_fastest(self, cls: _Class) -> float:
        """The highest speed prior among the class's alive capable nodes (recomputed after
        each join or loss, and only asked while its kernel is untimed)."""
        if cls.fastest[0] != self._membership:
            cls.fastest = (self._membership, max(
                (n.caps.speed for n in self.nodes.values() if n.alive and n.can_run(cls.key)),
                default=0.0))
        return cls.fastest[1]

    def _slow_nodes(self) -> list[NodeState]:
        """Alive nodes whose board is ENDGAME_MARGIN times slower than the fastest seen
        (cached until a node comes or goes)."""
        step = self._membership_step()
        if self._slow[0] != step:
            limit = self._fastest / ENDGAME_MARGIN
            self._slow = (step, [n for n in self.nodes.values()
                                             if n.alive and n.caps.speed <= limit])
        return self._slow[1]

    @staticmethod
    def _peek_free(cls: _Class) -> tuple | None:
        """The class's best valid free-node entry, left on its heap (stale ones dropped)."""
        heap = cls.nodes
        while heap:
            entry = heap[0]
            node = entry[3]
            if entry[2] == node.version and node.alive and node.free() > 0:
                return entry
            heapq.heappop(heap)
        return None

    def _sent(self, task_id: int, node_id: str) -> float:
        task = self.tasks.get(task_id)
        return task.holders.get(node_id, 0.0) if task is not None else 0.0

    def _assign(self, task: Task, node: NodeState) -> None:
        self._pending_count -= 1
        self._move(task, TaskState.ASSIGNED)
        self._place(task, node)

    def _place(self, task: Task, node: NodeState) -> None:
        kernel = task.kernel
        compute = node.compute.get(kernel)  # self._estimate(node, kernel, task.size), inline
        if compute is None:
            compute = self._kernel_avg.get(kernel, DEFAULT_COMPUTE_S) / node.caps.speed
        estimate = compute + task.size / node.bandwidth
        if task.refs:
            estimate += self._operand_cost(task, node)
            cache = node.caps.operand_cache
            node.operands.update(s.hash for s in task.refs if s.size <= cache)
        node.inflight[task.task_id] = estimate
        node.backlog += estimate
        task.holders[node.node_id] = 0.0
        self.dispatches += 1
        self._out.append(_new(Dispatch, (node.node_id, task.task_id, task.attempt, task.kernel,
                                         task.args)))
        task.attempt += 1
        self._offer(node)

    def _speculate(self, task: Task) -> bool:
        cls = self._classes[task.job.key]
        picked = self._pick(cls, task, idle_only=True)
        if picked is None:
            return False
        node = picked[1]
        task.speculated = True
        self.copies += 1
        self._move(task, TaskState.RUNNING)
        self._place(task, node)
        return True

    def _release(self, node: NodeState, task_id: int) -> None:
        estimate = node.inflight.pop(task_id, 0.0)
        node.backlog = max(0.0, node.backlog - estimate) if node.inflight else 0.0

    def _move(self, task: Task, new: TaskState) -> None:
        if (task.state, new) not in TRANSITIONS:
            transition_name(task.state, new)  # raises: a transition the table forbids
        task.state = new

    def _requeue(self, task: Task) -> None:
        self._move(task, TaskState.PENDING)
        self._pending_count += 1
        cls = self._classes[task.job.key]
        heapq.heappush(cls.pending, (-task.job.priority, task.job.job_id, task.index, task))

    def _retry(self, task: Task, cause: str, node_id: str) -> None:
        task.failures += 1
        task.cause = cause
        task.excluded = task.excluded | {node_id}
        key = task.job.key
        if not any(
            n.alive and n.can_run(key) and n.node_id not in task.excluded
            for n in self.nodes.values()
        ):
            task.excluded = frozenset()  # every capable node failed it once: try them again
        if task.failures <= self.retries:
            self._requeue(task)
            return
        self._fail(task, f"failed {task.failures} times: {cause}")

    def _fail(self, task: Task, why: str) -> None:
        """The task cannot succeed: it fails, and its job with it."""
        if task.state is TaskState.PENDING:
            self._pending_count -= 1  # its queue entry is skipped when it comes up
        self._move(task, TaskState.FAILED)
        for node_id in task.holders:
            self._cancel_on(node_id, task.task_id)
        task.holders.clear()
        self._forget(task)
        self._fail_job(task.job, f"task {task.index} ({task.kernel}) {why}")

    def _fail_job(self, job: Job, cause: str) -> None:
        job.state, job.cause = "failed", cause
        self._close_tasks(job, TaskState.CANCELLED)
        self._out.append(JobFailed(job.job_id, job.cause))

    def _close_tasks(self, job: Job, state: TaskState) -> None:
        for task in job.tasks:
            if task.state in TERMINAL:
                continue
            if task.state is TaskState.PENDING:
                self._pending_count -= 1
            self._move(task, state)
            for node_id in task.holders:
                self._cancel_on(node_id, task.task_id)
            task.holders.clear()
            self._forget(task)

    def _cancel_on(self, node_id: str, task_id: int) -> None:
        """CANCEL to the node. The task keeps its slot there (a running kernel finishes
        first), so its credit stays taken until the node answers (CANCELLED, or the
        result that crossed the CANCEL: ``error``/``result``) or is lost."""
        node = self.nodes.get(node_id)
        if node is None or not node.alive:
            return
        self._out.append(Cancel(node_id, task_id))

    def _forget(self, task: Task) -> None:
        self.tasks.pop(task.task_id, None)
