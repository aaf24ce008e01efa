"""One deploy: build, compare, copy, verify, reset, wait for the node.

    report = deploy(DeployOptions(board="unix", port="/dev/pts/3", key=key), out=print)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from microswarm import bundle, paths
from microswarm.deploy.build import build, shadowed_names
from microswarm.deploy.join import open_port, wait_for_hello, wait_for_join
from microswarm.deploy.mpremote import Mpremote
from microswarm.deploy.sync import Plan, apply_plan, make_plan, remote_hashes, verify
from microswarm.keys import DEFAULT_CLUSTER


@dataclass
class DeployOptions:
    board: str
    port: str
    key: bytes = field(repr=False)
    master: str = ""
    link: str = "serial"
    node_id: str = "node1"
    cluster: str = DEFAULT_CLUSTER
    slots: int | None = None
    control: str | None = None
    compiled: bool = True
    native: bool = True
    kernels: list[str] = field(default_factory=list)  # kernel package folders
    dry_run: bool = False
    wait: bool = True
    timeout: float = 30.0
    mpremote_timeout: float = 30.0


@dataclass
class DeployReport:
    plan: Plan
    files: int
    total_bytes: int
    joined: bool = False
    join_seconds: float | None = None
    hello: dict | None = None

    def summary(self) -> str:
        changes = f"{len(self.plan.copy)} copied, {len(self.plan.remove)} removed, " \
                  f"{len(self.plan.unchanged)} unchanged"
        if self.joined:
            return f"{changes}; node up after {self.join_seconds:.1f} s"
        return changes


def deploy(options: DeployOptions, out: Callable[[str], None] = lambda line: None
           ) -> DeployReport:
    board_def = paths.load_board(options.board)
    config = bundle.render_config(
        options.node_id, options.cluster, options.key, options.master, options.link,
        slots=options.slots,
    )
    files = build(options.board, config, compiled=options.compiled, native=options.native,
                  kernels=options.kernels)
    total = sum(len(d) for d in files.values())
    arch = board_def.get("native_arch") or "bytecode"
    kind = "compiled with mpy-cross" if options.compiled else "as source"
    out(f"deploy to {options.board} on {options.port} as {options.node_id!r} "
        f"({options.link} link{', master ' + options.master if options.master else ''})")
    out(f"  bundle: {len(files)} files, {total / 1024:.1f} KB, {kind} for {arch}")
    for folder in options.kernels:
        out(f"  kernel package {folder}")

    mp = Mpremote(options.port, timeout=options.mpremote_timeout)
    shadowed = shadowed_names(files)
    remote = remote_hashes(mp, [*files, *shadowed])
    plan = make_plan(files, remote, shadowed)
    for name, why in plan.copy.items():
        out(f"  {'would copy' if options.dry_run else 'copy'} {name} "
            f"({len(files[name])} bytes, {why})")
    for name in plan.remove:
        out(f"  {'would remove' if options.dry_run else 'remove'} {name} (shadows the bundle)")
    out(f"  {len(plan.unchanged)} files unchanged")
    report = DeployReport(plan=plan, files=len(files), total_bytes=total)

    if not options.dry_run:
        apply_plan(mp, files, plan)
        verify(mp, files, plan.copy)
        if plan.copy:
            out(f"  verified sha256 of {len(plan.copy)} files on the board")
    listen = options.link == "serial" and options.wait and not options.dry_run
    opened = open_port(options.port) if listen else None
    reset_at = time.time()
    started = time.monotonic()
    try:
        mp.reset()
    except BaseException:
        if opened is not None:
            opened.close()
        raise
    out("  board reset" + ("; it runs the old files again" if options.dry_run else ""))
    if options.dry_run or not options.wait:
        return report

    if options.link == "serial":
        out(f"  waiting for HELLO from {options.node_id!r} on {options.port}")
        report.hello = wait_for_hello(options.port, options.node_id, options.timeout, opened)
    elif options.control:
        out(f"  waiting for {options.node_id!r} to join the master ({options.control})")
        wait_for_join(options.control, options.node_id, options.timeout, since=reset_at)
    else:
        out("  not waiting for the join: give --control HOST:PORT of the master to wait")
        return report
    report.joined = True
    report.join_seconds = time.monotonic() - started
    out(f"  {options.node_id!r} is up after {report.join_seconds:.1f} s")
    return report
