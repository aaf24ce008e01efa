"""What a NodeSession reports to whoever drives it (the asyncio master, the simulator).

Each is a small immutable record; drivers dispatch on ``type(event)``. Task events name
the scheduler call they map to.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from microswarm.master.handshake import NodeInfo


class Joined(NamedTuple):
    """WELCOME is out: the scheduler may place tasks on the node."""

    info: NodeInfo


class Refused(NamedTuple):
    """The join failed; the ERROR is queued and the session is closed."""

    code: int
    text: str


class Result(NamedTuple):
    """A RESULT with a value: scheduler.result()."""

    task_id: int
    value: Any
    elapsed_us: int
    body: dict[int, Any]


class TaskFailed(NamedTuple):
    """A RESULT with an error, an ERROR naming a task, or a task past its deadline
    (code DEADLINE; CANCEL already queued): scheduler.error(), without a penalty for BUSY,
    ignored for CANCELLED."""

    task_id: int
    code: int
    text: str


class TaskLost(NamedTuple):
    """The node's HEARTBEAT says it no longer holds the task (a frame lost on the link):
    requeue without a penalty."""

    task_id: int


class BadFrame(NamedTuple):
    """A frame refused (already counted and answered); for the driver's rate-limited log."""

    code: int
    text: str
    seq: int | None


class NodeError(NamedTuple):
    """An ERROR from the node that names no task."""

    code: int
    text: str


class NodeLog(NamedTuple):
    """A LOG line from the node (LogLevel 0-3)."""

    level: int
    text: str


class Left(NamedTuple):
    """The joined node is gone from this session (lost, BYE, restarted, closed): remove it
    from the scheduler. A restarted node's new join follows as another Joined."""

    info: NodeInfo
    cause: str

    @property
    def node_id(self) -> str:
        return self.info.node_id


Event = Joined | Refused | Result | TaskFailed | TaskLost | BadFrame | NodeError | NodeLog | Left
