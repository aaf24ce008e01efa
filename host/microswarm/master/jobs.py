"""Named jobs for `microswarm run` and the demo: how to split, gather and check each.

A job is built from a few integer parameters into one kernel and its argument lists; its
``gather`` turns the results (in task order) into the job's answer, and ``check`` says
whether that answer equals the reference computed here directly.
"""

from __future__ import annotations

import array
import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from microswarm.firmware import kernels
from microswarm.master.split import BlockMatmul, Tiles2D

Q13 = 1 << 13


@dataclass
class JobPlan:
    name: str
    kernel: str
    tasks: list[list[Any]]
    gather: Callable[[list[Any]], Any]
    reference: Callable[[], Any]
    describe: Callable[[Any], str]
    extra: Any = None


def mandelbrot(width: int = 160, height: int = 120, tile: int = 20, max_iter: int = 48) -> JobPlan:
    """The classic view (-2.5..1 x -1.3125..1.3125), Q13 fixed point, split into tiles."""
    step = (7 * Q13 // 2) // width  # 3.5 wide
    x0 = -5 * Q13 // 2
    y0 = -(step * height) // 2
    tiles = Tiles2D(width, height, tile)
    tasks = [[x0 + t.x * step, y0 + t.y * step, step, t.w, t.h, max_iter] for t in tiles]
    return JobPlan(
        "mandelbrot",
        "mandelbrot",
        tasks,
        gather=lambda results: tiles.assemble(results, "H"),
        reference=lambda: kernels.mandelbrot(x0, y0, step, width, height, max_iter),
        describe=lambda image: (
            f"{width}x{height} image, max_iter {max_iter}, {len(tiles)} tiles, sha256 "
            f"{hashlib.sha256(bytes(image)).hexdigest()[:16]}"
        ),
        extra=tiles,
    )


def matmul(size: int = 48, block: int = 16, seed: int = 1) -> JobPlan:
    """C = A @ B for int8 matrices, split into blocks; exact integer result."""
    rng = random.Random(seed)
    a = array.array("b", [rng.randint(-128, 127) for _ in range(size * size)])
    b = array.array("b", [rng.randint(-128, 127) for _ in range(size * size)])
    split = BlockMatmul(a, b, size, size, size, block, share=True)  # B blocks go once per node
    return JobPlan(
        "matmul",
        "matmul",
        split.tasks(),
        gather=split.assemble,
        reference=lambda: list(kernels.matmul(a, b, size, size, size)),
        describe=lambda c: f"{size}x{size} int8 product in {len(split.blocks)} blocks, "
        f"trace {sum(c[i * size + i] for i in range(size))}",
    )


def montecarlo(tasks: int = 32, samples: int = 20000, seed: int = 1) -> JobPlan:
    """Estimate pi from tasks x samples xorshift32 points."""
    args = [[seed + i, samples] for i in range(tasks)]

    def estimate(hits: list[int]) -> float:
        return 4 * sum(hits) / (tasks * samples)

    return JobPlan(
        "montecarlo",
        "monte_carlo_pi",
        args,
        gather=estimate,
        reference=lambda: estimate([kernels.monte_carlo_pi(*a) for a in args]),
        describe=lambda pi: f"pi ~= {pi:.5f} from {tasks * samples} samples",
    )


def echo(tasks: int = 1000) -> JobPlan:
    """Round trips of tiny tasks (protocol overhead)."""
    return JobPlan(
        "echo",
        "echo",
        [[i] for i in range(tasks)],
        gather=list,
        reference=lambda: list(range(tasks)),
        describe=lambda r: f"{len(r)} echoes",
    )


JOBS: dict[str, Callable[..., JobPlan]] = {
    "mandelbrot": mandelbrot,
    "matmul": matmul,
    "montecarlo": montecarlo,
    "echo": echo,
}


def parse_params(items: list[str]) -> dict[str, int]:
    """NAME=INT pairs from the command line."""
    params = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"parameter {item!r} must be NAME=VALUE")
        params[name.replace("-", "_")] = int(value)
    return params
