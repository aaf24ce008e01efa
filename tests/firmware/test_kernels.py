"""Every kernel in the MicroPython VM equals the same kernels.py under CPython, and the
integer kernels also equal the straightforward references written here from
docs/kernels.md. All cases run in one VM process, with the RP2350 board's heap."""

from __future__ import annotations

import array
import hashlib
import json
import math
import random
import struct
from pathlib import Path

import pytest

from microswarm import bundle
from microswarm.firmware import kernels

from .conftest import heap_of, make_flash

HERE = Path(__file__).parent


def sat(v: int, lo: int, hi: int) -> int:
    return max(lo, min(hi, v))


def ref_dot(a, b):
    return sum(x * y for x, y in zip(a, b, strict=True))


def ref_matmul(a, b, m, k, n):
    code = {"b": "i", "h": "q"}[a.typecode]
    cells = [(r, c) for r in range(m) for c in range(n)]
    return array.array(code, [sum(a[r * k + p] * b[p * n + c] for p in range(k)) for r, c in cells])


def ref_mandelbrot(x0, y0, step, w, h, max_iter):
    one = 1 << 13
    out = []
    for py in range(h):
        for px in range(w):
            cr, ci = x0 + px * step, y0 + py * step
            zr = zi = it = 0
            while it < max_iter:
                if abs(zr) > 2 * one or abs(zi) > 2 * one:
                    break
                zr2, zi2 = (zr * zr) >> 13, (zi * zi) >> 13
                if zr2 + zi2 > 4 * one:
                    break
                zr, zi = zr2 - zi2 + cr, ((zr * zi) >> 12) + ci
                it += 1
            out.append(it)
    return array.array("H", out)


def ref_monte_carlo_pi(seed, n):
    s = seed & 0xFFFFFFFF or 0x9E3779B9

    def step():
        nonlocal s
        s ^= (s << 13) & 0xFFFFFFFF
        s ^= s >> 17
        s ^= (s << 5) & 0xFFFFFFFF
        return s >> 18

    hits = 0
    for _ in range(n):
        x = step()
        y = step()
        hits += x * x + y * y < 1 << 28
    return hits


def ref_fir(x, taps, shift):
    n_taps = len(taps)
    r = 1 << (shift - 1) if shift else 0
    return array.array("h", [
        sat((sum(taps[j] * x[i + n_taps - 1 - j] for j in range(n_taps)) + r) >> shift,
            -32768, 32767)
        for i in range(max(0, len(x) - n_taps + 1))
    ])


def ref_conv1d(x, kern):
    n_k = len(kern)
    return array.array(
        "i", [sum(kern[j] * x[i + j] for j in range(n_k)) for i in range(len(x) - n_k + 1)]
    )


def ref_mlp_int8(x, w1, b1, w2, b2, shift1, shift2):
    n_in, nh = len(x), len(b1)
    h = [sat((sum(w1[j * n_in + i] * x[i] for i in range(n_in)) + b1[j]) >> shift1, 0, 127)
         for j in range(nh)]
    return array.array("b", [
        sat((sum(w2[o * nh + j] * h[j] for j in range(nh)) + b2[o]) >> shift2, -128, 127)
        for o in range(len(b2))
    ])


def ref_lif_step(v, i_in, leak_shift, threshold, v_reset):
    v_new, spikes = [], []
    for vi, ii in zip(v, i_in, strict=True):
        u = sat(vi - (vi >> leak_shift) + ii, -32768, 32767)
        spikes.append(1 if u >= threshold else 0)
        v_new.append(v_reset if u >= threshold else u)
    return [array.array("h", v_new), array.array("B", spikes)]


REFERENCES = {
    "dot": ref_dot,
    "matmul": ref_matmul,
    "mandelbrot": ref_mandelbrot,
    "monte_carlo_pi": ref_monte_carlo_pi,
    "fir": ref_fir,
    "conv1d": ref_conv1d,
    "mlp_int8": ref_mlp_int8,
    "lif_step": ref_lif_step,
    "sha256": lambda data: hashlib.sha256(data).digest(),
    "echo": lambda x: x,
    "sleep_ms": lambda ms: ms,
}


def arr(code: str, values) -> array.array:
    return array.array(code, values)


def cases() -> list[tuple[str, list]]:
    rnd = random.Random(1234)

    def ints(code, n):
        lo, hi = {"b": (-128, 127), "h": (-32768, 32767), "i": (-(2**20), 2**20)}[code]
        return arr(code, [rnd.randint(lo, hi) for _ in range(n)])

    def floats(n):
        return arr("f", [rnd.uniform(-100, 100) for _ in range(n)])

    out: list[tuple[str, list]] = [
        ("echo", [[1, -2, "x", None, True]]),
        ("echo", [b"\x00\xff"]),
        ("sleep_ms", [25]),
        ("sha256", [b""]),
        ("sha256", [bytes(range(256)) * 5]),
        ("monte_carlo_pi", [0, 2000]),
        ("monte_carlo_pi", [0xDEADBEEF, 3000]),
        ("monte_carlo_pi", [2**40 + 7, 100]),
        ("mandelbrot", [-2 << 13, -(1 << 13), 200, 24, 16, 200]),
        ("mandelbrot", [-(3 << 11), -(1 << 11), 37, 9, 7, 65535]),
        ("mandelbrot", [0, 0, 1, 0, 5, 10]),
    ]
    for code in "bh":
        for m, k, n in ((1, 1, 1), (3, 5, 2), (8, 16, 8), (16, 64, 4)):
            out.append(("matmul", [ints(code, m * k), ints(code, k * n), m, k, n]))
        out.append(("dot", [ints(code, 300), ints(code, 300)]))
        out.append(("conv1d", [ints(code, 100), ints(code, 7)]))
    out.append(("matmul", [floats(12), floats(12), 3, 4, 3]))
    out.append(("dot", [floats(50), floats(50)]))
    for shift in (0, 1, 7, 15, 31):
        out.append(("fir", [ints("h", 64), ints("h", 9), shift]))
    out.append(("fir", [arr("h", [32767] * 20), arr("h", [32767] * 4), 0]))  # saturates
    out.append(("fir", [ints("h", 3), ints("h", 5), 2]))  # shorter than taps: empty
    x = floats(200)
    x[17] = 5000.0
    x[150] = -4000.0
    out.append(("zscore_anomaly", [x, 3.0]))
    out.append(("zscore_anomaly", [arr("f", [2.5] * 10), 1.0]))
    n_in, nh, n_out = 16, 12, 5
    out.append(("mlp_int8", [ints("b", n_in), ints("b", nh * n_in), ints("i", nh),
                             ints("b", n_out * nh), ints("i", n_out), 7, 9]))
    out.append(("mlp_int8", [ints("b", 4), ints("b", 8), ints("i", 2), ints("b", 6),
                             ints("i", 3), 0, 0]))
    out.append(("lif_step", [ints("h", 64), ints("h", 64), 3, 1000, -500]))
    out.append(("lif_step", [arr("h", [-32768, 32767]), arr("h", [-32768, 32767]), 0, 0, 0]))
    # refused arguments: the exception class must match on both runtimes
    out += [
        ("dot", [ints("b", 3), ints("h", 3)]),
        ("dot", [ints("b", 3), ints("b", 4)]),
        ("dot", [[1, 2], [3, 4]]),
        ("matmul", [ints("b", 6), ints("b", 6), 2, 3, 3]),
        ("matmul", [ints("i", 4), ints("i", 4), 2, 2, 2]),
        ("mandelbrot", [0, 0, 1, 2, 2, 70000]),
        ("fir", [ints("h", 10), ints("h", 3), 32]),
        ("fir", [ints("b", 10), ints("h", 3), 1]),
        ("conv1d", [arr("h", [32767] * 8), arr("h", [32767] * 8)]),
        ("mlp_int8", [ints("b", 4), ints("b", 7), ints("i", 2), ints("b", 6), ints("i", 3), 0, 0]),
        ("lif_step", [ints("h", 3), ints("h", 4), 1, 0, 0]),
        ("sha256", ["text"]),
        ("sleep_ms", [-1]),
        ("zscore_anomaly", [ints("h", 4), 1.0]),
    ]
    return out


def to_json(v):
    if isinstance(v, array.array):
        return {"$a": v.typecode, "hex": v.tobytes().hex()}
    if isinstance(v, bytes | bytearray):
        return {"$b": bytes(v).hex()}
    if isinstance(v, float):
        return {"$f": struct.pack("<d", v).hex()}
    if isinstance(v, list):
        return [to_json(x) for x in v]
    return v


def cpython_outcome(name: str, args: list) -> dict:
    try:
        return {"ok": to_json(kernels.run(name, args))}
    except (TypeError, ValueError, OverflowError) as exc:
        name = "ValueError" if isinstance(exc, OverflowError) else type(exc).__name__
        return {"err": name}


@pytest.fixture(scope="module")
def vm_results(tmp_path_factory, micropython):
    import subprocess

    flash = make_flash(tmp_path_factory.mktemp("flash"), "w5500-evb-pico2")
    (flash / "vm_kernels.py").write_bytes((HERE / "vm_kernels.py").read_bytes())
    stdin = "".join(json.dumps({"k": k, "args": to_json(a)}) + "\n" for k, a in cases())
    proc = subprocess.run(
        [micropython, "-X", f"heapsize={heap_of('w5500-evb-pico2')}", "vm_kernels.py"],
        input=stdin.encode(), capture_output=True, timeout=120, cwd=flash,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    lines = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    n = len(cases())
    assert len(lines) == 2 * n + 1
    return {"native": lines[:n], "python": lines[n : 2 * n], "info": lines[-1]}


def test_vm_serves_every_kernel_of_the_docs(vm_results, repo):
    documented = set()
    for line in (repo / "docs" / "kernels.md").read_text().splitlines():
        if line.startswith("| `"):
            documented.add(line.split("`")[1])
    # the built-in set: kernel packages loaded by other tests add kernels, not built-ins
    assert set(vm_results["info"]["names"]) == documented == set(kernels.builtin_names())
    if bundle.native_module("x64") is not None:  # built by `make native`
        assert {"matmul", "dot", "fir"} <= set(vm_results["info"]["native"])


def from_json(v):
    if isinstance(v, dict) and "$a" in v:
        return array.array(v["$a"], bytes.fromhex(v["hex"]))
    if isinstance(v, dict) and "$f" in v:
        return struct.unpack("<d", bytes.fromhex(v["$f"]))[0]
    return v


def close_enough(name: str, args: list, got: dict, expected: dict) -> bool:
    """docs/kernels.md's float tolerance: 1e-4 * sum(abs(a_i*b_i)) + 1e-6 per element."""
    if "ok" not in got or "ok" not in expected:
        return got == expected
    a, b = args[0], args[1]
    g, e = from_json(got["ok"]), from_json(expected["ok"])
    if name == "dot":
        bound = 1e-4 * math.fsum(abs(x * y) for x, y in zip(a, b, strict=True)) + 1e-6
        return abs(g - e) <= bound
    m, k, n = args[2:5]
    for r in range(m):
        for c in range(n):
            terms = [abs(a[r * k + p] * b[p * n + c]) for p in range(k)]
            if abs(g[r * n + c] - e[r * n + c]) > 1e-4 * math.fsum(terms) + 1e-6:
                return False
    return True


@pytest.mark.parametrize("mode", ["python", "native"])
@pytest.mark.parametrize("index", range(len(cases())))
def test_vm_equals_cpython_and_reference(vm_results, index, mode):
    name, args = cases()[index]
    expected = cpython_outcome(name, args)
    got = vm_results[mode][index]
    is_float = getattr(args[0], "typecode", None) == "f" and name in ("dot", "matmul")
    if mode == "native" and is_float and name in vm_results["info"]["native"]:
        assert close_enough(name, args, got, expected), (name, got, expected)
    else:
        assert got == expected, (name, got, expected)
    ref = REFERENCES.get(name)
    if ref is not None and "ok" in expected:
        code = getattr(args[0], "typecode", None)
        if code == "f":
            return
        assert expected["ok"] == to_json(ref(*args))


def test_float_kernels_within_tolerance():
    rnd = random.Random(5)
    a = array.array("f", [rnd.uniform(-1, 1) for _ in range(64)])
    b = array.array("f", [rnd.uniform(-1, 1) for _ in range(64)])
    exact = math.fsum(x * y for x, y in zip(a, b, strict=True))
    bound = 1e-4 * math.fsum(abs(x * y) for x, y in zip(a, b, strict=True)) + 1e-6
    assert abs(kernels.dot(a, b) - exact) <= bound
    x = array.array("f", [1.0] * 50 + [9.0])
    assert kernels.zscore_anomaly(x, 3.0) == [50]
