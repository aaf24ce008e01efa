"""Firmware worker throughput: echo and 64x64 int8 matmul tasks/s on one virtual board.

One MicroPython VM runs the unchanged firmware (the board's heap, frame limit and slots)
and serves a real master, over TCP on loopback and over a raw pty serial link. The
headline's echo run is on the virtual board's own board file (`unix`: a PC's heap, and its
slots; the master's window set to match), with the CPU time per task of the master and of
the VM (Linux /proc); the same figures for `--board` are under `tcp`. The baseline is the
same echo job, through the same master, slots and window, on an in-process CPython node
(microswarm.firmware.kernels behind the same frames) over TCP, measured in the same run.
Allocation per task: the same VM board under a harness (ALLOC_HARNESS) that wraps the
engine's `finished` and reads gc.mem_alloc() as tasks complete: with gc disabled on a heap
large enough for the whole run, the bytes allocated per task in steady state (after a warm-up)
over `--alloc-tasks` echo tasks and as many 4x4 int8 matmul tasks; with gc on at the ESP32
board's heap, the collections per 1,000 tasks (a drop of gc.mem_alloc() between two task
ends is a collection, the worker's own gc.collect() included).
The 32 KB figure is the smallest VM heap (bisected in 4 KB steps) at which the firmware
joins and answers a task with a 32 KB chunked input, beside what the imported firmware
modules alone hold, so the data side of the task is the difference.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import contextlib
import os
import subprocess
import tempfile
import time
import tty
from pathlib import Path
from typing import Any

BENCH_KEY = bytes(range(32))
CLUSTER = "bench"
VM_BOARD = "unix"  # the virtual board's own board file (the headline's echo run)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--board", default="w5500-evb-pico2",
                        help="board the VM stands for (heap, frame limit, slots)")
    parser.add_argument("--echo", type=int, default=400, help="echo tasks per measurement")
    parser.add_argument("--tiles", type=int, default=24, help="matmul tiles per measurement")
    parser.add_argument("--alloc-tasks", type=int, default=1000,
                        help="echo and small matmul tasks per allocation measurement")


def run(args: argparse.Namespace) -> dict:
    return asyncio.run(_bench(args.board, args.echo, args.tiles, args.alloc_tasks))


def _flash(root: Path, board: str, link: str, master: str, native: bool) -> dict:
    from microswarm import bundle
    from microswarm.deploy.build import compile_layout

    definition = bundle.virtual_board(board)
    config = bundle.render_config("vm-bench", CLUSTER, BENCH_KEY, master, link)
    files = bundle.layout(definition, config)
    if not native:
        files.pop(bundle.NATIVE_MODULE, None)
    bundle.write_layout(root, compile_layout(files, bundle.VM_ARCH))
    return definition


@contextlib.contextmanager
def _vm(flash: Path, heap: int, stdio: int | None = None):
    from microswarm import paths

    io = subprocess.DEVNULL if stdio is None else stdio
    proc = subprocess.Popen([paths.micropython_command(), "-X", f"heapsize={heap}", "main.py"],
                            cwd=flash, stdin=io, stdout=io, stderr=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait(timeout=10)


JOB_TIMEOUT_S = 120.0
PROBE_TIMEOUT_S = 4.0


async def _rate(master, kernel: str, arg_lists: list[list[Any]],
                cpu: dict | None = None, pid: int | None = None) -> float | None:
    """Tasks per second, or None when the board cannot run them (out of heap). `cpu`: gets
    the CPU time per task of this process (the master) and of process `pid` (the VM), in
    microseconds (None where /proc cannot say)."""
    from microswarm.master.master import JobFailedError

    try:
        await asyncio.wait_for(master.submit(kernel, arg_lists[:8]), JOB_TIMEOUT_S)  # warm
        vm = _cpu_s(pid)
        own = time.process_time()
        start = time.perf_counter()
        await asyncio.wait_for(master.submit(kernel, arg_lists), JOB_TIMEOUT_S)
    except JobFailedError:
        return None
    elapsed = time.perf_counter() - start
    if cpu is not None:
        n = len(arg_lists)
        cpu["master_cpu_us_per_task"] = round((time.process_time() - own) * 1e6 / n, 1)
        after = _cpu_s(pid)
        cpu["vm_cpu_us_per_task"] = (None if vm is None or after is None
                                     else round((after - vm) * 1e6 / n, 1))
    return len(arg_lists) / elapsed


def _cpu_s(pid: int | None) -> float | None:
    """User and system CPU seconds of process `pid` so far (Linux /proc), or None."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def _tile() -> list[Any]:
    a = array.array("b", [(i * 37) % 256 - 128 for i in range(64 * 64)])
    b = array.array("b", [(i * 11) % 256 - 128 for i in range(64 * 64)])
    return [a, b, 64, 64, 64]


async def _master(**kw):
    from microswarm.master import Master

    master = Master(cluster=CLUSTER, key=BENCH_KEY, tcp_port=0, udp_port=None,
                    control_port=None, heartbeat_ms=200, **kw)
    await master.start()
    return master


async def _runs_at(board: str, heap: int, data: bytes) -> bool:
    """Does the firmware join and answer a task with a 32 KB chunked input at this heap?"""
    import hashlib

    master = await _master()
    try:
        with tempfile.TemporaryDirectory(prefix="msw-bench-") as tmp:
            _flash(Path(tmp), board, "tcp", f"127.0.0.1:{master.tcp_port}", True)
            with _vm(Path(tmp), heap):
                try:
                    await master.wait_for_nodes(1, timeout=PROBE_TIMEOUT_S)
                    job = master.submit("sha256", [[data]])
                    digest = await asyncio.wait_for(job, PROBE_TIMEOUT_S)
                except (TimeoutError, RuntimeError):
                    return False
                return digest[0] == hashlib.sha256(data).digest()
    finally:
        await master.stop()


async def _smallest_heap(board: str, high: int, step: int = 4096) -> int:
    """The smallest VM heap (to `step` bytes) that runs the firmware and a 32 KB task."""
    data = bytes(range(256)) * 128
    low = 16 * 1024
    if not await _runs_at(board, high, data):
        return -1
    while high - low > step:
        mid = (low + high) // 2
        if await _runs_at(board, mid, data):
            high = mid
        else:
            low = mid
    return high


def _resident(board: str) -> int:
    """Heap bytes the imported firmware modules hold in the VM."""
    from microswarm import paths

    probe = ("import gc\ngc.collect()\nb = gc.mem_alloc()\n"
             "import asyncio, auth, board, cbor, config, frame, kernels, msgdefs, worker\n"
             "gc.collect()\nprint(gc.mem_alloc() - b)\n")
    with tempfile.TemporaryDirectory(prefix="msw-bench-") as tmp:
        _flash(Path(tmp), board, "tcp", "", True)
        out = subprocess.run([paths.micropython_command(), "-c", probe], cwd=tmp,
                             capture_output=True, timeout=30, check=True)
    return int(out.stdout)


async def _board_over_tcp(board: str, heap: int, echo: list, tiles: list,
                          native: bool, window: int | None = None) -> dict:
    """matmul tiles/s (unless `tiles` is empty) and, with the native module, echo tasks/s
    and the CPU time per echo task of the master and of the VM. `window`: the master's
    (Master's default when None)."""
    master = await _master(**({} if window is None else {"window": window}))
    try:
        with tempfile.TemporaryDirectory(prefix="msw-bench-") as tmp:
            _flash(Path(tmp), board, "tcp", f"127.0.0.1:{master.tcp_port}", native)
            with _vm(Path(tmp), heap) as proc:
                await master.wait_for_nodes(1, timeout=30)
                out: dict[str, Any] = {}
                if tiles:
                    out["matmul_tiles_per_s"] = await _rate(master, "matmul", tiles)
                if native:
                    cpu: dict[str, Any] = {}
                    out["echo_tasks_per_s"] = await _rate(master, "echo", echo, cpu, proc.pid)
                    out.update(cpu)
                return out
    finally:
        await master.stop()


async def _board_over_serial(board: str, heap: int, echo: list, tiles: list) -> dict:
    vm_fd, slave_fd = os.openpty()
    tty.setraw(slave_fd)
    master = await _master()
    try:
        with tempfile.TemporaryDirectory(prefix="msw-bench-") as tmp:
            _flash(Path(tmp), board, "serial", "", True)
            with _vm(Path(tmp), heap, vm_fd):
                await master.open_serial(os.ttyname(slave_fd))
                await master.wait_for_nodes(1, timeout=30)
                return {"echo_tasks_per_s": await _rate(master, "echo", echo),
                        "matmul_tiles_per_s": await _rate(master, "matmul", tiles)}
    finally:
        await master.stop()
        os.close(slave_fd)
        os.close(vm_fd)


ALLOC_BOARD = "esp32-devkit-w5500"  # the collections are counted at this board's heap
ALLOC_HEAP = 16 * 1024 * 1024  # gc off: room for every allocation of the run (a larger
# heap slows the VM's explicit collections enough for the master to drop the node)
WARM = 50
# Runs main.py with engine.Engine.finished wrapped. MARKS: (done count where a window
# starts, where it ends, name); each window prints "ALLOC name bytes collections".
ALLOC_HARNESS = """
import gc
import engine

MARKS = {marks!r}
GC_OFF = {gc_off!r}
_finished = engine.Engine.finished
_st = [None, 0, 0, 0]  # window name, mem_alloc at its start, last mem_alloc, collections


def finished(self, task, value, error, elapsed, now):
    _finished(self, task, value, error, elapsed, now)
    st = _st
    a = gc.mem_alloc()
    if a < st[2]:
        st[3] += 1
    st[2] = a
    done = self.stats.done
    for start, end, name in MARKS:
        if done == start:
            if GC_OFF:
                gc.collect()
                gc.disable()
            st[0] = name
            st[1] = st[2] = gc.mem_alloc()
            st[3] = 0
        elif done == end and st[0] == name:
            print("ALLOC", name, a - st[1], st[3])
            st[0] = None
            gc.enable()


engine.Engine.finished = finished
exec(open("main.py").read())
"""


def _small_tile() -> list[Any]:
    a = array.array("b", range(-8, 8))
    return [a, a, 4, 4, 4]


async def _alloc(board: str, heap: int, n: int, gc_off: bool) -> dict:
    """{kernel: (bytes allocated over n tasks, collections)} measured by ALLOC_HARNESS."""
    from microswarm import paths

    marks = [(WARM, WARM + n, "echo"), (2 * WARM + n, 2 * WARM + 2 * n, "matmul")]
    master = await _master()
    try:
        with tempfile.TemporaryDirectory(prefix="msw-bench-") as tmp:
            _flash(Path(tmp), board, "tcp", f"127.0.0.1:{master.tcp_port}", True)
            harness = Path(tmp) / "alloc_harness.py"
            harness.write_text(ALLOC_HARNESS.format(marks=marks, gc_off=gc_off))
            out = Path(tmp) / "out.txt"
            with open(out, "wb") as log, subprocess.Popen(
                    [paths.micropython_command(), "-X", f"heapsize={heap}", harness.name],
                    cwd=tmp, stdin=subprocess.DEVNULL, stdout=log,
                    stderr=subprocess.STDOUT) as proc:
                try:
                    await master.wait_for_nodes(1, timeout=30)
                    for kernel, args in (("echo", [1]), ("matmul", _small_tile())):
                        await master.submit(kernel, [args] * WARM)
                        await master.submit(kernel, [args] * n)
                    # the last window ends at the job's last RESULT, printed just after it
                    await master.submit("echo", [[1]] * 8)
                finally:
                    proc.kill()
            found = {}
            for line in out.read_text(errors="replace").splitlines():
                if line.startswith("ALLOC "):
                    _, name, used, collections = line.split()
                    found[name] = (int(used), int(collections))
            if set(found) != {"echo", "matmul"}:
                raise RuntimeError("the allocation harness said: " + out.read_text()[-2000:])
            return found
    finally:
        await master.stop()


async def _allocation(board: str, n: int) -> dict:
    from microswarm import paths

    used = await _alloc(board, ALLOC_HEAP, n, gc_off=True)
    if used["echo"][1] or used["matmul"][1]:  # a gc.collect() of the worker's (a new session)
        raise RuntimeError(f"the heap was collected during a gc-off window: {used}")
    spec = dict(paths.load_board(ALLOC_BOARD))
    heap = spec["heap_bytes"] + (_resident(ALLOC_BOARD) if spec.get("frozen_modules") else 0)
    counted = await _alloc(ALLOC_BOARD, heap, n, gc_off=False)
    return {
        "tasks": n,
        "echo_bytes_per_task": round(used["echo"][0] / n, 1),
        "matmul_4x4_bytes_per_task": round(used["matmul"][0] / n, 1),
        "collections_per_1000_tasks": {
            "board": ALLOC_BOARD,
            "vm_heap_bytes": heap,
            "echo": round(counted["echo"][1] * 1000 / n, 1),
            "matmul_4x4": round(counted["matmul"][1] * 1000 / n, 1),
        },
        "note": "gc disabled, gc.mem_alloc() over n tasks after a warm-up, every allocation of "
                "the worker included (frames in and out, engine, kernel); collections counted "
                "with gc on at the ESP32 board's heap",
    }


async def _inproc_over_tcp(echo: list, slots: int) -> float:
    master = await _master(window=slots)
    try:
        await master.add_inproc_nodes(1, via="tcp", slots=slots)
        await master.wait_for_nodes(1, timeout=30)
        return await _rate(master, "echo", echo)
    finally:
        await master.stop()


def _ratio(a: float | None, b: float | None, digits: int) -> float | None:
    return None if a is None or not b else round(a / b, digits)


async def _bench(board: str, n_echo: int, n_tiles: int, n_alloc: int = 1000) -> dict:
    from microswarm import paths

    spec = dict(paths.load_board(board))
    resident = _resident(board)
    if spec.get("frozen_modules"):
        # the board keeps the firmware's code in flash: the VM adds what it holds in heap
        spec["heap_bytes"] += resident
    echo = [[i] for i in range(n_echo)]
    tiles = [_tile()] * n_tiles
    heap = spec["heap_bytes"]
    tcp = await _board_over_tcp(board, heap, echo, tiles, native=True)
    # the virtual board's own board file: a PC's heap, and the slots it says in HELLO
    # (the window is min(slots, the master's window): the master's is set to match)
    vm_board = dict(paths.load_board(VM_BOARD))
    vm_tcp = await _board_over_tcp(VM_BOARD, vm_board["heap_bytes"], echo, [], native=True,
                                   window=vm_board["slots"])
    tcp_python = await _board_over_tcp(board, heap, echo, tiles[: max(2, n_tiles // 4)],
                                       native=False)
    serial = await _board_over_serial(board, heap, echo, tiles)
    baseline = await _inproc_over_tcp(echo, vm_board["slots"])
    smallest = await _smallest_heap(board, spec["heap_bytes"])
    allocation = await _allocation(board, n_alloc)
    rate = vm_tcp["echo_tasks_per_s"]
    return {
        "board": board,
        "vm_heap_bytes": spec["heap_bytes"],
        "tcp": {k: _round(v) for k, v in tcp.items()},
        "tcp_vm_board": {"board": VM_BOARD, "slots": vm_board["slots"],
                         "master_window": vm_board["slots"],
                         **{k: _round(v) for k, v in vm_tcp.items()}},
        "tcp_pure_python_matmul_tiles_per_s": _round(tcp_python["matmul_tiles_per_s"], 2),
        "serial": {k: _round(v) for k, v in serial.items()},
        "inproc_cpython_echo_tasks_per_s": _round(baseline),
        "heap_32k_task": {
            "smallest_vm_heap_bytes": smallest,
            "firmware_modules_bytes": resident,
            "task_and_session_bytes": smallest - resident if smallest > 0 else None,
            "note": "smallest -X heapsize (4 KB steps) at which the VM joins and answers "
                    "sha256 of a 32 KB chunked input; modules measured after import",
        },
        "allocation_per_task": allocation,
        "vm_vs_inproc_echo_ratio": _ratio(rate, baseline, 3),
        "native_vs_python_matmul_ratio": _ratio(tcp["matmul_tiles_per_s"],
                                                tcp_python["matmul_tiles_per_s"], 2),
        "headline": {
            "name": f"echo tasks/s, one virtual board over TCP ({VM_BOARD} board file, "
                    f"{vm_board['slots']} slots, master window {vm_board['slots']})",
            "value": _round(rate),
            "unit": "tasks/s",
            "baseline": _round(baseline),
        },
        "baseline_is": "the same echo job on an in-process CPython node over TCP, same "
                       "master, the same slots and window",
    }
