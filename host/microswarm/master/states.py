"""Task states and the only transitions allowed between them.

The vocabulary follows Dask distributed's scheduler: a task is *pending* until placed,
*assigned* once the scheduler picked a node for it, *running* once its TASK frame is on
that node's link, and ends *done*, *failed* (retries exhausted) or *cancelled*. A task
whose node is lost or whose kernel failed goes back to *pending* (``requeue``) while it
has retries left.
"""

from __future__ import annotations

from enum import Enum


class TaskState(Enum):
    PENDING = "pending"
    ASSIGNED = "assigned"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    # Members are singletons: identity hashing is exact, and C-fast where Enum's own
    # __hash__ (on the name) runs Python code on every transition-table lookup.
    __hash__ = object.__hash__


P, A, R = TaskState.PENDING, TaskState.ASSIGNED, TaskState.RUNNING
D, F, C = TaskState.DONE, TaskState.FAILED, TaskState.CANCELLED

# (from, to) -> transition name. Anything not listed is a bug in the scheduler.
TRANSITIONS: dict[tuple[TaskState, TaskState], str] = {
    (P, A): "assign",
    (A, R): "send",
    (A, P): "requeue",  # the node left before the frame went out
    (R, P): "requeue",  # node lost, kernel error with retries left, node busy
    (R, D): "finish",
    (A, D): "finish",  # a result can overtake the send notification (in-memory links)
    (P, D): "finish",  # an earlier attempt's result, after the task was requeued
    (R, R): "speculate",  # a second copy on another node
    (P, F): "fail",
    (R, F): "fail",
    (A, F): "fail",
    (P, C): "cancel",
    (A, C): "cancel",
    (R, C): "cancel",
}

TERMINAL = frozenset({D, F, C})


class InvalidTransition(RuntimeError):
    """A state change the table above does not allow."""


def transition_name(old: TaskState, new: TaskState) -> str:
    try:
        return TRANSITIONS[(old, new)]
    except KeyError:
        raise InvalidTransition(f"task cannot go from {old.value} to {new.value}") from None
