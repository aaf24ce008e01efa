"""The built-in kernels whose code is a few lines: echo, sleep_ms, sha256 (docs/kernels.md).

A module of their own so that a board's task naming one of them loads this file only, not
kernels.py (its loops and tables hold 10-13 KB of a 32-bit board's heap): on an ESP32 that
room is what a 64 KB sha256 task's message needs. kernels.py imports this module, so the
host, the VM and a board that loaded kernels.py see every built-in kernel. Their version is
this file's content hash.
"""

import array
import hashlib

from msw_kernel import kernel


def _int(v, what, lo=None, hi=None):
    if not isinstance(v, int) or isinstance(v, bool):
        raise TypeError(what + " must be an int")
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise ValueError(what + " out of range")
    return v


@kernel("echo", args=(("x", "any"),))
def echo(x):
    return x


@kernel("sleep_ms", args=(("ms", "uint"),))
def sleep_ms(ms):
    return _int(ms, "ms", 0, 3600000)


@kernel("sha256", args=(("data", "bstr"),))
def sha256(data):
    # hashed in place: a chunked message's byte string is a view into its buffer
    if isinstance(data, str) or not isinstance(data, (bytes, bytearray, memoryview, array.array)):
        raise TypeError("data must be bytes-like")
    return hashlib.sha256(data).digest()
