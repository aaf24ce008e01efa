"""One simulation run: build the cluster of a scenario, inject its faults, run the job on
virtual time, and collect the report.

Determinism: every random choice comes from generators seeded from the scenario's seed
(links, faults and nonces each have their own), events at equal times run in scheduling
order, and node compute time comes from the speed model, not the host's clock. The trace
hash (SHA-256 over every traced event) is therefore equal across runs of the same scenario
and seed, and different as soon as anything observable differs.
"""

from __future__ import annotations

import array
import hashlib
import itertools
import marshal
import random
import tempfile
import time
from collections import Counter
from typing import Any

from microswarm.firmware import kernels, msw_boot
from microswarm.sim import jobs
from microswarm.sim.events import EventQueue
from microswarm.sim.links import PRESETS, Link
from microswarm.sim.master import SimMaster
from microswarm.sim.node import SimNode
from microswarm.sim.scenario import Fault, Scenario

CLUSTER_KEY = b"microswarm-sim-cluster-key"
TICK_S = 0.1  # scheduler tick (straggler checks)
TRACE_BATCH = 256  # entries hashed at a time; few, so they are freed before the GC scans them
BOOT_SPREAD_S = 0.2  # nodes power on at random moments within this window


def _memo_key(kernel: str, args: list) -> Any:
    """A hashable key for a kernel call, or None when an argument cannot be one. Typed
    arrays (unhashable) stand in as their typecode and bytes."""
    key: Any = (kernel, tuple(args))
    try:
        hash(key)
    except TypeError:
        key = (kernel, tuple(
            (a.typecode, a.tobytes()) if isinstance(a, array.array) else a for a in args))
        try:
            hash(key)
        except TypeError:
            return None
    return key


class Simulation:
    def __init__(self, scenario: Scenario, seed: int | None = None, keep_gantt: bool = True,
                 trace_file: str | None = None, policy: str = "ours"):
        self.scenario = scenario
        self.policy = policy  # placement: the scheduler's own, or a baseline (sim/policies.py)
        self.seed = scenario.seed if seed is None else seed
        self.key = CLUSTER_KEY
        self.events = EventQueue()
        self.rng_link = random.Random(f"{self.seed}/links")
        self.rng_fault = random.Random(f"{self.seed}/faults")
        self.rng_nonce = random.Random(f"{self.seed}/nonces")
        self.kernel_about = msw_boot.hello_fields()  # HELLO's kernels and their versions
        self.kernel_names = self.kernel_about["kernels"]
        self.job = jobs.build(scenario.job, self.seed)
        self.counters: Counter[str] = Counter()
        self.keep_gantt = keep_gantt
        self.gantt: list[tuple[int, int, float, float, str]] = []
        self.marks: list[tuple[int, float, str]] = []  # (node index or -1, time, label)
        self._trace = hashlib.sha256()
        self._pending_trace: list[tuple[float, str, str, object]] = []
        self._trace_out = open(trace_file, "w") if trace_file else None  # noqa: SIM115
        self._traced = 0  # entries hashed so far (trace_events counts the pending ones too)
        self.fault_at: dict[str, tuple[str, float]] = {}
        # faults scheduled but not injected yet: id -> (node, kind, when); those left when
        # the run ends came after the job (the report lists them as not injected)
        self.fault_plan: dict[int, tuple[str, str, float]] = {}
        self._fault_ids = itertools.count()
        self.detections: list[dict[str, Any]] = []
        self._memo: dict[Any, tuple[Any, Exception | None]] = {}
        self.nodes: list[SimNode] = []
        for group in scenario.groups:
            preset = PRESETS[group.link]
            for i in range(group.count):
                link = Link(
                    preset, self.rng_link,
                    latency_s=None if group.latency_ms is None else group.latency_ms / 1e3,
                    jitter_s=group.jitter_ms / 1e3, loss=group.loss, corrupt=group.corrupt,
                )
                node = SimNode(self, len(self.nodes), f"{group.prefix}{i}", group.board,
                               group.board_factor, group.slowdown, group.slots, link)
                self.nodes.append(node)
        self.simulated = list(self.nodes)
        if scenario.vms:
            from microswarm.sim.realtime import VmNode

            for vms in scenario.vms:
                for i in range(vms.count):
                    self.nodes.append(VmNode(self, len(self.nodes), f"{vms.prefix}{i}",
                                             vms.board))
        self.t0: float | None = None  # wall-clock origin in real-time runs
        self.vm_factor: float | None = None  # VM boards' pace on this host (vm_pace)
        self.node_by_id = {n.node_id: n for n in self.nodes}
        self._scratch = (tempfile.TemporaryDirectory(prefix="msw-sim-")
                         if scenario.master.journal else None)
        self.workdir = self._scratch.name if self._scratch else None
        self.job_start = BOOT_SPREAD_S  # when start_job submits the job
        self.joined_at: dict[int, float] = {}  # node index -> first WELCOME
        self.master = SimMaster(self, self.nodes)
        self.wall_s = 0.0
        self.cpu_s = 0.0  # this process's CPU time in advance(): the simulation, no report

    # ------------------------------------------------------------------ services
    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] += n

    @property
    def trace_events(self) -> int:
        return self._traced + len(self._pending_trace)

    def trace(self, kind: str, node_id: str, detail: object = None) -> None:
        pending = self._pending_trace
        pending.append((self.events.now, kind, node_id, detail))
        if len(pending) >= TRACE_BATCH:
            self._flush_trace()

    def _flush_trace(self) -> None:
        # marshal: exact and about 10x quicker than repr for these plain tuples. Format
        # version 2, the last whose bytes depend on values only: later ones write
        # back-references for objects whose refcount is above one and mark interned strings.
        try:
            data = marshal.dumps(self._pending_trace, 2)
        except ValueError:  # a detail that is not a plain value
            data = repr(self._pending_trace).encode()
        self._trace.update(data)
        if self._trace_out is not None:
            self._trace_out.writelines(
                f"{t:.9f} {kind} {node} {'' if detail is None else detail}".rstrip() + "\n"
                for t, kind, node, detail in self._pending_trace)
        self._traced += len(self._pending_trace)
        self._pending_trace.clear()

    def trace_hash(self) -> str:
        self._flush_trace()
        return self._trace.hexdigest()

    def run_kernel(self, kernel: str, args: list) -> tuple[Any, Exception | None]:
        """Run a kernel as the firmware does; kernels are pure, so results are cached by
        their arguments (many identical tasks cost the host one call)."""
        memo_key: Any = (kernel, tuple(args))  # _memo_key's first try, inline
        try:
            known = self._memo.get(memo_key)
        except TypeError:  # an argument that cannot be a key as it is
            memo_key = _memo_key(kernel, args)
            known = None if memo_key is None else self._memo.get(memo_key)
        if known is not None:
            return known
        try:
            outcome: tuple[Any, Exception | None] = (kernels.run(kernel, args), None)
        except Exception as exc:  # the node engine maps it to its ErrorCode, as on a board
            outcome = (None, exc)
        if memo_key is not None:
            self._memo[memo_key] = outcome
        return outcome

    def compute_ahead(self) -> None:
        """Every task's value, before a real-time run's clock starts. A simulated node
        takes its value from `run_kernel` when it starts a task: without this the kernel
        runs there, in CPython in this one process, and in real time that holds up the
        master and with it the real VM boards (mixed-vm: 0.96 s of CPython for the 300
        tiles, up to 23 ms a tile), so a policy that gives simulated nodes tasks was
        charged their kernels' CPython time besides their modelled time. The report's
        bound runs them all anyway (sim/bounds.py: task_costs)."""
        from microswarm.master.operands import inline

        kernel = self.job.kernel
        for args in self.job.tasks:
            self.run_kernel(kernel, inline(args))

    def vm_pace(self) -> float:
        """The board factor real VM boards run this job's kernel at on this host, measured
        once (calibrate.vm_board_factor: native where they load the native module); 1.0
        without VM boards."""
        if self.vm_factor is None:
            self.vm_factor = 1.0
            if self.scenario.vms:
                from microswarm.sim.calibrate import vm_board_factor

                self.vm_factor = vm_board_factor(self.job.kernel, self.scenario.vms[0].board)
        return self.vm_factor

    def gantt_add(self, node: int, task_id: int, start: float, end: float, outcome: str) -> None:
        if self.keep_gantt:
            self.gantt.append((node, task_id, start, end, outcome))
        self.trace("ran", self.nodes[node].node_id, (task_id, outcome))

    def gantt_close(self, node: SimNode, running: list, outcome: str) -> None:
        self.gantt_add(node.index, running[0], running[3], self.events.now, outcome)

    def node_lost(self, node: SimNode, why: str) -> None:
        now = self.events.now
        self.trace("lost", node.node_id, why)
        self.marks.append((node.index, now, "lost"))
        fault = self.fault_at.pop(node.node_id, None)
        if fault is not None:
            kind, at = fault
            self.detections.append({"node": node.node_id, "fault": kind, "at_s": round(at, 6),
                                    "detected_after_s": round(now - at, 6)})

    # ------------------------------------------------------------------ faults
    def _targets(self, fault: Fault) -> list[SimNode]:
        if fault.nodes:
            missing = [n for n in fault.nodes if n not in self.node_by_id]
            if missing:
                raise ValueError(f"fault {fault.kind} names unknown nodes {missing}")
            return [self.node_by_id[n] for n in fault.nodes]
        pool = self.simulated
        count = fault.count or max(1, round(fault.fraction * len(pool)))
        return self.rng_fault.sample(pool, min(count, len(pool)))

    def _when(self, fault: Fault) -> float:
        lo, hi = fault.at_s
        return lo if lo == hi else self.rng_fault.uniform(lo, hi)

    def _schedule_faults(self) -> None:
        for fault in self.scenario.faults:
            if fault.kind == "restart_master":
                self._plan(self._when(fault), fault, None)
                continue
            targets = self._targets(fault)
            if fault.kind == "partition":  # one moment for the whole group
                when = self._when(fault)
                for node in targets:
                    self._plan(when, fault, node)
            else:
                for node in targets:
                    self._plan(self._when(fault), fault, node)

    def _plan(self, when: float, fault: Fault, node: SimNode | None) -> None:
        key = next(self._fault_ids)
        self.fault_plan[key] = ("master" if node is None else node.node_id, fault.kind, when)
        self.events.at(when, self._inject, key, fault, node)

    def _inject(self, key: int, fault: Fault, node: SimNode | None) -> None:
        del self.fault_plan[key]
        if node is None:
            self.master.restart(fault.duration_s or 1.0)
        else:
            self._apply(fault, node)

    def _apply(self, fault: Fault, node: SimNode) -> None:
        now = self.events.now
        kind = fault.kind
        self.trace("fault", node.node_id, kind)
        self.marks.append((node.index, now, kind))
        if kind == "crash":
            if node.alive:
                self.fault_at[node.node_id] = (kind, now)
                node.crash()
                if fault.restart_after_s is not None:
                    self.events.after(fault.restart_after_s, node.power_on)
        elif kind == "freeze":
            self.fault_at[node.node_id] = (kind, now)
            node.frozen_until = now + (fault.duration_s if fault.duration_s else 1e18)
            if fault.duration_s:
                self.events.at(node.frozen_until, self._thaw, node, node.boot)
        elif kind == "straggler":
            node.set_slowdown(node.slowdown * fault.factor)
            if fault.duration_s:
                self.events.after(fault.duration_s, self._unstraggle, node, fault.factor)
        elif kind in ("partition", "disconnect"):
            self.fault_at[node.node_id] = (kind, now)
            node.link.connected = False
            if fault.duration_s:
                self.events.after(fault.duration_s, self._heal, node)

    def _thaw(self, node: SimNode, boot: int) -> None:
        if boot == node.boot:
            self.trace("thaw", node.node_id)
            self.marks.append((node.index, self.events.now, "thaw"))
            node.heartbeat()
            self.fault_at.pop(node.node_id, None)

    def _unstraggle(self, node: SimNode, factor: float) -> None:
        node.set_slowdown(node.slowdown / factor)

    def _heal(self, node: SimNode) -> None:
        self.trace("heal", node.node_id)
        self.marks.append((node.index, self.events.now, "heal"))
        node.link.connected = True
        self.fault_at.pop(node.node_id, None)
        if node.alive and not node.joined:
            node.connect()

    # ------------------------------------------------------------------ periodic
    def _heartbeats(self) -> None:
        for node in self.simulated:
            if node.joined:
                node.heartbeat()
        self.events.after(self.master.heartbeat_s, self._heartbeats)

    def _sweep(self) -> None:
        self.master.sweep()
        self.events.after(self.master.heartbeat_s, self._sweep)

    def _tick(self) -> None:
        self.master.tick()
        self.events.after(TICK_S, self._tick)

    # ------------------------------------------------------------------ run
    def finished(self) -> bool:
        return self.master.job_done or bool(self.master.failed_cause)

    def start(self) -> None:
        """Power the nodes on, start the periodic duties and schedule the faults."""
        ev = self.events
        for node in self.simulated:
            ev.at(self.rng_fault.uniform(0, BOOT_SPREAD_S), node.power_on)
        ev.at(BOOT_SPREAD_S, self.master.start_job)
        hb = self.master.heartbeat_s
        ev.at(hb, self._heartbeats)
        ev.at(hb * 1.5, self._sweep)
        ev.at(TICK_S, self._tick)
        self._schedule_faults()

    def catch_up(self) -> None:
        """Real time: run every event due by the wall clock, until the job has ended. The
        clock then stays at the moment it ended (the makespan): the VM boards' last frames
        and the pacer's last look come later, and `run` would otherwise go on to the next
        event (a scheduler tick, so a makespan of a round 0.1 s) or to the wall clock."""
        if self.t0 is not None and not self.finished():
            self.events.run(until=time.monotonic() - self.t0, stop=self.finished)

    def advance(self, until: float) -> None:
        """Run events up to virtual time `until`, or until the job ends."""
        started, cpu = time.perf_counter(), time.process_time()
        # the master halts the queue when the job ends (finished()): no call per event
        self.events.run(until=until)
        self.wall_s += time.perf_counter() - started
        self.cpu_s += time.process_time() - cpu

    def run(self) -> dict[str, Any]:
        """Run the scenario to its end (job finished or failed, or duration_s)."""
        from microswarm.sim.report import build_report

        self.start()
        try:
            if self.scenario.vms:
                from microswarm.sim.realtime import run_realtime

                self.compute_ahead()
                started = time.perf_counter()
                run_realtime(self, self.scenario.duration_s)
                self.wall_s = time.perf_counter() - started
            else:
                self.advance(self.scenario.duration_s)
            for node in self.simulated:
                if node.running is not None:
                    self.gantt_close(node, node.running, "unfinished")
            return build_report(self)
        finally:
            self.close()

    def close(self) -> None:
        """Close the journal and the trace file, and remove the scratch folder."""
        self.master.journal.close()
        if self._trace_out is not None:
            self._flush_trace()
            self._trace_out.close()
            self._trace_out = None
        if self._scratch is not None:
            self._scratch.cleanup()
            self._scratch = None
