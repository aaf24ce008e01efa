"""List the jobs of a running master (over its client port).

  microswarm jobs --cluster examples/demo.toml
  microswarm jobs --master 127.0.0.1:5883 --key-file cluster.key --json
"""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    from microswarm.master import cli_client

    cli_client.add_arguments(parser, master_default=None)
    parser.add_argument("--json", action="store_true", help="print the raw list as JSON")


def run(args: argparse.Namespace) -> int:
    import json

    from rich.console import Console
    from rich.table import Table

    from microswarm.master import cli_client

    with cli_client.connect(args) as client:
        jobs = client.jobs()
    if args.json:
        print(json.dumps(jobs, indent=2, sort_keys=True))
        return 0
    table = Table(title=f"{len(jobs)} jobs")
    for col in ("job", "kernel", "done", "tasks", "state", "key"):
        table.add_column(col, no_wrap=True)
    for job in jobs:
        table.add_row(str(job["job_id"]), job["kernel"], str(job["done"]), str(job["tasks"]),
                      job["state"], job.get("key") or "-")
    Console().print(table)
    return 0
