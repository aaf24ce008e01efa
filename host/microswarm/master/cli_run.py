"""Run a named job and check it against the reference computed locally.

Jobs: mandelbrot (width, height, tile, max_iter), matmul (size, block, seed),
montecarlo (tasks, samples, seed), echo (tasks). Parameters as NAME=VALUE.

  microswarm run mandelbrot width=320 height=240             # 4 in-process nodes
  microswarm run matmul size=64 --cluster examples/demo.toml  # that cluster's master
  microswarm run echo tasks=50 --master 127.0.0.1:5883 --key-file cluster.key

With --cluster FILE the job goes to the file's master when one is running (started by
`microswarm up FILE`); otherwise the cluster is brought up for this job and stopped after.
With --master HOST:PORT it goes to the master running there (its client port).
"""

from __future__ import annotations

import argparse
from typing import Any


def configure(parser: argparse.ArgumentParser) -> None:
    from microswarm.master import cli_client
    from microswarm.master.jobs import JOBS

    parser.add_argument("job", choices=sorted(JOBS), help="which job")
    parser.add_argument("params", nargs="*", metavar="NAME=VALUE", help="job parameters")
    parser.add_argument("--inproc", type=int, default=4,
                        help="in-process nodes when no cluster file is given (%(default)s)")
    parser.add_argument("--journal", help="SQLite journal: rerun to resume an interrupted job")
    cli_client.add_arguments(parser)
    parser.set_defaults(timeout=10.0)


def _running_master(args: argparse.Namespace, spec: Any):
    """A client of the master the arguments name, or None when --cluster names a master
    that is not running (then this command brings the cluster up itself)."""
    from microswarm.master import cli_client
    from microswarm.master.client import ClusterClient
    from microswarm.master.client_proto import ClientProtocolError

    if args.master:
        return cli_client.connect(args)
    if spec is None or not spec.client:
        return None
    try:
        return ClusterClient(spec.client, key=spec.key, timeout=args.timeout).connect()
    except ClientProtocolError as exc:
        raise SystemExit(f"{spec.client}: {exc}") from None
    except ConnectionRefusedError:
        return None
    except OSError as exc:
        raise SystemExit(f"{spec.client}: {exc.strerror or exc}") from None


def run(args: argparse.Namespace) -> int:
    import contextlib
    import time

    from microswarm.master import Cluster
    from microswarm.master.cluster import ClusterStartError, progress_bar
    from microswarm.master.config import ClusterFileError, ClusterSpec, load
    from microswarm.master.jobs import JOBS, parse_params
    from microswarm.master.journal import JournalKeyError

    try:
        plan = JOBS[args.job](**parse_params(args.params))
    except (TypeError, ValueError) as exc:
        raise SystemExit(f"bad parameters for {args.job}: {exc}") from None
    try:
        spec = load(args.cluster) if args.cluster else None
    except ClusterFileError as exc:
        raise SystemExit(str(exc)) from None
    remote = _running_master(args, spec)
    journal_key = None
    if remote is not None:
        print(f"sending to the master of cluster {remote.cluster!r} at {remote.address}")
        if args.journal:
            raise SystemExit("--journal is for a cluster this command starts; a running "
                             "master keeps its own journal")
        cluster: Any = remote
    else:
        if spec is None:
            import os

            spec = ClusterSpec(key=os.urandom(16).hex().encode(), tcp_port=0, udp_port=None,
                               control_port=None, client=None, http=None, inproc=args.inproc)
        if args.journal:
            spec.journal = args.journal
        journal_key = f"{plan.name}:{' '.join(args.params)}" if spec.journal else None
        cluster = Cluster(spec)
        try:
            cluster.start()
        except ClusterStartError as exc:
            cluster.close()
            raise SystemExit(str(exc)) from None
    with contextlib.closing(cluster):
        start = time.perf_counter()
        try:
            handle = cluster.submit_job(plan.kernel, plan.tasks, key=journal_key)
        except JournalKeyError as exc:
            raise SystemExit(f"run: {exc}") from None
        resumed = handle.resumed
        if resumed:
            print(f"resuming: {resumed} of {handle.total} tasks already in the journal")
        with progress_bar(f"{plan.name} x{handle.total}", handle.total) as update:
            answer = plan.gather(cluster.wait(handle, update))
        elapsed = time.perf_counter() - start
    ok = answer == plan.reference()
    print(f"{plan.name}: {plan.describe(answer)}; {handle.total - resumed} tasks computed "
          f"in {elapsed:.2f} s ({resumed} from the journal); "
          f"{'matches the reference' if ok else 'DIFFERS FROM THE REFERENCE'}")
    return 0 if ok else 1
