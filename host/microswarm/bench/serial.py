"""Serial receive cost per byte in the VM: the firmware's serial link in blocks vs byte by byte.

The MicroPython VM runs firmware/link_serial.py's SerialLink on the terminal end of a raw pty,
as a virtual board's VM does, and reads COBS-like frames (254 data bytes, then 0x00) that
a host thread writes as fast as the pty takes them. Each round times the link reading
`--bytes` bytes in blocks (a read returns what the tty has: the unix port's termios) and,
in the same VM, byte by byte after poll (`SerialLink(blocks=False)`, the way boards without
termios read, and the way every port read before): the baseline. Rounds alternate the two;
the figures are the medians. A block of the frame line is the worker's own receive buffer
(worker_up._SERIAL_CHUNK bytes).
"""

from __future__ import annotations

import argparse
import os
import re
import select
import statistics
import subprocess
import threading
import time
import tty

FRAME = bytes(range(1, 255)) + b"\x00"  # a COBS block of 254 data bytes and a delimiter

VM_SCRIPT = """
import sys, time, asyncio
sys.path.insert(0, '')
import link_serial
CHUNK = {chunk}


async def receive(blocks, total):
    link = link_serial.SerialLink(blocks=blocks)
    await link.open()
    view = memoryview(bytearray(CHUNK))
    sys.stdout.write('GO %d\\n' % blocks)
    got = 0
    start = None
    while got < total:
        n = await link.read_into(view)
        if start is None:
            start = time.ticks_us()
        got += n
    took = time.ticks_diff(time.ticks_us(), start)
    link.close()
    return got, took


async def main():
    for mode in {modes!r}:
        got, took = await receive(mode, {total})
        sys.stdout.write('DONE %d %d %d\\n' % (mode, got, took))


asyncio.run(main())
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bytes", type=int, default=256 * 1024,
                        help="bytes received per measurement")
    parser.add_argument("--rounds", type=int, default=3,
                        help="measurements of each way (alternating)")


def _feed(fd: int, total: int, stop: threading.Event) -> None:
    """Write `total` bytes of frames into the pty's controlling end (a multiple of a
    frame's size: the reader takes exactly that, nothing is left for the next)."""
    view = memoryview(FRAME * (total // len(FRAME)))
    while view and not stop.is_set():
        _, ready, _ = select.select([], [fd], [], 0.2)
        if ready:
            view = view[os.write(fd, view[:65536]):]


def _measure(blocks_first: bool, total: int) -> dict[int, float]:
    """One VM: both ways once (order alternating between rounds); µs per byte by way."""
    from microswarm import paths

    source = (paths.firmware_dir() / "worker_up.py").read_text()  # (its serial buffer)
    chunk = int(re.search(r"^_SERIAL_CHUNK = const\((\d+)\)", source, re.M).group(1))
    controller, terminal = os.openpty()
    tty.setraw(terminal)
    modes = (1, 0) if blocks_first else (0, 1)
    script = VM_SCRIPT.format(chunk=chunk, modes=modes, total=total)
    proc = subprocess.Popen([paths.micropython_command(), "-c", script],
                            cwd=paths.firmware_dir(), stdin=terminal, stdout=terminal,
                            stderr=subprocess.PIPE)
    os.close(terminal)
    out = bytearray()
    per_byte: dict[int, float] = {}
    deadline = time.monotonic() + 120
    try:
        for mode in modes:
            while not re.search(rb"GO %d\n" % mode, out):
                out += _read(controller, deadline, proc)
            stop = threading.Event()
            feeder = threading.Thread(target=_feed, args=(controller, total, stop), daemon=True)
            feeder.start()
            try:
                while not (done := re.search(rb"DONE %d (\d+) (\d+)\n" % mode, out)):
                    out += _read(controller, deadline, proc)
            finally:
                stop.set()
                feeder.join()
            got, took = int(done.group(1)), int(done.group(2))
            per_byte[mode] = took / got
    finally:
        proc.kill()
        proc.wait(timeout=10)
        os.close(controller)
    return per_byte


def _read(fd: int, deadline: float, proc: subprocess.Popen) -> bytes:
    if time.monotonic() > deadline or proc.poll() is not None:
        err = proc.stderr.read().decode(errors="replace") if proc.poll() is not None else ""
        raise RuntimeError(f"bench serial: the VM gave no result in time {err[-500:]}")
    ready, _, _ = select.select([fd], [], [], 0.2)
    return os.read(fd, 65536) if ready else b""


def run(args: argparse.Namespace) -> dict:
    total = max(1, args.bytes // len(FRAME)) * len(FRAME)  # whole frames
    blocks, single = [], []
    for i in range(args.rounds):
        got = _measure(blocks_first=i % 2 == 0, total=total)
        blocks.append(got[1])
        single.append(got[0])
    after = statistics.median(blocks)
    before = statistics.median(single)
    return {
        "bytes_per_measurement": total,
        "rounds": args.rounds,
        "us_per_byte_blocks": [round(v, 4) for v in blocks],
        "us_per_byte_byte_by_byte": [round(v, 4) for v in single],
        "byte_by_byte_over_blocks": round(before / after, 2),
        "headline": {
            "name": "serial receive cost in the VM, block reads (baseline: byte by byte)",
            "value": round(after, 4),
            "unit": "us/byte",
            "baseline": round(before, 4),
        },
    }
