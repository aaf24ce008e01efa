"""Cancel a job on a running master (over its client port); its tasks stop being placed
and nodes running them are told to drop them.

  microswarm cancel 3 --cluster examples/demo.toml
"""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    from microswarm.master import cli_client

    parser.add_argument("job", type=int, help="the job number (see `microswarm jobs`)")
    cli_client.add_arguments(parser, master_default=None)


def run(args: argparse.Namespace) -> int:
    from microswarm.master import cli_client
    from microswarm.master.client import RemoteError

    with cli_client.connect(args) as client:
        try:
            answer = client.cancel(args.job)
        except RemoteError as exc:
            raise SystemExit(str(exc)) from None
    if answer["was"] == "running":
        print(f"job {args.job} cancelled")
    else:
        print(f"job {args.job} was already {answer['was']}")
    return 0
