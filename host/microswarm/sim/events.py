"""The simulator's virtual clock: a discrete-event queue.

Nothing in the simulator sleeps. Every action (a frame arriving, a kernel finishing, a
heartbeat, a fault) is an event at a virtual time; `run` pops them in time order and
advances `now` to each one. Events at the same instant run in the order they were
scheduled, so a run is a pure function of the scenario and the seed.

The queue is a heap of the distinct times that have events, each time with the list of
its events in scheduling order (an event scheduled for the instant being run joins the
end of that instant's list). The heap compares plain floats: a heap of [time, seq, ...]
entries compared lists element by element, and its pushes and pops were a tenth of the
simulator's CPU at 1,000 nodes.
"""

from __future__ import annotations

import functools
import gc
import heapq
from collections.abc import Callable
from typing import Any

# An entry is a list so it can be cancelled in place: [time, seq, fn, args].
Event = list

# While events run, the cyclic garbage collector leaves alone what existed before (the
# nodes, sessions and links: gc.freeze) and looks at new objects every YOUNG_GC
# allocations instead of every 700: nearly all of them (frames, payloads, events) are
# freed by their reference counts, and scanning them over and over was ~12% of the
# simulator's CPU at 1,000 nodes (microswarm bench sim). Cycles are still collected; what
# was frozen goes back to the collector when run() returns.
YOUNG_GC = 10_000
_heappush = heapq.heappush


class EventQueue:
    __slots__ = ("now", "processed", "halted", "_times", "_at", "_seq", "_count")

    def __init__(self, start: float = 0.0) -> None:
        self.now = start
        self.processed = 0
        # set by halt(): run() returns after the event that called it, and after the first
        # event of every later run (as a `stop` that stays true), without a call per event
        self.halted = False
        self._times: list[float] = []  # heap of the times in _at
        self._at: dict[float, list[Event]] = {}  # time -> its events, in scheduling order
        self._seq = 0
        self._count = 0  # entries held (cancelled ones too, until their time comes)

    def clock(self) -> float:
        """The current virtual time in seconds (inject this where a clock is wanted)."""
        return self.now

    def clock_reader(self) -> Callable[[], float]:
        """clock() as a call that runs no Python code (getattr(self, "now")): for the
        scheduler, which reads its clock twice per task."""
        return functools.partial(getattr, self, "now")

    def at(self, when: float, fn: Callable[..., Any], *args: Any) -> Event:
        """Run `fn(*args)` at virtual time `when` (never earlier than now)."""
        if when < self.now:
            when = self.now
        self._seq += 1
        self._count += 1
        entry = [when, self._seq, fn, args]
        same = self._at.get(when)
        if same is None:
            self._at[when] = [entry]
            _heappush(self._times, when)
        else:
            same.append(entry)
        return entry

    def after(self, delay: float, fn: Callable[..., Any], *args: Any) -> Event:
        return self.at(self.now + delay, fn, *args)

    @staticmethod
    def cancel(entry: Event | None) -> None:
        """Forget a scheduled event; cancelling twice or after it ran is harmless."""
        if entry is not None:
            entry[2] = None

    def halt(self) -> None:
        """Stop run() after the current event, and every later run() after its first."""
        self.halted = True

    def __len__(self) -> int:
        return self._count

    def run(self, until: float | None = None, stop: Callable[[], bool] | None = None) -> None:
        """Process events in time order until none are left, the next one is after
        `until` (then `now` becomes `until`), or `stop()` turns true after an event (or
        halt() was called)."""
        collecting = gc.isenabled()
        if collecting:
            threshold = gc.get_threshold()
            gc.freeze()
            gc.set_threshold(max(threshold[0], YOUNG_GC), *threshold[1:])
        try:
            self._run(until, stop)
        finally:
            if collecting:
                gc.set_threshold(*threshold)
                gc.unfreeze()

    def _run(self, until: float | None, stop: Callable[[], bool] | None) -> None:
        times = self._times
        by_time = self._at
        pop = heapq.heappop
        last = float("inf") if until is None else until
        processed = 0  # counted here, added once: the loop runs for every event
        try:
            while times:
                when = times[0]
                if when > last:
                    self.now = last
                    return
                same = by_time[when]
                i = 0
                try:
                    while i < len(same):  # events scheduled for `when` meanwhile join it
                        entry = same[i]
                        i += 1
                        fn = entry[2]
                        if fn is None:
                            continue
                        self.now = when
                        processed += 1
                        fn(*entry[3])
                        if self.halted or (stop is not None and stop()):
                            return
                finally:
                    self._count -= i
                    if i < len(same):  # stopped (or failed) part way: the rest stays
                        del same[:i]
                    else:
                        pop(times)
                        del by_time[when]
        finally:
            self.processed += processed
        if until is not None and until > self.now:
            self.now = until
