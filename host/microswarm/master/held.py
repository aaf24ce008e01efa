"""The tasks one node holds, as the master's session sees them: when each was sent, when
its kernel started, and when it is overdue.

Deadlines. Each task gets a budget of max(DEADLINE_FACTOR x its estimate, DEADLINE_MIN_S)
(the estimate is the scheduler's, learned from the node's earlier results). The budget's
clock starts when the task is known to run: when a HEARTBEAT's `running` lists it
(kernel start = now - elapsed), or else when it becomes the node's oldest unanswered task
(at send, if the node held nothing). A task past its budget is overdue: the session
requeues it elsewhere and sends CANCEL; the task stays held (cancelled) for a grace of
LOST_BEATS heartbeat intervals, then is dropped: a node whose kernel hangs is then lost.

Reconciliation. A HEARTBEAT whose `queue` is 0 while the master still counts tasks sent
to the node more than RECONCILE_BEATS heartbeat intervals ago means those TASK (or RESULT)
frames were lost on the link: they are handed back without a failure. A task counts as sent
once its frames have left the master: on a slow link they may wait behind a long CHUNK
stream in the driver's buffer (NodeSession.output_blocked, restamp). Cancelled tasks the
node no longer holds (their CANCELLED answer was lost, or they were dropped at their
deadline) are reported then too: the scheduler keeps a cancelled task's credit until the
node answers, and this is the answer that never came.
"""

from __future__ import annotations

from typing import Any

DEADLINE_FACTOR = 10.0
DEADLINE_MIN_S = 30.0
RECONCILE_BEATS = 2


class Held:
    __slots__ = ("sent_at", "budget_s", "started_at", "cancelled")

    def __init__(self, sent_at: float, budget_s: float, started_at: float | None) -> None:
        self.sent_at = sent_at
        self.budget_s = budget_s
        self.started_at = started_at
        self.cancelled = False


class HeldTasks:
    """task_id -> Held, in send order (the oldest first)."""

    __slots__ = ("tasks", "factor", "min_s", "dropped")

    def __init__(self, factor: float = DEADLINE_FACTOR, min_s: float = DEADLINE_MIN_S) -> None:
        self.tasks: dict[int, Held] = {}
        # cancelled tasks dropped at their deadline: the node may still run them
        self.dropped: set[int] = set()
        self.factor = factor
        self.min_s = min_s

    def __len__(self) -> int:
        return len(self.tasks)

    def sent(self, task_id: int, now: float, estimate_s: float | None) -> None:
        budget = self.factor * estimate_s if estimate_s else 0.0
        if budget < self.min_s:
            budget = self.min_s
        self.tasks[task_id] = Held(now, budget, None if self.tasks else now)

    def restamp(self, since: float, now: float) -> None:
        """The tasks sent at or after `since` left the master only at `now`."""
        for held in self.tasks.values():
            if held.sent_at >= since:
                held.sent_at = now

    def answered(self, task_id: int, now: float) -> None:
        """A RESULT or ERROR for the task: the next oldest task starts its clock."""
        tasks = self.tasks
        if tasks.pop(task_id, None) is not None and tasks:
            self.start_oldest(now)
        if self.dropped:
            self.dropped.discard(task_id)

    def cancelled(self, task_id: int) -> None:
        """The master sent CANCEL (another copy won, the job ended): the node still holds
        the task until it answers CANCELLED; past its deadline it is simply dropped."""
        held = self.tasks.get(task_id)
        if held is not None:
            held.cancelled = True

    def running(self, now: float, running: Any) -> None:
        """HEARTBEAT `running`: [[task_id, elapsed_ms], ...]."""
        tasks = self.tasks
        for item in running if isinstance(running, list | tuple) else ():
            if not isinstance(item, list | tuple) or len(item) < 2:
                continue
            held = tasks.get(item[0]) if isinstance(item[0], int) else None
            if held is not None and isinstance(item[1], int) and item[1] >= 0:
                held.started_at = now - item[1] / 1000

    def active(self) -> bool:
        """True while the node holds a task (cancelled ones too: a kernel without a thread
        of its own still runs until it returns, or until its deadline)."""
        return bool(self.tasks)

    def next_deadline(self) -> float | None:
        best = None
        for held in self.tasks.values():
            if held.started_at is not None:
                due = held.started_at + held.budget_s
                if best is None or due < best:
                    best = due
        return best

    def overdue(self, now: float, grace_s: float) -> list[int]:
        """The tasks past their deadline, not cancelled before: returned, and kept as
        cancelled for `grace_s` more (the node still runs the kernel; the master sends
        CANCEL). Cancelled tasks past their deadline are dropped."""
        late = []
        drop = []
        for task_id, held in self.tasks.items():
            if held.started_at is None or now < held.started_at + held.budget_s:
                continue
            if held.cancelled:
                drop.append(task_id)
            else:
                held.cancelled = True
                held.started_at = now
                held.budget_s = grace_s
                late.append(task_id)
        for task_id in drop:
            self.answered(task_id, now)
            self.dropped.add(task_id)
        return late

    def lost(self, now: float, sent_before: float) -> tuple[list[int], list[int]]:
        """The node says it holds nothing: remove every task sent before `sent_before`.
        Returns (those it was still expected to answer, the cancelled ones it no longer
        holds, the dropped ones among them)."""
        gone = [(task_id, held.cancelled) for task_id, held in self.tasks.items()
                if held.sent_at < sent_before]
        for task_id, _ in gone:
            del self.tasks[task_id]
        if gone and self.tasks:
            self.start_oldest(now)
        cancelled = [task_id for task_id, c in gone if c]
        if self.dropped:
            cancelled += self.dropped
            self.dropped = set()
        return [task_id for task_id, c in gone if not c], cancelled

    def start_oldest(self, now: float) -> None:
        """The oldest unanswered task's clock starts now, if it has not yet."""
        for held in self.tasks.values():
            if held.started_at is None:
                held.started_at = now
            return
