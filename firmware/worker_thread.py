"""A node's kernel thread, where the port runs threads in parallel without a global lock
(the unix port, rp2's second core): KernelThread, and the rule for which calls still run
on the event loop (on_loop, timed; `self` there is the worker's Session). worker.py
imports it only on such a node, so a board without one never loads it.
"""

import time
from array import array

import asyncio
import msw_kernel
from micropython import const

QUICK_US = const(1000)  # a call like one that took less runs on the loop (on_loop)
_SIZED = (bytes, bytearray, memoryview, array, str, list, tuple, dict)
_FREE = object()  # an argument whose value does not bound a call's work (timed)
len = len
isinstance = isinstance
range = range


class KernelThread:
    """One thread for the whole boot that runs one kernel at a time beside the loop.

    The loop hands a call over through a lock, the thread answers through a
    ThreadSafeFlag. Nothing else is shared: the arguments belong to the running task."""

    def __init__(self, thread):
        self._go = thread.allocate_lock()
        self._go.acquire()
        self._flag = asyncio.ThreadSafeFlag()
        self._job = None
        self._out = None
        self._res = [None, None, 0]
        thread.start_new_thread(self._serve, ())

    def _serve(self):
        while True:
            self._go.acquire()
            job = self._job
            self._out = msw_kernel.call(job[0], job[1], self._res, time.ticks_us,
                                         time.ticks_diff)
            job = None
            self._job = None
            self._flag.set()

    async def run(self, fn, args):
        while self._job is not None:  # a kernel of an ended session still runs
            await self._flag.wait()
        self._out = None
        self._job = (fn, args)
        self._go.release()
        while self._job is not None:
            await self._flag.wait()
        out = self._out
        self._out = None
        value, error, elapsed = out
        out[0] = out[1] = None
        return value, error, elapsed


def on_loop(self, task):
    """Does `task` run on the event loop, not the kernel thread? Only when a call of its
    kernel with the same magnitudes took under QUICK_US here (timed()): each argument's
    length if it is a sequence, else its value, except the arguments declared "int" or
    "float", values such as coordinates, seeds and thresholds. A built-in kernel's work
    is bounded by those magnitudes (mandelbrot's by w*h*max_iter whatever its
    coordinates, monte_carlo_pi's by n whatever its seed, the array kernels' by their
    lengths), so a call that may take longer goes to the thread and the link keeps
    heartbeating. Compared element-wise, nothing allocated per task."""
    shape = self._quick.get(task.kernel)
    if shape is None:
        return False
    args = task.args
    n = len(args)
    if len(shape) != n:
        return False
    for i in range(n):
        s = shape[i]
        if s is not _FREE:
            v = args[i]
            if (len(v) if isinstance(v, _SIZED) else v) != s:
                return False
    return True


def timed(self, task, elapsed, like):
    """After a call on a node with a kernel thread (`like`: on_loop() ran it on the
    loop): under QUICK_US its magnitudes are kept for on_loop() (one list per kernel,
    overwritten in place); a call like the kept one that took longer drops them, and
    the next such call goes back to the thread. The engine checked the arguments
    against the declared kinds, so a free one ("int", "float") is never a sequence."""
    quick = self._quick
    name = task.kernel
    if elapsed >= QUICK_US:
        if like:
            quick.pop(name)
        return
    if like:
        return  # kept already
    args = task.args
    n = len(args)
    shape = quick.get(name)
    if shape is None or len(shape) != n:
        shape = quick[name] = [None] * n
    spec = msw_kernel.KERNELS[name][msw_kernel.ARGS]  # None: no declared kinds
    for i in range(n):
        v = args[i]
        kind = None if spec is None else spec[i][1]
        if kind == "int" or kind == "float":
            shape[i] = _FREE
        else:
            shape[i] = len(v) if isinstance(v, _SIZED) else v
