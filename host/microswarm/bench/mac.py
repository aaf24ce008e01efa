"""Cost of frame authentication (a MAC on every frame after the join), host and VM.

For a small frame (a TASK of ~40 payload bytes, the simulator's and a busy master's
common case) and a 4 KB one, it times, best of five rounds: the host codec's
encode_frame/decode_frame with and without a LinkAuth, and inside the MicroPython VM the
firmware's FrameWriter.frame and frame.decode with and without its auth.LinkAuth, plus the
heap bytes one sealed frame allocates there. Headline: microseconds the MAC adds to one
small frame in the VM (seal on one side plus check on the other), baseline: the same
frame's encode plus decode without it.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from microswarm import paths
from microswarm.protocol.catalog import MsgType
from microswarm.vm import run_script

KEY = bytes(range(32))
MN, NN = bytes(range(16)), bytes(range(16, 32))
SMALL = {0: 123456, 1: "mandelbrot", 2: [-16384, -8192, 512, 8, 8, 64], 3: 0}
LARGE = {0: 123457, 1: "echo", 2: [bytes(4000)], 3: 0}

_VM_SCRIPT = r"""
import gc, time, json, auth, frame
ticks, diff = time.ticks_us, time.ticks_diff
KEY, MN, NN = bytes(range(32)), bytes(range(16)), bytes(range(16, 32))

def best_us(fn, n):
    best = None
    for _ in range(5):
        gc.collect()
        t0 = ticks()
        for _ in range(n):
            fn()
        us = diff(ticks(), t0) / n
        best = us if best is None or us < best else best
    return best

def case(payload, n):
    plain = frame.FrameWriter(8192)
    sealed = frame.FrameWriter(8192)
    tx = auth.LinkAuth(KEY, MN, NN)
    tx.on = True
    sealed.auth = tx
    rx = auth.LinkAuth(KEY, MN, NN)
    rx._rx = rx._tx  # check what tx wrote
    rx.on = True
    raw = bytes(plain.frame(6, payload))
    signed = bytes(sealed.frame(6, payload))
    out = {}
    out["encode_us"] = best_us(lambda: plain.frame(6, payload), n)
    out["encode_mac_us"] = best_us(lambda: sealed.frame(6, payload), n)
    out["decode_us"] = best_us(lambda: frame.decode(raw, 8192, False), n)
    def check():
        rx.rx_counter = -1
        frame.decode(signed, 8192, False, rx)
    out["decode_mac_us"] = best_us(check, n)
    gc.collect()
    gc.disable()
    before = gc.mem_alloc()
    for _ in range(16):
        sealed.frame(6, payload)
    sealed_alloc = (gc.mem_alloc() - before) / 16
    before = gc.mem_alloc()
    for _ in range(16):
        plain.frame(6, payload)
    out["mac_alloc_bytes"] = sealed_alloc - (gc.mem_alloc() - before) / 16
    gc.enable()
    return out

small = {0: 123456, 1: [1, -2, 300, 40000], 3: 2}
print(json.dumps({"small": case(small, 400), "large": case({0: 1, 1: bytes(4000), 3: 2}, 100)}))
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rounds", type=int, default=20000, help="host frames per round")


def _best_us(fn, n: int) -> float:
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t0) / n * 1e6)
    return round(best, 3)


def _host_case(payload: dict, n: int) -> dict[str, float]:
    from microswarm.wire import LinkAuth, decode_frame, encode_frame

    tx = LinkAuth.master(KEY, MN, NN)
    rx = LinkAuth.node(KEY, MN, NN)
    rx.receiving = True
    raw = encode_frame(MsgType.TASK, payload, 1)
    signed = encode_frame(MsgType.TASK, payload, 1, auth=tx)

    def check() -> None:
        rx.rx_counter = -1
        decode_frame(signed, auth=rx)

    return {
        "encode_us": _best_us(lambda: encode_frame(MsgType.TASK, payload, 1), n),
        "encode_mac_us": _best_us(lambda: encode_frame(MsgType.TASK, payload, 1, auth=tx), n),
        "decode_us": _best_us(lambda: decode_frame(raw), n),
        "decode_mac_us": _best_us(check, n),
        "frame_bytes": len(raw),
        "frame_mac_bytes": len(signed),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    host = {"small": _host_case(SMALL, args.rounds), "large": _host_case(LARGE, args.rounds // 10)}
    vm = json.loads(run_script(_VM_SCRIPT, cwd=paths.firmware_dir(), timeout=300).strip())
    for side in (host, vm):
        for case in side.values():
            case["mac_us"] = round(case["encode_mac_us"] - case["encode_us"]
                                   + case["decode_mac_us"] - case["decode_us"], 3)
    small = vm["small"]
    return {
        "headline": {"name": "vm_mac_us_per_small_frame", "value": round(small["mac_us"], 1),
                     "unit": "us", "baseline": round(small["encode_us"] + small["decode_us"], 1)},
        "host": host,
        "vm": vm,
        "host_mac_us_per_dispatch": round(2 * host["small"]["mac_us"], 3),
    }
