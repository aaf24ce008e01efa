"""The jobs a scenario can run, split into tasks, each with a reference result computed
directly (one kernel call on the whole input, no scheduler, no links) to check the
simulated cluster's answer against.

A job's `assemble(results)` turns the per-task results (in task order) back into the
whole answer; `reference()` computes that answer directly. They must compare equal.
"""

from __future__ import annotations

import array
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from microswarm.firmware import kernels
from microswarm.master.operands import Shared

Q13 = 1 << 13


@dataclass
class Job:
    kind: str
    kernel: str
    tasks: list[list[Any]]  # one argument list per task
    assemble: Callable[[list[Any]], Any]
    reference: Callable[[], Any]
    describe: str


class JobError(ValueError):
    """A [job] table that does not describe a runnable job."""


def build(spec: dict[str, Any], seed: int) -> Job:
    kind = spec.get("kind")
    try:
        if kind == "mandelbrot":
            return _mandelbrot(spec)
        if kind == "matmul":
            return _matmul(spec, seed)
        if kind == "synthetic":
            return _synthetic(spec, seed)
        if kind == "kernel":
            return _kernel(spec)
    except (KeyError, TypeError) as exc:
        raise JobError(f"[job] {kind}: missing or wrong key {exc}") from None
    raise JobError(f"[job] unknown kind {kind!r}")


def _mandelbrot(spec: dict[str, Any]) -> Job:
    width, height = int(spec["width"]), int(spec["height"])
    tile = int(spec.get("tile", 16))
    max_iter = int(spec.get("max_iter", 64))
    x0 = round(float(spec.get("x0", -2.0)) * Q13)
    y0 = round(float(spec.get("y0", -1.125)) * Q13)
    step = round(float(spec.get("step", 2.5 / width)) * Q13)
    if min(width, height, tile, max_iter, step) <= 0:
        raise JobError("[job] mandelbrot: width, height, tile, max_iter, step must be > 0")
    tiles = [
        (tx, ty, min(tile, width - tx), min(tile, height - ty))
        for ty in range(0, height, tile)
        for tx in range(0, width, tile)
    ]
    tasks = [[x0 + tx * step, y0 + ty * step, step, w, h, max_iter] for tx, ty, w, h in tiles]

    def assemble(results: list[Any]) -> array.array:
        image = array.array("H", bytes(2 * width * height))
        for (tx, ty, w, h), part in zip(tiles, results, strict=True):
            for row in range(h):
                start = (ty + row) * width + tx
                image[start : start + w] = part[row * w : (row + 1) * w]
        return image

    def reference() -> array.array:
        return kernels.mandelbrot(x0, y0, step, width, height, max_iter)

    return Job("mandelbrot", "mandelbrot", tasks, assemble, reference,
               f"mandelbrot {width}x{height}, max_iter {max_iter}, {tile}x{tile} tiles")


def _matmul(spec: dict[str, Any], seed: int) -> Job:
    m, k, n = int(spec["m"]), int(spec["k"]), int(spec["n"])
    rows = int(spec.get("rows_per_task", 4))
    if min(m, k, n, rows) <= 0:
        raise JobError("[job] matmul: m, k, n, rows_per_task must be > 0")
    rng = random.Random(seed)
    a = array.array("b", [rng.randrange(-128, 128) for _ in range(m * k)])
    b = array.array("b", [rng.randrange(-128, 128) for _ in range(k * n)])
    blocks = [(r, min(rows, m - r)) for r in range(0, m, rows)]
    # B is the same in every task: a shared operand (sent to each node once) unless the
    # scenario says share_b = false
    shared_b = Shared(b) if spec.get("share_b", True) else b
    tasks = [[a[r * k : (r + h) * k], shared_b, h, k, n] for r, h in blocks]

    def assemble(results: list[Any]) -> array.array:
        out = array.array("i")
        for part in results:
            out.extend(part)
        return out

    def reference() -> array.array:
        return kernels.matmul(a, b, m, k, n)

    return Job("matmul", "matmul", tasks, assemble, reference,
               f"int8 matmul {m}x{k} @ {k}x{n}, {rows} rows per task")


def _synthetic(spec: dict[str, Any], seed: int) -> Job:
    """sleep_ms tasks: a job whose cost is set directly (link and fault studies)."""
    count = int(spec["tasks"])
    task_ms = int(spec.get("task_ms", 1000))
    spread = float(spec.get("spread", 0.0))
    if count <= 0 or task_ms < 0 or not 0 <= spread < 1:
        raise JobError("[job] synthetic: tasks > 0, task_ms >= 0, 0 <= spread < 1")
    rng = random.Random(seed)
    durations = [round(task_ms * (1 + spread * (2 * rng.random() - 1))) for _ in range(count)]
    tasks = [[ms] for ms in durations]
    return Job("synthetic", "sleep_ms", tasks, list, lambda: list(durations),
               f"{count} sleep_ms tasks of ~{task_ms} ms")


def _kernel(spec: dict[str, Any]) -> Job:
    """`tasks` calls of any kernel this process has (a kernel package loaded with
    `microswarm sim --kernels DIR`) on the argument list its `sample` hint gives."""
    from microswarm.firmware import msw_kernel as K

    name = str(spec["kernel"])
    count = int(spec.get("tasks", 100))
    entry = K.KERNELS.get(name)
    if entry is None:
        raise JobError(f"[job] kernel: no kernel {name!r} here (load its package with "
                       "--kernels DIR)")
    if entry[K.SAMPLE] is None:
        raise JobError(f"[job] kernel: {name} has no sample= hint to take arguments from")
    if count <= 0:
        raise JobError("[job] kernel: tasks must be > 0")
    args = list(entry[K.SAMPLE]())
    tasks = [args for _ in range(count)]

    def reference() -> list[Any]:
        value = entry[K.FN](*args)
        return [value] * count

    return Job("kernel", name, tasks, list, reference,
               f"{count} calls of {name} on its sample arguments")
