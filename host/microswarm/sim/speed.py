"""How long a kernel call takes on a simulated board, deterministically.

A simulated node really runs the kernel (in CPython) to get its result, but the virtual
time it charges is a model, not the host's wall clock, so a run does not depend on how
busy the host is:

    seconds = work_units(kernel, args, result) * VM_SECONDS_PER_UNIT[kernel]
              * BOARD_FACTOR[board] * slowdown + TASK_OVERHEAD_S * BOARD_FACTOR[board]

`VM_SECONDS_PER_UNIT` is measured: `python -m microswarm.sim.calibrate` times each kernel
in the MicroPython unix-port VM on the reference PC (x86-64, the kind of machine the
published board ratios below were measured against). `BOARD_FACTOR` is how many times
slower a board runs the same code than that VM; the figures and their sources live in the
board files (`boards/*.json`, key `model`), each marked published or estimate:

- RP2350: 84x (published; 64-109x by workload).
- ESP32: 126x (estimate from published relative figures; 126-156x).
- RP2040: 1.75x the RP2350 (published range 1.6-1.9x; no board file, estimate in the
  middle of the range).
- ESP32-S3: 8.9/10.3 of the RP2350 (one published benchmark run on both, scruss.com
  2025; estimate).
- unix: 1 (a virtual board; it runs at this host's pace, which
  `calibrate.host_scale()` measures when a benchmark starts).
- cpython: an in-process CPython node on the reference PC (`VM_OVER_CPYTHON`, measured).

A board's speed does not depend on the host the simulator runs on, so simulated boards
keep these fixed figures (and a run stays a pure function of the scenario and the seed);
only real VM boards run at the host's pace. Scenarios can override any factor.
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


def _board_figures() -> dict[str, dict]:
    """mcu -> the `model` entry of the first board file for it (boards of one MCU agree)."""
    from microswarm import paths

    out: dict[str, dict] = {}
    for name in paths.board_names():
        board = paths.load_board(name)
        model = board.get("model")
        if model and board.get("mcu") not in out:
            out[board["mcu"]] = {**model, "board_file": name}
    return out


BOARD_FIGURES = _board_figures()
RP2350_OVER_PC_VM = float(BOARD_FIGURES.get("rp2350", {}).get("compute_vs_unix_port", 84))
RP2040_OVER_RP2350 = 1.75  # published range 1.6-1.9 (DESIGN notes); middle of it
BOARD_FACTOR: dict[str, float] = {
    mcu: float(fig["compute_vs_unix_port"]) for mcu, fig in BOARD_FIGURES.items()
}
BOARD_FACTOR.setdefault("unix", 1.0)
BOARD_FACTOR["rp2040"] = RP2350_OVER_PC_VM * RP2040_OVER_RP2350
BOARD_FACTOR["esp32s3"] = RP2350_OVER_PC_VM * 8.9 / 10.3
BOARD_FACTOR["cpython"] = 1.0 / VM_OVER_CPYTHON["matmul"]


def prior_speed(board: str) -> float:
    """A node's compute speed relative to the reference VM, from the board it names in
    HELLO (an MCU name such as "rp2350" or a board file name): the scheduler's prior until
    it has measured the node. 1.0 for a board it does not know."""
    factor = BOARD_FACTOR.get(board)
    if factor is None:
        from microswarm import paths

        if board in paths.board_names():
            factor = BOARD_FACTOR.get(paths.load_board(board).get("mcu", ""))
    return 1.0 / factor if factor else 1.0


def figure_sources() -> list[dict]:
    """Every board factor with where it comes from and whether it is published."""
    out = []
    for mcu, factor in sorted(BOARD_FACTOR.items(), key=lambda kv: kv[1]):
        fig = BOARD_FIGURES.get(mcu)
        if fig is not None:
            out.append({"board": mcu, "factor": round(factor, 3),
                        "range": fig.get("compute_range"),
                        "published": bool(fig.get("compute_published")),
                        "source": f"boards/{fig['board_file']}.json: {fig['compute_source']}"})
        elif mcu == "rp2040":
            out.append({"board": mcu, "factor": round(factor, 3), "published": False,
                        "source": f"RP2350 factor x {RP2040_OVER_RP2350} (published range "
                                  "1.6-1.9x slower than the RP2350)"})
        elif mcu == "esp32s3":
            out.append({"board": mcu, "factor": round(factor, 3), "published": False,
                        "source": "RP2350 factor x 8.9/10.3 (scruss.com 2025, one benchmark "
                                  "on both boards)"})
        elif mcu == "cpython":
            out.append({"board": mcu, "factor": round(factor, 3), "published": False,
                        "source": "measured: VM over CPython for matmul (sim.calibrate)"})
    return out

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
