"""The C cores (kernels.c, frame.c) compiled for the host and called through ctypes,
against the pure-Python kernels and independent references (zlib, a COBS written from the
definition) on seeded random inputs."""

from __future__ import annotations

import array
import ctypes as C
import hashlib
import hmac
import random
import zlib

import pytest

from microswarm.firmware import kernels as ref

CASES = 60


def rand_array(rng: random.Random, code: str, n: int) -> array.array:
    lo, hi = {"b": (-128, 127), "h": (-32768, 32767), "i": (-(1 << 31), (1 << 31) - 1)}[code]
    return array.array(code, [rng.randint(lo, hi) for _ in range(n)])


@pytest.fixture(scope="module")
def lib(host_lib):
    s, p = C.c_size_t, C.c_void_p
    host_lib.msw_dot_i8.restype = C.c_int64
    host_lib.msw_dot_i16.restype = C.c_int64
    host_lib.msw_dot_f32.restype = C.c_float
    for name in ("msw_dot_i8", "msw_dot_i16", "msw_dot_f32"):
        getattr(host_lib, name).argtypes = [p, p, s]
    for name in ("msw_matmul_i8", "msw_matmul_i16", "msw_matmul_f32"):
        getattr(host_lib, name).argtypes = [p, p, s, s, s, p]
    host_lib.msw_mandelbrot.argtypes = [C.c_int64, C.c_int64, C.c_int64, s, s, C.c_uint32, p]
    host_lib.msw_fir.argtypes = [p, s, p, s, C.c_uint, p]
    host_lib.msw_conv1d_i8.argtypes = [p, s, p, s, p]
    host_lib.msw_conv1d_i16.argtypes = [p, s, p, s, p]
    host_lib.msw_mlp_int8.argtypes = [p, s, p, p, s, p, p, s, C.c_uint, C.c_uint, p, p]
    host_lib.msw_lif_step.argtypes = [p, p, s, C.c_uint, C.c_int64, C.c_int16, p, p]
    host_lib.msw_crc32.restype = C.c_uint32
    host_lib.msw_crc32.argtypes = [C.c_uint32, p, s]
    host_lib.msw_cobs_encoded_max.restype = s
    host_lib.msw_cobs_encoded_max.argtypes = [s]
    host_lib.msw_cobs_encode.restype = s
    host_lib.msw_cobs_encode.argtypes = [p, s, p]
    host_lib.msw_cobs_decode.restype = C.c_ssize_t
    host_lib.msw_cobs_decode.argtypes = [p, s, p]
    host_lib.msw_hmac_sha256.argtypes = [C.c_char_p, C.c_char_p, C.c_char_p, s, C.c_char_p, s,
                                         p]
    return host_lib


def addr(arr: array.array) -> int:
    return arr.buffer_info()[0]


def test_dot_and_matmul_match_python(lib):
    rng = random.Random(1)
    for _ in range(CASES):
        m, k, n = rng.randint(1, 7), rng.randint(1, 9), rng.randint(1, 7)
        for code, out_code, fn in (("b", "i", lib.msw_matmul_i8), ("h", "q", lib.msw_matmul_i16)):
            a, b = rand_array(rng, code, m * k), rand_array(rng, code, k * n)
            out = array.array(out_code, bytes(8 * m * n))[: m * n]
            fn(addr(a), addr(b), m, k, n, addr(out))
            assert out == ref.matmul(a, b, m, k, n)
            dot_fn = lib.msw_dot_i8 if code == "b" else lib.msw_dot_i16
            assert dot_fn(addr(a), addr(a), len(a)) == ref.dot(a, a)


def test_float_matmul_within_tolerance(lib):
    rng = random.Random(2)
    for _ in range(CASES):
        m, k, n = rng.randint(1, 6), rng.randint(1, 12), rng.randint(1, 6)
        a = array.array("f", [rng.uniform(-100, 100) for _ in range(m * k)])
        b = array.array("f", [rng.uniform(-100, 100) for _ in range(k * n)])
        out = array.array("f", [0.0] * (m * n))
        lib.msw_matmul_f32(addr(a), addr(b), m, k, n, addr(out))
        want = ref.matmul(a, b, m, k, n)
        for i in range(m):
            for j in range(n):
                scale = sum(abs(a[i * k + p] * b[p * n + j]) for p in range(k))
                assert abs(out[i * n + j] - want[i * n + j]) <= 1e-4 * scale + 1e-6
        got = lib.msw_dot_f32(addr(a), addr(a), len(a))
        assert abs(got - ref.dot(a, a)) <= 1e-4 * sum(v * v for v in a) + 1e-6


def test_mandelbrot_matches_python_including_far_points(lib):
    rng = random.Random(3)
    for _ in range(CASES // 2):
        w, h = rng.randint(0, 9), rng.randint(0, 9)
        x0, y0 = rng.randint(-20000, 8000), rng.randint(-12000, 12000)
        step = rng.choice([rng.randint(1, 1500), rng.randint(-4000, 4000), 1 << 20])
        max_iter = rng.choice([0, 1, 2, 30, 255])
        out = array.array("H", [0] * (w * h))
        lib.msw_mandelbrot(x0, y0, step, w, h, max_iter, addr(out) if w * h else None)
        assert out == ref.mandelbrot(x0, y0, step, w, h, max_iter), (x0, y0, step, w, h)


def test_fir_conv1d_mlp_lif_match_python(lib):
    rng = random.Random(4)
    for _ in range(CASES):
        taps = rand_array(rng, "h", rng.randint(1, 6))
        x = rand_array(rng, "h", len(taps) + rng.randint(0, 12))
        shift = rng.randint(0, 31)
        out = array.array("h", [0] * (len(x) - len(taps) + 1))
        lib.msw_fir(addr(x), len(x), addr(taps), len(taps), shift, addr(out))
        assert out == ref.fir(x, taps, shift)

        code = rng.choice("bh")
        kern = rand_array(rng, code, rng.randint(1, 2))
        xs = rand_array(rng, code, len(kern) + rng.randint(0, 10))
        out = array.array("i", [0] * (len(xs) - len(kern) + 1))
        fn = lib.msw_conv1d_i8 if code == "b" else lib.msw_conv1d_i16
        assert fn(addr(xs), len(xs), addr(kern), len(kern), addr(out)) == 0
        assert out == ref.conv1d(xs, kern)

        n_in, nh, n_out = rng.randint(1, 8), rng.randint(1, 8), rng.randint(1, 5)
        args = (rand_array(rng, "b", n_in), rand_array(rng, "b", nh * n_in),
                array.array("i", [rng.randint(-5000, 5000) for _ in range(nh)]),
                rand_array(rng, "b", n_out * nh),
                array.array("i", [rng.randint(-5000, 5000) for _ in range(n_out)]))
        s1, s2 = rng.randint(0, 10), rng.randint(0, 10)
        hidden, out8 = array.array("b", [0] * nh), array.array("b", [0] * n_out)
        lib.msw_mlp_int8(addr(args[0]), n_in, addr(args[1]), addr(args[2]), nh, addr(args[3]),
                         addr(args[4]), n_out, s1, s2, addr(hidden), addr(out8))
        assert out8 == ref.mlp_int8(*args, s1, s2)

        v, i_in = rand_array(rng, "h", 9), rand_array(rng, "h", 9)
        leak, thr, reset = rng.randint(0, 31), rng.randint(-40000, 40000), rng.randint(-500, 500)
        v_out, spikes = array.array("h", [0] * 9), array.array("B", [0] * 9)
        lib.msw_lif_step(addr(v), addr(i_in), 9, leak, thr, reset, addr(v_out), addr(spikes))
        assert [v_out, spikes] == ref.lif_step(v, i_in, leak, thr, reset)


def test_conv1d_reports_int32_overflow(lib):
    x = array.array("h", [-32768] * 4)
    out = array.array("i", [0, 0])
    assert lib.msw_conv1d_i16(addr(x), 4, addr(x), 3, addr(out)) == -1


def cobs_reference(data: bytes) -> bytes:
    """COBS from its definition: split at zeros, then cut runs longer than 254."""
    out = bytearray()
    blocks = data.split(b"\x00")
    for index, block in enumerate(blocks):
        last = index == len(blocks) - 1
        while len(block) >= 254:
            out += b"\xff" + block[:254]
            block = block[254:]
            if not block and last:
                return bytes(out)
        out += bytes([len(block) + 1]) + block
    return bytes(out)


def test_crc32_and_cobs_match_references(lib):
    rng = random.Random(5)
    samples = [b"", b"\x00", b"\x00\x00", b"\x01" * 254, b"\x01" * 255, b"\x01" * 253 + b"\x00",
               bytes(range(256)) * 3]
    samples += [bytes(rng.choice([0, rng.randint(1, 255)]) for _ in range(rng.randint(0, 700)))
                for _ in range(CASES)]
    for data in samples:
        src = (C.c_uint8 * max(len(data), 1)).from_buffer_copy(data or b"\x00")
        assert lib.msw_crc32(0, src, len(data)) == zlib.crc32(data)
        assert lib.msw_crc32(12345, src, len(data)) == zlib.crc32(data, 12345)
        dst = (C.c_uint8 * lib.msw_cobs_encoded_max(len(data)))()
        n = lib.msw_cobs_encode(src, len(data), dst)
        encoded = bytes(dst[:n])
        assert encoded == cobs_reference(data)
        assert 0 not in encoded
        back = (C.c_uint8 * max(n, 1))()
        assert lib.msw_cobs_decode(dst, n, back) == len(data)
        assert bytes(back[: len(data)]) == data


def test_cobs_decode_rejects_malformed(lib):
    for bad in (b"\x00", b"\x03a", b"\x02\x00", b"\x05abc", b"\x02a\x00"):
        src = (C.c_uint8 * len(bad)).from_buffer_copy(bad)
        dst = (C.c_uint8 * len(bad))()
        assert lib.msw_cobs_decode(src, len(bad), dst) == -1, bad


def _c_hmac(lib, key: bytes, a: bytes, b: bytes) -> bytes:
    block = key.ljust(64, b"\0")
    ipad = bytes(x ^ 0x36 for x in block)
    opad = bytes(x ^ 0x5C for x in block)
    out = C.create_string_buffer(32)
    lib.msw_hmac_sha256(ipad, opad, a, len(a), b, len(b), out)
    return out.raw


def test_hmac_sha256_matches_rfc4231_and_python(lib):
    """The frame MAC's C HMAC-SHA256 (msw_native.mac8) against RFC 4231's test cases 1 and 2
    and CPython's hmac on random keys and data of every length around the 64-byte block."""
    assert _c_hmac(lib, b"\x0b" * 20, b"Hi ", b"There").hex() == (
        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7")
    assert _c_hmac(lib, b"Jefe", b"what do ya want ", b"for nothing?").hex() == (
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
    rng = random.Random(4231)
    for n in list(range(0, 140)) + [rng.randint(140, 5000) for _ in range(CASES)]:
        key = rng.randbytes(rng.randint(1, 64))
        data = rng.randbytes(n)
        cut = rng.randint(0, n)
        want = hmac.new(key, data, hashlib.sha256).digest()
        assert _c_hmac(lib, key, data[:cut], data[cut:]) == want, (n, cut)
