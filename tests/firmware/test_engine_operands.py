"""Shared operands in the node engine (firmware/engine.py + firmware/operands.py), frame
by frame on a fake clock: PUT, TASK refs, NEED, the LRU bound, stale or wrong content.

Operands are encoded and hashed with the host's codec (microswarm.wire) and hashlib, apart
from the firmware's own CBOR; every message the engine sends passes the host's decoder.
"""

from __future__ import annotations

import array
import hashlib

from microswarm import wire
from microswarm.protocol.catalog import ErrorCode, MsgType

from .test_engine import HB, FakeIO, hello, join
from .test_engine import E as E  # the engine module, as test_engine imports it

T = MsgType


def operand(values: list[int], code: str = "h") -> tuple[bytes, bytes, array.array]:
    value = array.array(code, values)
    data = wire.encode_payload(value)
    return hashlib.sha256(data).digest()[:16], data, value


def make(cache: int = 10_000, slots: int = 4):
    io = FakeIO()
    h = hello(slots)
    h[17] = cache  # HELLO operand_cache
    eng = E.Engine(io, h, bytes(range(32)), waits=("sleep_ms",))
    join(eng, io)
    io.take()
    return eng, io


def put(eng, h: bytes, data: bytes, now: int = 0) -> None:
    eng.receive(T.PUT, 0, 0, {0: h, 1: data}, now)


def dot_task(eng, task_id: int, a: array.array, ref: bytes, now: int = 0) -> None:
    eng.receive(T.TASK, 0, 0, {0: task_id, 1: "dot", 2: [a, None], 4: {1: ref}}, now)


def beat(eng, io, now: int) -> dict:
    eng.on_timer(now)
    beats = [p for t, p in io.take() if t == T.HEARTBEAT]
    return beats[-1]


def test_a_put_operand_is_used_by_reference_and_listed_in_the_heartbeat():
    eng, io = make()
    h, data, b = operand([1, 2, 3])
    put(eng, h, data)
    a = array.array("h", [4, 5, 6])
    dot_task(eng, 1, a, h)
    assert io.take() == []
    run, = io.runs
    assert run.args[0] == a and run.args[1] == b  # the operand in place of its reference
    assert beat(eng, io, HB)[7] == [h]


def test_a_missing_operand_is_asked_for_and_the_task_waits_for_it():
    eng, io = make(slots=2)
    h, data, b = operand([7, -1])
    dot_task(eng, 5, array.array("h", [2, 3]), h)
    (t, need), = io.take()
    assert t == T.NEED and need == {0: [h], 1: 5}
    assert io.runs == [] and beat(eng, io, HB)[2] == 1  # it holds its slot
    eng.receive(T.TASK, 0, 0, {0: 6, 1: "echo", 2: [1]}, HB)
    eng.receive(T.TASK, 0, 0, {0: 7, 1: "echo", 2: [1]}, HB)
    assert [(p[0], p[5]) for t, p in io.take()] == [(7, ErrorCode.BUSY)]
    put(eng, h, data, HB + 1)  # 5 is queued now, behind 6 (one computing kernel at a time)
    assert [r.task_id for r in io.runs] == [6] and [q.task_id for q in eng.queue] == [5]
    eng.finished(io.runs[0], 1, None, 10, HB + 2)
    assert [r.task_id for r in io.runs] == [6, 5] and io.runs[1].args[1] == b
    eng.finished(io.runs[1], 2 * 7 + 3 * -1, None, 10, HB + 3)
    results = [p for t, p in io.take() if t == T.RESULT]
    assert [(r[0], r[1]) for r in results] == [(6, 1), (5, 11)]


def test_the_cache_keeps_the_most_recently_used_within_its_bytes():
    ops = [operand(list(range(i, i + 20))) for i in range(3)]
    size = len(ops[0][1])
    eng, io = make(cache=2 * size + size // 2)  # room for two
    put(eng, ops[0][0], ops[0][1])
    put(eng, ops[1][0], ops[1][1])
    dot_task(eng, 1, array.array("h", [1] * 20), ops[0][0])  # uses 0: 1 is now the oldest
    put(eng, ops[2][0], ops[2][1])
    assert beat(eng, io, HB)[7] == [ops[0][0], ops[2][0]]
    assert eng.ops.used <= eng.ops.budget
    eng.finished(io.runs[0], 0, None, 1, HB)
    dot_task(eng, 2, array.array("h", [1] * 20), ops[1][0], HB)  # evicted: asked for again
    (t, need), = [m for m in io.take() if m[0] != T.RESULT]
    assert t == T.NEED and need[0] == [ops[1][0]]


def test_wrong_content_under_a_hash_is_refused_and_never_used():
    eng, io = make()
    h, data, _b = operand([1, 2, 3])
    _h2, other, _b2 = operand([1, 2, 4])
    put(eng, h, other)  # stale or corrupted: the content is not the hash's
    (t, err), = io.take()
    assert t == T.ERROR and err[0] == ErrorCode.BAD_PAYLOAD
    dot_task(eng, 1, array.array("h", [1, 1, 1]), h)
    (t, need), = io.take()
    assert t == T.NEED and io.runs == []
    put(eng, h, data)
    assert io.runs[0].args[1] == array.array("h", [1, 2, 3])


def test_operands_that_never_come_fail_the_task_as_missing_not_as_a_failure():
    eng, io = make()
    h, _data, _b = operand([1])
    dot_task(eng, 3, array.array("h", [1]), h, 0)
    io.take()
    for now in range(HB, 4 * HB + 1, HB):
        eng.receive(T.HEARTBEAT, 0, 0, {0: now}, now)  # the master is there, the PUT is not
        eng.on_timer(now)
        if now == 3 * HB:  # it waits 3 heartbeat intervals
            assert [t for t, p in io.sent if t == T.RESULT] == []
    results = [p for t, p in io.take() if t == T.RESULT]
    assert [(r[0], r[5]) for r in results] == [(3, ErrorCode.MISSING_OPERAND)]
    assert eng.busy() == 0 and io.closed is None


def test_an_operand_larger_than_the_cache_is_not_kept():
    h, data, _b = operand(list(range(100)))
    eng, io = make(cache=len(data) - 1)
    put(eng, h, data)
    assert io.take() == [] and eng.ops.keys == [] and eng.ops.used == 0


def test_a_waiting_task_can_be_cancelled():
    eng, io = make()
    h, _data, _b = operand([1])
    dot_task(eng, 4, array.array("h", [1]), h)
    io.take()
    eng.receive(T.CANCEL, 0, 0, {0: 4}, 1)
    (t, res), = io.take()
    assert res[0] == 4 and res[5] == ErrorCode.CANCELLED and eng.busy() == 0


def test_a_node_without_a_cache_refuses_references_and_puts():
    eng, io = make(cache=0)
    h, data, _b = operand([1])
    dot_task(eng, 1, array.array("h", [1]), h)
    put(eng, h, data)
    (t1, res), (t2, err) = io.take()
    assert t1 == T.RESULT and res[5] == ErrorCode.MISSING_OPERAND
    assert t2 == T.ERROR and err[0] == ErrorCode.UNEXPECTED


def test_a_reference_outside_the_arguments_is_bad_args():
    eng, io = make()
    h, data, _b = operand([1])
    put(eng, h, data)
    eng.receive(T.TASK, 0, 0, {0: 9, 1: "dot", 2: [None], 4: {3: h}}, 0)
    (t, res), = io.take()
    assert res[0] == 9 and res[5] == ErrorCode.BAD_ARGS


def test_the_heartbeat_lists_operands_when_they_change_and_every_8th_beat():
    eng, io = make()
    h, data, _b = operand([1, 2])
    put(eng, h, data)
    listed = []
    for i in range(1, 11):
        eng.receive(T.HEARTBEAT, 0, 0, {0: i}, i * HB)
        listed.append(7 in beat(eng, io, i * HB))
    assert listed == [True] + [False] * 7 + [True, False]
    h2, data2, _b2 = operand([3])
    put(eng, h2, data2, 10 * HB)
    assert beat(eng, io, 11 * HB)[7] == [h, h2]


def test_an_operand_that_is_not_cbor_or_finds_no_heap_is_refused_and_not_kept(monkeypatch):
    eng, io = make()
    junk = b"\xff\xff"  # a break code alone: not a CBOR item
    put(eng, hashlib.sha256(junk).digest()[:16], junk)
    h, data, _b = operand([1, 2])

    def no_heap(_data):
        raise MemoryError

    monkeypatch.setattr(operands_module(), "cbor", type("C", (), {"loads": staticmethod(no_heap)}))
    put(eng, h, data)
    errors = [p for t, p in io.take() if t == T.ERROR]
    assert [e[0] for e in errors] == [ErrorCode.BAD_PAYLOAD, ErrorCode.NO_MEMORY]
    assert eng.ops.keys == [] and eng.ops.used == 0 and io.closed is None


def operands_module():
    from microswarm.firmware import operands

    return operands


def test_a_put_larger_than_a_frame_arrives_in_chunks():
    eng, io = make(cache=20_000)
    h, data, b = operand(list(range(-1000, 1000)))  # 4 KB, frames of 1 KB
    frames = wire.encode_message(T.PUT, {0: h, 1: data}, seq=0, max_frame=1024, stream=3)
    assert len(frames) > 3
    for f in frames:
        frame = wire.decode_frame(f)
        eng.receive(frame.type, frame.flags, frame.seq, frame.payload, 0)
    assert io.take() == [] and eng.ops.keys == [h]
    dot_task(eng, 1, array.array("h", [1] * 2000), h)
    assert io.runs[0].args[1] == b


def _chunked_put(eng, h: bytes, data: bytes) -> None:
    for f in wire.encode_message(T.PUT, {0: h, 1: data}, seq=0, max_frame=1024, stream=5):
        frame = wire.decode_frame(f)
        eng.receive(frame.type, frame.flags, frame.seq, frame.payload, 0)


def test_a_chunked_byte_string_operand_is_kept_as_a_view_into_its_message():
    """A PUT that came in CHUNKs is a buffer of its own: a byte string or uint8 array
    operand stays in it (no copy); other typed arrays are decoded anew, and a PUT of one
    frame (its payload in the reader's buffer) is always copied."""
    eng, io = make(cache=20_000)
    blob = bytes(range(256)) * 16  # 4 KB, frames of 1 KB
    data = wire.encode_payload(blob)
    h = hashlib.sha256(data).digest()[:16]
    _chunked_put(eng, h, data)
    kept = eng.ops.values[h][0]
    assert type(kept) is memoryview and kept == blob and eng.ops.values[h][1] == len(data)
    uint8 = array.array("B", blob[:2048])
    u_data = wire.encode_payload(uint8)
    u_hash = hashlib.sha256(u_data).digest()[:16]
    _chunked_put(eng, u_hash, u_data)
    assert type(eng.ops.values[u_hash][0]) is memoryview
    wide_hash, wide_data, wide = operand(list(range(-1000, 1000)))
    _chunked_put(eng, wide_hash, wide_data)
    assert type(eng.ops.values[wide_hash][0]) is array.array
    small = wire.encode_payload(b"small")
    small_hash = hashlib.sha256(small).digest()[:16]
    put(eng, small_hash, memoryview(bytearray(small)))  # as a reader's buffer hands it out
    assert type(eng.ops.values[small_hash][0]) is bytes
    assert not eng.owned and io.take() == []
    eng.receive(T.TASK, 0, 0, {0: 1, 1: "echo", 2: [None], 4: {0: h}}, 0)
    assert io.runs[0].args[0] is kept
