"""The virtual clock: time order, ties in scheduling order, cancellation, `until`."""

from __future__ import annotations

from microswarm.sim.events import EventQueue


def test_events_run_in_time_order_and_ties_in_scheduling_order():
    q = EventQueue()
    seen = []
    for when, name in [(3.0, "c"), (1.0, "a"), (2.0, "b1"), (2.0, "b2"), (2.0, "b3")]:
        q.at(when, lambda n=name: seen.append((q.now, n)))
    q.run()
    assert seen == [(1.0, "a"), (2.0, "b1"), (2.0, "b2"), (2.0, "b3"), (3.0, "c")]
    assert q.processed == 5


def test_events_scheduled_in_the_past_run_now_and_cancel_is_idempotent():
    q = EventQueue()
    seen = []
    q.at(5.0, lambda: q.at(1.0, seen.append, "late"))
    dropped = q.at(6.0, seen.append, "dropped")
    q.cancel(dropped)
    q.cancel(dropped)
    q.run()
    assert seen == ["late"]
    assert q.now == 5.0


def test_run_until_stops_before_later_events_and_advances_the_clock():
    q = EventQueue()
    seen = []
    q.at(1.0, seen.append, 1)
    q.at(10.0, seen.append, 10)
    q.run(until=5.0)
    assert seen == [1] and q.now == 5.0 and len(q) == 1
    q.run(stop=lambda: True)
    assert seen == [1, 10]


def test_periodic_event_chain_runs_without_sleeping():
    q = EventQueue()
    ticks = []

    def tick():
        ticks.append(q.now)
        q.after(1.0, tick)

    q.at(0.0, tick)
    q.run(until=3600.0)
    assert len(ticks) == 3601 and ticks[-1] == 3600.0
