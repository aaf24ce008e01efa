"""Scheduling quality: makespan over a lower bound, ours against baseline policies.

Each scenario runs once per placement policy in the same process, one after the other
(sim/policies.py: the scheduler's own placement, round-robin, random, Dask-style work
stealing, HEFT with every task's true cost known up front). For each run: the makespan
(job submitted to last result in), the lower bound no placement can beat
(sim/bounds.py), their ratio, and whether the result was exact with nothing lost or
duplicated. Simulated scenarios are deterministic (virtual time); a scenario with real
MicroPython VM boards (mixed-vm) runs in real time, so its figures move with the host's
load, which is reported.

Headline: the geometric mean over the scenarios of our makespan / lower bound (goal
<= 1.15); baseline: the best geometric mean of the other policies.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from typing import Any

DEFAULT_SCENARIOS = ("mixed-vm", "straggler", "crash-10pct", "heterogeneous")
GOAL = 1.15


def configure(parser: argparse.ArgumentParser) -> None:
    from microswarm.sim.policies import POLICIES

    parser.add_argument("--scenarios", default=",".join(DEFAULT_SCENARIOS),
                        help="comma-separated scenario names or files "
                             f"(default: {','.join(DEFAULT_SCENARIOS)})")
    parser.add_argument("--policies", default=",".join(POLICIES),
                        help=f"comma-separated placement policies (default: all: "
                             f"{','.join(POLICIES)}); 'ours' is always run")
    parser.add_argument("--seed", type=int, default=None, help="override the scenarios' seed")


def run_one(name: str, policy: str, seed: int | None) -> dict[str, Any]:
    from microswarm.sim import scenario as scenario_mod
    from microswarm.sim.cluster import Simulation

    sim = Simulation(scenario_mod.load(name), seed=seed, keep_gantt=False, policy=policy)
    started = time.perf_counter()
    report = sim.run()
    q = report["schedule"]
    r = report["result"]
    return {
        "makespan_s": q["makespan_s"],
        "lower_bound_s": q["lower_bound_s"],
        "binding": q["bound"]["binding"],
        "ratio": q["ratio"],
        "exact": bool(r["verified"]) and r["lost"] == 0 and r["duplicated"] == 0,
        "speculative": report["speculative"],
        "utilisation_mean": report["utilisation"]["mean"],
        "real_time": report["real_time"],
        "wall_s": round(time.perf_counter() - started, 3),
    }


def geomean(values: list[float]) -> float | None:
    if not values or any(v is None or v <= 0 for v in values):
        return None
    return round(math.exp(sum(math.log(v) for v in values) / len(values)), 4)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from microswarm.sim import calibrate, speed
    from microswarm.sim.links import PRESETS
    from microswarm.sim.policies import POLICIES

    scenarios = [s for s in args.scenarios.split(",") if s]
    policies = ["ours"] + [p for p in args.policies.split(",") if p and p != "ours"]
    unknown = [p for p in policies if p not in POLICIES]
    if unknown:
        raise SystemExit(f"bench sched: unknown policies {unknown} (known: {list(POLICIES)})")
    host = calibrate.host_scale()
    load_before = _load()
    runs: dict[str, dict[str, dict[str, Any]]] = {}
    for name in scenarios:
        runs[name] = {p: run_one(name, p, args.seed) for p in policies}
    per_policy = {p: geomean([runs[s][p]["ratio"] for s in scenarios]) for p in policies}
    others = {p: g for p, g in per_policy.items() if p != "ours" and g is not None}
    best_other = min(others, key=lambda p: others[p]) if others else None
    beats = {
        s: all(runs[s]["ours"]["ratio"] is not None and (
            runs[s][p]["ratio"] is None or runs[s]["ours"]["ratio"] < runs[s][p]["ratio"])
            for p in policies if p != "ours")
        for s in scenarios
    }
    ours = per_policy["ours"]
    simulated = [s for s in scenarios if not runs[s]["ours"]["real_time"]]
    return {
        "scenarios": runs,
        "geomean_ratio": per_policy,
        "geomean_ratio_simulated_only": {
            p: geomean([runs[s][p]["ratio"] for s in simulated]) for p in policies},
        "ours_better_than_every_baseline": beats,
        "all_exact": all(r["exact"] for by in runs.values() for r in by.values()),
        "goals": {
            "geomean_at_most_1.15": ours is not None and ours <= GOAL,
            "better_than_every_baseline_on_every_scenario": all(beats.values()),
        },
        "host": {**host, "load_before": load_before, "load_after": _load(),
                 "cpus": os.cpu_count()},
        "board_figures": speed.figure_sources(),
        "link_figures": [
            {"link": p.name, "bytes_per_s": p.bytes_per_s,
             "to_node_bytes_per_s": p.to_node_bytes_per_s or p.bytes_per_s,
             "published": p.published, "source": p.source}
            for p in PRESETS.values()
        ],
        "headline": {
            "name": "geometric mean of makespan / lower bound, our scheduler, over "
                    + ", ".join(scenarios),
            "value": ours,
            "unit": "x",
            "baseline": None if best_other is None else others[best_other],
            "baseline_policy": best_other,
        },
    }


def _load() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None
