"""Measure how fast the MicroPython VM runs the firmware kernels compared with CPython.

    python -m microswarm.sim.calibrate [--repeat 5]
    microswarm sim calibrate --kernels examples/kernels     # users' kernel packages

Runs each calibration case (a kernel call of known work units, see `speed.work_units`)
in the unix-port VM (`micropython`, firmware/kernels.py as on a board) and in this
CPython, best of `--repeat` timings each, and prints seconds per work unit for both and
their ratio. The figures in `speed.VM_SECONDS_PER_UNIT` come from this tool; rerun it on
new hardware and paste the output there.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import time
from typing import Any

from microswarm import paths
from microswarm.firmware import kernels
from microswarm.sim import speed

# kernel -> argument source (evaluated in both interpreters with `array` imported).
CASES: dict[str, str] = {
    "mandelbrot": "(-2 * 8192, -1 * 8192, 80, 48, 32, 64)",
    "matmul": "(array.array('b', [(i * 7) % 11 - 5 for i in range(24 * 24)]),"
    " array.array('b', [(i * 5) % 13 - 6 for i in range(24 * 24)]), 24, 24, 24)",
    "monte_carlo_pi": "(12345, 5000)",
    "dot": "(array.array('h', range(4000)), array.array('h', range(4000)))",
    "echo": "(bytes(4096),)",
}

_VM_SCRIPT = """
import sys, time, array
sys.path.insert(0, '')
{native_path}
import kernels
cases = {cases}
out = {{}}
for name, args in cases.items():
    n = 1  # calls per timing: enough for 2 ms, far above the 1 us tick (echo takes less)
    while True:
        t0 = time.ticks_us()
        for _ in range(n):
            kernels.run(name, args)
        if time.ticks_diff(time.ticks_us(), t0) >= 2000:
            break
        n *= 4
    best = None
    for _ in range({repeat}):
        t0 = time.ticks_us()
        for _ in range(n):
            kernels.run(name, args)
        dt = time.ticks_diff(time.ticks_us(), t0) / n
        best = dt if best is None or dt < best else best
    out[name] = best
print(out)
"""


def measure_vm(repeat: int, native_dir: str | None = None) -> dict[str, float]:
    """Best-of-`repeat` seconds per case in the MicroPython VM; with `native_dir` (where
    the built msw_native.mpy is) the kernels it serves run native, as on a virtual board."""
    cases = "{" + ", ".join(f"{k!r}: {v}" for k, v in CASES.items()) + "}"
    native_path = f"sys.path.insert(0, {native_dir!r})" if native_dir else ""
    source = _VM_SCRIPT.format(cases=cases, repeat=repeat, native_path=native_path)
    proc = subprocess.run(
        [paths.micropython_command(), "-c", source],
        capture_output=True, timeout=300, cwd=paths.firmware_dir(), check=True,
    )
    raw = proc.stdout.decode().strip().replace("'", '"')
    return {name: us / 1e6 for name, us in json.loads(raw).items()}


def measure_cpython(repeat: int) -> dict[str, float]:
    import array  # noqa: F401  (the case sources name it)

    out = {}
    for name, source in CASES.items():
        args = eval(source)  # the fixed sources above, never input
        best = float("inf")
        for _ in range(repeat):
            t0 = time.perf_counter()
            kernels.run(name, args)
            best = min(best, time.perf_counter() - t0)
        out[name] = best
    return out


_PACKAGE_SCRIPT = """
import sys, time, json
sys.path.insert(0, '')
import msw_boot, msw_kernel as K
msw_boot.load_installed()
out = {{}}
for name in {names!r}:
    e = K.KERNELS.get(name)
    if e is None or e[K.SAMPLE] is None:
        continue
    args = e[K.SAMPLE]()
    units = e[K.COST](*args) if e[K.COST] is not None else 1
    best = None
    for _ in range({repeat}):
        t0 = time.ticks_us()
        e[K.FN](*args)
        dt = time.ticks_diff(time.ticks_us(), t0)
        best = dt if best is None or dt < best else best
    out[name] = [best, units]
print(json.dumps({{"times": out, "errors": K.errors}}))
"""


def calibrate_packages(folders: list[str], repeat: int = 5) -> dict[str, dict[str, float]]:
    """Time every kernel of the given packages that has a `sample` hint, in the VM, in
    its Python version (a board without a native build for its arch runs that one).
    Seconds per work unit (the `cost` hint's unit) go into `speed.CALIBRATED`, which the
    simulator's speed model then uses for those kernels."""
    import tempfile
    from pathlib import Path

    from microswarm import kernelpkg
    from microswarm.firmware import msw_kernel as K

    packages = kernelpkg.load(folders)
    names = sorted({name for name, e in K.KERNELS.items()
                    if e[K.SAMPLE] is not None and any(e[K.MODULE] in p.modules
                                                       for p in packages)})
    with tempfile.TemporaryDirectory(prefix="msw-calibrate-") as tmp:
        flash = Path(tmp)
        for module in kernelpkg.REGISTRY_FILES:
            (flash / module).write_bytes((paths.firmware_dir() / module).read_bytes())
        for name, data in kernelpkg.layout_files(folders, None).items():
            (flash / name).write_bytes(data)
        proc = subprocess.run(
            [paths.micropython_command(), "-c",
             _PACKAGE_SCRIPT.format(names=names, repeat=repeat)],
            capture_output=True, timeout=300, cwd=flash, check=False,
        )
    if proc.returncode != 0:
        raise RuntimeError(f"calibration in the VM failed: {proc.stderr.decode()[-500:]}")
    answer = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    if answer["errors"]:
        raise RuntimeError(f"the VM could not load the package: {answer['errors']}")
    table = {}
    for name, (best_us, units) in answer["times"].items():
        per_unit = best_us / 1e6 / max(1, units)
        speed.CALIBRATED[name] = per_unit
        table[name] = {"units": units, "vm_s_per_unit": per_unit}
    return table


def units(name: str) -> int:
    import array  # noqa: F401

    args = eval(CASES[name])
    return speed.work_units(name, args, kernels.run(name, args))


_HOST: dict[str, Any] = {}


def host_scale(repeat: int = 3) -> dict[str, Any]:
    """This host's MicroPython VM against the reference PC of `speed.VM_SECONDS_PER_UNIT`,
    measured once per process with the fixed calibration cases (about 0.3 s): `scale` is
    the geometric mean of (seconds per unit here) / (reference seconds per unit), > 1 when
    this host runs the VM slower (a slower CPU, or other load at the time). A virtual board
    in a simulation runs at this pace; simulated boards do not depend on it.

    When the x64 native module is built (`make demo`, `make native-x64`), virtual boards
    load it and run its kernels native: `native_per_kernel` holds those ratios too."""
    if not _HOST:
        from microswarm import bundle

        started = time.perf_counter()
        native = bundle.native_module(bundle.VM_ARCH)
        try:
            vm = measure_vm(repeat)
            vm_native = measure_vm(repeat, str(native.parent)) if native else None
        except (OSError, subprocess.SubprocessError) as exc:
            _HOST.update(scale=1.0, measured=False, error=str(exc))
            return dict(_HOST)
        ratios = _ratios(vm)
        scale = math.exp(sum(math.log(r) for r in ratios.values()) / len(ratios))
        _HOST.update(scale=round(scale, 4), measured=True,
                     per_kernel={k: round(v, 4) for k, v in ratios.items()},
                     native_per_kernel=None if vm_native is None else {
                         k: round(v, 4) for k, v in _ratios(vm_native).items()},
                     seconds=round(time.perf_counter() - started, 3))
    return dict(_HOST)


def _ratios(vm: dict[str, float]) -> dict[str, float]:
    return {name: vm[name] / units(name) / speed.VM_SECONDS_PER_UNIT[name]
            for name in CASES if name != "echo"}  # echo: one call, below the VM clock


def vm_board_factor(kernel: str, board: str = "unix") -> float:
    """How many times the reference VM's time a virtual board of `board` on this host
    takes for `kernel`: the measured ratio for that kernel, native where the board loads
    the built native module (the geometric mean over the cases for other kernels). Best of
    a few timings, so a lower bound built on it stays below what the board can do."""
    from microswarm import bundle, paths

    host = host_scale()
    if not host.get("measured"):
        return 1.0
    per = host["per_kernel"]
    native = host.get("native_per_kernel")
    if native and bundle.vm_arch(paths.load_board(board)) is not None:
        per = native
    return float(per.get(kernel, host["scale"] if per is host["per_kernel"]
                         else math.exp(sum(map(math.log, per.values())) / len(per))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    vm = measure_vm(args.repeat)
    cp = measure_cpython(args.repeat)
    table = {}
    for name in CASES:
        n = units(name)
        table[name] = {
            "units": n,
            "vm_s_per_unit": vm[name] / n,
            "cpython_s_per_unit": cp[name] / n,
            "vm_over_cpython": vm[name] / cp[name],
        }
    print(json.dumps(table, indent=2))


if __name__ == "__main__":
    main()
