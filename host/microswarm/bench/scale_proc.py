"""The processes of `microswarm bench scale`: one real master, and load generators that
each run many lightweight nodes over loopback TCP.

    python -m microswarm.bench.scale_proc master [--heartbeat-ms 1000] [--window 2]
    python -m microswarm.bench.scale_proc nodes --port P --count N --prefix g0-

The master process prints {"port": ...} and then answers one JSON command a line on stdin
with one JSON line on stdout (wait, stats, job, watch_loss, quit), so that its RSS and CPU
time are its own. A node process starts N in-process nodes (`microswarm.master.inproc`,
the same node the master's own `add_inproc_nodes` runs), each with its own TCP connection,
heartbeat and kernel queue on one asyncio loop, prints {"joined": N} once every node has
its WELCOME, and runs until stdin closes.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import json
import logging
import os
import re
import resource
import signal
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

KEY = b"bench-scale-key-0123456789"
JOB_TIMEOUT_S = 300.0  # a job of the bench that takes longer failed (its nodes are gone)
log = logging.getLogger(__name__)


def raise_fd_limit() -> dict[str, int]:
    """Raise the soft RLIMIT_NOFILE to the hard limit (one descriptor per session)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return {"before": soft, "after": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
            "hard": hard}


def rss_kb() -> int:
    """Resident set size of this process now (Linux /proc; peak RSS elsewhere)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


class GcPauses:
    """The cyclic collector's pauses in this process (gc.callbacks), by generation."""

    def __init__(self) -> None:
        import gc

        self.started = 0.0
        self.max_s = [0.0, 0.0, 0.0]
        self.count = [0, 0, 0]
        self.total_s = 0.0
        gc.callbacks.append(self._cb)

    def _cb(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self.started = time.perf_counter()
            return
        took = time.perf_counter() - self.started
        gen = info["generation"]
        self.count[gen] += 1
        self.total_s += took
        self.max_s[gen] = max(self.max_s[gen], took)

    def as_dict(self) -> dict[str, Any]:
        return {"count": list(self.count), "max_s": [round(v, 4) for v in self.max_s],
                "total_s": round(self.total_s, 3)}


def _kind(cause: str) -> str:
    """A session's end cause without its figures (so that causes can be counted)."""
    return re.sub(r"[0-9][0-9.]*", "N", cause)[:80]


def _say(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def _read_line() -> str:
    return await asyncio.to_thread(sys.stdin.readline)


# ----------------------------------------------------------------------------- master
async def serve_master(heartbeat_ms: int, window: int, sessions: int) -> None:
    from microswarm.master import Master

    limits = raise_fd_limit()
    pauses = GcPauses()
    closed: list[tuple[float, float]] = []  # (monotonic at close, last frame heard)
    left: Counter[str] = Counter()  # why sessions ended, the cause without its figures
    # Every generator dials from 127.0.0.1: the per-address admission limit (meant for one
    # board per address) is raised to the whole load, as is the connection limit.
    async with Master(key=KEY, tcp_port=0, udp_port=None, heartbeat_ms=heartbeat_ms,
                      window=window, max_connections=sessions + 64,
                      max_pending_per_address=1024, max_pending=1024) as master:
        original = master._node_left

        def node_left(conn: Any, info: Any, cause: str) -> None:
            closed.append((time.monotonic(), conn.last_seen))
            left[_kind(cause)] += 1
            original(conn, info, cause)

        master._node_left = node_left  # type: ignore[method-assign]
        lag = {"max_s": 0.0}

        stall_s = float(os.environ.get("MICROSWARM_SCALE_STALL_S", "0"))

        if stall_s:
            _stall_dump()

        async def watch_lag() -> None:  # the longest the master's loop was busy at once
            while True:
                if stall_s:  # a loop busy longer than this: its stack to stderr
                    signal.setitimer(signal.ITIMER_REAL, stall_s)
                t = time.perf_counter()
                await asyncio.sleep(0.02)
                lag["max_s"] = max(lag["max_s"], time.perf_counter() - t - 0.02)

        lag_task = asyncio.ensure_future(watch_lag())
        ends_task = asyncio.ensure_future(_report_ends("master", lambda: left, lag))
        _say({"port": master.tcp_port, "fd_limit": limits, "rss_kb": rss_kb()})
        while line := await _read_line():
            cmd = json.loads(line)
            what = cmd["cmd"]
            if what == "quit":
                break
            if what == "stats":
                _say({"sessions": len(master.sessions), "rss_kb": rss_kb(),
                      "cpu_s": time.process_time(), "t": time.monotonic(),
                      "gc": pauses.as_dict(), "loop_lag_max_s": round(lag["max_s"], 3),
                      "left": dict(left)})
            elif what == "wait":
                started = time.monotonic()
                try:
                    await master.wait_for_nodes(cmd["count"], cmd.get("timeout", 120))
                    ok = True
                except TimeoutError:
                    ok = False
                _say({"ok": ok, "sessions": len(master.sessions), "t": time.monotonic(),
                      "waited_s": time.monotonic() - started})
            elif what == "job":
                kernel, args, count = cmd["kernel"], cmd["args"], cmd["tasks"]
                # JSON lists named in "int8" become int8 typed arrays (matmul's operands)
                args = [array.array("b", v) if i in cmd.get("int8", ()) else v
                        for i, v in enumerate(args)]
                cpu, wall = time.process_time(), time.perf_counter()
                sched = master.scheduler
                dispatches, duplicates, copies = sched.dispatches, sched.duplicates, sched.copies
                try:
                    # a cluster that lost its nodes fails the job instead of hanging the bench
                    results = await master.run(kernel, [args] * count,
                                               timeout=cmd.get("timeout", JOB_TIMEOUT_S))
                    ok = len(results) == count and all(r is not None for r in results)
                except Exception as exc:  # reported, the bench goes on
                    results, ok = [], False
                    log.error("job %s failed: %s", kernel, exc)
                cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
                _say({"ok": ok, "cpu_s": cpu, "wall_s": wall,
                      "dispatches": sched.dispatches - dispatches,
                      # of this job: copies of running tasks placed, results that came
                      # after another copy's (dropped)
                      "copies": sched.copies - copies,
                      "duplicates": sched.duplicates - duplicates,
                      "sessions": len(master.sessions), "left": dict(left)})
            elif what == "watch_loss":
                closed.clear()
                deadline = time.monotonic() + cmd.get("timeout", 30)
                while len(closed) < cmd["count"] and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
                _say({"closed": closed, "sessions": len(master.sessions),
                      "heartbeat_s": heartbeat_ms / 1000})
        lag_task.cancel()
        ends_task.cancel()
        if stall_s:
            signal.setitimer(signal.ITIMER_REAL, 0)


def _stall_dump() -> None:
    """SIGALRM (armed by the loop-lag watcher, `MICROSWARM_SCALE_STALL_S`) prints the
    stack where the main thread is busy. The handler runs in the main thread itself,
    between two bytecodes: faulthandler's dump_traceback_later walks that thread's frames
    from a watchdog thread while they change, and crashed the master with SIGSEGV
    (in dump_traceback, reading a frame being popped; reproduced in a few lines with a
    busy thread and a 1 ms repeat)."""

    def on_alarm(signum: int, frame: Any) -> None:
        sys.stderr.write(f"bench scale: master loop busy for over "
                         f"{os.environ.get('MICROSWARM_SCALE_STALL_S')} s, in:\n"
                         + "".join(traceback.format_stack(frame, limit=12)))

    signal.signal(signal.SIGALRM, on_alarm)


async def _report_ends(who: str, counts: Callable[[], Counter[str]],
                       lag: dict[str, float]) -> None:
    """One line on stderr a second while sessions end: how many ended, and why."""
    seen: Counter[str] = Counter()
    while True:
        await asyncio.sleep(1.0)
        now = counts()
        if now != seen:
            new = now - seen
            seen = Counter(now)
            sys.stderr.write(f"bench scale: {time.strftime('%H:%M:%S')} {who}: "
                             f"{sum(new.values())} sessions ended: "
                             f"{dict(new)}; its loop's longest stall so far "
                             f"{lag['max_s']:.2f} s\n")


# ----------------------------------------------------------------------------- nodes
async def run_nodes(host: str, port: int, count: int, prefix: str, concurrency: int) -> None:
    from microswarm.master.inproc import InprocNode

    raise_fd_limit()
    gate = asyncio.Semaphore(concurrency)
    nodes: list[InprocNode] = []
    # The nodes' kernels share two threads: a thread per node (a thousand and more per
    # process) cost each task a thread switch of its own on a loaded 2-core machine. (echo
    # runs on the loop, as on a board: InprocNode's INLINE.)
    kernels = ThreadPoolExecutor(2, thread_name_prefix="kernels")

    rejoins: Counter[str] = Counter()  # joins that failed and were tried again, and why

    async def start(i: int) -> None:
        node = InprocNode(f"{prefix}{i}", KEY, slots=2, executor=kernels)
        async with gate:
            for attempt in range(20):
                try:
                    await node.connect_tcp(host, port)
                except OSError:
                    await asyncio.sleep(0.05 * (attempt + 1))
                    continue
                # as a board does, a node whose join failed (no WELCOME in time: the
                # master was busy) dials again; a session that ends after the join does not
                # come back (the master lost it: counted, not hidden)
                waits = [asyncio.ensure_future(node.joined.wait()),
                         asyncio.ensure_future(node.ended.wait())]
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                for w in waits:
                    w.cancel()
                if node.joined.is_set():
                    break
                reason = node.engine.end_reason if node.engine is not None else None
                rejoins[_kind(reason or "?")] += 1
            else:
                raise OSError(f"{node.node_id}: could not join")
        nodes.append(node)

    lag = {"max_s": 0.0}

    async def watch_lag() -> None:  # the longest this generator's loop was busy at once
        while True:
            t = time.perf_counter()
            await asyncio.sleep(0.02)
            lag["max_s"] = max(lag["max_s"], time.perf_counter() - t - 0.02)

    def ended() -> Counter[str]:
        return Counter(_kind(n.engine.end_reason) for n in nodes
                       if n.engine is not None and n.engine.end_reason is not None)

    lag_task = asyncio.ensure_future(watch_lag())
    ends_task = asyncio.ensure_future(_report_ends(prefix.rstrip("-"), ended, lag))
    started = time.monotonic()
    await asyncio.gather(*(start(i) for i in range(count)))
    _say({"joined": len(nodes), "join_s": time.monotonic() - started})
    while line := await _read_line():
        if line.strip() == "stats":  # how many of its nodes still have their session, and why
            gone = ended()
            _say({"alive": len(nodes) - sum(gone.values()), "ended": dict(gone),
                  "rejoins": dict(rejoins),
                  "loop_lag_max_s": round(lag["max_s"], 3), "cpu_s": time.process_time(),
                  "threads": threading.active_count()})
    lag_task.cancel()
    ends_task.cancel()
    for node in nodes:
        if node.link is not None:
            node.link.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="role", required=True)
    m = sub.add_parser("master")
    m.add_argument("--heartbeat-ms", type=int, default=1000)
    m.add_argument("--window", type=int, default=2)
    m.add_argument("--sessions", type=int, default=8192, help="connections to admit")
    n = sub.add_parser("nodes")
    n.add_argument("--host", default="127.0.0.1")
    n.add_argument("--port", type=int, required=True)
    n.add_argument("--count", type=int, required=True)
    n.add_argument("--prefix", default="n")
    n.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    if args.role == "master":
        profile = os.environ.get("MICROSWARM_SCALE_PROFILE")  # a path: cProfile the master
        if profile:
            import cProfile

            prof = cProfile.Profile(time.process_time)  # CPU time, not the loaded wall clock
            prof.runcall(asyncio.run, serve_master(args.heartbeat_ms, args.window,
                                                   args.sessions))
            prof.dump_stats(profile)
        else:
            asyncio.run(serve_master(args.heartbeat_ms, args.window, args.sessions))
    else:
        asyncio.run(run_nodes(args.host, args.port, args.count, args.prefix, args.concurrency))


if __name__ == "__main__":
    main()
