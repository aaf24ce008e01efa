"""The recorder: what the views of a running master show (dashboard, ``top``, ``logs``,
``/metrics``), kept from the master's event feed (events.py) in bounded memory.

It keeps recent events (joins, refusals with their reasons, losses, retries, speculative
copies, jobs), each node's log lines (LOG frames, and a board's console error when its
virtual board or deploy saw one) also after the node left, the spans of recent tasks for
the timeline, completions per second for the throughput chart, and the counters the
metrics export. Times are seconds since the recorder started (``time.monotonic``).
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from microswarm.demo import PALETTE
from microswarm.master.scheduler import Cancel, Dispatch, JobDone, JobFailed, TaskDone

if TYPE_CHECKING:
    from microswarm.master.master import Master

EVENTS_KEPT = 200
LOG_LINES_KEPT = 200  # per node
SPANS_KEPT = 2000
THROUGHPUT_S = 120
DISPATCHES_KEPT = 50_000  # tasks on the wire whose result is awaited (a cap, not a target)
LEVELS = {0: "debug", 1: "info", 2: "warning", 3: "error"}
PALETTE_HEX = ["#" + bytes(rgb).hex() for rgb in PALETTE]  # nodes coloured as in the demo PNG

SpanListener = Callable[[str, str, float], None]  # (kernel, node_id, seconds)


class Recorder:
    def __init__(self, master: Master, clock: Callable[[], float] = time.monotonic) -> None:
        self.master = master
        self.clock = clock
        self.t0 = clock()
        self.events: deque[tuple[float, str, str]] = deque(maxlen=EVENTS_KEPT)
        self.logs: dict[str, deque[tuple[float, str, str]]] = {}
        self.spans: deque[tuple[str, float, float, int, str]] = deque(maxlen=SPANS_KEPT)
        self.per_second: deque[list[int]] = deque(maxlen=THROUGHPUT_S)  # [second, count]
        self.span_listeners: list[SpanListener] = []
        # counters (monotonic, for /metrics)
        self.completed: Counter[str] = Counter()  # kernel -> results accepted
        self.retries: Counter[str] = Counter()
        self.speculative: Counter[str] = Counter()
        self.jobs_finished: Counter[str] = Counter()  # done / failed / cancelled
        self.refusals = 0
        self.client_refusals = 0
        self.losses: Counter[str] = Counter()  # link kind -> nodes lost or left
        self.journal_hits = 0
        self.retired: Counter[tuple[str, str]] = Counter()  # (link, counter) of nodes gone
        self._sent: dict[tuple[int, str], tuple[float, str, int]] = {}
        self._node_free_at: dict[str, float] = {}
        self._kernels: dict[int, str] = {}  # job id -> kernel
        self.unsubscribe = master.events.subscribe(self._on_event)

    def now(self) -> float:
        return self.clock() - self.t0

    # ------------------------------------------------------------------ input
    def note(self, kind: str, text: str) -> None:
        self.events.append((round(self.now(), 3), kind, text))

    def add_log(self, node_id: str, level: int | str, text: str) -> None:
        """A line of a node's log: a LOG frame, or a board's console as seen by whoever
        runs it (a virtual board's VM, deploy)."""
        name = level if isinstance(level, str) else LEVELS.get(level, str(level))
        lines = self.logs.get(node_id)
        if lines is None:
            lines = self.logs[node_id] = deque(maxlen=LOG_LINES_KEPT)
        lines.append((round(self.now(), 3), name, text))
        if name in ("warning", "error"):
            self.note("log", f"{node_id} {name}: {text}")

    def _on_event(self, kind: str, data: dict[str, Any]) -> None:
        if kind == "actions":
            self._actions(data["actions"])
        elif kind == "node_joined":
            info = data["info"]
            self.note("join", f"{info.node_id} joined over {info.link} ({info.board}, "
                              f"{info.peer})")
        elif kind == "node_left":
            info, cause = data["info"], data["cause"]
            self.losses[info.link] += 1
            for name in ("bytes_in", "bytes_out", "bad_frames"):
                self.retired[(info.link, name)] += getattr(info, name)
            self._node_free_at.pop(info.node_id, None)
            self.note("left", f"{info.node_id} left: {cause}")
        elif kind == "node_refused":
            link = data["session"].link
            self.refusals += 1
            self.note("refused", f"{link.kind} {link.peer}: {data['text']}")
        elif kind == "client_refused":
            self.client_refusals += 1
            self.note("refused", f"client {data['peer']}: {data['text']}")
        elif kind == "node_log":
            self.add_log(data["node_id"], data["level"], data["text"])
        elif kind == "job_submitted":
            handle = data["handle"]
            self._kernels[handle.job_id] = handle.kernel
            self.journal_hits += handle.resumed
            self.note("job", f"job {handle.job_id}: {handle.kernel} x{handle.total} submitted"
                             + (f" ({handle.resumed} from the journal)" if handle.resumed else ""))
        elif kind == "job_cancelled":
            self.note("job", f"job {data['handle'].job_id} cancelled")
            self.jobs_finished["cancelled"] += 1

    def _actions(self, actions: list) -> None:
        now = self.now()
        tasks = self.master.scheduler.tasks
        for action in actions:
            kind = type(action)
            if kind is Dispatch:
                task = tasks.get(action.task_id)
                job = task.job.job_id if task is not None else 0
                if action.attempt > 0:
                    if task is not None and len(task.holders) > 1:
                        self.speculative[action.kernel] += 1
                        self.note("speculate", f"task {action.task_id} ({action.kernel}): "
                                               f"second copy on {action.node_id}")
                    else:
                        self.retries[action.kernel] += 1
                        cause = task.cause if task is not None else ""
                        self.note("retry", f"task {action.task_id} ({action.kernel}) attempt "
                                           f"{action.attempt + 1} on {action.node_id}: {cause}")
                if len(self._sent) >= DISPATCHES_KEPT:
                    del self._sent[next(iter(self._sent))]
                self._sent[(action.task_id, action.node_id)] = (now, action.kernel, job)
            elif kind is TaskDone:
                sent = self._sent.pop((action.task_id, action.node_id), None)
                kernel = self._kernels.get(action.job_id, "?")
                self.completed[kernel] += 1
                second = int(now)
                if self.per_second and self.per_second[-1][0] == second:
                    self.per_second[-1][1] += 1
                else:
                    self.per_second.append([second, 1])
                if sent is None:
                    continue
                node = action.node_id
                start = max(sent[0], self._node_free_at.get(node, 0.0))
                self._node_free_at[node] = now
                self.spans.append((node, round(start, 4), round(now, 4), action.job_id, kernel))
                for listener in self.span_listeners:
                    listener(kernel, node, now - sent[0])
            elif kind is Cancel:
                self._sent.pop((action.task_id, action.node_id), None)
            elif kind is JobDone:
                self.jobs_finished["done"] += 1
                self.note("job", f"job {action.job_id} done")
            elif kind is JobFailed:
                self.jobs_finished["failed"] += 1
                self.note("job", f"job {action.job_id} failed: {action.cause}")

    # ------------------------------------------------------------------ output
    def node_logs(self, node_id: str | None = None) -> dict[str, list[tuple[float, str, str]]]:
        if node_id is not None:
            return {node_id: list(self.logs.get(node_id, ()))}
        return {n: list(lines) for n, lines in self.logs.items()}

    def nodes(self) -> list[dict[str, Any]]:
        master = self.master
        stats = master.scheduler.node_stats()
        mono = time.monotonic()
        out = []
        for session in list(master.sessions.values()):
            info = session.info
            if info is None:
                continue
            s = stats.get(info.node_id, {})
            out.append({
                "node_id": info.node_id, "board": info.board, "link": info.link,
                "peer": info.peer, "native_arch": info.native_arch,
                "heap_free": info.heap_free, "heap_total": info.heap_total,
                "inflight": s.get("inflight", 0), "done": s.get("done", 0),
                "failed": s.get("failed", 0), "results": info.results, "errors": info.errors,
                "bad_frames": info.bad_frames, "bytes_in": info.bytes_in,
                "bytes_out": info.bytes_out,
                "last_heard_s": round(max(0.0, mono - session.last_seen), 2),
            })
        out.sort(key=lambda n: n["node_id"])
        return out

    def jobs(self, limit: int = 50) -> list[dict[str, Any]]:
        return self.master.jobs()[-limit:]

    def throughput(self) -> list[list[float]]:
        """[second, tasks finished in it] for the last THROUGHPUT_S seconds, gaps as 0."""
        end = int(self.now())
        counts = {s: c for s, c in self.per_second}
        return [[s, counts.get(s, 0)] for s in range(max(0, end - 60), end + 1)]

    def snapshot(self, spans: int = 600, events: int = 100, log_lines: int = 20) -> dict:
        scheduler = self.master.scheduler
        running = len(scheduler.tasks) - scheduler.pending_count
        return {
            "cluster": self.master.cluster,
            "now": round(self.now(), 3),
            "palette": PALETTE_HEX,
            "nodes": self.nodes(),
            "jobs": self.jobs(),
            "tasks": {"pending": scheduler.pending_count, "running": running,
                      "completed": sum(self.completed.values())},
            "throughput": self.throughput(),
            "timeline": [list(s) for s in list(self.spans)[-spans:]],
            "events": [list(e) for e in list(self.events)[-events:]],
            "logs": {n: [list(x) for x in list(lines)[-log_lines:]]
                     for n, lines in self.logs.items()},
        }
