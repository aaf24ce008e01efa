"""How long a kernel call takes on a simulated board, deterministically.

A simulated node really runs the kernel (in CPython) to get its result, but the virtual
time it charges is a model, not the host's wall clock, so a run does not depend on how
busy the host is:

    seconds = work_units(kernel, args, result) * VM_SECONDS_PER_UNIT[kernel]
              * BOARD_FACTOR[board] * slowdown + TASK_OVERHEAD_S * BOARD_FACTOR[board]

`VM_SECONDS_PER_UNIT` is measured: `python -m microswarm.sim.calibrate` times each kernel
in the MicroPython unix-port VM on the development PC (and in CPython for comparison).
`BOARD_FACTOR` scales the PC's VM to a board. The RP2350 figure is an estimate (no board
was at hand to measure): the PC core runs ~20x the RP2350's 150 MHz clock at a higher
IPC. The other boards are placed relative to the RP2350 with a published run of one
MicroPython benchmark on all of them (scruss.com, "Parallel MicroPython Benchmarking",
2025: RP2350 10.3 s, ESP32-S3 8.9 s, ESP32 15.4 s, RP2040 19.8 s). Scenarios can
override any factor; replace the estimate with a board measurement when one exists.
"""

from __future__ import annotations

from typing import Any

# Measured with `python -m microswarm.sim.calibrate --repeat 5` (MicroPython unix port
# 1.28 preview, x64, on the development PC). Seconds per work unit in the VM.
VM_SECONDS_PER_UNIT: dict[str, float] = {
    "mandelbrot": 2.76e-7,  # per pixel + per iteration
    "matmul": 1.14e-7,  # per multiply-accumulate
    "monte_carlo_pi": 3.36e-7,  # per sample
    "dot": 9.7e-8,  # per element
    "echo": 1.0e-6,  # per call
}
# The same cases in CPython 3.11 on the same PC, for the record: VM time / CPython time.
VM_OVER_CPYTHON: dict[str, float] = {
    "mandelbrot": 1.58,
    "matmul": 1.36,
    "monte_carlo_pi": 0.66,
    "dot": 1.18,
    "echo": 4.76,
}
DEFAULT_SECONDS_PER_UNIT = 1.0e-7
# Kernels of users' packages, measured at run time by `calibrate.calibrate_packages`
# (`microswarm sim --kernels DIR`); their work units come from the kernel's cost hint.
CALIBRATED: dict[str, float] = {}

RP2350_OVER_PC_VM = 40.0  # estimate, see the module docstring
BOARD_FACTOR: dict[str, float] = {
    "unix": 1.0,  # the unix-port VM on the PC itself
    "rp2350": RP2350_OVER_PC_VM,
    "esp32s3": RP2350_OVER_PC_VM * 8.9 / 10.3,
    "esp32": RP2350_OVER_PC_VM * 15.4 / 10.3,
    "rp2040": RP2350_OVER_PC_VM * 19.8 / 10.3,
}

# Frame decode, dispatch and result encode of one task in the VM on the PC (seconds).
TASK_OVERHEAD_S = 50e-6


def work_units(kernel: str, args: Any, result: Any) -> int:
    """A count proportional to the kernel's inner-loop iterations for this call."""
    try:
        if kernel == "mandelbrot":
            return int(args[3]) * int(args[4]) + sum(result)
        if kernel == "matmul":
            return int(args[2]) * int(args[3]) * int(args[4])
        if kernel == "monte_carlo_pi":
            return int(args[1])
        if kernel in ("dot", "zscore_anomaly", "lif_step", "sha256"):
            return len(args[0])
        if kernel in ("fir", "conv1d"):
            return len(result) * len(args[1])
        if kernel == "mlp_int8":
            return len(args[1]) + len(args[3])
        return _cost_hint(kernel, args)
    except (TypeError, ValueError, IndexError):
        pass
    return 1


def _cost_hint(kernel: str, args: Any) -> int:
    """Work units from a registered kernel's cost= hint; 1 without one."""
    from microswarm.firmware import msw_kernel as K

    entry = K.KERNELS.get(kernel)
    if entry is None or entry[K.COST] is None:
        return 1
    return max(1, int(entry[K.COST](*args)))


def compute_seconds(
    kernel: str, args: Any, result: Any, board_factor: float, slowdown: float = 1.0
) -> float:
    """Virtual seconds a node of `board_factor` spends on this call."""
    if kernel == "sleep_ms":
        return max(0, int(args[0])) / 1000.0
    per_unit = VM_SECONDS_PER_UNIT.get(kernel) or CALIBRATED.get(kernel,
                                                                  DEFAULT_SECONDS_PER_UNIT)
    work = work_units(kernel, args, result) * per_unit + TASK_OVERHEAD_S
    return work * board_factor * slowdown
