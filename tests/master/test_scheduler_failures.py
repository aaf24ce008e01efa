"""The scheduler's failure rules: bad arguments fail at once, a task that takes down two
nodes fails, free heap limits placement, a task lost twice on one node is no free retry,
and a job may time out. A job always finishes or fails."""

from __future__ import annotations

from microswarm.master.scheduler import (
    HEAP_FACTOR,
    Cancel,
    Dispatch,
    JobDone,
    JobFailed,
    NodeCaps,
    Scheduler,
)
from microswarm.master.states import TaskState


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make(**kw):
    clock = Clock()
    return Scheduler(clock=clock, **kw), clock


def caps(window: int = 1, heap_free: int | None = None) -> NodeCaps:
    return NodeCaps(frozenset({"k"}), window=window, heap_free=heap_free)


def sent_all(s: Scheduler, clock: Clock | None = None) -> list[Dispatch]:
    out = [a for a in s.poll() if isinstance(a, Dispatch)]
    for d in out:
        if clock is not None:
            clock.now += 0.001
        s.sent(d.node_id, d.task_id)
    return out


def failures(actions) -> list[str]:
    return [a.cause for a in actions if isinstance(a, JobFailed)]


def test_bad_arguments_fail_the_job_at_once_without_a_retry():
    s, _ = make(retries=3)
    for n in "abc":
        s.add_node(n, caps())
    job = s.submit("k", [[1], [2]])
    (first, second, *_) = sent_all(s)
    s.error(first.node_id, first.task_id, "ValueError: w must be > 0", fatal=True)
    actions = s.poll()
    assert failures(actions) == [f"task 0 (k) bad arguments: ValueError: w must be > 0 "
                                 f"(on {first.node_id})"]
    assert Cancel(second.node_id, second.task_id) in actions  # the job's other task
    assert not [a for a in actions if isinstance(a, Dispatch)]  # nothing retried
    assert job.state == "failed" and job.tasks[0].state is TaskState.FAILED


def test_an_ordinary_kernel_error_is_still_retried_elsewhere():
    s, _ = make(retries=3)
    for n in "ab":
        s.add_node(n, caps())
    s.submit("k", [[1]])
    (d,) = sent_all(s)
    s.error(d.node_id, d.task_id, "ZeroDivisionError: divide by zero")
    (again,) = sent_all(s)
    assert again.task_id == d.task_id and again.node_id != d.node_id


def test_a_task_that_took_down_two_nodes_fails_instead_of_a_third():
    s, clock = make(retries=5)
    s.add_node("a", caps(window=2))
    job = s.submit("k", [[1], [2]])
    poison, behind = (d.task_id for d in sent_all(s, clock))  # both on a, poison first
    assert poison == job.tasks[0].task_id
    for n in "bcd":
        s.add_node(n, caps())
    clock.now += 1
    s.remove_node("a", "link closed")  # the running (oldest) task is the suspect
    placed = {d.task_id: d.node_id for d in sent_all(s, clock)}
    assert set(placed) == {poison, behind}
    s.add_node("a", caps(window=2))
    s.uptime("a", 0.5)  # it restarted after the task was sent
    assert job.tasks[0].kills == ("link closed (restarted while running it)",)
    assert job.tasks[1].kills == ()
    clock.now += 1
    s.remove_node(placed[poison], "silent for 3.1 s")
    assert job.state == "running"  # not before the node shows it restarted
    s.poll()
    s.add_node(placed[poison], caps())
    s.uptime(placed[poison], 0.2)
    actions = s.poll()
    assert failures(actions) == ["task 0 (k) took down 2 nodes: link closed (restarted while "
                                 "running it); silent for 3.1 s (restarted while running it)"]
    assert Cancel(placed[behind], behind) in actions
    assert job.state == "failed"


def test_a_node_that_only_redialled_or_left_cleanly_blames_no_task():
    s, clock = make(retries=5)
    for n in "abc":
        s.add_node(n, caps())
    job = s.submit("k", [[1]])
    (d,) = sent_all(s, clock)
    clock.now += 2
    s.remove_node(d.node_id, "link closed")
    s.add_node(d.node_id, caps())
    s.uptime(d.node_id, 60.0)  # up all along: a link glitch, not a crash
    (d2,) = sent_all(s, clock)
    s.remove_node(d2.node_id, "node said BYE", blame=False)
    s.add_node(d2.node_id, caps())
    s.uptime(d2.node_id, 0.1)
    assert job.tasks[0].kills == () and job.state == "running"


def test_two_deadlines_passed_fail_the_task():
    s, clock = make(retries=5)
    for n in "abc":
        s.add_node(n, caps())
    job = s.submit("k", [[1]])
    (d,) = sent_all(s, clock)
    s.timed_out(d.node_id, d.task_id)
    actions = s.poll()
    assert Cancel(d.node_id, d.task_id) in actions
    (d2,) = [a for a in actions if isinstance(a, Dispatch)]
    assert d2.node_id != d.node_id
    s.sent(d2.node_id, d2.task_id)
    s.timed_out(d2.node_id, d2.task_id)
    actions = s.poll()
    assert Cancel(d2.node_id, d2.task_id) in actions
    assert failures(actions) == [f"task 0 (k) took down 2 nodes: ran past its deadline on "
                                 f"{d.node_id}; ran past its deadline on {d2.node_id}"]
    assert job.state == "failed"


def test_no_task_goes_to_a_node_whose_free_heap_cannot_hold_it():
    s, clock = make()
    s.add_node("small", caps(heap_free=10_000))
    s.add_node("big", caps(heap_free=100_000))
    job = s.submit("k", [[1], [2], [3]], sizes=[8_000, 1_000, 9_000])
    placed = {d.task_id: d.node_id for d in sent_all(s, clock)}
    assert placed == {job.tasks[0].task_id: "big", job.tasks[1].task_id: "small"}
    s.result("small", job.tasks[1].task_id, 2)
    assert not sent_all(s, clock)  # the third waits for big, however long small is free
    s.result("big", job.tasks[0].task_id, 1)
    assert [d.node_id for d in sent_all(s, clock)] == ["big"]


def test_a_node_whose_heap_grows_gets_the_waiting_task():
    s, clock = make()
    s.add_node("a", caps(heap_free=60_000))
    s.heap("a", 10_000)  # busy: little free heap now
    job = s.submit("k", [[1]], sizes=[8_000])
    assert not sent_all(s, clock)
    s.heap("a", 20_000)
    (d,) = sent_all(s, clock)
    assert d.task_id == job.tasks[0].task_id


def test_a_job_that_times_out_waiting_for_free_heap_says_so():
    """A node that once reported room for a task and reports less now keeps it waiting
    (its heap may grow as its tasks finish): if the job's timeout comes first, its failure
    says it was free heap the task waited for, not only that it timed out."""
    s, clock = make()
    s.add_node("a", caps(heap_free=70_000))
    s.heap("a", 58_000)  # what the node holds now leaves less
    job = s.submit("k", [[1], [2]], sizes=[65_556, 100], heaps=[65_556, 100], timeout=5.0)
    (d,) = sent_all(s, clock)
    assert d.task_id == job.tasks[1].task_id
    s.result("a", d.task_id, 2)
    clock.now += 6.0
    s.tick()
    assert failures(s.poll()) == [
        "timed out: 1 of 2 tasks done by the job's timeout; 1 waited for free heap: they need "
        "up to about 65556 bytes and the nodes that can run them report at most 58000 now "
        "(split the input, or give submit(heaps=) if that estimate is too high)"]


def test_a_job_that_times_out_for_another_reason_says_nothing_of_heap():
    s, clock = make()
    s.add_node("a", caps(heap_free=70_000))
    s.submit("k", [[1], [2]], sizes=[100, 100], timeout=5.0)
    assert len(sent_all(s, clock)) == 1  # one credit: the second waits for it
    clock.now += 6.0
    s.tick()
    assert failures(s.poll()) == ["timed out: 0 of 2 tasks done by the job's timeout"]


def test_a_task_no_node_could_ever_hold_fails_the_job():
    s, _ = make()
    s.add_node("a", caps(heap_free=30_000))
    s.add_node("b", caps(heap_free=40_000))
    s.submit("k", [[1]], sizes=[25_000])
    assert failures(s.poll()) == [f"task 0 (k) needs about {25_000 * HEAP_FACTOR} bytes of "
                                  "free heap; the nodes that can run it had at most 40000"]


def test_a_task_needs_the_heap_its_submitter_names():
    s, clock = make()
    s.add_node("a", caps(heap_free=70_000))
    job = s.submit("k", [[1]], sizes=[65_600], heaps=[65_600])
    (d,) = sent_all(s, clock)
    assert d.task_id == job.tasks[0].task_id


def test_the_master_counts_a_chunked_byte_string_once_and_other_typed_arrays_twice():
    import array

    from microswarm.master.master import heap_need, wire_size

    data = [bytes(65_536)]
    assert heap_need(data, wire_size(data)) == wire_size(data)  # a view into the message
    uint8 = [array.array("B", bytes(65_536))]
    assert heap_need(uint8, wire_size(uint8)) == wire_size(uint8)
    wide = [array.array("h", bytes(65_536)), 3]
    assert heap_need(wide, wire_size(wide)) == wire_size(wide) + 65_536  # decoded anew
    small = [bytes(1000)]  # may come in one frame: decoded into copies
    assert heap_need(small, wire_size(small)) == wire_size(small) * HEAP_FACTOR


def test_a_task_lost_twice_on_one_node_does_not_bounce_for_ever():
    """A TASK the node cannot hold is answered by an ERROR without a task id: the task
    stays in flight until the node reports an empty queue, and must not come back to the
    same node for ever."""
    s, clock = make(retries=2)
    s.add_node("a", caps())
    job = s.submit("k", [[1]])
    rounds = 0
    while job.state == "running":
        rounds += 1
        assert rounds < 20, "the task bounces for ever"
        (d,) = sent_all(s, clock)
        clock.now += 10
        assert s.reconcile("a", clock.now - 1) == [d.task_id]
    assert job.state == "failed"
    assert "lost twice on the link" in job.cause
    assert rounds == 1 + 3  # one free retry, then retries + 1 failures


def test_a_job_past_its_timeout_fails_and_a_timely_one_does_not():
    s, clock = make()
    s.add_node("a", caps())
    slow = s.submit("k", [[1], [2]], timeout=5.0)
    quick = s.submit("k", [[3]], timeout=60.0)
    (d,) = sent_all(s, clock)
    clock.now += 1
    s.result("a", d.task_id, 1)
    clock.now += 3.9
    s.tick()
    assert slow.state == "running"
    s.poll()
    clock.now += 0.2
    s.tick()
    actions = s.poll()
    assert failures(actions) == ["timed out: 1 of 2 tasks done by the job's timeout"]
    assert slow.state == "failed"
    (cancel,) = [a for a in actions if isinstance(a, Cancel)]
    assert not [a for a in actions if isinstance(a, Dispatch)]  # a's slot is still taken
    s.error("a", cancel.task_id, "cancelled", penalty=False)  # a answers CANCELLED
    (d3,) = sent_all(s, clock)
    s.sent("a", d3.task_id)
    s.result("a", d3.task_id, 3)
    assert JobDone(quick.job_id, [3]) in s.poll()
