"""The armv6m (RP2040), armv7emsp (RP2350) and rv32imc (ESP32-C3/C6) builds, parsed back
from their .mpy and run under the unicorn emulator on a fake mp_fun_table: the same results
as the pure-Python kernels on small inputs, and the same exception types on bad input. This
is emulation, not silicon."""

from __future__ import annotations

import array
import random
import zlib

import pytest
from natmod.emulator import EmulatedModule
from natmod.mpyfile import read_mpy

from microswarm.firmware import kernels as ref

B, H = (-128, 127), (-32768, 32767)


@pytest.fixture(scope="module")
def emu(mpy_mcu, sdk_info):
    arch, path = mpy_mcu
    static, fun_table = sdk_info
    module = read_mpy(path.read_bytes())
    assert module.arch == arch
    return EmulatedModule(module, fun_table, static)


def arr(rng: random.Random, code: str, n: int, lim: tuple[int, int]) -> array.array:
    return array.array(code, [rng.randint(*lim) for _ in range(n)])


def test_init_registers_every_function(emu):
    assert emu.call("dot", array.array("b", [2, 3]), array.array("b", [4, 5])) == 23
    names = {"ARCH", "cobs_decode", "cobs_encode", "conv1d", "crc32", "dot", "fir", "lif_step",
             "mac8", "mandelbrot", "matmul", "mlp_int8"}
    assert set(emu.globals) == names
    assert emu.unbox(emu.globals["ARCH"]) == emu.mod.arch


def test_integer_kernels_match_python(emu):
    rng = random.Random(11)
    for _ in range(12):
        m, k, n = rng.randint(1, 5), rng.randint(1, 6), rng.randint(1, 5)
        for code, lim in (("b", B), ("h", H)):
            a, b = arr(rng, code, m * k, lim), arr(rng, code, k * n, lim)
            assert emu.call("matmul", a, b, m, k, n) == ref.matmul(a, b, m, k, n)
            assert emu.call("dot", a, a) == ref.dot(a, a)
        x0, y0, step = rng.randint(-20000, 8000), rng.randint(-12000, 12000), rng.randint(1, 2000)
        assert emu.call("mandelbrot", x0, y0, step, 5, 4, 40) == ref.mandelbrot(
            x0, y0, step, 5, 4, 40
        )
        taps, x = arr(rng, "h", rng.randint(1, 4), H), arr(rng, "h", rng.randint(0, 9), H)
        shift = rng.randint(0, 31)
        assert emu.call("fir", x, taps, shift) == ref.fir(x, taps, shift)
        kern, xs = arr(rng, "b", rng.randint(1, 3), B), arr(rng, "b", rng.randint(0, 9), B)
        assert emu.call("conv1d", xs, kern) == ref.conv1d(xs, kern)
        n_in, nh, n_out = rng.randint(1, 6), rng.randint(1, 6), rng.randint(1, 4)
        args = (arr(rng, "b", n_in, B), arr(rng, "b", nh * n_in, B),
                arr(rng, "i", nh, (-4000, 4000)), arr(rng, "b", n_out * nh, B),
                arr(rng, "i", n_out, (-4000, 4000)), rng.randint(0, 9), rng.randint(0, 9))
        assert emu.call("mlp_int8", *args) == ref.mlp_int8(*args)
        lif = (arr(rng, "h", 6, H), arr(rng, "h", 6, H), rng.randint(0, 31),
               rng.randint(-40000, 40000), rng.randint(-99, 99))
        assert emu.call("lif_step", *lif) == ref.lif_step(*lif)


def test_float_kernels_within_tolerance(emu):
    rng = random.Random(12)
    for _ in range(8):
        m, k, n = rng.randint(1, 4), rng.randint(1, 6), rng.randint(1, 4)
        a = array.array("f", [rng.uniform(-50, 50) for _ in range(m * k)])
        b = array.array("f", [rng.uniform(-50, 50) for _ in range(k * n)])
        got, want = emu.call("matmul", a, b, m, k, n), ref.matmul(a, b, m, k, n)
        assert got.typecode == "f" and len(got) == m * n
        for i in range(m):
            for j in range(n):
                scale = sum(abs(a[i * k + p] * b[p * n + j]) for p in range(k))
                assert abs(got[i * n + j] - want[i * n + j]) <= 1e-4 * scale + 1e-6
        dot = emu.call("dot", a, a)
        assert isinstance(dot, float)
        assert abs(dot - ref.dot(a, a)) <= 1e-4 * sum(v * v for v in a) + 1e-6


def test_frame_helpers(emu):
    rng = random.Random(13)
    for size in (0, 1, 253, 254, 255, 600):
        data = bytes(rng.choice([0, rng.randint(1, 255)]) for _ in range(size))
        assert emu.call("crc32", data) == zlib.crc32(data)
        assert emu.call("crc32", data, 0xDEADBEEF) == zlib.crc32(data, 0xDEADBEEF)
        encoded = emu.call("cobs_encode", data)
        assert 0 not in encoded and emu.call("cobs_decode", encoded) == data
    with pytest.raises(ValueError):
        emu.call("cobs_decode", b"\x04ab")


def test_bad_input_raises_like_python(emu):
    a8, a16 = array.array("b", [1, 2, 3]), array.array("h", [1, 2, 3])
    cases = [
        ("dot", (a8, 5)),
        ("dot", (a8, a16)),
        ("matmul", (a8, a8, 1, 3, 2)),
        ("mandelbrot", (0, 0, 1, 2, 2, 70000)),
        ("fir", (a16, a16, 32)),
        ("lif_step", (a16, a16, 1, 5, 40000)),
    ]
    for name, args in cases:
        with pytest.raises(Exception) as want:
            getattr(ref, name)(*args)
        with pytest.raises(Exception) as got:
            emu.call(name, *args)
        assert got.type is want.type, (name, got.value)


STACK_BUDGET = 512  # bytes of the caller's stack one call may use (the runtime's own excluded)


def test_stack_use_per_call_is_small(emu):
    a8, a16 = array.array("b", range(16)), array.array("h", range(16))
    af = array.array("f", [0.5] * 16)
    calls = [
        ("dot", (af, af)), ("matmul", (a8, a8, 4, 4, 4)), ("matmul", (af, af, 4, 4, 4)),
        ("mandelbrot", (-16384, -8192, 1024, 4, 4, 30)), ("fir", (a16, a16[:3], 4)),
        ("conv1d", (a16, a16[:3])), ("mlp_int8", (a8[:4], a8[:8], array.array("i", [1, 2]),
                                                  a8[:2], array.array("i", [3]), 2, 2)),
        ("lif_step", (a16, a16, 2, 9, 0)), ("crc32", (b"abc",)), ("cobs_encode", (b"a\0b",)),
        ("cobs_decode", (b"\x02a\x02b",)),
    ]
    used = {}
    for name, args in calls:
        emu.call(name, *args)
        used[name] = max(used.get(name, 0), emu.stack_used)
    assert all(0 < n <= STACK_BUDGET for n in used.values()), used
