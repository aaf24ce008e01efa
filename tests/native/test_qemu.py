"""The native module's ARM builds on real 32-bit MicroPython (ports/qemu under
qemu-system-arm): armv7emsp on the Cortex-M7 board (MPS2_AN500), armv6m on the Cortex-M3
board (MPS2_AN385). Each native kernel is compared with the pure-Python kernel on random
inputs drawn on the board. A check of our ELF-to-.mpy linker that does not rest on our own
emulator: MicroPython's loader and a CPU model other than unicorn run the code."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from microswarm import bundle, kernelpkg, paths
from microswarm.deploy.build import compile_module

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

CASES = 40
SCRIPT = """
import array, random, kernels
random.seed(7)
def r(lo, hi):
    return lo + random.getrandbits(16) %% (hi - lo + 1)
def arr(code, n, lo, hi):
    return array.array(code, [r(lo, hi) for _ in range(n)])
def case(name):
    if name == 'dot':
        n = r(1, 60)
        return (arr('h', n, -300, 300), arr('h', n, -300, 300))
    if name == 'matmul':
        m, k, n = r(1, 6), r(1, 6), r(1, 6)
        return (arr('b', m * k, -128, 127), arr('b', k * n, -128, 127), m, k, n)
    if name == 'mandelbrot':
        return (r(-16384, 0), r(-8192, 0), r(64, 512), r(1, 8), r(1, 6), r(1, 60))
    if name == 'fir':
        return (arr('h', r(8, 40), -2000, 2000), arr('h', r(1, 7), -50, 50), r(0, 8))
    if name == 'conv1d':
        return (arr('b', r(8, 40), -128, 127), arr('b', r(1, 5), -128, 127))
    if name == 'mlp_int8':
        i, h, o = r(1, 6), r(1, 5), r(1, 4)
        return (arr('b', i, -128, 127), arr('b', h * i, -128, 127), arr('i', h, -500, 500),
                arr('b', o * h, -128, 127), arr('i', o, -500, 500), r(0, 8), r(0, 8))
    if name == 'lif_step':
        n = r(1, 20)
        return (arr('h', n, -3000, 3000), arr('h', n, -500, 500), r(0, 6), r(100, 3000),
                r(-100, 100))
    return None
import msw_boot
names = msw_boot.native_names()
print('ARCH', msw_boot.native_arch(), 'NATIVE', ','.join(names))
checked = bad = 0
for name in names:
    for _ in range(%(cases)d):
        args = case(name)
        if args is None:
            break
        kernels.set_native(True)
        got = kernels.run(name, args)
        kernels.set_native(False)
        want = kernels.run(name, args)
        checked += 1
        if list(got) != list(want) if hasattr(want, '__len__') else got != want:
            bad += 1
            print('MISMATCH', name, args, got, want)
print('CHECKED', checked, 'BAD', bad)
"""


@pytest.fixture(scope="module")
def qemu_firmware():
    tools = paths.tools_dir()
    assert tools is not None
    sys.path.insert(0, str(tools))
    import qemu_firmware

    return qemu_firmware


@pytest.mark.parametrize("qemu_board,arch", [("MPS2_AN500", "armv7emsp"),
                                             ("MPS2_AN385", "armv6m")])
def test_native_kernels_agree_with_the_pure_ones_on_qemu(qemu_firmware, qemu_board, arch):
    try:
        qemu_firmware.firmware(qemu_board)
    except qemu_firmware.QemuUnavailable as exc:
        pytest.skip(f"QEMU firmware: {exc}")
    if bundle.native_module(arch) is None:
        build = subprocess.run([sys.executable, str(paths.tools_dir() / "build_native.py"),
                                "--arch", arch], capture_output=True, text=True, timeout=600)
        if bundle.native_module(arch) is None:
            pytest.skip(f"no {arch} build of the native module: {build.stderr[-500:]}")
    files = {bundle.NATIVE_MODULE: bundle.native_module(arch).read_bytes()}
    # the kernels and the registry's files (the native module's arch)
    for name in ("kernels.py", "kernels_small.py", *kernelpkg.REGISTRY_FILES):
        source = (paths.firmware_dir() / name).read_bytes()
        files[name[:-3] + ".mpy"] = compile_module(name, source, arch)
    with qemu_firmware.Qemu(qemu_board) as board:
        board.install(files)
        out = board.exec(SCRIPT % {"cases": CASES}, timeout=600)
    assert "MISMATCH" not in out, out[-3000:]
    found = re.search(r"ARCH (\S+) NATIVE (\S+)", out)
    assert found, out[-2000:]
    assert found.group(1) == arch
    native = found.group(2).split(",")
    assert {"dot", "matmul", "mandelbrot", "fir", "conv1d", "mlp_int8", "lif_step"} <= set(native)
    checked = re.search(r"CHECKED (\d+) BAD (\d+)", out)
    assert checked and int(checked.group(2)) == 0
    assert int(checked.group(1)) >= 7 * CASES
