"""The makespan lower bound (sim/bounds.py) and the baseline placement policies
(sim/policies.py): the bound is exact where it can be worked out by hand, no policy ever
beats it, and every policy keeps results exact through crashes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from microswarm.sim import bounds, scenario
from microswarm.sim.cluster import Simulation
from microswarm.sim.policies import POLICIES

ONE_NODE = {
    "name": "one",
    "duration_s": 60,
    "master": {"heartbeat_ms": 250, "window": 2},
    "nodes": [{"count": 1, "prefix": "n", "board": "rp2350", "link": "uart115200"}],
    "job": {"kind": "matmul", "m": 40, "k": 16, "n": 16, "rows_per_task": 4, "share_b": False},
}

MIXED = {
    "name": "mixed",
    "duration_s": 120,
    "master": {"heartbeat_ms": 250, "window": 2, "scheduler": {"hold_ratio": 0.7}},
    "nodes": [
        {"count": 3, "prefix": "esp-", "board": "esp32", "link": "uart115200"},
        {"count": 4, "prefix": "pico-", "board": "rp2350", "link": "w5500_spi20"},
        {"count": 1, "prefix": "py-", "board": "cpython", "link": "loopback"},
    ],
    "job": {"kind": "matmul", "m": 960, "k": 24, "n": 24, "rows_per_task": 4},
    "faults": [{"kind": "crash", "nodes": ["pico-1"], "at_s": 0.25}],
}


def run(spec, policy="ours"):
    sim = Simulation(scenario.parse(spec), keep_gantt=False, policy=policy)
    report = sim.run()
    r = report["result"]
    assert r["verified"] and r["lost"] == 0 and r["duplicated"] == 0, (policy, r)
    return sim, report


def test_one_node_bound_is_the_pipeline_worked_out_by_hand():
    sim, report = run(ONE_NODE)
    costs = bounds.task_costs(sim)
    assert len(costs) == 10 and len({(c.work_s, c.down, c.up) for c in costs}) == 1
    c = costs[0]
    link = sim.nodes[0].link
    down, up = c.down / link.rx.bytes_per_s, c.up / link.tx.bytes_per_s
    compute = c.work_s * sim.nodes[0].factor
    fill = 2 * link.latency_s + down + compute + up
    expected = fill + 9 * max(down, compute, up)
    q = report["schedule"]
    assert q["lower_bound_s"] == pytest.approx(expected, rel=1e-6)
    assert q["bound"]["binding"] in ("pipeline", "link_down")  # equal here: the link binds
    # one node on one link: placement cannot go wrong; what is left above the bound is the
    # link waiting while a RESULT is on its way back (a window of 2 does not hide it all)
    assert 1.0 <= q["ratio"] < 1.15


def test_a_shared_operand_reaches_the_node_before_its_first_task_in_the_bound():
    """B shared: each TASK refers to it, and the node must have received B's bytes once
    before it can compute anything; worked out by hand as above."""
    sim, report = run(dict(ONE_NODE, job=dict(ONE_NODE["job"], share_b=True)))
    costs = bounds.task_costs(sim)
    c = costs[0]
    assert c.shared == len(sim.job.tasks[0][1].data) > 0
    link = sim.nodes[0].link
    down, up = c.down / link.rx.bytes_per_s, c.up / link.tx.bytes_per_s
    compute = c.work_s * sim.nodes[0].factor
    fill = 2 * link.latency_s + down + c.shared / link.rx.bytes_per_s + compute + up
    q = report["schedule"]
    assert q["bound"]["pipeline_s"] == pytest.approx(fill + 9 * max(down, compute, up),
                                                     rel=1e-5)
    assert q["makespan_s"] >= q["lower_bound_s"]


@pytest.mark.parametrize("policy", list(POLICIES))
def test_no_policy_beats_the_bound_and_results_stay_exact_through_a_crash(policy):
    sim, report = run(MIXED, policy)
    q = report["schedule"]
    assert q["policy"] == policy
    assert q["makespan_s"] >= q["lower_bound_s"] > 0
    crashed = [sim.nodes[i].node_id for i, at, kind in sim.marks if kind == "crash"]
    assert crashed == ["pico-1"]
    assert q["bound"]["binding"] in ("compute", "pipeline", "longest_task")


def test_a_crash_raises_the_bound_and_heft_beats_round_robin_on_mixed_nodes():
    without = dict(MIXED, faults=[])
    _, calm = run(without)
    _, crashed = run(MIXED)
    assert crashed["schedule"]["lower_bound_s"] > calm["schedule"]["lower_bound_s"]
    _, heft = run(without, "heft")
    _, rr = run(without, "round-robin")
    assert heft["schedule"]["makespan_s"] < rr["schedule"]["makespan_s"]


def test_bench_sched_prints_a_headline_on_small_parameters(repo):
    proc = subprocess.run(
        [sys.executable, "-m", "microswarm.cli", "bench", "sched", "--json",
         "--scenarios", "straggler", "--policies", "round-robin,work-stealing"],
        capture_output=True, text=True, timeout=600, cwd=repo, check=True)
    out = json.loads(proc.stdout)
    head = out["headline"]
    assert head["unit"] == "x" and head["value"] >= 1.0
    assert head["baseline_policy"] in ("round-robin", "work-stealing")
    assert head["baseline"] == out["geomean_ratio"][head["baseline_policy"]]
    runs = out["scenarios"]["straggler"]
    assert set(runs) == {"ours", "round-robin", "work-stealing"}
    assert all(r["exact"] and r["makespan_s"] >= r["lower_bound_s"] for r in runs.values())
    published = {f["board"]: f["published"] for f in out["board_figures"]}
    assert published["rp2350"] is True and published["rp2040"] is False
    assert out["host"]["scale"] > 0


def test_vm_task_floor_is_the_firmware_codec_measured_in_the_vm():
    """The per-task floor of a VM board comes from the real firmware codec in the real VM,
    and the same frames give the same (cached) figure."""
    from microswarm.sim import wire as w
    from microswarm.sim.vmfloor import task_floor

    task = w.pack(w.TASK, {w.T_ID: 1, w.T_KERNEL: "mandelbrot",
                           w.T_ARGS: [-16384, -8192, 8, 8, 160, 512], w.T_ATTEMPT: 0}, 1, False)
    result = w.pack(w.RESULT, {w.R_ID: 1, w.R_VALUE: list(range(64)), w.R_ELAPSED: 0}, 1,
                    False)
    floor = task_floor(task, result)
    assert floor > 0
    assert task_floor(task, result) == floor


def test_a_real_time_clock_stays_at_the_end_of_the_job():
    """The makespan is the job's end: what comes after it in real time (the VM boards'
    last frames, the pacer's last look) runs no event and does not move the clock (it
    went on to the next scheduler tick, a makespan of a round 0.1 s, or to the wall
    clock)."""
    import time

    sim, report = run(ONE_NODE)
    end = sim.events.now
    assert sim.finished() and len(sim.events) > 0  # ticks, heartbeats were still due
    processed = sim.events.processed
    sim.t0 = time.monotonic() - end - 5.0  # as if 5 s had passed since
    sim.catch_up()
    assert sim.events.now == end and sim.events.processed == processed
    assert report["schedule"]["makespan_s"] == pytest.approx(end - sim.job_start)


def test_simulated_nodes_take_their_values_computed_ahead():
    """Before a real-time run starts its clock every task's value is in the memo, so a
    simulated node starting a task does not run the kernel in the master's process."""
    from microswarm.firmware import kernels
    from microswarm.master.operands import inline

    sim = Simulation(scenario.parse(ONE_NODE), keep_gantt=False)
    sim.compute_ahead()
    calls = []
    real = kernels.run
    kernels.run = lambda *a: calls.append(a) or real(*a)
    try:
        for args in sim.job.tasks:
            sim.run_kernel(sim.job.kernel, inline(args))
    finally:
        kernels.run = real
    assert calls == []
