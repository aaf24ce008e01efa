"""Run a named job and check it against the reference computed locally.

Jobs: mandelbrot (width, height, tile, max_iter), matmul (size, block, seed),
montecarlo (tasks, samples, seed), echo (tasks). Parameters as NAME=VALUE.

  microswarm run mandelbrot width=320 height=240             # 4 in-process nodes
  microswarm run matmul size=64 --cluster examples/demo.toml  # master + virtual boards
"""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    from microswarm.master.jobs import JOBS

    parser.add_argument("job", choices=sorted(JOBS), help="which job")
    parser.add_argument("params", nargs="*", metavar="NAME=VALUE", help="job parameters")
    parser.add_argument("--cluster", metavar="FILE",
                        help="cluster file to bring up for the job (default: in-process nodes)")
    parser.add_argument("--inproc", type=int, default=4,
                        help="in-process nodes when no cluster file is given (%(default)s)")
    parser.add_argument("--journal", help="SQLite journal: rerun to resume an interrupted job")


def run(args: argparse.Namespace) -> int:
    import time

    from microswarm.master import Cluster
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
    if spec is None:
        import os

        spec = ClusterSpec(key=os.urandom(16).hex().encode(), tcp_port=0, udp_port=None,
                           control_port=None, inproc=args.inproc)
    if args.journal:
        spec.journal = args.journal
    with Cluster(spec) as cluster:
        from microswarm.master.cluster import progress_bar

        start = time.perf_counter()
        key = f"{plan.name}:{' '.join(args.params)}" if spec.journal else None
        try:
            handle = cluster.submit_job(plan.kernel, plan.tasks, key=key)
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
