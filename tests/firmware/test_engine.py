"""The node engine (firmware/engine.py) on CPython, frame by frame, on a fake clock.

The frames the engine reads are built and its answers checked with the host's codec and
MACs (microswarm.wire), an implementation of the protocol written apart from the firmware.
"""

from __future__ import annotations

import array
import secrets
import sys
from typing import Any

import pytest

from microswarm import wire
from microswarm.firmware import engine as E
from microswarm.firmware import engine_join as J
from microswarm.firmware import kernels  # noqa: F401  (the registry the engine checks against)
from microswarm.firmware import msw_boot
from microswarm.protocol.catalog import ErrorCode, MsgType, key

KEY = bytes(range(32))
T = MsgType
HB = 200
DOT = [array.array("h", [1]), array.array("h", [2])]  # arguments that fit dot's kinds


def k(msg: MsgType, name: str) -> int:
    return key(msg, name)


class FakeIO:
    def __init__(self) -> None:
        self.sent: list[tuple[int, dict]] = []
        self.runs: list[E.Task] = []
        self.cancels: list[E.Task] = []
        self.closed: str | None = None
        self.joins = 0
        self.fail_next: BaseException | None = None

    def send(self, msg_type: int, payload: dict) -> None:
        if self.fail_next is not None and msg_type == T.RESULT and 1 in payload:
            error, self.fail_next = self.fail_next, None
            raise error
        # what goes on the wire: the host codec must accept it as a valid frame
        frame = wire.decode_frame(wire.encode_frame(msg_type, payload, 0))
        self.sent.append((int(frame.type), frame.payload))

    def run(self, task: E.Task) -> None:
        self.runs.append(task)

    def cancel(self, task: E.Task) -> None:
        self.cancels.append(task)

    def close(self, reason: str) -> None:
        assert self.closed is None, "close is called once"
        self.closed = reason

    def on_joined(self) -> None:
        self.joins += 1

    def challenged(self, key, master_nonce, node_nonce) -> None:
        self.challenges = getattr(self, "challenges", 0) + 1  # frame MACs start here

    def heap_free(self) -> int:
        return 50_000

    def take(self) -> list[tuple[int, dict]]:
        out, self.sent = self.sent, []
        return out


def hello(slots: int = 2, threads: bool = True) -> dict[int, Any]:
    return {
        k(T.HELLO, "node_id"): "n1", k(T.HELLO, "board"): "unix", k(T.HELLO, "fw_version"): "t",
        k(T.HELLO, "proto_version"): 1, k(T.HELLO, "kernels"): ["echo", "sleep_ms", "dot"],
        k(T.HELLO, "heap_total"): 100_000, k(T.HELLO, "heap_free"): 50_000,
        k(T.HELLO, "max_frame"): 4096, k(T.HELLO, "slots"): slots, k(T.HELLO, "link"): "tcp",
        k(T.HELLO, "max_message"): 8192, k(T.HELLO, "threads"): threads,
    }


def make(slots: int = 2, threads: bool = True) -> tuple[E.Engine, FakeIO]:
    io = FakeIO()
    eng = E.Engine(io, hello(slots, threads), KEY, waits=("sleep_ms",))
    return eng, io


def join(eng: E.Engine, io: FakeIO, now: int = 0, proof_key: bytes = KEY) -> None:
    node_nonce = bytes(16)
    eng.start(now, node_nonce)
    (t, h), = io.take()
    assert t == T.HELLO and h[k(T.HELLO, "nonce")] == node_nonce
    master_nonce = secrets.token_bytes(16)
    eng.receive(T.AUTH_CHALLENGE, 0, 0, {0: master_nonce}, now)
    (t, resp), = io.take()
    assert t == T.AUTH_RESPONSE
    assert resp[0] == wire.node_mac(KEY, master_nonce, node_nonce, "n1")
    eng.receive(T.WELCOME, 0, 1, {0: "n1", 1: HB, 2: 2, 3: 16384,
                                  4: wire.master_proof(proof_key, node_nonce, master_nonce)}, now)


def task(eng: E.Engine, task_id: int, kernel: str, args: list, now: int) -> None:
    eng.receive(T.TASK, 0, task_id, {0: task_id, 1: kernel, 2: args}, now)


def test_join_then_heartbeats_on_the_clock():
    eng, io = make()
    join(eng, io, now=1000)
    assert io.joins == 1 and io.take() == [] and eng.max_frame == 4096
    assert eng.next_deadline() == 1000 + HB
    eng.on_timer(1000 + HB - 1)
    assert io.take() == []
    eng.on_timer(1000 + HB)
    (t, beat), = io.take()
    assert t == T.HEARTBEAT and beat[0] == 1000 + HB and beat[2] == 0 and 6 not in beat
    assert beat[1] == beat[5] == 50_000


def test_a_bad_master_proof_is_answered_and_ends_the_session():
    eng, io = make()
    join(eng, io, proof_key=bytes(32))
    (t, err), = io.take()
    assert t == T.ERROR and err[0] == ErrorCode.AUTH_FAILED
    assert eng.refused and io.closed and io.joins == 0


def test_no_welcome_in_time_ends_the_session():
    eng, io = make()
    eng.start(0, bytes(16))
    assert eng.next_deadline() == E._JOIN_TIMEOUT_MS
    eng.on_timer(E._JOIN_TIMEOUT_MS - 1)
    assert io.closed is None
    eng.on_timer(E._JOIN_TIMEOUT_MS)
    assert "no WELCOME" in io.closed


def test_a_task_before_welcome_is_refused_with_its_id():
    eng, io = make()
    eng.start(0, bytes(16))
    io.take()
    task(eng, 9, "echo", [1], 0)
    (t, err), = io.take()
    assert t == T.ERROR and err[0] == ErrorCode.NOT_JOINED and err[3] == 9


def test_a_running_kernel_is_in_the_heartbeat_and_the_queue():
    eng, io = make()
    join(eng, io)
    task(eng, 1, "dot", [array.array("h", [1]), array.array("h", [2])], 10)
    assert [r.task_id for r in io.runs] == [1]
    eng.on_timer(HB)
    eng.on_timer(2 * HB)
    beats = [p for t, p in io.take() if t == T.HEARTBEAT]
    assert [b[6] for b in beats] == [[[1, HB - 10]], [[1, 2 * HB - 10]]]
    assert all(b[2] == 1 for b in beats)
    eng.receive(T.HEARTBEAT, 0, 5, {0: 1}, 2 * HB)
    eng.finished(io.runs[0], 2, None, 123, 2 * HB + 5)
    (t, res), = io.take()
    assert t == T.RESULT and res == {0: 1, 1: 2, 3: 123}


def test_slots_busy_and_waiting_kernels_beside_a_computing_one():
    eng, io = make(slots=3)
    join(eng, io)
    task(eng, 1, "dot", DOT, 0)
    task(eng, 2, "echo", [1], 0)  # queued behind the computing kernel
    task(eng, 3, "sleep_ms", [50], 0)  # queued behind it too: tasks start in order
    task(eng, 4, "echo", [2], 0)
    (t, busy), = io.take()
    assert t == T.RESULT and busy[0] == 4 and busy[5] == ErrorCode.BUSY
    assert [r.task_id for r in io.runs] == [1]
    eng.finished(io.runs[0], 0, None, 1, 5)
    # the next computing kernel starts, and the waiting one behind it starts beside it
    assert [r.task_id for r in io.runs] == [1, 2, 3]
    eng.finished(io.runs[1], 1, None, 1, 6)
    task(eng, 5, "dot", DOT, 7)  # a computing kernel starts beside a waiting one
    assert [r.task_id for r in io.runs] == [1, 2, 3, 5]


def test_unknown_kernel_and_cancel():
    eng, io = make(slots=4)
    join(eng, io)
    task(eng, 1, "nope", [], 0)
    (t, res), = io.take()
    assert res[0] == 1 and res[5] == ErrorCode.UNKNOWN_KERNEL
    task(eng, 2, "dot", DOT, 0)
    task(eng, 3, "dot", DOT, 0)
    eng.receive(T.CANCEL, 0, 0, {0: 3}, 1)  # queued: answered at once
    (t, res), = io.take()
    assert res[0] == 3 and res[5] == ErrorCode.CANCELLED
    eng.receive(T.CANCEL, 0, 0, {0: 2}, 1)  # running: the runner is told, RESULT later
    assert io.take() == [] and [c.task_id for c in io.cancels] == [2]
    eng.receive(T.CANCEL, 0, 0, {0: 77}, 1)  # not held: nothing to answer
    assert io.take() == []
    eng.finished(io.runs[0], 5, None, 99, 2)
    (t, res), = io.take()
    assert res[0] == 2 and res[5] == ErrorCode.CANCELLED and res[3] == 99


@pytest.mark.parametrize("error, code", [
    (ValueError("a and b must have the same length"), ErrorCode.BAD_ARGS),
    (TypeError("dot() takes 2 positional arguments"), ErrorCode.BAD_ARGS),
    (IndexError("index out of range"), ErrorCode.KERNEL_FAILED),
    (KeyError("x"), ErrorCode.KERNEL_FAILED),
    (ZeroDivisionError("divide by zero"), ErrorCode.KERNEL_FAILED),
    (MemoryError(), ErrorCode.NO_MEMORY),
])
def test_kernel_errors_map_to_codes(error, code):
    eng, io = make()
    join(eng, io)
    task(eng, 1, "dot", DOT, 0)
    eng.finished(io.runs[0], None, error, 10, 1)
    (t, res), = io.take()
    assert t == T.RESULT and res[0] == 1 and res[5] == code
    assert res[2].startswith(type(error).__name__)


def test_a_result_that_cannot_be_sent_is_answered_with_its_code():
    eng, io = make(slots=4)
    join(eng, io)
    task(eng, 1, "echo", [1], 0)
    io.fail_next = MemoryError()
    eng.finished(io.runs[0], "x" * 10, None, 1, 1)
    task(eng, 2, "echo", [1], 1)
    io.fail_next = wire.FrameError(ErrorCode.TOO_LARGE, "over the limit")
    eng.finished(io.runs[1], "x" * 10, None, 1, 2)
    codes = [(p[0], p[5]) for t, p in io.take()]
    assert codes == [(1, ErrorCode.NO_MEMORY), (2, ErrorCode.TOO_LARGE)]
    assert io.closed is None


def test_master_silence_ends_the_session_unless_the_node_could_not_listen():
    eng, io = make()
    join(eng, io)
    while io.closed is None:  # the driver wakes the engine at each deadline it names
        now = eng.next_deadline()
        eng.on_timer(now)
    assert "master silent" in io.closed and now == E._SILENT_BEATS * HB + 1
    beats = [p for t, p in io.take() if t == T.HEARTBEAT]
    assert len(beats) == E._SILENT_BEATS

    # a node whose own clock did not run for a while (its host stalled) does not blame
    # the master for that time
    eng, io = make()
    join(eng, io)
    eng.on_timer(10 * HB)
    assert io.closed is None

    # without threads the kernel held the node: its run time is not the master's silence
    eng, io = make(threads=False)
    join(eng, io)
    task(eng, 1, "dot", DOT, 0)
    eng.finished(io.runs[0], 0, None, 1, 10 * HB)
    eng.on_timer(10 * HB)
    assert io.closed is None


def test_unexpected_messages_are_answered_and_the_session_stays():
    eng, io = make()
    join(eng, io)
    eng.receive(T.WELCOME, 0, 7, {0: "n1", 1: HB, 2: 2, 3: 16384, 4: bytes(32)}, 1)
    eng.receive(T.RESULT, 0, 8, {0: 1, 3: 0}, 1)
    errors = [p for t, p in io.take()]
    assert [(e[0], e[2]) for e in errors] == [(ErrorCode.UNEXPECTED, 7),
                                              (ErrorCode.UNEXPECTED, 8)]
    assert io.closed is None and eng.stats.bad_frames == 2
    task(eng, 1, "echo", [1], 2)
    assert io.runs


def test_bad_frames_are_answered_and_counted():
    eng, io = make()
    join(eng, io)
    eng.bad_frame(ErrorCode.BAD_CRC, "CRC-32 mismatch", 12, False, 1)
    (t, err), = io.take()
    assert t == T.ERROR and err[0] == ErrorCode.BAD_CRC and err[2] == 12
    assert io.closed is None
    eng.bad_frame(ErrorCode.TOO_LARGE, "frame over the limit", 13, True, 2)
    assert io.closed and eng.stats.bad_frames == 2


def _chunks(payload: dict, stream: int, max_frame: int = 512) -> list:
    frames = wire.encode_message(T.TASK, payload, seq=100, max_frame=max_frame, stream=stream)
    return [wire.decode_frame(f) for f in frames]


def test_a_chunked_task_is_reassembled_and_runs():
    eng, io = make()
    join(eng, io)
    data = array.array("h", range(1000))
    for f in _chunks({0: 5, 1: "echo", 2: [data]}, stream=1):
        assert f.type == T.CHUNK
        eng.receive(f.type, f.flags, f.seq, f.payload, 1)
    assert io.take() == []
    (run,) = io.runs
    assert run.task_id == 5 and list(run.args[0]) == list(data)


def test_a_task_still_arriving_in_chunks_counts_in_the_heartbeat_queue():
    """A large TASK takes seconds on a serial link: while its CHUNKs arrive the node's
    HEARTBEAT counts it, or the master would take it for lost (SPEC, "Lost frames")."""
    eng, io = make()
    join(eng, io)
    frames = _chunks({0: 5, 1: "echo", 2: [bytes(3000)]}, stream=1)
    assert len(frames) > 2
    for f in frames[:-1]:
        eng.receive(f.type, f.flags, f.seq, f.payload, 1)
    eng.heartbeat(2)
    (t, beat), = io.take()
    assert t == T.HEARTBEAT and beat[2] == 1
    f = frames[-1]
    eng.receive(f.type, f.flags, f.seq, f.payload, 3)
    (run,) = io.runs
    assert run.task_id == 5 and eng.busy() == 1  # now queued as any task
    eng.finished(run, run.args[0], None, 10, 4)
    io.take()
    eng.heartbeat(5)
    (t, beat), = io.take()
    assert t == T.HEARTBEAT and beat[2] == 0


def test_chunk_streams_over_the_limits_are_refused_with_the_task_id():
    eng, io = make(slots=8)
    join(eng, io)
    big = _chunks({0: 40, 1: "echo", 2: [bytes(9000)]}, stream=9)  # max_message is 8192
    eng.receive(T.CHUNK, big[0].flags, big[0].seq, big[0].payload, 1)
    (t, err), = io.take()
    assert t == T.ERROR and err[0] == ErrorCode.TOO_LARGE and err[3] == 40
    firsts = [_chunks({0: 50 + i, 1: "echo", 2: [bytes(1000)]}, stream=i)[0] for i in range(5)]
    for f in firsts:
        eng.receive(f.type, f.flags, f.seq, f.payload, 1)
    (t, err), = io.take()
    assert err[0] == ErrorCode.TOO_LARGE and err[3] == 54, "a stated limit of open streams"
    assert io.closed is None
    task(eng, 60, "echo", [1], 2)
    assert [r.task_id for r in io.runs] == [60]


def test_arguments_that_do_not_fit_the_declared_kinds_are_bad_args_before_the_kernel_runs():
    eng, io = make()
    join(eng, io)
    task(eng, 1, "sleep_ms", [-5], 0)
    task(eng, 2, "dot", [array.array("i", [1]), array.array("h", [2])], 0)
    task(eng, 3, "dot", DOT[:1], 0)
    (t1, r1), (t2, r2), (t3, r3) = io.take()
    assert t1 == t2 == t3 == T.RESULT and io.runs == []
    assert [r[0] for r in (r1, r2, r3)] == [1, 2, 3]
    assert all(r[5] == ErrorCode.BAD_ARGS and r[3] == 0 for r in (r1, r2, r3))
    assert r1[2] == "ValueError: sleep_ms: argument ms must be uint, got negative int"
    assert r2[2] == "ValueError: dot: argument a must be tarray:bhf, got array('i')"
    assert r3[2] == "ValueError: dot takes 2 arguments (a, b), got 1"
    # answered, so counted done, and the slots are free again
    eng.on_timer(HB)
    (t, beat), = io.take()
    assert t == T.HEARTBEAT and beat[2] == 0 and beat[3] == 3


def test_every_node_dials_again_after_a_doubling_jittered_wait_reset_by_a_join():
    b = E.BACKOFF_MIN_MS
    waits = []
    for _ in range(8):
        wait, b = E.backoff(b, 1.0)
        waits.append(wait)
    assert waits == [200, 400, 800, 1600, 3200, 6400, 10000, 10000]
    assert E.backoff(b, 0.0) == (5000, 10000)  # the wait is in [b/2, b]
    assert E.backoff(E.BACKOFF_MIN_MS, 0.5) == (150, 400)  # after a join


def test_a_board_offers_two_thirds_of_its_heap_per_message_and_an_eighth_for_operands():
    assert J.heap_limits(200_000) == (133_333, 25_000)
    assert J.heap_limits(111_168)[0] == 74_112  # the ESP32's: room for a 64 KB task
    assert J.heap_limits(8 << 20) == (1 << 20, 1 << 20)  # a message is at most 1 MiB


def test_a_kernel_module_that_does_not_fit_when_it_loads_is_no_memory_and_stays_a_stub(
        tmp_path, monkeypatch):
    """A kernel registered as a stub (its module listed in a manifest, not imported at
    boot) loads on its first task; a MemoryError while it loads answers NO_MEMORY for that
    task, and the next task tries again."""
    from microswarm.firmware import msw_kernel

    (tmp_path / "oom_probe_kernels.py").write_text(
        "from msw_kernel import kernel\n"
        "import oom_probe_state\n"
        "if oom_probe_state.fail:\n"
        "    oom_probe_state.fail -= 1\n"
        "    raise MemoryError('memory allocation failed')\n"
        "@kernel('oom_probe', args=(('x', 'uint'),))\n"
        "def oom_probe(x):\n"
        "    return x + 1\n")
    (tmp_path / "oom_probe_state.py").write_text("fail = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(sys.modules, "msw_kernel", msw_kernel)
    msw_boot.stub("oom_probe", "oom_probe_kernels")
    try:
        io = FakeIO()
        eng = E.Engine(io, hello(), KEY, known=msw_kernel.KERNELS)
        join(eng, io)
        task(eng, 1, "oom_probe", [1], 0)
        (t, r), = io.take()
        assert t == T.RESULT and r[0] == 1 and r[5] == ErrorCode.NO_MEMORY and io.runs == []
        assert msw_kernel.KERNELS["oom_probe"][msw_kernel.ARGS] is False  # still a stub
        task(eng, 2, "oom_probe", [1], 0)
        assert io.take() == [] and [t.task_id for t in io.runs] == [2]
        assert msw_kernel.lookup("oom_probe")[0](1) == 2
    finally:
        msw_kernel.KERNELS.pop("oom_probe", None)
        for name in ("oom_probe_kernels", "oom_probe_state"):
            sys.modules.pop(name, None)


def test_a_clock_that_steps_back_across_a_kernel_reports_zero_elapsed():
    """RESULT.elapsed_us is a uint: a port whose microsecond clock goes back across the call
    (ports/qemu's ticks_us, by up to a millisecond when SysTick reloads between its two
    reads) reports 0, not a negative time the master refuses as BAD_PAYLOAD."""
    from microswarm.firmware import msw_kernel

    readings = iter((5_999, 5_000))
    out = msw_kernel.call(lambda x: x + 1, (1,), [None, None, None],
                          lambda: next(readings), lambda new, old: new - old)
    assert out == [2, None, 0]
    forward = iter((5_000, 5_250))
    assert msw_kernel.call(lambda: None, (), [None] * 3, lambda: next(forward),
                           lambda new, old: new - old)[2] == 250
    assert msw_kernel.waited(10, None, True, -400) == 0  # cancelled: what passed, never < 0
    assert msw_kernel.waited(10, None, False, -400) == 10_000  # ran to its end: the ms waited
