"""Options and connection shared by the commands that talk to a running master over its
client port (``run --master``, ``jobs``, ``cancel``, ``top``, ``logs``)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from microswarm.master.client import ClusterClient


def add_arguments(parser: argparse.ArgumentParser, *, master_default: str | None = None) -> None:
    group = parser.add_argument_group("the running master")
    group.add_argument("--master", metavar="HOST:PORT", default=master_default,
                       help="its client port" + (" (%(default)s)" if master_default else ""))
    group.add_argument("--cluster", metavar="FILE",
                       help="a cluster file: its [master] client address and its key")
    key = group.add_mutually_exclusive_group()
    key.add_argument("--key-file", help="the cluster key file")
    key.add_argument("--key", help="the cluster key as text (throwaway clusters)")
    group.add_argument("--timeout", type=float, default=10.0,
                       help="seconds to wait for the master's answers (%(default)s)")


def target(args: argparse.Namespace) -> tuple[str, bytes]:
    """(address, key) named by --master/--cluster/--key-file/--key; SystemExit if unclear."""
    from microswarm.master.client_proto import read_key_file
    from microswarm.master.config import ClusterFileError, load

    address, key = args.master, None
    if args.cluster:
        try:
            spec = load(args.cluster)
        except ClusterFileError as exc:
            raise SystemExit(str(exc)) from None
        if not spec.client:
            raise SystemExit(f"{args.cluster}: the master has no client port ([master] client)")
        address, key = address or spec.client, spec.key
    if args.key_file:
        try:
            key = read_key_file(args.key_file)
        except (OSError, ValueError) as exc:
            raise SystemExit(f"cannot read the key file: {exc}") from None
    elif args.key:
        key = args.key.encode()
    if key is None:
        raise SystemExit("the cluster key is needed: --key-file FILE, --key TEXT or "
                         "--cluster FILE")
    if not address:
        raise SystemExit("which master? --master HOST:PORT or --cluster FILE")
    return address, key


def connect(args: argparse.Namespace) -> ClusterClient:
    from microswarm.master.client import ClusterClient
    from microswarm.master.client_proto import ClientProtocolError

    address, key = target(args)
    try:
        return ClusterClient(address, key=key, timeout=args.timeout).connect()
    except ClientProtocolError as exc:
        raise SystemExit(f"{address}: {exc}") from None
    except OSError as exc:
        raise SystemExit(f"no master answers on {address}: {exc.strerror or exc} (start one "
                         "with `microswarm master` or `microswarm up`)") from None
