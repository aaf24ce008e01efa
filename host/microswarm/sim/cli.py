"""Run a cluster simulation scenario (a TOML file) on virtual time and report.

The report says whether the job's result equals its reference, how many tasks were
retried, speculated or lost, how many duplicate results were suppressed, how long each
failure took to detect, and how busy every node was. --plot writes a PNG timeline.

Scenarios shipped with microswarm: scenarios/*.toml in the repository (docs/sim.md).

  microswarm sim crash-10pct --plot timeline.png        # the report, and a timeline
  microswarm sim calibrate --kernels examples/kernels     # time a package's kernels
  microswarm sim examples/histogram-sim.toml --kernels examples/kernels

--kernels loads kernel packages (docs/first-kernel.md) and times each of their kernels
that has a sample= hint in the MicroPython VM first, so a scenario's job (kind "kernel")
can run them on simulated boards. The scenario name "calibrate" only prints those times.
"""

from __future__ import annotations

import argparse
import json
import sys


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("scenario",
                        help="scenario file (TOML), or the name of one in scenarios/")
    parser.add_argument("--seed", type=int, default=None, help="override the scenario's seed")
    parser.add_argument("--plot", metavar="PNG", help="write a timeline (Gantt) to this PNG")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--per-node", action="store_true",
                        help="keep per-node utilisation in the JSON report")
    parser.add_argument("--trace", metavar="FILE",
                        help="write the event trace (what trace_sha256 hashes), one a line")
    parser.add_argument("--kernels", action="append", default=[], metavar="DIR",
                        help="a kernel package to load and calibrate in the VM (repeatable)")
    parser.add_argument("--policy", default="ours",
                        help="placement policy: ours (the scheduler's), round-robin, random, "
                             "work-stealing or heft (baselines to compare with, "
                             "`microswarm bench sched`)")


def run(args: argparse.Namespace) -> int:
    from microswarm.sim.cluster import Simulation
    from microswarm.sim.jobs import JobError
    from microswarm.sim.policies import POLICIES
    from microswarm.sim.report import render
    from microswarm.sim.scenario import ScenarioError, load

    if args.kernels or args.scenario == "calibrate":
        from microswarm.kernelpkg import KernelPackageError
        from microswarm.sim.calibrate import calibrate_packages

        try:
            table = calibrate_packages(args.kernels)
        except (KernelPackageError, RuntimeError) as exc:
            print(f"microswarm sim: {exc}", file=sys.stderr)
            return 2
        if args.scenario == "calibrate":
            print(json.dumps(table, indent=2, sort_keys=True))
            return 0
    try:
        scenario = load(args.scenario)
        if args.policy not in POLICIES:
            raise ScenarioError(f"unknown policy {args.policy!r} (known: {', '.join(POLICIES)})")
        sim = Simulation(scenario, seed=args.seed, keep_gantt=bool(args.plot),
                         trace_file=args.trace, policy=args.policy)
    except (ScenarioError, JobError) as exc:
        print(f"microswarm sim: {exc}", file=sys.stderr)
        return 2
    report = sim.run()
    if args.plot:
        from microswarm.sim.plot import plot_timeline

        plot_timeline(sim, args.plot)
    if args.json:
        if not args.per_node:
            report["utilisation"].pop("per_node")
        json.dump(report, sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
    else:
        print(render(report))
        if args.plot:
            print(f"  timeline: {args.plot}")
    return 0 if report["result"]["verified"] else 1
