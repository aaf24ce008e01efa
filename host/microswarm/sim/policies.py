"""Baseline placement policies, to measure the scheduler's placement against.

Each baseline is the real `Scheduler` (same task states, credits, retries, loss handling)
with its placement replaced: a task that becomes pending is put on one node's own queue
by the policy, and a node with a free credit takes the head of its queue.

- ``round-robin``: task k of the queue goes to the next node in turn (static, cyclic).
- ``random``: each task to a node drawn uniformly at random (seeded; static).
- ``work-stealing``: Dask-style. A task goes to the node with the least expected
  occupancy (queued tasks times that node's learned task time, as Dask's
  ``worker_objective``), and a node with a free credit and an empty queue steals the
  last queued task of the node whose queue would take longest to drain, when that wait
  is longer than the task would take on the thief.
- ``heft``: HEFT (Topcuoglu et al., 2002) for a job whose tasks are all known up front:
  tasks in decreasing order of their mean cost over the nodes, each on the node with the
  earliest estimated finish time, the node's link and its CPU booked separately. It is
  given the true cost of every task on every node (an oracle, `CostModel`), which no
  online scheduler has.

None of them speculates (a static plan has no straggler rule; Dask has none either). A
lost node's queued and running tasks are placed again by the same policy; when a node
joins, the static policies (round-robin, random, HEFT) place every queued task again over
the nodes present, as a static partitioner that waited for every node would have.
``ours`` is the unchanged `Scheduler`.
"""

from __future__ import annotations

import heapq
import random
from collections import deque
from collections.abc import Callable
from typing import Any

from microswarm.master.scheduler import NodeCaps, NodeState, Scheduler, Task
from microswarm.master.states import TaskState

# node_id, task -> (seconds on the link to the node, seconds of compute on the node)
CostModel = Callable[[str, Task], tuple[float, float]]


class QueuedPolicy(Scheduler):
    """A scheduler whose tasks wait on per-node queues chosen by `choose`."""

    name = ""
    rebalance_on_join = True

    def __init__(self, *, seed: int = 0, cost: CostModel | None = None, **kw: Any) -> None:
        kw.pop("hold_ratio", None)
        super().__init__(**kw)
        self.rng = random.Random(f"{seed}/{self.name}")
        self.cost = cost
        self.queues: dict[str, deque[Task]] = {}
        self.unplaced: list[Task] = []  # no alive capable node when they became pending

    # ------------------------------------------------------------------ policy
    def choose(self, tasks: list[Task],
               nodes: list[NodeState]) -> list[tuple[Task, NodeState]]:
        """A node for each task, in the order they join the nodes' queues (nodes is
        non-empty, all alive and capable)."""
        raise NotImplementedError

    def steal(self, thief: NodeState) -> Task | None:
        return None

    # ------------------------------------------------------------------ overrides
    def _speculate(self, task: Task) -> bool:
        return False  # no speculative copies

    def add_node(self, node_id: str, caps: NodeCaps) -> None:
        if self.rebalance_on_join:
            queued = [t for q in self.queues.values() for t in q]
            for q in self.queues.values():
                q.clear()
            self.unplaced.extend(queued)
        self.queues.setdefault(node_id, deque())
        super().add_node(node_id, caps)

    def remove_node(self, node_id: str, cause: str = "", **kw: Any) -> None:
        queued = self.queues.pop(node_id, None)
        if queued:
            self.unplaced.extend(queued)
        super().remove_node(node_id, cause, **kw)

    def _dispatch(self) -> None:
        for cls in self._classes.values():
            pending = cls.pending
            while pending:
                task = heapq.heappop(pending)[3]
                if task.state is TaskState.PENDING:
                    self.unplaced.append(task)
            if cls.parked:
                self.unplaced.extend(cls.parked)
                cls.parked.clear()
        if self.unplaced:
            self._place_all()
        for node in self.nodes.values():
            while node.alive and node.free() > 0:
                task = self._next_for(node)
                if task is None:
                    break
                self._assign(task, node)

    # ------------------------------------------------------------------ internals
    def _place_all(self) -> None:
        todo = sorted((t for t in self.unplaced if t.state is TaskState.PENDING),
                      key=lambda t: (-t.job.priority, t.job.job_id, t.index))
        self.unplaced = []
        by_key: dict[Any, list[Task]] = {}
        for task in todo:
            by_key.setdefault(task.job.key, []).append(task)
        for key, tasks in by_key.items():
            nodes = [n for n in self.nodes.values() if n.alive and n.can_run(key)]
            if not nodes:
                self.unplaced.extend(tasks)
                continue
            for task, node in self.choose(tasks, nodes):
                self.queues[node.node_id].append(task)

    def _next_for(self, node: NodeState) -> Task | None:
        queue = self.queues.get(node.node_id)
        while queue:
            task = queue.popleft()
            if task.state is not TaskState.PENDING:
                continue
            if self._fits(task, node):
                return task
            self.unplaced.append(task)  # it failed here before: placed again elsewhere
        if self.unplaced:
            self._place_all()
            if queue:
                return self._next_for(node)
        return self.steal(node)

    def _expected(self, node: NodeState, task: Task) -> float:
        return self._estimate(node, task.kernel, task.size)


class RoundRobin(QueuedPolicy):
    name = "round-robin"

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.turn = 0

    def choose(self, tasks: list[Task],
               nodes: list[NodeState]) -> list[tuple[Task, NodeState]]:
        out = []
        for task in tasks:
            out.append((task, nodes[self.turn % len(nodes)]))
            self.turn += 1
        return out


class RandomPlacement(QueuedPolicy):
    name = "random"

    def choose(self, tasks: list[Task],
               nodes: list[NodeState]) -> list[tuple[Task, NodeState]]:
        return [(task, self.rng.choice(nodes)) for task in tasks]


class WorkStealing(QueuedPolicy):
    name = "work-stealing"
    rebalance_on_join = False  # stealing rebalances

    def choose(self, tasks: list[Task],
               nodes: list[NodeState]) -> list[tuple[Task, NodeState]]:
        waiting = {n.node_id: len(self.queues[n.node_id]) + len(n.inflight) for n in nodes}
        out = []
        for task in tasks:
            best = min(nodes, key=lambda n: (waiting[n.node_id] + 1)
                       * self._expected(n, task) / n.caps.window)
            waiting[best.node_id] += 1
            out.append((task, best))
        return out

    def steal(self, thief: NodeState) -> Task | None:
        victim = None
        worst = 0.0
        for node_id, queue in self.queues.items():
            if not queue or node_id == thief.node_id:
                continue
            node = self.nodes[node_id]
            wait = len(queue) * self._expected(node, queue[-1])
            if wait > worst:
                victim, worst = queue, wait
        while victim:
            task = victim[-1]
            if task.state is not TaskState.PENDING:
                victim.pop()
                continue
            if worst <= self._expected(thief, task) or not self._fits(task, thief):
                return None
            victim.pop()
            return task
        return None


class Heft(QueuedPolicy):
    name = "heft"

    def choose(self, tasks: list[Task],
               nodes: list[NodeState]) -> list[tuple[Task, NodeState]]:
        cost = self.cost
        if cost is None:
            raise RuntimeError("HEFT needs the tasks' costs (a CostModel)")
        now = self.clock()
        link_free: dict[str, float] = {}
        cpu_free: dict[str, float] = {}
        for node in nodes:  # what the node already has to do
            link = cpu = now
            for task in list(self.queues[node.node_id]) + [
                    self.tasks[t] for t in node.inflight if t in self.tasks]:
                transfer, compute = cost(node.node_id, task)
                link += transfer
                cpu = max(cpu, link) + compute
            link_free[node.node_id], cpu_free[node.node_id] = link, cpu
        costs = {t.task_id: [cost(n.node_id, t) for n in nodes] for t in tasks}
        order = sorted(tasks, key=lambda t: -sum(a + b for a, b in costs[t.task_id]))
        out = []
        for task in order:
            best = None
            for node, (transfer, compute) in zip(nodes, costs[task.task_id], strict=True):
                arrive = link_free[node.node_id] + transfer
                finish = max(arrive, cpu_free[node.node_id]) + compute
                if best is None or finish < best[0]:
                    best = (finish, arrive, node)
            assert best is not None
            finish, arrive, node = best
            link_free[node.node_id], cpu_free[node.node_id] = arrive, finish
            out.append((task, node))
        return out


POLICIES: dict[str, type[Scheduler]] = {
    "ours": Scheduler,
    "round-robin": RoundRobin,
    "random": RandomPlacement,
    "work-stealing": WorkStealing,
    "heft": Heft,
}


def make(name: str, *, seed: int = 0, cost: CostModel | None = None,
         **kw: Any) -> Scheduler:
    """A scheduler running the named placement policy."""
    try:
        cls = POLICIES[name]
    except KeyError:
        raise ValueError(f"unknown policy {name!r} (known: {', '.join(POLICIES)})") from None
    if cls is Scheduler:
        return Scheduler(**kw)
    return cls(seed=seed, cost=cost, **kw)


def make_for(sim: Any, **kw: Any) -> Scheduler:
    """The scheduler of a simulation whose `policy` names a baseline."""
    from microswarm.sim.bounds import CostModel

    return make(sim.policy, seed=sim.seed, cost=CostModel(sim, sim.vm_pace()),
                **kw)
