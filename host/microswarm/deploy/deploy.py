"""One deploy: build, compare, copy, verify, reset, wait for the node.

    report = deploy(DeployOptions(board="unix", port="/dev/pts/3", key=key), out=print)
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from microswarm import bundle, kernelpkg, paths
from microswarm.deploy.build import ENTRY_POINTS, build, shadowed_names
from microswarm.deploy.join import (
    master_refusals,
    open_port,
    wait_for_hello,
    wait_for_join,
)
from microswarm.deploy.mpremote import Mpremote
from microswarm.deploy.romfs import (
    PARTITION,
    RomfsError,
    holds,
    probe_partition,
    romfs_image,
    write_partition,
)
from microswarm.deploy.sync import DeployError, Plan, apply_plan, make_plan, probe, verify
from microswarm.keys import DEFAULT_CLUSTER


@dataclass
class DeployOptions:
    board: str
    port: str
    key: bytes = field(repr=False)
    master: str = ""
    link: str = "serial"
    node_id: str | None = None  # None: the board's name and unique id (default_node_id)
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
    romfs: bool = False  # the .mpy modules in one ROMFS image in the board's ROM partition
    # mpremote's `resume` before every command (no soft reset), and no reset at the end:
    # for a board whose file system its REPL mounted, which a reset would lose (the QEMU
    # test board's); the caller starts the new files
    resume: bool = False
    reset: bool = True


@dataclass
class DeployReport:
    plan: Plan
    files: int
    total_bytes: int
    joined: bool = False
    join_seconds: float | None = None
    hello: dict | None = None
    rom: str | None = None  # --romfs: "written", "unchanged" or (dry run) "would write"
    rom_modules: int = 0

    def summary(self) -> str:
        changes = f"{len(self.plan.copy)} copied, {len(self.plan.remove)} removed, " \
                  f"{len(self.plan.unchanged)} unchanged"
        if self.rom:
            changes += f"; ROM partition {self.rom} ({self.rom_modules} modules)"
        if self.joined:
            return f"{changes}; node up after {self.join_seconds:.1f} s"
        return changes


def candidate_names(kernels: Sequence[str] = ()) -> list[str]:
    """Every file name a deploy may write or remove on a board: each module as .py and
    .mpy, the entry points, board.json, config.json, the native module, the kernel
    manifests, and each module of the kernel packages as .py and .mpy."""
    names = {"board.json", "config.json", bundle.NATIVE_MODULE, *ENTRY_POINTS,
             kernelpkg.firmware_manifest()[0]}
    for path in bundle.firmware_files():
        names.update({path.name, path.stem + ".mpy"})
    for pkg in kernelpkg.find_all(kernels):
        names.add(pkg.manifest_name)
        for stem in [*pkg.modules, *pkg.natives]:
            names.update({stem + ".py", stem + ".mpy"})
    return sorted(names)


def target_arch(board_def: dict, mpy: int) -> tuple[str | None, str]:
    """The native arch to build for, from what the target reports (`sys.implementation
    ._mpy`), and a note when that is not the board's own arch: a virtual board runs the
    VM's arch, and a module built for the board's would not load there."""
    board_arch = board_def.get("native_arch")
    running = bundle.arch_of_mpy(mpy) if mpy else None
    if running is None:
        return board_arch, ""
    if running != board_arch:
        return running, (f"the target runs {running}, not {board_arch} as a "
                         f"{board_def['name']} does (a virtual board?): built for {running}")
    return running, ""


PORT_WAIT_S = 15.0  # a board just plugged in (or a virtual board just started) enumerates


def wait_for_port(port: str, timeout: float, out: Callable[[str], None]) -> None:
    """Wait for a serial device that is not there yet (a URL such as socket:// is left to
    mpremote); a port that never comes is an error naming it."""
    if "://" in port or os.path.exists(port):
        return
    out(f"  waiting up to {timeout:g} s for {port} to appear")
    deadline = time.monotonic() + timeout
    while not os.path.exists(port):
        if time.monotonic() > deadline:
            raise DeployError(f"no serial port {port}: is the board plugged in (or the "
                              "virtual board started)?")
        time.sleep(0.1)


def rom_image(files: dict[str, bytes]) -> tuple[dict[str, bytes], bytes, list[str]]:
    """`files` split for --romfs: those left for the file system, the ROMFS image of the
    modules (romfs.romfs_image) and the modules' names."""
    with tempfile.TemporaryDirectory(prefix="msw-romfs-image-") as tmp:
        path = Path(tmp) / "modules.img"
        rest = romfs_image(files, path)
        return rest, path.read_bytes(), sorted(set(files) - set(rest))


def deploy(options: DeployOptions, out: Callable[[str], None] = lambda line: None
           ) -> DeployReport:
    if options.romfs and not options.compiled:
        raise ValueError("--romfs puts the compiled .mpy modules in the ROM partition; "
                         "--source copies .py files: give one of them")
    board_def = paths.load_board(options.board)
    wait_for_port(options.port, PORT_WAIT_S, out)
    mp = Mpremote(options.port, timeout=options.mpremote_timeout, resume=options.resume)
    found = probe(mp, candidate_names(options.kernels))
    mpy, remote = found.mpy, found.hashes
    if options.node_id is None:
        # a port without machine.unique_id(): the port's name stands in for it
        uid = found.uid or hashlib.sha256(options.port.encode()).digest()[:8]
        options.node_id = bundle.default_node_id(options.board, uid)
    config = bundle.render_config(
        options.node_id, options.cluster, options.key, options.master, options.link,
        slots=options.slots,
    )
    arch, note = target_arch(board_def, mpy)
    # A virtual board plays native by the board's arch, as `microswarm vboard` lays it out.
    native = options.native and (arch == board_def.get("native_arch")
                                 or bundle.vm_arch(board_def) is not None)
    files = build(options.board, config, compiled=options.compiled, native=native, arch=arch,
                  kernels=options.kernels)
    total = sum(len(d) for d in files.values())
    kind = "compiled with mpy-cross" if options.compiled else "as source"
    out(f"deploy to {options.board} on {options.port} as {options.node_id!r} "
        f"({options.link} link{', master ' + options.master if options.master else ''})")
    if note:
        out(f"  {note}")
    out(f"  bundle: {len(files)} files, {total / 1024:.1f} KB, {kind} for {arch or 'bytecode'}")
    for folder in options.kernels:
        out(f"  kernel package {folder}")

    image, rom_names, rom = b"", [], None
    if options.romfs:
        # Refused here, before anything changes, when the image has nowhere to go.
        files, image, rom_names = rom_image(files)
        part = probe_partition(mp, image)
        refusal = part.refusal(len(image))
        if refusal:
            raise RomfsError(refusal)
        out(f"  ROMFS image: {len(rom_names)} modules in {len(image)} bytes, for ROM "
            f"partition {PARTITION} ({part.size} bytes)")
        if holds(part, image):
            rom = "unchanged"
            out(f"  ROM partition {PARTITION} holds this image already: not rewritten")
        else:
            rom = "would write" if options.dry_run else "written"
            out(f"  {'would write' if options.dry_run else 'write'} the image to ROM "
                f"partition {PARTITION} (mpremote romfs deploy)")
    shadowed = shadowed_names(files)
    if bundle.NATIVE_MODULE not in files:
        shadowed.add(bundle.NATIVE_MODULE)  # one of another arch, or one left out on purpose
    if options.romfs:
        # a module's .mpy or .py left on the flash would be imported instead of /rom's:
        # '' (the flash's root) comes before /rom on sys.path
        shadowed.update(rom_names)
        shadowed.update(name[:-4] + ".py" for name in rom_names)
    plan = make_plan(files, remote, shadowed)
    for name, why in plan.copy.items():
        out(f"  {'would copy' if options.dry_run else 'copy'} {name} "
            f"({len(files[name])} bytes, {why})")
    for name in plan.remove:
        out(f"  {'would remove' if options.dry_run else 'remove'} {name} (shadows the bundle "
            "or does not belong to it)")
    out(f"  {len(plan.unchanged)} files unchanged")
    report = DeployReport(plan=plan, files=len(files), total_bytes=total, rom=rom,
                          rom_modules=len(rom_names))

    if not options.dry_run:
        if rom == "written":
            write_partition(mp, image)
            out(f"  wrote {len(image)} bytes to ROM partition {PARTITION} and read them back")
        apply_plan(mp, files, plan)
        verify(mp, files, plan.copy)
        if plan.copy:
            out(f"  verified sha256 of {len(plan.copy)} files on the board")
    if not options.reset:
        out("  not reset: the board runs the new files from its next reset")
        return report
    waiting = options.wait and not options.dry_run
    # Opened before the reset: a serial node's first HELLO, and what a board prints when
    # it fails at boot, come right after it.
    opened = open_port(options.port) if waiting else None
    refused_before = master_refusals(options.control) if waiting and options.control else []
    reset_at = time.time()
    started = time.monotonic()
    try:
        mp.reset()
    except BaseException:
        if opened is not None:
            opened.close()
        raise
    out("  board reset" + ("; it runs the old files again" if options.dry_run else ""))
    if not waiting:
        return report

    try:
        if options.link == "serial":
            out(f"  waiting for HELLO from {options.node_id!r} on {options.port}")
            report.hello = wait_for_hello(options.port, options.node_id, options.timeout,
                                          opened)
            opened = None  # wait_for_hello closes it
        elif options.control:
            out(f"  waiting for {options.node_id!r} to join the master ({options.control})")
            wait_for_join(options.control, options.node_id, options.timeout, since=reset_at,
                          console=opened, refused_before=refused_before)
        else:
            out("  not waiting for the join: give --control HOST:PORT of the master to wait")
            return report
    finally:
        if opened is not None:
            opened.close()
    report.joined = True
    report.join_seconds = time.monotonic() - started
    out(f"  {options.node_id!r} is up after {report.join_seconds:.1f} s")
    return report
