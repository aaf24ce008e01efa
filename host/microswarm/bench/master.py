"""Master throughput on tiny tasks: microswarm vs Dask distributed, side by side.

Both run the same `echo` tasks on the same number of in-process workers. Ours go through
the real protocol: frames, CBOR, CRC and loopback TCP to in-process nodes that join with
the mutual HMAC; Dask's go through its LocalCluster (processes=False, one thread per
worker). Reported: tasks/s for one job of many tasks (pipelined), and the round trip of
one task at a time (per-task overhead). Headline: our tasks/s over Dask's.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import time
from typing import Any


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tasks", type=int, default=5000, help="tasks per job (%(default)s)")
    parser.add_argument("--nodes", type=int, default=4, help="workers on each side")
    parser.add_argument("--rounds", type=int, default=3, help="jobs per side; best is kept")
    parser.add_argument("--serial-tasks", type=int, default=200,
                        help="one-at-a-time round trips per side (%(default)s)")


def _echo(x: Any) -> Any:
    return x


async def _ours(tasks: int, nodes: int, rounds: int, serial: int) -> dict[str, Any]:
    from microswarm.master import Master

    async with Master(key=b"bench-key-0123456789", tcp_port=0, udp_port=None) as master:
        await master.add_inproc_nodes(nodes, via="tcp")
        await master.wait_for_nodes(nodes, 30)
        await master.run("echo", [[i] for i in range(200)])  # warm up
        rates = []
        for _ in range(rounds):
            start = time.perf_counter()
            results = await master.run("echo", [[i] for i in range(tasks)])
            rates.append(tasks / (time.perf_counter() - start))
            assert results == list(range(tasks))
        trips = []
        for i in range(serial):
            start = time.perf_counter()
            (value,) = await master.run("echo", [[i]])
            trips.append(time.perf_counter() - start)
            assert value == i
        return {"tasks_per_s": max(rates), "round_trip_us": statistics.median(trips) * 1e6,
                "duplicates": master.scheduler.duplicates}


def _dask(tasks: int, nodes: int, rounds: int, serial: int) -> dict[str, Any]:
    from distributed import Client, LocalCluster

    for name in ("distributed", "tornado", "bokeh"):
        logging.getLogger(name).setLevel(logging.ERROR)
    with LocalCluster(n_workers=nodes, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        client.gather(client.map(_echo, range(200), pure=False))  # warm up
        rates = []
        for _ in range(rounds):
            start = time.perf_counter()
            results = client.gather(client.map(_echo, range(tasks), pure=False))
            rates.append(tasks / (time.perf_counter() - start))
            assert results == list(range(tasks))
        trips = []
        for i in range(serial):
            start = time.perf_counter()
            value = client.submit(_echo, i, pure=False).result()
            trips.append(time.perf_counter() - start)
            assert value == i
        return {"tasks_per_s": max(rates), "round_trip_us": statistics.median(trips) * 1e6}


def run(args: argparse.Namespace) -> dict[str, Any]:
    ours = asyncio.run(_ours(args.tasks, args.nodes, args.rounds, args.serial_tasks))
    dask = _dask(args.tasks, args.nodes, args.rounds, args.serial_tasks)
    ratio = ours["tasks_per_s"] / dask["tasks_per_s"]
    return {
        "headline": {
            "name": "echo tasks/s, microswarm master over Dask LocalCluster",
            "value": round(ratio, 2),
            "unit": "x",
            "baseline": round(dask["tasks_per_s"]),
        },
        "tasks": args.tasks,
        "nodes": args.nodes,
        "microswarm_tasks_per_s": round(ours["tasks_per_s"]),
        "dask_tasks_per_s": round(dask["tasks_per_s"]),
        "microswarm_round_trip_us": round(ours["round_trip_us"], 1),
        "dask_round_trip_us": round(dask["round_trip_us"], 1),
        "round_trip_ratio": round(dask["round_trip_us"] / ours["round_trip_us"], 2),
        "microswarm_duplicates": ours["duplicates"],
        "microswarm_link": "loopback TCP to in-process nodes; full frames, CBOR, CRC-32, HMAC join",
        "dask_cluster": "LocalCluster(processes=False, threads_per_worker=1)",
    }
