"""List the nodes of a running master (asks its local control endpoint), with the
kernels each one has and their versions (content hashes; a task that names a version
runs only where it matches).

  microswarm nodes                       # the master on this machine, port 5882
  microswarm nodes --control 127.0.0.1:5882 --json   # another address, as JSON
"""

from __future__ import annotations

import argparse
from typing import Any


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--control", default="127.0.0.1:5882",
                        help="the master's control endpoint HOST:PORT (%(default)s)")
    parser.add_argument("--json", action="store_true", help="print the raw JSON answer")
    parser.add_argument("--timeout", type=float, default=5.0)


def query(control: str, command: str, timeout: float = 5.0) -> dict[str, Any]:
    import json
    import socket

    host, _, port = control.rpartition(":")
    with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout) as sock:
        sock.sendall(json.dumps({"cmd": command}).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return json.loads(data)


def kernel_versions(names: list[str], hashes: dict[str, str]) -> str:
    """Kernels grouped by version: "built-in@3f2a9c1b07aa built-in@9d0c... histogram@1e4b...";
    the built-in kernels of one version (one per file that defines them: kernels.py,
    kernels_small.py) are named as such, unversioned kernels get "?"."""
    from microswarm.firmware import kernels

    groups: dict[str, list[str]] = {}
    for name in sorted(names):
        groups.setdefault(hashes.get(name, "?"), []).append(name)
    builtin = set(kernels.builtin_names())
    parts = []
    for version, members in groups.items():
        if version != "?" and builtin & set(members):
            rest = [m for m in members if m not in builtin]
            parts.append(f"built-in@{version}")
            parts.extend(f"{m}@{version}" for m in rest)
        else:
            parts.extend(f"{m}@{version}" for m in members)
    return " ".join(parts)


def print_nodes(nodes: list[dict[str, Any]], stats: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(nodes)} nodes")
    longest = max((len(n["node_id"]) for n in nodes), default=4)
    table.add_column("node", no_wrap=True, min_width=longest)
    for col in ("board", "link", "native", "heap free", "done", "failed", "bad",
                "bytes in/out"):
        table.add_column(col, no_wrap=True)
    table.add_column("kernels @ version")
    for n in sorted(nodes, key=lambda n: n["node_id"]):
        s = stats.get(n["node_id"], {})
        table.add_row(
            n["node_id"], n["board"], n["link"], n["native_arch"] or "-",
            f"{n['heap_free']:,}", str(s.get("done", 0)),
            str(s.get("failed", 0)), str(n["bad_frames"]),
            f"{n['bytes_in']:,}/{n['bytes_out']:,}",
            kernel_versions(n.get("kernels", []), n.get("kernel_hashes", {})),
        )
    Console().print(table)


def run(args: argparse.Namespace) -> int:
    import json

    try:
        answer = query(args.control, "nodes", args.timeout)
    except OSError as exc:
        raise SystemExit(f"no master answers on {args.control}: {exc} "
                         "(start one with `microswarm master` or `microswarm up`)") from None
    if args.json:
        print(json.dumps(answer, indent=2, sort_keys=True))
        return 0
    print_nodes(answer["nodes"], answer.get("scheduler", {}))
    return 0
