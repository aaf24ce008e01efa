"""The x64 .mpy imported by the real MicroPython VM: every function against the pure-Python
kernels in the same process, the same exception types on bad input, and no leak or crash
over a long loop with gc.collect()."""

from __future__ import annotations

import shutil

import pytest

PRELUDE = """
import sys, array, gc, random
sys.path.insert(0, {path!r})
import msw_native as nat
import kernels as py
random.seed({seed})
def arr(code, n, lo, hi):
    return array.array(code, [random.randint(lo, hi) for _ in range(n)])
B = (-128, 127)
H = (-32768, 32767)
"""

COMPARE = """
import auth, engine_join, frame, frame_serial
bad = 0
checks = 0
def plain(v):
    # MicroPython cannot compare every array typecode with ==; lists it can
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    return [repr(v[:0])] + list(v) if isinstance(v, array.array) else v
def same(name, want, got):
    global bad, checks
    checks += 1
    if plain(want) != plain(got):
        bad += 1
        print("MISMATCH", name, want, got)
for _ in range(40):
    m, k, n = random.randint(1, 6), random.randint(1, 8), random.randint(1, 6)
    for code, lim in (("b", B), ("h", H)):
        a, b = arr(code, m * k, *lim), arr(code, k * n, *lim)
        same("matmul", py.matmul(a, b, m, k, n), nat.matmul(a, b, m, k, n))
        same("dot", py.dot(a, a), nat.dot(a, a))
    fa = array.array("f", [random.randint(-1000, 1000) / 8 for _ in range(m * k)])
    fb = array.array("f", [random.randint(-1000, 1000) / 8 for _ in range(k * n)])
    # eighths of small ints: float32 sums stay exact, so equality holds here
    same("matmul f", py.matmul(fa, fb, m, k, n), nat.matmul(fa, fb, m, k, n))
    w, h = random.randint(0, 6), random.randint(0, 6)
    x0, y0 = random.randint(-20000, 8000), random.randint(-12000, 12000)
    st = random.randint(1, 1500)
    same("mandelbrot", py.mandelbrot(x0, y0, st, w, h, 60), nat.mandelbrot(x0, y0, st, w, h, 60))
    taps = arr("h", random.randint(1, 5), *H)
    x = arr("h", random.randint(0, 12), *H)
    sh = random.randint(0, 31)
    same("fir", py.fir(x, taps, sh), nat.fir(x, taps, sh))
    kb, xb = arr("b", random.randint(1, 4), *B), arr("b", random.randint(0, 12), *B)
    same("conv1d", py.conv1d(xb, kb), nat.conv1d(xb, kb))
    n_in, nh, n_out = random.randint(1, 8), random.randint(1, 8), random.randint(1, 4)
    args = (arr("b", n_in, *B), arr("b", nh * n_in, *B), arr("i", nh, -4000, 4000),
            arr("b", n_out * nh, *B), arr("i", n_out, -4000, 4000),
            random.randint(0, 9), random.randint(0, 9))
    same("mlp_int8", py.mlp_int8(*args), nat.mlp_int8(*args))
    v, i_in = arr("h", 8, *H), arr("h", 8, *H)
    lif = (v, i_in, random.randint(0, 31), random.randint(-40000, 40000), random.randint(-99, 99))
    same("lif_step", py.lif_step(*lif), nat.lif_step(*lif))
    data = bytes(arr("B", random.randint(0, 600), 0, 3))
    same("crc32", __import__("binascii").crc32(data), nat.crc32(data))
    enc = nat.cobs_encode(data)
    same("cobs", data, nat.cobs_decode(enc))
    same("cobs zero-free", True, 0 not in enc)
    pure = bytearray(frame_serial.cobs_max(len(data)))
    n = frame_serial.cobs_encode_into(data, 0, len(data), pure)
    same("cobs as frame_serial.py", bytes(pure[:n]), enc)
    pads = engine_join.pads(bytes(arr("B", random.randint(16, 64), 0, 255)))
    ctr = bytes(arr("B", 4, 0, 255))
    tag = bytearray(10)
    nat.mac8(pads[0], pads[1], ctr, data, tag, 1)  # against the port's hashlib
    same("mac8", auth._hmac(pads, ctr, data)[:8], bytes(tag[1:9]))
print("CHECKS", checks, "BAD", bad)
"""

ERRORS = """
a8 = array.array("b", [1, 2, 3])
a16 = array.array("h", [1, 2, 3])
ai = array.array("i", [1, 2, 3])
cases = [
    ("dot", (a8, [1, 2, 3])),
    ("dot", (1, a8)),
    ("dot", (a8, a16)),
    ("dot", (a8, array.array("b", [1]))),
    ("dot", (ai, ai)),
    ("matmul", (a8, a8, 1, 3, 2)),
    ("matmul", (a8, a8, -1, 3, 1)),
    ("matmul", (a8, a8, 1, 3, "1")),
    ("matmul", (a8, a8, 1, 3, True)),
    ("matmul", (a8, a8, 1, 3, 1.0)),
    ("mandelbrot", (0, 0, 1, 2, 2, 70000)),
    ("mandelbrot", (0, 0, 1, -2, 2, 5)),
    ("fir", (a16, array.array("h"), 3)),
    ("fir", (a16, a16, 32)),
    ("fir", (a8, a16, 1)),
    ("conv1d", (a8, a16)),
    ("conv1d", (array.array("h", [-32768] * 4), array.array("h", [-32768] * 3))),
    ("conv1d", (a8, array.array("b"))),
    ("mlp_int8", (a8, a8, ai, a8, ai, 1, 1)),
    ("mlp_int8", (a8, a8, array.array("i", [1]), a8, array.array("i", [1]), 1, 40)),
    ("lif_step", (a16, array.array("h", [1]), 1, 5, 0)),
    ("lif_step", (a16, a16, 1, 5, 40000)),
]
for name, args in cases:
    outcome = []
    for fn in (getattr(py, name), getattr(nat, name)):
        try:
            fn(*args)
            outcome.append("ok")
        except Exception as e:
            outcome.append(type(e).__name__)
    print("ERR", name, outcome[0], outcome[1])
for fn, arg in ((nat.cobs_decode, b"\\x00"), (nat.cobs_decode, b"\\x05ab"), (nat.crc32, 5),
                (nat.cobs_encode, None), (nat.cobs_decode, b"")):
    try:
        fn(arg)
        print("FRAME ok")
    except Exception as e:
        print("FRAME", type(e).__name__)
"""

LOOP = """
gc.collect()
before = gc.mem_free()
a, b = arr("b", 256, *B), arr("b", 256, *B)
want = py.matmul(a, b, 16, 16, 16)
ok = True
for i in range(3000):
    r = nat.matmul(a, b, 16, 16, 16)
    if i % 97 == 0:
        ok = ok and list(r) == list(want)
        gc.collect()
    try:
        nat.dot(a, 1)
    except TypeError:
        pass
    nat.cobs_decode(nat.cobs_encode(b"\\x00abc\\x00" * 40))
    nat.lif_step(array.array("h", [1] * 64), array.array("h", [2] * 64), 2, 100, 0)
del r
gc.collect()
print("LOOP", ok, before - gc.mem_free())
"""


@pytest.fixture(scope="module")
def module_dir(mpy_x64, tmp_path_factory):
    where = tmp_path_factory.mktemp("vm_native")
    shutil.copy(mpy_x64, where / "msw_native.mpy")
    return str(where)


def test_every_function_matches_pure_python_in_the_vm(run_vm, module_dir):
    out = run_vm(PRELUDE.format(path=module_dir, seed=7) + COMPARE, timeout=120)
    assert "MISMATCH" not in out, out
    last = out.strip().splitlines()[-1].split()
    assert last[0] == "CHECKS" and int(last[1]) > 500 and last[3] == "0", out


def test_bad_input_raises_the_same_python_exception(run_vm, module_dir):
    out = run_vm(PRELUDE.format(path=module_dir, seed=1) + ERRORS)
    lines = [line.split() for line in out.splitlines() if line.startswith("ERR")]
    assert len(lines) == 22
    for _tag, name, want, got in lines:
        assert want != "ok", f"{name}: the pure kernel accepted a bad argument"
        assert got == want, f"{name}: native raised {got}, pure Python {want}"
    frame = [line.split()[1] for line in out.splitlines() if line.startswith("FRAME")]
    assert frame == ["ValueError", "ValueError", "TypeError", "TypeError", "ValueError"]


def test_long_loop_with_gc_keeps_results_and_memory(run_vm, module_dir):
    out = run_vm(PRELUDE.format(path=module_dir, seed=3) + LOOP, heap=512 * 1024, timeout=120)
    tag, ok, leaked = out.strip().splitlines()[-1].split()
    assert tag == "LOOP" and ok == "True", out
    assert int(leaked) < 4096, f"{leaked} bytes not returned after 3000 calls"


def test_module_reports_its_arch_and_every_contract_name(run_vm, module_dir):
    out = run_vm(PRELUDE.format(path=module_dir, seed=0) + "print(nat.ARCH, sorted(dir(nat)))")
    names = ["cobs_decode", "cobs_encode", "conv1d", "crc32", "dot", "fir", "lif_step",
             "mac8", "mandelbrot", "matmul", "mlp_int8"]
    assert out.startswith("x64 ")
    for name in names:
        assert repr(name) in out


def test_firmware_kernels_dispatch_to_the_module(run_vm, module_dir):
    """firmware/kernels.py imports msw_native when it is on the path and runs it in place
    of its Python kernels; the results are the ones the Python kernels give."""
    source = PRELUDE.format(path=module_dir, seed=5) + """
import msw_boot
print("NAMES", " ".join(msw_boot.native_names()))
print("ARCH", msw_boot.native_arch())
a, b = arr("b", 12, *B), arr("b", 12, *B)
fn, native = py.lookup("matmul")
print("MATMUL", native, list(py.run("matmul", [a, b, 3, 4, 3])) == list(py.matmul(a, b, 3, 4, 3)))
"""
    out = run_vm(source)
    assert "NAMES conv1d dot fir lif_step mandelbrot matmul mlp_int8" in out
    assert "ARCH x64" in out
    assert "MATMUL True True" in out
