"""The master's session timers: one heap keyed by each session's next deadline.

Every session says when its `on_timer` next has something to do (`next_deadline`: the
join deadline, the next master HEARTBEAT, the moment its node would be lost, a task's
deadline). The ticker used to call every session's `on_timer` every tick; with thousands
of sessions that alone took most of the master's CPU. The wheel holds one entry per
session at its deadline, and the ticker serves only the entries that are due, so a tick
costs O(due sessions x log n). A session whose deadline moves earlier (a TASK sent, a join
completed) is woken again; a later entry left behind is skipped when it comes up. A
session with no deadline is looked at once per `idle_s`.
"""

from __future__ import annotations

import heapq
import itertools
import math
import weakref
from typing import Any

from microswarm.master.session import TIMER_SLACK_S


class TimerWheel:
    __slots__ = ("idle_s", "_heap", "_due", "_seq")

    def __init__(self, idle_s: float) -> None:
        self.idle_s = idle_s
        self._heap: list[tuple[float, int, Any]] = []
        self._due: dict[Any, float] = {}  # connection -> its entry's time
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._due)

    def wake(self, conn: Any, now: float) -> None:
        """Enter `conn` at its session's next deadline, if that is sooner than its entry."""
        due = conn.session.next_deadline()
        if due is None:
            due = now + self.idle_s
        if due < self._due.get(conn, math.inf):
            self._due[conn] = due
            # the heap holds it weakly: a connection that ended is freed at once
            heapq.heappush(self._heap, (due, next(self._seq), weakref.ref(conn)))

    def forget(self, conn: Any) -> None:
        self._due.pop(conn, None)

    def due(self, now: float) -> list[Any]:
        """The connections whose deadline has come (their entries are removed: wake them
        again after their on_timer)."""
        heap, known = self._heap, self._due
        horizon = now + TIMER_SLACK_S
        out = []
        while heap and heap[0][0] <= horizon:
            due, _, ref = heapq.heappop(heap)
            conn = ref()
            if conn is not None and known.get(conn) == due:
                del known[conn]
                out.append(conn)
        return out
