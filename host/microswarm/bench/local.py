"""Local nodes: speed-up of 2 CPython node processes over 1 on CPU-bound mandelbrot tiles.

The same tiles (the firmware's pure-Python `mandelbrot` kernel, fixed point) run on
`Cluster(local=1)`, on `Cluster(local=2)` and, as the baseline, on Dask's
`LocalCluster(processes=True, n_workers=2, threads_per_worker=1)` calling the very same
function, one after the other in this run. Each side is started and warmed up before its
clock starts; each is timed `--rounds` times and its best time kept. Headline: time on 1
local node over time on 2 (goal >= 1.8 on a 2-core machine); baseline: the same ratio for
Dask's two worker processes over our one node. The machine's core count and load are
reported beside it: with other work on the cores no side can reach 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from typing import Any

Q13 = 1 << 13


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--size", type=int, default=192, help="image width and height")
    parser.add_argument("--tile", type=int, default=32, help="tile width and height")
    parser.add_argument("--max-iter", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=2, help="timed runs per side; best kept")


def tiles(size: int, tile: int, max_iter: int) -> list[list[int]]:
    """mandelbrot(x0, y0, step, w, h, max_iter) calls covering [-2, 0.75] x [-1.25, 1.25]."""
    step = int(2.75 * Q13 / size)
    x0, y0 = int(-2.0 * Q13), int(-1.25 * Q13)
    return [[x0 + tx * step, y0 + ty * step, step, tile, tile, max_iter]
            for ty in range(0, size, tile) for tx in range(0, size, tile)]


def _ours(nodes: int, calls: list[list[int]], rounds: int) -> tuple[float, list]:
    from microswarm.master.cluster import Cluster

    with Cluster(local=nodes, timeout=120) as cluster:
        cluster.map("mandelbrot", calls[:nodes * 2])  # warm up every node
        best, out = float("inf"), []
        for _ in range(rounds):
            start = time.perf_counter()
            out = cluster.map("mandelbrot", calls)
            best = min(best, time.perf_counter() - start)
    return best, [list(a) for a in out]


def _dask(calls: list[list[int]], rounds: int) -> tuple[float, list]:
    from distributed import Client, LocalCluster

    from microswarm.firmware import kernels

    for name in ("distributed", "tornado", "bokeh"):
        logging.getLogger(name).setLevel(logging.ERROR)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as lc, Client(lc) as client:
        client.gather(client.map(kernels.mandelbrot, *zip(*calls[:4], strict=True), pure=False))
        best, out = float("inf"), []
        for _ in range(rounds):
            start = time.perf_counter()
            futures = client.map(kernels.mandelbrot, *zip(*calls, strict=True), pure=False)
            out = client.gather(futures)
            best = min(best, time.perf_counter() - start)
    return best, [list(a) for a in out]


def run(args: argparse.Namespace) -> dict[str, Any]:
    from microswarm.firmware import kernels

    calls = tiles(args.size, args.tile, args.max_iter)
    reference = [list(kernels.mandelbrot(*c)) for c in calls[:2]]
    load_before = os.getloadavg()[0]
    one, out1 = _ours(1, calls, args.rounds)
    two, out2 = _ours(2, calls, args.rounds)
    dask, out_dask = _dask(calls, args.rounds)
    assert out1 == out2 == out_dask, "the three runs disagree"
    assert out1[:2] == reference
    speedup = one / two
    return {
        "headline": {"name": "speed-up of 2 local nodes over 1, CPU-bound mandelbrot tiles",
                     "value": round(speedup, 3), "unit": "x",
                     "baseline": round(one / dask, 3)},
        "tiles": len(calls),
        "pixels": args.size * args.size,
        "seconds": {"local_1": round(one, 3), "local_2": round(two, 3),
                    "dask_processes_2": round(dask, 3)},
        "local_2_over_dask_2": round(dask / two, 3),
        "goals": {"speedup_1_8": speedup >= 1.8},
        "machine": {"cpus": os.cpu_count(), "load_1min_before": round(load_before, 2),
                    "load_1min_after": round(os.getloadavg()[0], 2)},
    }
