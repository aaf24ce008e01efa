"""One master, thousands of real sessions over loopback TCP.

A real `Master` runs in its own process (so its RSS and CPU time are its own); load
generator processes each run many in-process nodes (the CPython node of
`microswarm.master.inproc`, one TCP connection, heartbeat and task queue each, on one
asyncio loop per process). They join in stages, one process at a time; after each stage
the master's RSS is read and an echo job measures dispatches per second of master CPU
(the scale curves). With every session joined:

- sessions held (headline; goal >= 5,000 on a 2-core machine; the file-descriptor soft
  limit is raised to the hard limit in every process, reported under fd_limit),
- master RSS per session: (RSS with every session - RSS with none) / sessions (< 30 KB),
- join time: each stage's sessions from first dial to last WELCOME, and their sum,
- dispatches per second of master CPU on an echo job and on small int8 matmuls
  (goal >= 10,000/s on echo), heartbeats at 1 Hz in both directions all along,
- heartbeat-to-loss detection: one generator process is stopped (SIGSTOP: its
  connections stay open, its nodes fall silent); for each of its sessions, the time from
  the last frame the master heard to the master declaring it lost (goal: within 3
  heartbeat intervals + 0.5 s), and from the stop.

Baseline: null (no other master to run here at this scale); the figures stand against
their goals.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from typing import Any

GOALS = {"sessions": 5000, "rss_per_session_kb": 30, "dispatches_per_cpu_s": 10_000,
         "loss_margin_s": 0.5}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sessions", type=int, default=5000, help="nodes in all (%(default)s)")
    parser.add_argument("--procs", type=int, default=4,
                        help="load generator processes, joined one stage each (%(default)s)")
    parser.add_argument("--heartbeat-ms", type=int, default=1000)
    parser.add_argument("--tasks", type=int, default=20_000,
                        help="echo tasks of the full-load job (%(default)s)")
    parser.add_argument("--stage-tasks", type=int, default=5000,
                        help="echo tasks measured after each stage (%(default)s)")
    parser.add_argument("--matmul-tasks", type=int, default=2000)


class _Child:
    def __init__(self, args: list[str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "microswarm.bench.scale_proc", *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)

    def ask(self, **cmd: Any) -> dict[str, Any]:
        if cmd:
            assert self.proc.stdin is not None
            self.proc.stdin.write(json.dumps(cmd) + "\n")
            self.proc.stdin.flush()
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"bench scale: child {self.proc.args[3]} exited "
                               f"({self.proc.poll()})")
        return json.loads(line)

    def stats(self) -> dict[str, Any]:
        """A load generator's own view: its nodes still joined, why the others ended, its
        loop's longest stall, its CPU time."""
        assert self.proc.stdin is not None
        self.proc.stdin.write("stats\n")
        self.proc.stdin.flush()
        return self.ask()

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGCONT)
                assert self.proc.stdin is not None
                self.proc.stdin.close()
                self.proc.wait(10)
            except (OSError, subprocess.TimeoutExpired, BrokenPipeError):
                self.proc.kill()
                self.proc.wait()


def _job(master: _Child, kernel: str, args: list, tasks: int,
         int8: tuple[int, ...] = ()) -> dict[str, Any]:
    out = master.ask(cmd="job", kernel=kernel, args=args, tasks=tasks, int8=list(int8))
    out["dispatches_per_cpu_s"] = round(out["dispatches"] / max(out["cpu_s"], 1e-9))
    out["dispatches_per_wall_s"] = round(out["dispatches"] / max(out["wall_s"], 1e-9))
    # dispatches count the end game's copies too (each is a TASK sent, a RESULT decoded
    # and dropped, a CANCEL); the job's own tasks per master CPU second, beside them
    out["tasks_per_cpu_s"] = round(tasks / max(out["cpu_s"], 1e-9))
    out["cpu_s"], out["wall_s"] = round(out["cpu_s"], 3), round(out["wall_s"], 3)
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    from microswarm.bench.scale_proc import raise_fd_limit

    limits = raise_fd_limit()
    per = [args.sessions // args.procs + (1 if i < args.sessions % args.procs else 0)
           for i in range(args.procs)]
    master = _Child(["master", "--heartbeat-ms", str(args.heartbeat_ms), "--sessions",
                     str(args.sessions)])
    gens: list[_Child] = []
    try:
        hello = master.ask()
        port = hello["port"]
        empty = master.ask(cmd="stats")
        stages = []
        joined = 0
        for i, count in enumerate(per):
            gen = _Child(["nodes", "--port", str(port), "--count", str(count),
                          "--prefix", f"g{i}-"])
            gens.append(gen)
            started = time.monotonic()
            gen_said = gen.ask()
            joined += count
            waited = master.ask(cmd="wait", count=joined, timeout=300)
            join_s = time.monotonic() - started
            stats = master.ask(cmd="stats")
            job = _job(master, "echo", [1], args.stage_tasks)
            print(f"bench scale: stage {i + 1}: {stats['sessions']} sessions, echo "
                  f"{job['dispatches_per_cpu_s']} dispatches/CPU-s, ok {job['ok']}, ended "
                  f"{job['left']}, loop stall {stats['loop_lag_max_s']} s, GC pauses "
                  f"{stats['gc']['max_s']} s", file=sys.stderr)
            stages.append({
                "generators": [g.stats() for g in gens], "left": job["left"],
                "sessions": stats["sessions"], "join_s": round(join_s, 3),
                "generator_join_s": round(gen_said["join_s"], 3), "all_joined": waited["ok"],
                "rss_kb": stats["rss_kb"], "gc": stats["gc"],
                "loop_lag_max_s": stats["loop_lag_max_s"], "echo": job,
            })
        full = master.ask(cmd="stats")
        echo = _job(master, "echo", [1], args.tasks)
        a = [1] * 64
        matmul = _job(master, "matmul", [a, a, 8, 8, 8], args.matmul_tasks, int8=(0, 1))
        generators = [g.stats() for g in gens]
        # heartbeat-to-loss: stop the last generator; its nodes fall silent
        victim = gens[-1]
        stopped_at = time.monotonic()
        os.kill(victim.proc.pid, signal.SIGSTOP)
        loss = master.ask(cmd="watch_loss", count=per[-1],
                          timeout=10 * args.heartbeat_ms / 1000 + 30)
        after = master.ask(cmd="stats")
        os.kill(victim.proc.pid, signal.SIGCONT)
    finally:
        for gen in gens:
            gen.stop()
        master.stop()
    since_heard = [c - heard for c, heard in loss["closed"]]
    since_stop = [c - stopped_at for c, _ in loss["closed"]]
    interval = args.heartbeat_ms / 1000
    sessions = full["sessions"]
    rss_per = (full["rss_kb"] - empty["rss_kb"]) / max(1, sessions)
    limit_s = 3 * interval + GOALS["loss_margin_s"]
    out: dict[str, Any] = {
        "parameters": {"sessions": args.sessions, "procs": args.procs,
                       "heartbeat_ms": args.heartbeat_ms, "tasks": args.tasks},
        "sessions_held": sessions,
        "fd_limit": {"bench": limits, "master": hello["fd_limit"]},
        "master_gc": after["gc"],
        "master_rss_kb": {"empty": empty["rss_kb"], "full": full["rss_kb"]},
        "rss_per_session_kb": round(rss_per, 2),
        "join": {"stages": [s["join_s"] for s in stages],
                 "all_s": round(sum(s["join_s"] for s in stages), 3),
                 "sessions_per_stage": per},
        "stages": stages,
        "generators": generators,
        "sessions_left": after["left"],
        "echo_full_load": echo,
        "matmul8_full_load": matmul,
        "loss_detection": {
            "silenced": per[-1], "detected": len(loss["closed"]),
            "heartbeat_s": interval,
            "since_last_heard_s": _spread(since_heard),
            "since_stop_s": _spread(since_stop),
            "sessions_after": after["sessions"],
        },
        "curves": {
            "sessions": [s["sessions"] for s in stages],
            "rss_kb": [s["rss_kb"] for s in stages],
            "dispatches_per_cpu_s": [s["echo"]["dispatches_per_cpu_s"] for s in stages],
        },
        "load": _load(),
        "cpus": os.cpu_count(),
    }
    out["goals"] = {
        "sessions_5000": sessions >= GOALS["sessions"],
        "rss_per_session_under_30kb": rss_per < GOALS["rss_per_session_kb"],
        "dispatches_per_cpu_s_10k": echo["dispatches_per_cpu_s"] >= GOALS["dispatches_per_cpu_s"],
        "loss_within_3_intervals_plus_0.5s": bool(since_heard) and len(since_heard) == per[-1]
        and max(since_heard) <= limit_s,
        "exact": echo["ok"] and matmul["ok"] and all(s["echo"]["ok"] for s in stages),
    }
    out["headline"] = {
        "name": "sessions one master holds over loopback TCP (heartbeats at "
                f"{interval:g} s, echo at {echo['dispatches_per_cpu_s']} dispatches per "
                "master CPU second)",
        "value": sessions,
        "unit": "sessions",
        "baseline": None,
    }
    return out


def _spread(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    values = sorted(values)
    return {"min": round(values[0], 3), "median": round(statistics.median(values), 3),
            "p99": round(values[min(len(values) - 1, int(0.99 * len(values)))], 3),
            "max": round(values[-1], 3)}


def _load() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None
