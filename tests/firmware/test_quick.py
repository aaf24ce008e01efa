"""Which kernel calls the board worker runs on its event loop rather than its kernel thread
(worker_thread.on_loop and timed, in the MicroPython VM with the firmware compiled as
deployed): only a call with the same magnitudes as a call of that kernel that took under
QUICK_US, so that a long call after short ones of the same kernel runs beside the link
(issue 11's rule; tests/master/test_liveness.py runs that case on a real board)."""

from __future__ import annotations

import json

from .conftest import make_flash

SCRIPT = r"""
import gc, json
from array import array
import msw_kernel, kernels, worker_thread

@msw_kernel.kernel("undeclared")
def undeclared(x):
    return x

class Task:
    def __init__(self, kernel, args):
        self.kernel = kernel
        self.args = args

class S:
    pass

s = S()
s._quick = {}
out = []

def call(name, args, elapsed):
    t = Task(name, args)
    like = worker_thread.on_loop(s, t)
    worker_thread.timed(s, t, elapsed, like)
    out.append(like)

call("monte_carlo_pi", [7, 100], 50)          # no call kept yet: the thread
call("monte_carlo_pi", [7, 100], 50)          # the same magnitudes: the loop
call("monte_carlo_pi", [8, 100], 50)          # another seed, the same work: the loop
call("monte_carlo_pi", [7, 40000000], 5000000)  # another n: the thread
call("monte_carlo_pi", [7, 100], 50)          # the short ones stay kept: the loop
call("monte_carlo_pi", [7, 100], 2000)        # on the loop but slow: dropped
call("monte_carlo_pi", [7, 100], 50)          # so the thread
call("mandelbrot", [-16384, -8192, 51, 8, 8, 64], 80)
call("mandelbrot", [-15976, -7781, 40, 8, 8, 64], 80)  # other coordinates: the loop
call("mandelbrot", [-16384, -8192, 51, 8, 8, 65], 80)  # another max_iter: the thread
call("dot", [array("h", [1, 2]), array("h", [3, 4])], 20)
call("dot", [array("h", [5, 6]), array("h", [7, 8])], 20)  # the same lengths: the loop
call("dot", [array("h", [1, 2, 3]), array("h", [3, 4, 5])], 20)  # longer: the thread
call("undeclared", [1.5], 10)
call("undeclared", [1.5], 10)                 # no kinds: every value counts
call("undeclared", [2.5], 10)
print(json.dumps({"decisions": out}))

def alloc(t, n):
    on_loop = worker_thread.on_loop
    gc.collect()
    gc.disable()
    before = gc.mem_alloc()
    for _ in range(n):
        on_loop(s, t)
    used = gc.mem_alloc() - before
    gc.enable()
    return used

t = Task("mandelbrot", [-15976, -7781, 40, 8, 8, 64])  # the loop's case, compared in full
alloc(t, 10)
print(json.dumps({"alloc": [alloc(t, 10), alloc(t, 1000)]}))
"""


def test_only_a_call_like_a_quick_one_runs_on_the_loop(tmp_path, vm_script):
    flash = make_flash(tmp_path)
    rows = {}
    for line in vm_script(flash, SCRIPT, 1 << 22).splitlines():
        if line.startswith("{"):
            rows.update(json.loads(line))
    assert rows["decisions"] == [False, True, True, False, True, True, False,
                                 False, True, False,
                                 False, True, False,
                                 False, True, False]
    small, large = rows["alloc"]
    assert large == small  # nothing per call
