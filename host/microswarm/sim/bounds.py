"""A lower bound on a simulated job's makespan, and the task costs it rests on.

No schedule, however clever, finishes before the largest of:

- **compute**: the job's total work over the cluster's total speed. Node i computes from
  the moment its first TASK frame can have arrived (job start + one-way latency + the
  smallest task's transfer + the fewest bytes of shared operands a task refers to: a node
  needs them, PUT or inline, before its first task) to the moment its last RESULT must
  leave (makespan - latency - the smallest result's transfer), at its speed, which drops
  when a straggler fault slows it and is zero before it first joined and while it is
  crashed (times from the run).
- **link down / link up**: the bytes every task's TASK frame (resp. RESULT frame) must
  carry at least once, over the links' total bandwidth in that direction, each link
  counted while its node is up. On one link that is the busiest link's bytes over its
  bandwidth; with many links the bytes could at best be spread over all of them.
- **pipeline**: node i finishes at most one task per `max(compute, down, up)` of the
  cheapest task, after its first task has gone through transfer, compute and transfer
  back: the number of tasks the nodes can finish by T must reach the job's task count.
- **longest task**: the task whose best node still takes longest, from job start.

A real VM board (real time) runs at the pace its own results show (its kernel times over
the model's work for the same tasks) or at the pace measured on this host at start-up,
whichever is quicker, and each of its tasks costs at least the firmware's
frame work measured in the VM (sim/vmfloor.py: decode the TASK, encode the RESULT, their
two MACs) in the pipeline and longest-task terms. With the native module built its kernels
take microseconds, so that per-task floor, not the kernels, bounds what it can do.

Everything here is a relaxation (tasks split fluidly over nodes, frames sized with the
smallest task id and no retries, a crashed node assumed back as early as any crash fault
allows), so the bound is never above what the best possible placement could achieve; the
ratio makespan / bound is how far a policy is from that ideal (1.0 cannot be beaten).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from microswarm.master.operands import Shared, inline
from microswarm.protocol import catalog
from microswarm.protocol.catalog import MAC_TRAILER_SIZE
from microswarm.sim import speed
from microswarm.sim import wire as w

if TYPE_CHECKING:
    from microswarm.master.scheduler import Task
    from microswarm.sim.cluster import Simulation

LOOPBACK_BYTES_PER_S = 200e6  # a VM board's TCP link on loopback (far from binding)

_T_REFS = catalog.key(catalog.MsgType.TASK, "refs")


@dataclass(slots=True)
class TaskCost:
    work_s: float  # compute seconds at board factor 1 (the unix-port VM on the reference PC)
    down: int  # TASK frame bytes on a packet link (COBS adds to it on serial links)
    up: int  # RESULT frame bytes, likewise
    shared: int = 0  # bytes of the shared operands it refers to (each node needs them once)


@dataclass(slots=True)
class NodeModel:
    node_id: str
    factor: float  # seconds per reference second of work
    down_bps: float
    up_bps: float
    latency_s: float
    # (start, end, slowdown) pieces of time the node is up; end may be inf
    pieces: list[tuple[float, float, float]] = field(default_factory=list)
    overhead_s: float = 0.0  # per task besides the kernel (a VM board's codec, vmfloor)


def task_costs(sim: Simulation) -> list[TaskCost]:
    """Work and frame sizes of every task of the simulation's job (kernels are run
    through the simulation's memo, so this costs little after a run)."""
    job = sim.job
    out = []
    seen: dict[Any, TaskCost] = {}
    for args in job.tasks:
        key = _hashable(args)
        known = seen.get(key) if key is not None else None
        if known is not None:
            out.append(known)
            continue
        value, error = sim.run_kernel(job.kernel, inline(args))
        work = speed.compute_seconds(job.kernel, inline(args), value, 1.0)
        # + the MAC trailer every frame of a joined link carries (SPEC.md section 5). A
        # shared operand counts as its reference: its one PUT per node is left out (a
        # relaxation, as everything here)
        refs = {i: a.hash for i, a in enumerate(args) if type(a) is Shared}
        task = {w.T_ID: 1, w.T_KERNEL: job.kernel, w.T_ATTEMPT: 0,
                w.T_ARGS: [None if i in refs else a for i, a in enumerate(args)]}
        if refs:
            task[_T_REFS] = refs
        down = len(w.pack(w.TASK, task, 1, False)) + MAC_TRAILER_SIZE
        body = {w.R_ID: 1, w.R_VALUE: value, w.R_ELAPSED: 0} if error is None else {
            w.R_ID: 1, w.R_ERROR: error, w.R_ELAPSED: 0}
        up = len(w.pack(w.RESULT, body, 1, False)) + MAC_TRAILER_SIZE
        cost = TaskCost(work, down, up, sum(a.size for a in args if type(a) is Shared))
        if key is not None:
            seen[key] = cost
        out.append(cost)
    return out


def _hashable(args: Any) -> Any:
    try:
        key = tuple(a if not hasattr(a, "tobytes") else (a.typecode, a.tobytes())
                    for a in args)
        hash(key)
        return key
    except TypeError:
        return None


def node_models(sim: Simulation, vm_factor: float = 1.0,
                vm_overhead: float = 0.0) -> list[NodeModel]:
    """Speed, links and up-time of every node, from the scenario and the faults that
    happened in the run (sim.marks)."""
    scenario = sim.scenario
    models = []
    for node in sim.nodes:
        if getattr(node, "real", False):
            # a real VM board: the pace its own results showed in this run, but never
            # slower than the pace measured on this host at start (calibrate.
            # vm_board_factor, best of a few timings): one kernel call the OS kept off
            # the CPU (a loaded host) stretches the run's mean, and would lift the bound
            # above what the board can do (a 0.8 s bound for a job it ran in 0.1 s)
            observed = node.factor()
            models.append(NodeModel(node.node_id,
                                    vm_factor if observed is None else min(observed, vm_factor),
                                    LOOPBACK_BYTES_PER_S,
                                    LOOPBACK_BYTES_PER_S, 0.0, [(0.0, math.inf, 1.0)],
                                    vm_overhead))
            continue
        link = node.link
        models.append(NodeModel(node.node_id, node.factor, link.rx.bytes_per_s,
                                link.tx.bytes_per_s,
                                link.latency_s, [(0.0, math.inf, _group_slowdown(sim, node))]))
    for index, at in getattr(sim, "joined_at", {}).items():  # no work before a node joins
        _down(models[index], 0.0, at)
    restart = [f.restart_after_s for f in scenario.faults
               if f.kind == "crash" and f.restart_after_s is not None]
    back_after = min(restart) if restart else None
    slow = [f for f in scenario.faults if f.kind == "straggler"]
    for index, at, kind in sorted(sim.marks, key=lambda m: m[1]):
        if index < 0 or index >= len(models):
            continue
        model = models[index]
        if kind == "crash":
            _down(model, at, None if back_after is None else at + back_after)
        elif kind == "straggler" and slow:
            name = model.node_id
            fits = [f for f in slow if not f.nodes or name in f.nodes] or slow
            factor = min(f.factor for f in fits)
            lasts = [f.duration_s for f in fits]
            until = at + min(d for d in lasts if d) if all(lasts) else math.inf
            _slow(model, at, until, factor)
    return models


def _group_slowdown(sim: Simulation, node: Any) -> float:
    for group in sim.scenario.groups:
        if node.node_id.startswith(group.prefix):
            return group.slowdown
    return 1.0


def _down(model: NodeModel, start: float, end: float | None) -> None:
    """The node is crashed in [start, end) (end None: for good)."""
    stop = math.inf if end is None else end
    pieces = []
    for a, b, s in model.pieces:
        if b <= start or a >= stop:
            pieces.append((a, b, s))
            continue
        if a < start:
            pieces.append((a, start, s))
        if b > stop:
            pieces.append((stop, b, s))
    model.pieces = pieces


def _slow(model: NodeModel, start: float, end: float, factor: float) -> None:
    pieces = []
    for a, b, s in model.pieces:
        if b <= start or a >= end:
            pieces.append((a, b, s))
            continue
        if a < start:
            pieces.append((a, start, s))
        pieces.append((max(a, start), min(b, end), s * factor))
        if b > end:
            pieces.append((end, b, s))
    model.pieces = pieces


def _overlap(pieces: list[tuple[float, float, float]], lo: float, hi: float,
             speed_weighted: bool) -> float:
    total = 0.0
    for a, b, s in pieces:
        x, y = max(a, lo), min(b, hi)
        if y > x:
            total += (y - x) / s if speed_weighted else (y - x)
    return total


def _up_intervals(pieces: list[tuple[float, float, float]]) -> list[tuple[float, float, list]]:
    """Contiguous runs of pieces: (start, end, the pieces), one per time the node is up."""
    out: list[tuple[float, float, list]] = []
    for a, b, s in sorted(pieces):
        if out and out[-1][1] == a:
            lo, _, run = out[-1]
            run.append((a, b, s))
            out[-1] = (lo, b, run)
        else:
            out.append((a, b, [(a, b, s)]))
    return out


def _solve(fn: Any, need: float, start: float, hi: float) -> float:
    """The smallest T >= start with fn(T) >= need (fn non-decreasing), by bisection."""
    if need <= 0:
        return start
    while fn(hi) < need:
        hi = start + 2 * (hi - start) + 1.0
        if hi > 1e9:
            return math.inf
    lo = start
    for _ in range(60):
        mid = (lo + hi) / 2
        if fn(mid) >= need:
            hi = mid
        else:
            lo = mid
    return hi


def lower_bound(sim: Simulation, start: float, vm_factor: float = 1.0,
                costs: list[TaskCost] | None = None) -> dict[str, Any]:
    """The bound's parts (seconds after `start`, the moment the job was submitted)."""
    costs = task_costs(sim) if costs is None else costs
    if not costs:
        return {"lower_bound_s": 0.0, "binding": "none"}
    floor = vm_task_floor(sim, costs)
    # Nodes alike (speed, links, up-time) count once with their number, and tasks alike
    # once: the sums below cost O(kinds of node) per step, the longest task
    # O(kinds of task x kinds of node), whatever the cluster's and the job's size.
    kinds: dict[tuple, list] = {}
    for m in node_models(sim, vm_factor, floor):
        alike = (m.factor, m.down_bps, m.up_bps, m.latency_s, tuple(m.pieces), m.overhead_s)
        if alike in kinds:
            kinds[alike][1] += 1
        else:
            kinds[alike] = [m, 1]
    models = [(m, float(n)) for m, n in kinds.values()]
    work = sum(c.work_s for c in costs)
    down = sum(c.down for c in costs)
    up = sum(c.up for c in costs)
    w_min = min(c.work_s for c in costs)
    d_min = min(c.down for c in costs)
    # before its first task a node (or one restarted: its cache is in RAM) has received
    # the task's shared operands, at least once each
    s_min = min(c.shared for c in costs)
    u_min = min(c.up for c in costs)
    guess = start + 1.0

    def first_in(m: NodeModel) -> float:
        return m.latency_s + (d_min + s_min) / m.down_bps

    def last_out(m: NodeModel) -> float:
        return m.latency_s + u_min / m.up_bps

    def compute_done(t: float) -> float:
        return sum(n * _overlap(m.pieces, start + first_in(m), t - last_out(m), True)
                   / m.factor for m, n in models)

    def down_done(t: float) -> float:
        return sum(n * m.down_bps * _overlap(m.pieces, start, t - m.latency_s
                                             - w_min * m.factor - last_out(m), False)
                   for m, n in models)

    def up_done(t: float) -> float:
        return sum(n * m.up_bps * _overlap(m.pieces, start + first_in(m) + w_min * m.factor,
                                           t - m.latency_s, False) for m, n in models)

    def tasks_done(t: float) -> float:
        total = 0.0
        for m, n in models:
            c = w_min * m.factor
            dn, upl = d_min / m.down_bps, u_min / m.up_bps
            for lo, hi, pieces in _up_intervals(m.pieces):
                # the first task of an up-interval goes through the whole pipe
                first = (max(lo, start) + 2 * m.latency_s + dn + s_min / m.down_bps
                         + c * pieces[0][2] + upl + m.overhead_s)
                end = min(hi, t)
                if end < first:
                    continue
                if m.overhead_s:  # a VM board (faults apply to simulated boards only)
                    cpu = _overlap(pieces, first, end, False) / (c + m.overhead_s)
                else:
                    cpu = _overlap(pieces, first, end, True) / max(c, 1e-12)
                links = (end - first) / max(dn, upl, 1e-12)
                total += n * (1 + min(cpu, links))
        return total

    longest = 0.0
    pace = [(2 * m.latency_s + m.overhead_s, 1 / m.down_bps,
             m.factor * min((p[2] for p in m.pieces), default=1.0), 1 / m.up_bps)
            for m, _ in models]
    for down_b, work_s, up_b in {(c.down + c.shared, c.work_s, c.up) for c in costs}:
        best = min(lat + down_b * per_down + work_s * per_work + up_b * per_up
                   for lat, per_down, per_work, per_up in pace)
        longest = max(longest, best)
    parts = {
        "compute_s": _solve(compute_done, work, start, guess) - start,
        "link_down_s": _solve(down_done, down, start, guess) - start,
        "link_up_s": _solve(up_done, up, start, guess) - start,
        "pipeline_s": _solve(tasks_done, len(costs), start, guess) - start,
        "longest_task_s": longest,
    }
    binding = max(parts, key=lambda k: parts[k])
    return {"lower_bound_s": parts[binding], "binding": binding.removesuffix("_s"),
            **{k: round(v, 6) for k, v in parts.items()},
            "work_s_at_factor_1": round(work, 6), "bytes_down": down, "bytes_up": up,
            **({"vm_task_floor_s": round(floor, 7),
                "vm_factors": {m.node_id: round(m.factor, 5) for m, _ in models
                               if m.overhead_s}} if floor else {})}


def vm_task_floor(sim: Simulation, costs: list[TaskCost]) -> float:
    """A VM board's least time per task besides the kernel (sim/vmfloor.py), for the
    job's cheapest frames; 0.0 without VM boards."""
    if not any(getattr(n, "real", False) for n in sim.nodes):
        return 0.0
    from microswarm.sim.vmfloor import task_floor

    job = sim.job
    i = min(range(len(costs)), key=lambda k: (costs[k].down + costs[k].up, k))
    args = list(job.tasks[i])
    value, error = sim.run_kernel(job.kernel, args)
    task = w.pack(w.TASK, {w.T_ID: 1, w.T_KERNEL: job.kernel, w.T_ARGS: args,
                           w.T_ATTEMPT: 0}, 1, False)
    body = {w.R_ID: 1, w.R_VALUE: value, w.R_ELAPSED: 0} if error is None else {
        w.R_ID: 1, w.R_ERROR: str(error), w.R_ELAPSED: 0}
    return task_floor(task, w.pack(w.RESULT, body, 1, False))


class CostModel:
    """What HEFT is told: each task's true transfer and compute time on each node."""

    def __init__(self, sim: Simulation, vm_factor: float = 1.0) -> None:
        self.sim = sim
        self.vm_factor = vm_factor
        self._costs: list[TaskCost] | None = None
        self._models: dict[str, NodeModel] | None = None

    def __call__(self, node_id: str, task: Task) -> tuple[float, float]:
        if self._costs is None or self._models is None:
            self._costs = task_costs(self.sim)
            self._models = {m.node_id: m for m in node_models(self.sim, self.vm_factor)}
        index = self.sim.master.index_of[task.index]
        c = self._costs[index]
        m = self._models[node_id]
        slow = m.pieces[0][2] if m.pieces else 1.0
        return m.latency_s + c.down / m.down_bps, c.work_s * m.factor * slow + c.up / m.up_bps
