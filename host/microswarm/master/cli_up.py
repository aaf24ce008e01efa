"""Start a master plus the virtual part of a cluster file: MicroPython VM boards (over TCP
or a pty serial link), in-process nodes, and the serial ports it lists. Physical boards
dial in as usual. Runs until Ctrl-C.

  microswarm up examples/demo.toml
"""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("cluster_file", help="the cluster file (TOML), e.g. examples/demo.toml")
    parser.add_argument("--timeout", type=float, default=60,
                        help="seconds to wait for the virtual nodes to join (%(default)s)")


async def serve(spec, *, wait: bool = True, timeout: float = 60) -> int:
    import asyncio
    import signal
    import sys

    from microswarm.master.cli_nodes import print_nodes
    from microswarm.master.cluster import ClusterStartError, RunningCluster

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        running = await RunningCluster.launch(spec, wait=wait, timeout=timeout)
    except ClusterStartError as exc:
        raise SystemExit(str(exc)) from None
    master, services = running.master, running.services
    print(f"master {spec.name!r}: tcp {master.tcp_port}, udp discovery {master.udp_port}, "
          f"control {master.control_port}, client {services.client_address or 'off'} "
          "(Ctrl-C stops)")
    print(f"dashboard: {services.http_url or 'off'}", flush=True)
    if wait:
        print_nodes([n.as_dict() for n in master.nodes], master.scheduler.node_stats())
        sys.stdout.flush()
    try:
        await stop.wait()
    finally:
        print("stopping")
        await running.stop()
    return 0


def run(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    from microswarm.master.config import ClusterFileError, load

    logging.getLogger("microswarm").setLevel(logging.INFO)
    try:
        spec = load(args.cluster_file)
    except ClusterFileError as exc:
        raise SystemExit(str(exc)) from None
    return asyncio.run(serve(spec, timeout=args.timeout))
