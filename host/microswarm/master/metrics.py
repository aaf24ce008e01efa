"""``/metrics``: the master's state in the Prometheus text format, through the official
``prometheus_client`` package (docs/master.md, "Metrics", lists every metric).

Names follow the Prometheus conventions: a ``microswarm_`` prefix, ``_total`` on counters,
base units (seconds, bytes). Each master has its own registry (several masters may live in
one process, as in the tests). Gauges and the counters that live in the master's state
(node and link counters) are read at scrape time by a custom collector; the task duration
histogram is observed as results arrive.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from microswarm.master.master import Master
    from microswarm.master.recorder import Recorder

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# From an in-process echo (~50 us) to a board's large matmul (tens of seconds).
DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                    5.0, 10.0, 30.0, 60.0)


class Metrics:
    def __init__(self, master: Master, recorder: Recorder) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.duration = Histogram(
            "microswarm_task_duration_seconds",
            "Time from sending a task to a node to its result arriving, by kernel.",
            ["kernel"], buckets=DURATION_BUCKETS, registry=self.registry)
        recorder.span_listeners.append(
            lambda kernel, _node, seconds: self.duration.labels(kernel).observe(seconds))
        self.registry.register(_StateCollector(master, recorder))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _StateCollector(Collector):
    def __init__(self, master: Master, recorder: Recorder) -> None:
        self.master = master
        self.recorder = recorder

    def collect(self) -> Iterator[Metric]:
        master, rec = self.master, self.recorder
        sched = master.scheduler
        stats = sched.node_stats()
        infos = master.nodes

        nodes = GaugeMetricFamily("microswarm_nodes", "Joined nodes by link and state "
                                  "(busy: tasks in flight).", labels=["link", "state"])
        by_state: Counter[tuple[str, str]] = Counter()
        for info in infos:
            busy = stats.get(info.node_id, {}).get("inflight", 0) > 0
            by_state[(info.link, "busy" if busy else "idle")] += 1
        for (link, state), count in sorted(by_state.items()):
            nodes.add_metric([link, state], count)
        yield nodes

        tasks = GaugeMetricFamily("microswarm_tasks", "Unfinished tasks by state.",
                                  labels=["state"])
        tasks.add_metric(["pending"], sched.pending_count)
        tasks.add_metric(["running"], len(sched.tasks) - sched.pending_count)
        yield tasks

        running = sum(1 for j in master.jobs() if j["state"] == "running")
        yield GaugeMetricFamily("microswarm_jobs_running", "Jobs not yet finished.",
                                value=running)
        yield _counter("microswarm_jobs_finished", "Jobs finished, by final state.", "state",
                       rec.jobs_finished)
        yield _counter("microswarm_tasks_completed", "Task results accepted, by kernel.",
                       "kernel", rec.completed)
        yield _counter("microswarm_task_retries", "Tasks sent again after a failure or a lost "
                       "node, by kernel.", "kernel", rec.retries)
        yield _counter("microswarm_speculative_copies", "Second copies of straggling tasks, "
                       "by kernel.", "kernel", rec.speculative)
        yield _counter("microswarm_nodes_left", "Nodes that left or were lost, by link.",
                       "link", rec.losses)
        yield CounterMetricFamily("microswarm_join_refusals", "Nodes refused at join (wrong "
                                  "key, protocol version, bad HELLO).", value=rec.refusals)
        yield CounterMetricFamily("microswarm_client_refusals", "Client port connections "
                                  "refused (wrong key).", value=rec.client_refusals)
        yield CounterMetricFamily("microswarm_journal_hits", "Task results taken from the "
                                  "journal instead of computed.", value=rec.journal_hits)
        yield CounterMetricFamily("microswarm_duplicate_results", "Late second results of "
                                  "finished tasks, dropped.", value=sched.duplicates)

        link_totals: dict[str, Counter[str]] = {}
        for (link, name), value in rec.retired.items():
            link_totals.setdefault(name, Counter())[link] += value
        for info in infos:
            for name in ("bytes_in", "bytes_out", "bad_frames"):
                link_totals.setdefault(name, Counter())[info.link] += getattr(info, name)
        yield _counter("microswarm_link_received_bytes", "Bytes received from nodes, by link.",
                       "link", link_totals.get("bytes_in", Counter()))
        yield _counter("microswarm_link_sent_bytes", "Bytes sent to nodes, by link.", "link",
                       link_totals.get("bytes_out", Counter()))
        yield _counter("microswarm_bad_frames", "Frames from joined nodes that failed to "
                       "decode (CRC, length, CBOR), by link.", "link",
                       link_totals.get("bad_frames", Counter()))


def _counter(name: str, doc: str, label: str, values: Counter[str]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=[label])
    for key, value in sorted(values.items()):
        family.add_metric([key], value)
    return family
