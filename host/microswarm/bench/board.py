"""Board link and kernel figures: round-trip latency, payload throughput, link efficiency,
kernel rates with the native module against pure Python.

With --port the board on that port is measured (the firmware is deployed first, with a
fresh key); without it a virtual board is started. Headline: link efficiency for 16 KB
payloads over serial (payload bytes / wire bytes, both directions).
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from array import array
from pathlib import Path

from microswarm.hil.probe import Probe, SessionEnded
from microswarm.hil.target import BoardUnderTest

TINY_TASKS = 300
PAYLOADS = {"1k": (1024, 60), "16k": (16384, 15)}
# Same inputs every run: kernel -> (arguments, work items per call, unit).
KERNEL_INPUTS = {
    "mandelbrot": ([-2 * 8192, -8192, 128, 64, 64, 128], 64 * 64, "pixels"),
    "dot": ([array("h", [(i * 13) % 2001 - 1000 for i in range(8192)]),
             array("h", [(i * 7) % 1001 - 500 for i in range(8192)])], 8192, "MAC"),
    "conv1d": ([array("b", [(i * 7) % 256 - 128 for i in range(4096)]),
                array("b", [(i * 5) % 15 - 7 for i in range(31)])], (4096 - 30) * 31, "MAC"),
    "fir": ([array("h", [(i * 29) % 4001 - 2000 for i in range(4096)]),
             array("h", [(i * 3) % 9 - 4 for i in range(31)]), 6], (4096 - 30) * 31, "MAC"),
    "matmul": ([array("b", [i % 13 - 6 for i in range(48 * 48)]),
                array("b", [i % 11 - 5 for i in range(48 * 48)]), 48, 48, 48],
               48 * 48 * 48, "MAC"),
}
KERNEL_REPEATS = 3
REJOINS_MAX = 3  # sessions the board may end in one run (task())


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", default=None,
                        help="serial port of a real board (default: start a virtual board)")
    parser.add_argument("--board", default=None, help="board definition of --port's board")
    parser.add_argument("--report", type=Path, default=None,
                        help="write report.md and latency.png into this folder")


def run(args: argparse.Namespace) -> dict:
    board = args.board or ("unix" if args.port is None else None)
    if board is None:
        raise SystemExit("--port needs --board NAME")
    target = BoardUnderTest.open(port=args.port, board=board, link="serial", native=True)
    comparison = None
    try:
        probe = target.connect()
        latencies = measure_latency(probe)
        throughput = {name: measure_payload(probe, size, reps)
                      for name, (size, reps) in PAYLOADS.items()}
        kernels = measure_kernels(probe)
        rejoins = probe.rejoins
        probe.close()
        if args.port is None:
            comparison = compare_pure(target)
    finally:
        target.close()
    report = build_report(board, args.port, latencies, throughput, kernels, comparison,
                          rejoins)
    if args.report:
        write_report(args.report, report, latencies)
    return report


def task(probe: Probe, kernel: str, args: list, timeout: float = 30.0) -> dict:
    """probe.task(), sent again in a new session when the board ended the one it was sent
    in: a board ends a session whose master is silent for 3 heartbeat intervals, as this
    process is when the machine does not run it for that long (a loaded host), and joins
    again. Counted in the report's `rejoins`; more than REJOINS_MAX in a run fail it."""
    while True:
        try:
            return probe.task(kernel, args, timeout)
        except SessionEnded as ended:
            if probe.rejoins >= REJOINS_MAX:
                raise
            probe.join(hello=ended.hello)


def measure_latency(probe: Probe) -> list[float]:
    """Round trips of the smallest task, one at a time, in milliseconds."""
    task(probe, "echo", [0])
    samples = []
    for i in range(TINY_TASKS):
        started = time.perf_counter()
        result = task(probe, "echo", [i])
        samples.append((time.perf_counter() - started) * 1000)
        if result.get(1) != i:
            raise RuntimeError(f"echo returned {result!r}")
    return samples


def measure_payload(probe: Probe, size: int, repeats: int) -> dict:
    """Echo `size` bytes `repeats` times; payload counted both ways."""
    data = bytes((i * 31 + 7) & 0xFF for i in range(size))
    task(probe, "echo", [data])
    counters = probe.transport.counters
    wire_before = counters.bytes_in + counters.bytes_out
    started = time.perf_counter()
    for _ in range(repeats):
        if task(probe, "echo", [data], timeout=60).get(1) != data:
            raise RuntimeError("echo returned other bytes")
    seconds = time.perf_counter() - started
    wire = counters.bytes_in + counters.bytes_out - wire_before
    payload = 2 * size * repeats
    return {
        "payload_bytes": size,
        "repeats": repeats,
        "throughput_kB_s": round(payload / seconds / 1000, 1),
        "efficiency": round(payload / wire, 4),
        "wire_bytes": wire,
    }


def measure_kernels(probe: Probe) -> dict:
    """Node-side compute rate of each kernel (elapsed_us from its RESULT)."""
    rates = {}
    for name, (args, items, unit) in KERNEL_INPUTS.items():
        best = None
        native = False
        for _ in range(KERNEL_REPEATS):
            result = task(probe, name, args, timeout=120)
            if 2 in result:
                raise RuntimeError(f"{name} failed: {result[2]}")
            elapsed = max(1, result[3])
            best = elapsed if best is None else min(best, elapsed)
            native = bool(result.get(4))
        rates[name] = {"rate": round(items / (best / 1e6)), "unit": f"{unit}/s",
                       "elapsed_us": best, "native": native}
    return rates


def compare_pure(target: BoardUnderTest) -> dict:
    """The same kernels on the virtual board deployed again without the native module
    (the one file deploy removes; a fresh board's start and full copy took 3.5 s)."""
    target.redeploy(native=False)
    probe = target.connect()
    try:
        return measure_kernels(probe)
    finally:
        probe.close()


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def build_report(board, port, latencies, throughput, kernels, pure, rejoins=0) -> dict:
    kernel_table = {}
    for name, figures in kernels.items():
        entry = dict(figures)
        if pure is not None:
            entry["pure_rate"] = pure[name]["rate"]
            entry["native_speedup"] = round(figures["rate"] / max(1, pure[name]["rate"]), 2)
        kernel_table[name] = entry
    return {
        "board": board,
        "port": port or "virtual board (pty)",
        "link": "serial",
        "latency_ms": {
            "median": round(statistics.median(latencies), 3),
            "p99": round(percentile(latencies, 0.99), 3),
            "tasks": len(latencies),
        },
        "payloads": throughput,
        "kernels": kernel_table,
        "rejoins": rejoins,  # sessions the board ended (its master silent): task()
        "headline": {
            "name": "link efficiency, 16 KB echo payloads over serial",
            "value": throughput["16k"]["efficiency"],
            "unit": "payload/wire",
            "baseline": None,
        },
    }


def write_report(folder: Path, report: dict, latencies: list[float]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    lat = report["latency_ms"]
    lines = [
        f"# Board benchmark: {report['board']} on {report['port']} ({report['link']})",
        "",
        "| figure | value |",
        "|---|---|",
        f"| round trip, tiny task, median | {lat['median']} ms |",
        f"| round trip, tiny task, p99 | {lat['p99']} ms |",
    ]
    for name, figures in report["payloads"].items():
        lines.append(f"| echo {name}: throughput (both ways) | {figures['throughput_kB_s']} kB/s |")
        lines.append(f"| echo {name}: payload / wire bytes | {figures['efficiency']} |")
    lines += ["", "| kernel | rate | native | pure Python | speedup |", "|---|---|---|---|---|"]
    for name, k in report["kernels"].items():
        lines.append(f"| {name} | {k['rate']} {k['unit']} | {k['native']} | "
                     f"{k.get('pure_rate', '-')} | {k.get('native_speedup', '-')} |")
    (folder / "report.md").write_text("\n".join(lines) + "\n")
    latency_plot(latencies, folder / "latency.png")


TAIL_FACTOR = 1.5  # the histogram's range ends at p99 + this much of (p99 - median)


def latency_plot(samples: list[float], path: Path, width: int = 640, height: int = 360) -> None:
    """Histogram of round-trip times (Pillow): axis ticks in ms and counts, the median and
    p99 marked, and the tail past p99 + 1.5 x (p99 - median) folded into one bar at the
    right edge with its count, so one slow outlier cannot squash the picture."""
    from PIL import Image, ImageDraw

    from microswarm.plotting import (
        dashed_vline,
        font,
        nice_step,
        nice_ticks,
        text_width,
        tick_label,
    )

    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    small, normal = font(11), font(13)
    left, right, top, bottom = 56, width - 24, 62, height - 48
    median, p99 = statistics.median(samples), percentile(samples, 0.99)
    low = min(samples)
    clip = p99 + TAIL_FACTOR * max(p99 - median, 0.01 * p99, 1e-3)
    high = max(min(max(samples), clip), low + 1e-3)
    step = nice_step(high - low, 6)
    low = math.floor(low / step) * step
    high = math.ceil(high / step) * step
    clipped = [v for v in samples if v > high]
    bins = 40
    counts = [0] * bins
    for value in samples:
        if value <= high:
            counts[min(bins - 1, int((value - low) / (high - low) * bins))] += 1
    peak = max(max(counts), len(clipped), 1)
    y_ticks = nice_ticks(0, peak, 4)
    y_top = max(y_ticks[-1], peak)
    plot_right = right - (22 if clipped else 0)
    bar = (plot_right - left) / bins

    def x_of(value: float) -> float:
        return left + (value - low) / (high - low) * (plot_right - left)

    def y_of(count: float) -> float:
        return bottom - (bottom - top) * count / y_top

    for tick in y_ticks:
        y = y_of(tick)
        draw.line([left, y, right, y], fill=(232, 232, 232))
        label = str(int(tick))
        draw.text((left - 6 - text_width(draw, label, small), y - 7), label, fill="black",
                  font=small)
    for i, count in enumerate(counts):
        if count:
            x0 = left + i * bar
            draw.rectangle([x0 + 1, y_of(count), x0 + bar - 1, bottom], fill=(70, 110, 180))
    if clipped:
        x0 = plot_right + 6
        draw.rectangle([x0, y_of(len(clipped)), right, bottom], fill=(200, 120, 60))
        note = f"{len(clipped)} beyond {high:g} ms (max {max(samples):.2f} ms)"
        draw.text((right - text_width(draw, note, small), bottom + 24), note,
                  fill=(160, 80, 30), font=small)
    draw.line([left, bottom, right, bottom], fill="black")
    draw.line([left, top, left, bottom], fill="black")
    x_step = nice_step(high - low, 6)
    for tick in nice_ticks(low, high, 6):
        x = x_of(tick)
        draw.line([x, bottom, x, bottom + 4], fill="black")
        label = tick_label(tick, x_step)
        draw.text((x - text_width(draw, label, small) / 2, bottom + 6), label, fill="black",
                  font=small)
    for value, name, colour in ((median, "median", (30, 140, 60)), (p99, "p99", (200, 40, 40))):
        x = x_of(min(value, high))
        dashed_vline(draw, x, top, bottom, colour)
        text = f"{name} {value:.2f} ms"
        w = text_width(draw, text, small)
        tx = x - w / 2 if x + w / 2 < right else right - w
        draw.line([x, top - 4, x, top - 1], fill=colour, width=2)
        draw.text((tx, top - (34 if name == "median" else 18)), text, fill=colour, font=small)
    draw.text((left, 6), f"round-trip latency of a tiny task, n={len(samples)}", fill="black",
              font=normal)
    axis = "round-trip time (ms)"
    draw.text(((left + plot_right - text_width(draw, axis, small)) / 2, bottom + 24), axis,
              fill="black", font=small)
    draw.text((6, top - 16), "tasks", fill="black", font=small)
    image.save(path)
