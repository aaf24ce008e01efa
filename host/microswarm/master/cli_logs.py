"""Show the log lines a running master kept for a node (its LOG frames, and a virtual
board's last console error), or for every node. Lines stay after the node left.

  microswarm logs vmt1 --cluster examples/demo.toml
  microswarm logs --master 127.0.0.1:5883 --key-file cluster.key --json
"""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    from microswarm.master import cli_client

    parser.add_argument("node", nargs="?", help="the node id (default: every node)")
    cli_client.add_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print the lines as JSON")


def run(args: argparse.Namespace) -> int:
    import json

    from microswarm.master import cli_client

    with cli_client.connect(args) as client:
        logs = client.logs(args.node)
    if args.json:
        print(json.dumps(logs, indent=2))
        return 0
    if args.node and not logs.get(args.node):
        print(f"no log lines kept for {args.node}")
        return 0
    for node in sorted(logs):
        for t, level, text in logs[node]:
            print(f"{node} {t:9.3f} s {level:7} {text}")
    return 0
