"""The least a real VM board spends on one task besides its kernel, measured in the VM.

A virtual board decodes every TASK frame and encodes every RESULT frame with the
firmware's own codec (firmware/frame.py) before and after the kernel runs; on native
kernels that is most of a task's time. The makespan lower bound (sim/bounds.py) counts it
per task on a VM board: it is the time `frame.decode` of the job's cheapest TASK frame
plus `FrameWriter.frame` of its RESULT, and the two frame MACs (SPEC.md section 5: the
TASK's checked, the RESULT's made) take in the VM on this host, the best round of five.
The real path does more (socket reads and writes, the engine's bookkeeping, the worker's
scheduling), and other load only makes a round slower, so it stays below what the board
can do.
"""

from __future__ import annotations

import binascii
import subprocess

from microswarm import paths
from microswarm.vm import VMError, run_script

ROUNDS = 5
CALLS = 200  # per round
_SCRIPT = f"""
import sys, binascii, time, gc
ROUNDS, CALLS = {ROUNDS}, {CALLS}
import frame, auth
task = binascii.unhexlify(sys.stdin.readline().strip())
res = binascii.unhexlify(sys.stdin.readline().strip())
limit = max(len(task), len(res)) + 64
writer = frame.FrameWriter(limit)
mt, fl, sq, payload = frame.decode(res, limit)
link = auth.LinkAuth(bytes(32), bytes(16), bytes(16))
link.on = True
writer.auth = link  # the RESULT carries its MAC trailer
signed = memoryview(task)[:-4]  # what the TASK's trailer covers: header and payload
scratch = bytearray(12)
best = None
for _ in range(ROUNDS):
    gc.collect()
    t0 = time.ticks_us()
    for _ in range(CALLS):
        frame.decode(task, limit)
        link.seal(scratch, 0, signed)  # the same HMAC work as checking the TASK's trailer
        writer.frame(mt, payload, sq)
    dt = time.ticks_diff(time.ticks_us(), t0)
    best = dt if best is None or dt < best else best
print(best)
"""

_CACHE: dict[tuple[bytes, bytes], float] = {}


def task_floor(task_frame: bytes, result_frame: bytes) -> float:
    """Seconds the VM's firmware codec needs for one TASK decode and one RESULT encode of
    these frames and their two MACs, best round; 0.0 when the VM cannot run."""
    key = (task_frame, result_frame)
    if key not in _CACHE:
        stdin = binascii.hexlify(task_frame) + b"\n" + binascii.hexlify(result_frame) + b"\n"
        try:
            out = run_script(_SCRIPT, cwd=paths.firmware_dir(), stdin=stdin, timeout=60)
            _CACHE[key] = int(out.strip().splitlines()[-1]) / 1e6 / CALLS
        except (OSError, subprocess.SubprocessError, VMError, ValueError):
            _CACHE[key] = 0.0
    return _CACHE[key]
