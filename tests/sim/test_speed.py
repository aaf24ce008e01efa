"""The compute-time model: work units follow the kernel's loop counts, time scales with
the board factor and slowdown, and the calibration cases run in the real VM."""

from __future__ import annotations

import array

import pytest

from microswarm.firmware import kernels
from microswarm.sim import calibrate, speed


def test_work_units_follow_the_inner_loops():
    image = kernels.mandelbrot(-16384, -8192, 400, 10, 6, 50)
    assert speed.work_units("mandelbrot", (0, 0, 400, 10, 6, 50), image) == 60 + sum(image)
    assert speed.work_units("matmul", (None, None, 3, 4, 5), None) == 60
    assert speed.work_units("monte_carlo_pi", (1, 7000), 5) == 7000
    x, taps = array.array("h", range(20)), array.array("h", [1, 2, 3])
    assert speed.work_units("fir", (x, taps, 0), kernels.fir(x, taps, 0)) == 18 * 3
    assert speed.work_units("echo", (b"abc",), b"abc") == 1
    assert speed.work_units("mandelbrot", (0, 0, 1, 2, 2, 9), None) == 1  # failed call


def test_seconds_scale_with_board_and_slowdown_and_sleep_is_a_wait():
    args = (None, None, 8, 8, 8)
    one = speed.compute_seconds("matmul", args, None, board_factor=1.0)
    assert one == pytest.approx(512 * speed.VM_SECONDS_PER_UNIT["matmul"]
                                + speed.TASK_OVERHEAD_S)
    rp = speed.compute_seconds("matmul", args, None, speed.BOARD_FACTOR["rp2350"])
    assert rp == pytest.approx(one * speed.BOARD_FACTOR["rp2350"])
    assert speed.compute_seconds("matmul", args, None, 1.0, slowdown=10) == pytest.approx(
        10 * one)
    assert speed.compute_seconds("sleep_ms", (250,), 250, board_factor=40) == 0.25


def test_board_factors_keep_the_published_order():
    f = speed.BOARD_FACTOR
    assert f["unix"] < f["esp32s3"] < f["rp2350"] < f["esp32"] < f["rp2040"]


def test_calibration_cases_run_in_the_vm_and_in_cpython():
    vm = calibrate.measure_vm(repeat=1)
    cp = calibrate.measure_cpython(repeat=1)
    assert set(vm) == set(cp) == set(calibrate.CASES)
    assert all(v > 0 for v in vm.values()) and all(v > 0 for v in cp.values())
    assert calibrate.units("matmul") == 24 * 24 * 24
