"""The compute kernels a task can name, in pure Python (docs/kernels.md is their contract).

Runs unchanged on MicroPython boards, in the unix-port VM and in CPython (the host imports
this file as microswarm.firmware.kernels for in-process nodes). Its sibling imports are
the registry, msw_kernel, which the host also provides under that plain name, and
kernels_small.py, the few-line kernels (echo, sleep_ms, sha256) that a board loads without
this file. Each kernel
registers there with its argument kinds, as users' kernel packages do; these are the
built-in ones (docs/kernels.md). Integer kernels are bit-exact on all three. When the
native module `msw_native` loads, its functions of the same name replace the Python ones.

Hot loops bind everything they touch to locals, write into output arrays allocated once at
their final size, and index arrays directly (MicroPython arrays have no per-item object
cost, a list of results would). The loop kernels are compiled to machine code by
MicroPython's native emitter (`@micropython.native`: same semantics, ~1.4x faster in the
VM); a .mpy of this file must be built with mpy-cross -march for the board.
"""

import array
import math

import cbor  # (its typecode(): an array's, on every port)
import msw_kernel
from msw_kernel import kernel

try:
    from kernels_small import _int, echo, sha256, sleep_ms  # noqa: F401 (registers them)
except ImportError:  # on the host: microswarm.firmware
    from microswarm.firmware.kernels_small import _int, echo, sha256, sleep_ms  # noqa: F401

try:
    import msw_native as _native
except (ImportError, ValueError):  # ValueError: a .mpy built for another architecture
    _native = None
_NATIVE = "msw_native"

try:
    import micropython
except ImportError:  # CPython: @micropython.native marks are plain functions here

    class micropython:  # noqa: N801 (stands in for the MicroPython module)
        @staticmethod
        def native(fn):
            return fn

WAITS = msw_kernel.WAITS  # kernels whose result is a delay (the worker awaits it)

_ONE_Q13 = 1 << 13


def _arr(a, codes, what):
    if not isinstance(a, array.array):
        raise TypeError(what + " must be a typed array")
    code = cbor.typecode(a)
    if code not in codes:
        raise ValueError(what + " has typecode " + code + ", expected one of " + codes)
    return code


_CPYTHON = hasattr(array.array("B"), "frombytes")  # MicroPython's arrays lack it


def _zeros(code, n, size):
    """A zeroed array of n items. On MicroPython array(code, bytes(n * size)) holds the
    bytes and their copy at once (a 64 KB result needed 128 KB, two 64 KB blocks): the
    array is made at its size from a range (no buffer; values cut to the typecode) and
    zeroed from a small block."""
    if _CPYTHON:
        return array.array(code, bytes(n * size))
    out = array.array(code, range(n))
    view = memoryview(out)
    zero = memoryview(array.array(code, bytes(64 * size)))
    for i in range(0, n, 64):
        k = n - i if n - i < 64 else 64
        view[i:i + k] = zero[:k]
    return out


def _sat16(v):
    return -32768 if v < -32768 else (32767 if v > 32767 else v)


@kernel("dot", args=(("a", "tarray:bhf"), ("b", "tarray:bhf")), native=_NATIVE)
@micropython.native
def dot(a, b):
    code = _arr(a, "bhf", "a")
    if _arr(b, "bhf", "b") != code:
        raise ValueError("a and b must have the same typecode")
    n = len(a)
    if len(b) != n:
        raise ValueError("a and b must have the same length")
    acc = 0.0 if code == "f" else 0
    for i in range(n):
        acc += a[i] * b[i]
    return acc


@kernel("matmul", args=(("a", "tarray:bhf"), ("b", "tarray:bhf"), ("m", "uint"), ("k", "uint"),
              ("n", "uint")), native=_NATIVE)
@micropython.native
def matmul(a, b, m, k, n):
    code = _arr(a, "bhf", "a")
    if _arr(b, "bhf", "b") != code:
        raise ValueError("a and b must have the same typecode")
    _int(m, "m", 0)
    _int(k, "k", 0)
    _int(n, "n", 0)
    if len(a) != m * k or len(b) != k * n:
        raise ValueError("a must hold m*k and b k*n items")
    if code == "b":
        if k * 16384 > 0x7FFFFFFF:
            raise ValueError("k too large for an int32 result")
        out = _zeros("i", m * n, 4)
    elif code == "h":
        out = _zeros("q", m * n, 8)
    else:
        out = _zeros("f", m * n, 4)
    zero = 0.0 if code == "f" else 0
    o = 0
    for i in range(m):
        row = i * k
        row_end = row + k
        for j in range(n):
            acc = zero
            q = j
            for p in range(row, row_end):
                acc += a[p] * b[q]
                q += n
            out[o] = acc
            o += 1
    return out


@kernel("mandelbrot", args=(("x0", "int"), ("y0", "int"), ("step", "int"), ("w", "uint"),
                  ("h", "uint"), ("max_iter", "uint")), native=_NATIVE)
@micropython.native
def mandelbrot(x0, y0, step, w, h, max_iter):
    _int(x0, "x0")
    _int(y0, "y0")
    _int(step, "step")
    _int(w, "w", 0)
    _int(h, "h", 0)
    _int(max_iter, "max_iter", 0, 65535)
    out = _zeros("H", w * h, 2)
    two = 2 * _ONE_Q13
    four = 4 * _ONE_Q13
    o = 0
    for py in range(h):
        ci = y0 + py * step
        cr = x0
        for _px in range(w):
            zr = zi = 0
            it = 0
            while it < max_iter:
                if zr > two or zr < -two or zi > two or zi < -two:
                    break
                zr2 = (zr * zr) >> 13
                zi2 = (zi * zi) >> 13
                if zr2 + zi2 > four:
                    break
                zi = ((zr * zi) >> 12) + ci
                zr = zr2 - zi2 + cr
                it += 1
            out[o] = it
            o += 1
            cr += step
    return out


@kernel("monte_carlo_pi", args=(("seed", "int"), ("n", "uint")), native=_NATIVE)
@micropython.native
def monte_carlo_pi(seed, n):
    _int(seed, "seed")
    _int(n, "n", 0)
    s = seed & 0xFFFFFFFF
    if s == 0:
        s = 0x9E3779B9
    mask = 0xFFFFFFFF
    limit = 1 << 28
    hits = 0
    for _ in range(n):
        s ^= (s << 13) & mask
        s ^= s >> 17
        s ^= (s << 5) & mask
        x = s >> 18
        s ^= (s << 13) & mask
        s ^= s >> 17
        s ^= (s << 5) & mask
        y = s >> 18
        if x * x + y * y < limit:
            hits += 1
    return hits


def _valid_length(n_x, n_k, name):
    """Outputs of a 'valid' convolution of n_x inputs with n_k taps (none if n_x < n_k)."""
    if n_k == 0:
        raise ValueError(name + " must not be empty")
    n_out = n_x - n_k + 1
    return n_out if n_out > 0 else 0


@kernel("fir", args=(("x", "tarray:h"), ("taps", "tarray:h"), ("shift", "uint")), native=_NATIVE)
@micropython.native
def fir(x, taps, shift):
    _arr(x, "h", "x")
    _arr(taps, "h", "taps")
    _int(shift, "shift", 0, 31)
    taps_n = len(taps)
    n_out = _valid_length(len(x), taps_n, "taps")
    out = _zeros("h", n_out, 2)
    rnd = (1 << (shift - 1)) if shift > 0 else 0
    last = taps_n - 1
    for i in range(n_out):
        acc = rnd
        base = i + last
        for j in range(taps_n):
            acc += taps[j] * x[base - j]
        acc >>= shift
        out[i] = -32768 if acc < -32768 else (32767 if acc > 32767 else acc)
    return out


@kernel("conv1d", args=(("x", "tarray:bh"), ("kernel", "tarray:bh")), native=_NATIVE)
@micropython.native
def conv1d(x, kernel):
    code = _arr(x, "bh", "x")
    if _arr(kernel, "bh", "kernel") != code:
        raise ValueError("x and kernel must have the same typecode")
    k_n = len(kernel)
    n_out = _valid_length(len(x), k_n, "kernel")
    out = _zeros("i", n_out, 4)
    for i in range(n_out):
        acc = 0
        for j in range(k_n):
            acc += kernel[j] * x[i + j]
        if acc > 0x7FFFFFFF or acc < -0x80000000:
            raise ValueError("conv1d result does not fit int32")
        out[i] = acc
    return out


@kernel("zscore_anomaly", args=(("x", "tarray:f"), ("threshold", "float")))
def zscore_anomaly(x, threshold):
    _arr(x, "f", "x")
    if not isinstance(threshold, (int, float)) or isinstance(threshold, bool):
        raise TypeError("threshold must be a number")
    n = len(x)
    if n == 0:
        return []
    total = 0.0
    for v in x:
        total += v
    mean = total / n
    sq = 0.0
    for v in x:
        d = v - mean
        sq += d * d
    std = math.sqrt(sq / n)
    if std == 0:
        return []
    limit = threshold * std
    return [i for i in range(n) if abs(x[i] - mean) > limit]


@kernel("mlp_int8", args=(("x", "tarray:b"), ("w1", "tarray:b"), ("b1", "tarray:i"),
                ("w2", "tarray:b"), ("b2", "tarray:i"), ("shift1", "uint"),
                ("shift2", "uint")), native=_NATIVE)
@micropython.native
def mlp_int8(x, w1, b1, w2, b2, shift1, shift2):
    _arr(x, "b", "x")
    _arr(w1, "b", "w1")
    _arr(b1, "i", "b1")
    _arr(w2, "b", "w2")
    _arr(b2, "i", "b2")
    _int(shift1, "shift1", 0, 31)
    _int(shift2, "shift2", 0, 31)
    if len(w1) != len(b1) * len(x) or len(w2) != len(b2) * len(b1):
        raise ValueError("w1 must hold len(b1)*len(x) and w2 len(b2)*len(b1) items")
    hidden = _dense_int8(x, w1, b1, shift1, 0)  # ReLU: clamp at 0
    return _dense_int8(hidden, w2, b2, shift2, -128)


@micropython.native
def _dense_int8(x, w, b, shift, low):
    """One requantised int8 layer: out[o] = clamp((w[o] . x + b[o]) >> shift, low, 127)."""
    n_in = len(x)
    out = _zeros("b", len(b), 1)
    k = 0
    for o in range(len(b)):
        acc = b[o]
        for i in range(n_in):
            acc += w[k] * x[i]
            k += 1
        acc >>= shift
        out[o] = low if acc < low else (127 if acc > 127 else acc)
    return out


@kernel("lif_step", args=(("v", "tarray:h"), ("i_in", "tarray:h"), ("leak_shift", "uint"),
                ("threshold", "int"), ("v_reset", "int")), native=_NATIVE)
@micropython.native
def lif_step(v, i_in, leak_shift, threshold, v_reset):
    _arr(v, "h", "v")
    _arr(i_in, "h", "i_in")
    _int(leak_shift, "leak_shift", 0, 31)
    _int(threshold, "threshold")
    _int(v_reset, "v_reset", -32768, 32767)
    n = len(v)
    if len(i_in) != n:
        raise ValueError("v and i_in must have the same length")
    v_new = _zeros("h", n, 2)
    spikes = _zeros("B", n, 1)
    for i in range(n):
        vi = v[i]
        u = vi - (vi >> leak_shift) + i_in[i]
        u = -32768 if u < -32768 else (32767 if u > 32767 else u)
        if u >= threshold:
            spikes[i] = 1
            u = v_reset
        v_new[i] = u
    return [v_new, spikes]


KERNELS = msw_kernel.KERNELS  # every kernel this node has, built-in and from packages
# The registry's queries under the names the worker and the host use: lookup(name) ->
# (function, runs_native) or None; check(name, args) -> None or why the arguments do not
# fit (BAD_ARGS). (Every kernel's name, and those a native module serves: msw_boot.names()
# and .native_names(), what HELLO says.)
lookup = msw_kernel.lookup
check = msw_kernel.check


BUILTIN_MODULES = ("kernels", "kernels_small")  # the files that define the built-in kernels


def builtin_names():
    """The built-in kernels (docs/kernels.md), sorted."""
    try:
        import msw_boot
    except ImportError:
        from microswarm.firmware import msw_boot
    return sorted(msw_boot.names("kernels") + msw_boot.names("kernels_small"))


def set_native(enabled):
    """Turn the native dispatch on or off (benchmarks compare both)."""
    msw_kernel.native_on = bool(enabled)



def run(name, args):
    """Run kernel `name` on the positional `args`; KeyError if the node lacks it."""
    found = lookup(name)
    if found is None:
        raise KeyError(name)
    return found[0](*args)
