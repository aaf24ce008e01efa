"""Frame codec speed: the fast host codec against the construct reference, side by side.

Each of three typical frames (a TASK carrying a 4 KB int8 typed array, a ~40-byte RESULT, a
HEARTBEAT) is encoded and decoded by both host codecs in the same run; the figure is the
ratio of their times. The firmware codec's rate inside the MicroPython VM comes from
microswarm.bench.codec_vm when that module is present.
"""

from __future__ import annotations

import argparse
import array
import time
from collections.abc import Callable
from typing import Any


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repeat", type=int, default=5, help="timing rounds; the best counts")
    parser.add_argument(
        "--budget", type=float, default=0.1, help="seconds per round and codec and frame"
    )


def sample_frames() -> dict[str, tuple[int, dict]]:
    from microswarm.protocol.catalog import MsgType

    tile = array.array("b", (i % 256 - 128 for i in range(4096)))
    return {
        "task_4k_int8": (MsgType.TASK, {0: 1001, 1: "matmul_i8", 2: [tile, 64, 64], 3: 0}),
        "result_small": (MsgType.RESULT, {0: 1001, 1: [1.5, 2.25], 3: 1830, 4: True}),
        "heartbeat": (MsgType.HEARTBEAT, {0: 3_600_000, 1: 151_000, 2: 2, 3: 517}),
    }


def _calls_in(fn: Callable[[], Any], budget: float) -> int:
    calls, start = 0, time.process_time()
    while time.process_time() - start < budget / 10 or calls < 3:
        fn()
        calls += 1
    return max(1, int(budget * calls / (time.process_time() - start)))


def _best_per_call(fns: list[Callable[[], Any]], budget: float, repeat: int) -> list[float]:
    """Best CPU seconds per call of each function. CPU time, not wall time, so that other
    processes on the machine do not count; rounds alternate between the functions so that
    what remains (caches, frequency) hits all of them alike."""
    counts = [_calls_in(fn, budget) for fn in fns]
    best = [float("inf")] * len(fns)
    for _ in range(repeat):
        for i, (fn, n) in enumerate(zip(fns, counts, strict=True)):
            start = time.process_time()
            for _ in range(n):
                fn()
            best[i] = min(best[i], (time.process_time() - start) / n)
    return best


def _firmware_codec() -> tuple[Any, str | None]:
    try:
        from microswarm.bench.codec_vm import measure_firmware_codec
    except ImportError:
        return None, "microswarm.bench.codec_vm is not available in this build"
    return measure_firmware_codec(), None


def run(args: argparse.Namespace) -> dict:
    from microswarm import wire
    from microswarm.protocol import frame as ref

    frames: dict[str, dict] = {}
    fast_total = construct_total = 0.0
    for name, (msg_type, payload) in sample_frames().items():
        encoded = wire.encode_frame(msg_type, payload, 7)
        if ref.build_frame(msg_type, payload, 7) != encoded:
            raise SystemExit(f"codecs disagree on {name}: fix that before timing them")

        def fast(t: int = msg_type, p: dict = payload) -> None:
            wire.decode_frame(wire.encode_frame(t, p, 7))

        def construct(t: int = msg_type, p: dict = payload) -> None:
            ref.parse_frame(ref.build_frame(t, p, 7))

        fast_s, construct_s = _best_per_call([fast, construct], args.budget, args.repeat)
        fast_total += fast_s
        construct_total += construct_s
        frames[name] = {
            "bytes": len(encoded),
            "fast_us": round(fast_s * 1e6, 2),
            "construct_us": round(construct_s * 1e6, 2),
            "ratio": round(construct_s / fast_s, 1),
            "fast_frames_per_s": round(1 / fast_s),
        }
    firmware, note = _firmware_codec()
    ratio = construct_total / fast_total
    report: dict[str, Any] = {
        "frames": frames,
        "fast_us_total": round(fast_total * 1e6, 2),
        "construct_us_total": round(construct_total * 1e6, 2),
        "firmware_codec": firmware,
        "measures": "CPU time of encode + decode of one frame (incl. CRC and catalog "
        "validation), best of --repeat rounds",
        "headline": {
            "name": "construct time / fast codec time, encode+decode, 3 frames",
            "value": round(ratio, 1),
            "unit": "x",
            "baseline": f"construct reference codec: {construct_total * 1e6:.1f} us",
        },
    }
    if note:
        report["firmware_codec_note"] = note
    return report
