"""A live terminal view of a running master (over its client port): nodes, jobs with
progress, throughput and recent events, refreshed every second. Ctrl-C leaves.

  microswarm top --cluster examples/demo.toml
  microswarm top --master 127.0.0.1:5883 --key-file cluster.key --once   # one frame, no refresh
"""

from __future__ import annotations

import argparse
from typing import Any

SPARK = " ▁▂▃▄▅▆▇█"


def configure(parser: argparse.ArgumentParser) -> None:
    from microswarm.master import cli_client

    cli_client.add_arguments(parser)
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between updates")
    parser.add_argument("--once", action="store_true", help="print one frame and exit")


def sparkline(values: list[int]) -> str:
    top = max(values, default=0)
    if top <= 0:
        return SPARK[0] * len(values)
    return "".join(SPARK[min(8, round(8 * v / top))] for v in values)


def render(status: dict[str, Any]):
    from rich.console import Group
    from rich.progress_bar import ProgressBar
    from rich.table import Table
    from rich.text import Text

    tasks = status["tasks"]
    rates = [n for _t, n in status["throughput"]][-60:]
    header = Text.assemble(
        (f"microswarm {status['cluster']!r}", "bold"),
        f"  up {status['now']:.0f} s  {len(status['nodes'])} nodes  "
        f"tasks: {tasks['pending']} pending, {tasks['running']} running, "
        f"{tasks['completed']} done  ",
        (f"{rates[-2] if len(rates) > 1 else 0} tasks/s ", "cyan"), (sparkline(rates), "cyan"),
    )
    nodes = Table(expand=True, title="nodes", title_justify="left")
    for col in ("node", "link", "board", "native", "heap free", "in flight", "results",
                "errors", "bad", "heard"):
        nodes.add_column(col, no_wrap=True)
    for n in status["nodes"]:
        nodes.add_row(n["node_id"], n["link"], n["board"], n["native_arch"] or "-",
                      f"{n['heap_free']:,}", str(n["inflight"]), str(n["results"]),
                      str(n["errors"]), str(n["bad_frames"]), f"{n['last_heard_s']:.1f} s")
    jobs = Table(expand=True, title="jobs", title_justify="left")
    for col in ("job", "kernel", "progress", "done", "state"):
        jobs.add_column(col, no_wrap=True)
    for j in status["jobs"][-10:][::-1]:
        jobs.add_row(str(j["job_id"]), j["kernel"],
                     ProgressBar(total=max(1, j["tasks"]), completed=j["done"], width=30),
                     f"{j['done']}/{j['tasks']}", j["state"])
    events = Table(expand=True, title="recent events", title_justify="left", show_header=False)
    events.add_column("t", no_wrap=True, style="dim")
    events.add_column("event")
    for t, kind, text in status["events"][-8:][::-1]:
        style = {"refused": "red", "left": "red", "retry": "yellow", "join": "green"}.get(kind)
        events.add_row(f"{t:.1f} s", Text(text, style=style or ""))
    return Group(header, nodes, jobs, events)


def run(args: argparse.Namespace) -> int:
    import time

    from rich.console import Console
    from rich.live import Live

    from microswarm.master import cli_client

    with cli_client.connect(args) as client:
        if args.once:
            Console().print(render(client.status()))
            return 0
        try:
            with Live(render(client.status()), auto_refresh=False, screen=False) as live:
                while True:
                    time.sleep(args.interval)
                    live.update(render(client.status()), refresh=True)
        except ConnectionError as exc:
            raise SystemExit(f"lost the master: {exc}") from None
        except KeyboardInterrupt:
            return 0
