"""Run a benchmark. Every benchmark measures ours against a baseline side by side in
one run and reports ratios; `--json` prints one JSON object whose `headline` holds the
figure its goal names."""

from __future__ import annotations

import argparse
import importlib
import json
import sys

# name -> module; each module provides configure(parser) and run(args) -> dict with a
# "headline" entry {"name", "value", "unit", "baseline"}.
BENCHES: dict[str, str] = {
    "codec": "microswarm.bench.codec",
    "firmware": "microswarm.bench.firmware",
    "master": "microswarm.bench.master",
    "sim": "microswarm.bench.sim",
    "local": "microswarm.bench.local",
    "native": "microswarm.bench.native",
    "wiznet": "microswarm.bench.wiznet",
    "board": "microswarm.bench.board",
    "mac": "microswarm.bench.mac",
    "flood": "microswarm.bench.flood",
    "sched": "microswarm.bench.sched",
    "footprint": "microswarm.bench.footprint",
    "serial": "microswarm.bench.serial",
    "scale": "microswarm.bench.scale",
    "all": "microswarm.bench.report",
}


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="bench", metavar="NAME", required=True)
    for name, module_name in BENCHES.items():
        module = importlib.import_module(module_name)  # light: each imports its tools in run
        cmd = sub.add_parser(name, help=(module.__doc__ or name).strip().splitlines()[0])
        cmd.add_argument("--json", action="store_true", help="print one JSON object")
        module.configure(cmd)
        cmd.set_defaults(_bench=module)


def run(args: argparse.Namespace) -> int:
    report = args._bench.run(args)
    headline = report.get("headline")
    required = {"name", "value", "unit", "baseline"}
    if not (isinstance(headline, dict) and required <= headline.keys()):
        raise SystemExit(f"bench {args.bench}: report has no valid headline")
    if args.json:
        json.dump(report, sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
    else:
        print_report(args.bench, report)
    return 0


def print_report(name: str, report: dict) -> None:
    headline = report["headline"]
    base = headline["baseline"]
    against = f" (baseline {base})" if base is not None else ""
    print(f"{name}: {headline['name']} = {headline['value']} {headline['unit']}{against}")
    for key, value in sorted(report.items()):
        if key != "headline":
            print(f"  {key}: {json.dumps(value, sort_keys=True)}")
