"""The node's own log (firmware/engine_log.py through firmware/engine.py), frame by frame
on a fake clock: records kept before the join go out as LOG frames right after WELCOME,
bounded and truncated; a joined node's records are rate-limited; the master's codec
(microswarm.wire, via test_engine.FakeIO) accepts every LOG frame."""

from __future__ import annotations

from microswarm.firmware import engine as E
from microswarm.firmware import engine_log as L
from microswarm.protocol.catalog import LogLevel, MsgType

from .test_engine import HB, KEY, FakeIO, hello, join

T = MsgType


def logs(sent: list[tuple[int, dict]]) -> list[tuple[int, str]]:
    return [(p[0], p[1]) for t, p in sent if t == T.LOG]


def engine(stats: E.Stats) -> tuple[E.Engine, FakeIO]:
    io = FakeIO()
    return E.Engine(io, hello(), KEY, waits=("sleep_ms",), stats=stats), io


def test_nothing_to_log_sends_no_log_and_loads_nothing():
    stats = E.Stats(0, None)
    eng, io = engine(stats)
    join(eng, io, now=0)
    for now in range(HB, 10 * HB, HB):
        eng.receive(T.HEARTBEAT, 0, now, {}, now)
        eng.on_timer(now)
    assert logs(io.take()) == [] and stats.logs is None and eng.state == E.JOINED


def test_the_end_of_a_session_is_told_after_the_next_welcome():
    stats = E.Stats(0, None)
    eng, io = engine(stats)
    join(eng, io, now=0)
    for now in range(HB, 5 * HB, HB):  # the master went silent
        eng.on_timer(now)
    assert "master silent" in io.closed and logs(io.take()) == []  # nothing after the end
    eng2, io2 = engine(stats)  # the next session of the same boot
    join(eng2, io2, now=5000)  # (it checks HELLO and AUTH_RESPONSE come alone: no LOG)
    (level, text), = logs(io2.take())
    assert level == LogLevel.WARNING and text.startswith("previous session ended: master silent")
    assert stats.logs == []


def test_records_before_the_join_are_bounded_truncated_and_the_dropped_counted():
    stats = E.Stats(0, None)
    for i in range(10):
        L.note(stats, LogLevel.ERROR, f"boot problem {i} " + "x" * 500)
    eng, io = engine(stats)
    join(eng, io, now=100)
    sent = logs(io.take())
    assert sent[0] == (LogLevel.WARNING, "6 log lines dropped (rate limit or no link)")
    assert [text.split(" x")[0] for _, text in sent[1:]] == [f"boot problem {i}" for i in
                                                             range(6, 10)]
    assert all(len(text) == L._TEXT and text.endswith("...") for _, text in sent[1:])


def test_a_joined_node_cannot_flood_the_master():
    stats = E.Stats(0, None)
    eng, io = engine(stats)
    join(eng, io, now=0)
    io.take()
    for i in range(100):
        L.log(eng, LogLevel.INFO, f"line {i}", 10)
    sent = logs(io.take())
    assert sent == [(LogLevel.INFO, f"line {i}") for i in range(L._BURST)]
    assert len(stats.logs) == L._KEEP and stats.log_dropped == 100 - L._BURST - L._KEEP
    # then one per EVERY_MS, on the engine's clock (heartbeats keep the session alive)
    got = []
    for now in range(HB, 6 * L._EVERY_MS + 1, HB):
        eng.receive(T.HEARTBEAT, 0, now, {}, now)
        eng.on_timer(now)
        got += logs(io.take())
    assert got == [(LogLevel.WARNING, "88 log lines dropped (rate limit or no link)")] + [
        (LogLevel.INFO, f"line {i}") for i in range(96, 100)]
    assert stats.logs == [] and stats.log_dropped == 0


def test_a_record_the_node_cannot_frame_is_counted_not_raised():
    stats = E.Stats(0, None)
    eng, io = engine(stats)
    join(eng, io, now=0)
    io.take()

    def no_heap(msg_type: int, payload: dict) -> None:
        raise MemoryError("no heap")

    io.send = no_heap  # type: ignore[method-assign]
    L.log(eng, LogLevel.ERROR, "lost", 10)
    assert stats.log_dropped == 1 and stats.logs == [] and eng.state == E.JOINED
