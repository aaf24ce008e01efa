"""Conformance of one board through its link: join, kernels, protocol vectors, bad frames,
reconnects, heap budget. The same tests run on a virtual board and on a real one:

  pytest --pyargs microswarm.testing.conformance                       # a virtual board
  pytest --pyargs microswarm.testing.conformance --board-port /dev/ttyACM0 --board w5500-evb-pico2

Fixtures (hil_board, probe) come from the microswarm pytest plugin (testing/plugin.py)."""

from __future__ import annotations

import contextlib
import json
import time
from array import array

import pytest

from microswarm import paths
from microswarm.firmware import kernels as reference
from microswarm.hil.probe import Probe, ProbeError
from microswarm.protocol.catalog import HEADER_SIZE, PROTOCOL_VERSION, ErrorCode, MsgType
from microswarm.protocol.catalog import key as field_key

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

HELLO = {name: field_key(MsgType.HELLO, name) for name in
         ("node_id", "board", "kernels", "heap_total", "heap_free", "max_frame", "slots",
          "link", "native_kernels", "kernel_hashes")}

KERNEL_CASES: dict[str, list] = {
    "echo": [[1, -2, 2.5, "text", b"\x00\xff\x03", None, True, [array("h", [1, -1])]]],
    "sleep_ms": [5],
    "dot": [array("h", range(-50, 50)), array("h", range(100))],
    "matmul": [array("b", range(-3, 3)), array("b", range(6)), 2, 3, 2],
    "mandelbrot": [-2 * 8192, -8192, 512, 8, 4, 50],
    "monte_carlo_pi": [12345, 1000],
    "fir": [array("h", range(40)), array("h", [1, 2, 3, 2, 1]), 2],
    "conv1d": [array("b", range(-20, 20)), array("b", [1, -2, 1])],
    "zscore_anomaly": [array("f", [0.0] * 20 + [50.0]), 2.0],
    "mlp_int8": [array("b", [1, 2, 3, 4]), array("b", range(12)), array("i", [1, 2, 3]),
                 array("b", range(6)), array("i", [0, 1]), 2, 2],
    "lif_step": [array("h", [0, 100, 200, 300]), array("h", [50] * 4), 2, 250, 0],
    "sha256": [b"abc" * 100],
}


def plain(value):
    """Compare values the way they travel: arrays by items, floats by float32 tolerance."""
    if isinstance(value, array):
        return [plain(v) for v in value]
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, float):
        return pytest.approx(value, rel=1e-5, abs=1e-6)
    return value


def vectors(name: str) -> list[dict]:
    return json.loads((paths.protocol_dir() / "vectors" / f"{name}.json").read_text())["vectors"]


def test_hello_describes_the_board_within_its_budget(hil_board, probe: Probe):
    hello = probe.hello
    definition = paths.load_board(hil_board.board)
    assert hello[HELLO["node_id"]] == hil_board.node_id
    assert hello[HELLO["board"]] == hil_board.board
    assert hello[HELLO["link"]] == hil_board.link
    assert set(KERNEL_CASES) <= set(hello[HELLO["kernels"]])
    assert 0 < hello[HELLO["heap_free"]] <= hello[HELLO["heap_total"]]
    assert hello[HELLO["heap_total"]] <= definition["heap_bytes"]
    assert 64 <= hello[HELLO["max_frame"]] <= definition["max_frame"]
    assert hello[HELLO["slots"]] >= 1


@pytest.mark.parametrize("kernel", sorted(KERNEL_CASES))
def test_every_kernel_matches_its_reference(probe: Probe, kernel: str):
    args = KERNEL_CASES[kernel]
    result = probe.task(kernel, args)
    assert 2 not in result, f"{kernel} failed on the board: {result.get(2)}"
    assert plain(result[1]) == plain(reference.run(kernel, args))
    if result.get(4):
        assert kernel in probe.hello.get(HELLO["native_kernels"], [])


def test_a_large_task_travels_in_chunks_both_ways(probe: Probe):
    data = bytes(range(256)) * 64  # 16 KB: more than one frame each way
    result = probe.task("echo", [data], timeout=60)
    assert result[1] == data
    assert probe.task("sha256", [data])[1] == reference.sha256(data)


def test_large_tasks_in_flight_together_all_come_back(probe: Probe):
    payloads = [bytes([i]) * 12000 + bytes(range(256)) for i in range(probe.window)]
    ids = [probe.submit("echo", [data]) for data in payloads]
    for task_id, data in zip(ids, payloads, strict=True):
        assert probe.result(task_id, timeout=60)[1] == data


def test_unknown_kernel_and_bad_arguments_fail_the_task_not_the_node(probe: Probe):
    unknown = probe.task("no_such_kernel", [1])
    assert unknown.get(5) == ErrorCode.UNKNOWN_KERNEL
    bad = probe.task("dot", [array("h", [1, 2]), array("b", [1])])
    assert bad.get(5) == ErrorCode.BAD_ARGS and "same typecode" in bad.get(2)
    wrong_kind = probe.task("dot", [array("h", [1, 2]), "text"])
    assert wrong_kind.get(5) == ErrorCode.BAD_ARGS
    assert wrong_kind.get(2).endswith("dot: argument b must be tarray:bhf, got str")
    assert probe.hello[HELLO["kernel_hashes"]]["dot"]  # every kernel with its version
    assert probe.task("echo", [3])[1] == 3


def test_task_frames_from_the_golden_vectors_run_as_sent(probe: Probe):
    tasks = [v for v in vectors("frames") if v["type"] == MsgType.TASK]
    assert tasks
    sent = 0
    for vector in tasks:
        frame = bytes.fromhex(vector["frame"])
        probe.transport.send_frame(probe.seal(frame))  # the vector's bytes, plus the MAC
        sent += 1
        task_id = _task_id_of(vector)
        result = probe.result(task_id, timeout=30)
        assert result[0] == task_id
        kernel_name = _kernel_of(vector)
        if kernel_name not in probe.hello[HELLO["kernels"]]:
            assert result.get(5) == ErrorCode.UNKNOWN_KERNEL
    assert sent == len(tasks)


def test_a_shared_operand_put_once_serves_tasks_by_reference(probe: Probe):
    """SPEC.md section 6: the golden PUT, then the golden TASK that refers to it, runs
    with the operand in place; wrong content under a hash is refused, never used."""
    if not probe.hello.get(field_key(MsgType.HELLO, "operand_cache")):
        pytest.skip("the board keeps no shared operands (HELLO operand_cache)")
    frames = {v["name"]: v for v in vectors("frames")}
    put, task = frames["put"], frames["task_refs"]
    probe.transport.send_frame(probe.seal(bytes.fromhex(put["frame"])))
    probe.transport.send_frame(probe.seal(bytes.fromhex(task["frame"])))
    args = dict(task["payload"]["map"])[2]
    a = array("b", args[0]["data"])
    b = array("b", [5, -6, 7, -128])  # the PUT vector's operand
    result = probe.result(_task_id_of(task), timeout=30)
    assert plain(result[1]) == plain(reference.matmul(a, b, 2, 2, 2))
    wrong = {0: bytes(16), 1: bytes.fromhex(dict(put["payload"]["map"])[1]["hex"])}
    probe.send(MsgType.PUT, wrong)
    errors = probe.errors_seen(10, len(probe.errors) + 1)
    assert errors and errors[-1][0] == ErrorCode.BAD_PAYLOAD


def test_chunked_task_vectors_are_reassembled_and_answered(hil_board, probe: Probe):
    cases = [v for v in vectors("chunked") if v["type"] == MsgType.TASK]
    assert cases
    for vector in cases:
        for frame in vector["frames"]:  # the vector's pieces, each with its MAC
            probe.transport.send_frame(probe.seal(bytes.fromhex(frame)))
        task_id = _task_id_of(vector)
        result = probe.result(task_id, timeout=30)
        if _kernel_of(vector) in probe.hello[HELLO["kernels"]]:
            assert 2 not in result, result
        else:
            assert result.get(5) == ErrorCode.UNKNOWN_KERNEL


def test_bad_frame_vectors_are_refused_and_the_link_survives(hil_board, probe: Probe):
    fatal = {ErrorCode.BAD_VERSION, ErrorCode.TOO_LARGE, ErrorCode.TRUNCATED}
    cases = [v for v in vectors("bad")
             if hil_board.link == "serial" or ErrorCode[v["error"]] not in fatal]
    assert cases
    # On serial, bytes without a readable header of this version are counted and never
    # answered (SPEC section 1: an answer could feed a loop with an echoing console).
    answered = [v for v in cases if hil_board.link != "serial" or _has_our_header(v["frame"])]
    assert answered
    probe.errors.clear()
    for vector in cases:
        if hil_board.link == "serial":
            probe.transport.send_bytes(bytes.fromhex(vector["serial"]))
        else:
            probe.transport.send_bytes(bytes.fromhex(vector["frame"]))
    errors = probe.errors_seen(timeout=10, count=len(answered))
    codes = sorted(e[0] for e in errors)
    assert len(codes) >= len(answered)
    assert set(codes) <= {int(c) for c in ErrorCode}
    if len(answered) < len(cases):
        assert ErrorCode.BAD_VERSION not in codes  # a version not ours: never answered
    assert probe.task("echo", ["still here"])[1] == "still here"
    assert _latest_bad_frames(probe) >= len(cases)


def _has_our_header(frame_hex: str) -> bool:
    frame = bytes.fromhex(frame_hex)
    return len(frame) >= HEADER_SIZE and frame[0] == PROTOCOL_VERSION


def test_a_node_drops_a_master_that_fails_its_proof(hil_board):
    session = hil_board.session
    hil_board.drop_session()
    del session
    if hil_board.link == "tcp":
        from microswarm.hil.probe import TcpTransport

        transport = TcpTransport.accept(hil_board.listener, 30, peer=hil_board.host)
    else:
        from microswarm.hil.probe import SerialTransport

        transport = SerialTransport(hil_board.port)
    bad = Probe(transport, hil_board.key, heartbeat_ms=hil_board.heartbeat_ms)
    try:
        bad.join(30, proof=b"\x00" * 32)
        with contextlib.suppress(ProbeError):  # a TCP node may close before it answers
            bad.errors_seen(timeout=5, count=1)
        try:
            refused = bad.task("echo", [1], timeout=3)
        except ProbeError:
            refused = None  # no answer, or the link was closed: not run
        assert refused is None or refused.get(5) in (ErrorCode.NOT_JOINED,
                                                     ErrorCode.AUTH_FAILED)
    finally:
        transport.close()


def test_the_node_comes_back_after_the_link_drops(hil_board):
    probe = hil_board.joined()
    assert probe.task("echo", [1])[1] == 1
    hil_board.drop_session()  # TCP: the socket closes; serial: the master falls silent
    started = time.monotonic()
    probe = hil_board.joined()
    assert probe.task("echo", [2])[1] == 2
    assert time.monotonic() - started < 60


def test_a_master_speaking_between_sessions_never_interrupts_the_node(hil_board):
    """Every frame begins with a COBS code byte, 0x03 whenever the header's flags byte is
    the first zero, and 0x03 is Ctrl-C to a REPL. A master that falls silent and then
    speaks again (its old session still sending, a restart) reaches the node while it waits
    to dial again: those bytes are data, never an interrupt that drops it to the REPL."""
    if hil_board.link != "serial":
        pytest.skip("the console's interrupt key is a serial-link property")
    from microswarm.hil.probe import SerialTransport

    probe = hil_board.joined()
    assert probe.task("echo", [1])[1] == 1
    hil_board.drop_session()  # the master falls silent: the node ends its session
    transport = SerialTransport(hil_board.port)
    try:
        # Stale frames keep arriving through the silence, the session's end and the
        # node's wait before it dials again: each a lone 0x03 chunk (a bad frame).
        until = time.monotonic() + 3 * hil_board.heartbeat_ms / 1000 + 3.0
        while time.monotonic() < until:
            transport.send_bytes(b"\x03\x00")
            time.sleep(0.01)
    finally:
        transport.close()
    probe = hil_board.joined()  # a board at its REPL would never say HELLO again
    assert probe.task("echo", [2])[1] == 2


def test_heap_stays_within_the_budget_under_load(hil_board, probe: Probe):
    budget = hil_board.heap_budget
    big = array("b", range(-64, 64)) * 32  # 4 KB operands
    for _ in range(3):
        assert 2 not in probe.task("conv1d", [big, array("b", [1, 2, 1])])
        assert 2 not in probe.task("echo", [bytes(8192)])
    deadline = time.monotonic() + 5 * hil_board.heartbeat_ms / 1000 + 5
    probe.heartbeats.clear()
    while not any(5 in hb for hb in probe.heartbeats) and time.monotonic() < deadline:
        probe.task("echo", [0])
        time.sleep(hil_board.heartbeat_ms / 1000)
    beats = [hb for hb in probe.heartbeats if 5 in hb]
    assert beats, "no HEARTBEAT with heap_min"
    heap_total = probe.hello[HELLO["heap_total"]]
    assert heap_total <= budget
    assert 0 < beats[-1][5] <= beats[-1].get(1, heap_total) <= heap_total


def test_garbage_on_the_line_is_skipped(hil_board, probe: Probe):
    if hil_board.link != "serial":
        pytest.skip("resynchronisation at delimiters is a serial-link property")
    probe.transport.send_bytes(b"\x00" + bytes(range(1, 200)) + b"\x00\x00")
    try:
        assert probe.task("echo", [b"after garbage"], timeout=5)[1] == b"after garbage"
    except ProbeError:
        hil_board.hard_reset()
        raise


def _task_id_of(vector: dict) -> int:
    return dict(vector["payload"]["map"])[0]


def _kernel_of(vector: dict) -> str:
    return dict(vector["payload"]["map"])[1]


def _latest_bad_frames(probe: Probe) -> int:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        probe.heartbeats.clear()
        probe.task("echo", [0])
        for beat in reversed(probe.heartbeats):
            if 4 in beat:
                return beat[4]
        time.sleep(0.2)
    return 0

