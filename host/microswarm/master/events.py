"""What the master tells its observers: a small publish/subscribe feed.

The master calls ``emit(kind, **data)`` at a few points (a node joined, left, was refused,
sent a LOG line; a job was submitted or cancelled; the scheduler's actions were applied).
Observers (the client port, the dashboard's recorder, the metrics) subscribe with a
callback ``fn(kind, data)``. Emitting with no subscriber costs one attribute test, so the
master pays nothing for observers nobody started. An observer that raises is logged and
kept: one broken view must not stop the master.

Kinds and their data:
  node_joined   session, info               node_left   session, info, cause
  node_refused  session, text               node_log    node_id, level, text
  job_submitted handle                      job_cancelled handle
  actions       actions (scheduler Dispatch/Cancel/TaskDone/JobDone/JobFailed, applied)
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

Observer = Callable[[str, dict[str, Any]], None]


class Events:
    __slots__ = ("observers",)

    def __init__(self) -> None:
        self.observers: list[Observer] = []

    def subscribe(self, fn: Observer) -> Callable[[], None]:
        """Add an observer; returns the function that removes it."""
        self.observers.append(fn)
        return lambda: self.observers.remove(fn) if fn in self.observers else None

    def emit(self, kind: str, **data: Any) -> None:
        if not self.observers:
            return
        for fn in list(self.observers):
            try:
                fn(kind, data)
            except Exception:  # noqa: BLE001 - an observer's bug must not stop the master
                log.exception("observer %r failed on %s", fn, kind)
