"""Run a master: boards and virtual nodes of the cluster join it over TCP (UDP discovery
answers their DISCOVER beacons) or on the serial ports given. Runs until Ctrl-C.

  microswarm master --key-file cluster.key --serial /dev/ttyACM0 --inproc 2
"""

from __future__ import annotations

import argparse

from microswarm.keys import DEFAULT_CLUSTER
from microswarm.protocol.catalog import TCP_PORT, UDP_DISCOVERY_PORT


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cluster", default=DEFAULT_CLUSTER,
                        help="cluster name (default %(default)s)")
    key = parser.add_mutually_exclusive_group(required=True)
    key.add_argument("--key-file",
                     help="cluster key file: hex text or raw bytes, 16+ bytes (microswarm keygen)")
    key.add_argument("--key", help="the cluster key as text (for throwaway clusters)")
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (%(default)s)")
    parser.add_argument("--port", type=int, default=TCP_PORT, help="TCP port (%(default)s)")
    parser.add_argument("--udp-port", type=int, default=UDP_DISCOVERY_PORT,
                        help="UDP discovery port, -1 to disable (%(default)s)")
    parser.add_argument("--control-port", type=int, default=5882,
                        help="local control port for `microswarm nodes` (%(default)s)")
    parser.add_argument("--client", default="127.0.0.1:5883", metavar="HOST:PORT",
                        help="client port for Cluster.connect, run --master, jobs, top; "
                             "'off' for none (%(default)s)")
    parser.add_argument("--http", default="127.0.0.1:5884", metavar="HOST:PORT",
                        help="web dashboard and /metrics; 'off' for none (%(default)s)")
    parser.add_argument("--serial", action="append", default=[], metavar="PORT",
                        help="a serial port, pty or pyserial URL with a board (repeatable)")
    parser.add_argument("--watch-usb", action="store_true",
                        help="also open USB serial devices plugged in later")
    parser.add_argument("--inproc", type=int, default=0, help="in-process CPython nodes")
    parser.add_argument("--kernels", action="append", default=[], metavar="DIR",
                        help="a kernel package folder for the in-process nodes (repeatable)")
    parser.add_argument("--local", type=int, default=0,
                        help="CPython nodes in processes of their own, dialling this master "
                             "over TCP loopback (one core each)")
    parser.add_argument("--journal", help="SQLite journal file (resume jobs after a restart)")
    parser.add_argument("--heartbeat-ms", type=int, default=1000)
    parser.add_argument("--window", type=int, default=4, help="tasks in flight per node")


def spec_from_args(args: argparse.Namespace):
    from microswarm.keys import MIN_KEY_BYTES, KeyFileError, read_key
    from microswarm.master.config import ClusterSpec

    try:
        key = read_key(args.key_file) if args.key_file else args.key.encode()
    except KeyFileError as exc:
        raise SystemExit(f"master: {exc}") from None
    if len(key) < MIN_KEY_BYTES:
        raise SystemExit(f"master: --key must be at least {MIN_KEY_BYTES} bytes")
    return ClusterSpec(
        name=args.cluster, key=key, host=args.host, tcp_port=args.port,
        udp_port=None if args.udp_port < 0 else args.udp_port,
        control_port=None if args.control_port < 0 else args.control_port,
        journal=args.journal, heartbeat_ms=args.heartbeat_ms, window=args.window,
        serial_ports=args.serial, watch_usb=args.watch_usb, inproc=args.inproc,
        kernels=list(args.kernels),
        local=args.local,
        client=None if args.client == "off" else args.client,
        http=None if args.http == "off" else args.http,
    )


def run(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    from microswarm.master.cli_up import serve

    logging.getLogger("microswarm").setLevel(logging.INFO)
    return asyncio.run(serve(spec_from_args(args), wait=False))
