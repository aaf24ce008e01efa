"""The master's timer wheel (master/wheel.py) over real sessions: a session comes up at its
own next deadline, earlier when that moves, never twice for one deadline, and a connection
that ended is not kept alive by its entry."""

from __future__ import annotations

import gc
import weakref

from microswarm.master.handshake import Limits
from microswarm.master.session import NodeSession
from microswarm.master.wheel import TimerWheel


class Conn:
    __slots__ = ("session", "__weakref__")

    def __init__(self, session: NodeSession) -> None:
        self.session = session


def session(now: float) -> NodeSession:
    return NodeSession(b"k" * 32, now=now, kind="tcp", peer="p", framing="stream",
                       limits=Limits(heartbeat_ms=1000), join_timeout_s=5.0)


def test_sessions_come_up_at_their_deadline_once_and_earlier_when_it_moves():
    wheel = TimerWheel(idle_s=1.0)
    a, b = Conn(session(100.0)), Conn(session(100.0))
    wheel.wake(a, 100.0)
    wheel.wake(b, 100.0)
    assert a.session.next_deadline() == 105.0  # the join deadline
    assert wheel.due(104.0) == []
    b.session._join_deadline = 102.0  # as a deadline that moved earlier
    wheel.wake(b, 101.0)
    assert wheel.due(102.0) == [b]
    assert wheel.due(102.0) == []  # served: out until woken again
    assert wheel.due(105.0) == [a]  # b's later entry was left behind: skipped
    assert len(wheel) == 0


def test_an_ended_connection_is_freed_and_forgotten():
    wheel = TimerWheel(idle_s=1.0)
    conn = Conn(session(0.0))
    wheel.wake(conn, 0.0)
    ref = weakref.ref(conn)
    wheel.forget(conn)
    del conn
    gc.collect()
    assert ref() is None
    assert wheel.due(10.0) == []
