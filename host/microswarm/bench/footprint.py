"""Resident heap of the firmware per board: each module, and the node after it joins.

For every board file, the modules that board loads (the worker and what it imports, the
WIZnet driver and its DHCP client on WIZnet boards) are built as `microswarm deploy` ships
them (.mpy from mpy-cross, the native module of the board's arch when built) and loaded on
MicroPython's 32-bit `ports/qemu` firmware (Cortex-M7, tools/qemu_firmware.py) from a flash
file system in the emulated board's RAM outside its heap. The firmware is the build that
carries asyncio as the boards' stock firmware does (`esp32=True`: the package frozen, the
`_asyncio` C module built in; the ESP32 and RP2350 ports both ship it so), with the board's
own GC heap (board.json's `heap_bytes`). Each module is imported in dependency order and
the heap in use after `gc.collect()` is recorded (`asyncio`: what importing the frozen
package costs); then the worker starts on the emulated UART and joins a real master over
that serial link, and the node's own figure at the join (HELLO's heap_free, sampled after
gc.collect()) gives the resident total at the join's start. The master then runs a meter
kernel (METER: a one-function kernel package deployed beside the firmware, `gc.collect()`
then `gc.mem_alloc()` inside the task) as the node's first task, after the join: that is
the figure after the join (`joined_total`), code used only for the join dropped; then an
echo and a sha256 task (the built-in kernels load on that first task) and the meter again:
`after_task_total`. The meter module's own import cost (measured with the others) is left
out of both. The x64 unix-port VM's per-module figures are measured beside it the same way
(its asyncio is built in).

`plain=True` (`--plain-firmware`) measures the old way, for comparison: the plain
`ports/qemu` build, which has no asyncio, with asyncio's Python package compiled and
shipped as .mpy beside the firmware's modules.

Headline: the ESP32+W5500 board's total on 32-bit after the join, without asyncio's own
modules (boards carry those frozen or in C). The join is over the UART (QEMU has no
W5500), so the WIZnet driver a TCP node holds is not in it; its figure is in `modules`.
Modules a joined, idle node does not hold (ON_DEMAND) are measured but not counted.
Goal: <= 40 KB. An ESP32's xtensawin code cannot run on ARM: its modules are compiled
for armv7emsp there (only the few @micropython.native functions differ in size between
arches).

Beside it (`romfs`, per board, and `romfs_headline`): the same .mpy files in a ROMFS image
(`mpremote romfs build`, tools/qemu_firmware.py's ROMFS build) that the firmware mounts at
/rom and imports from in place, bytecode and constant data staying in the memory-mapped
image as they would in a board's flash; only the data files (board.json, config.json, the
kernel manifest) and main.py stay on the flash file system. Measured the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import re
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from microswarm.deploy.romfs import romfs_image  # noqa: F401 (its one implementation)

HEADLINE_BOARD = "esp32-devkit-w5500"
GOAL_BYTES = 40 * 1024
KEY = bytes(range(7, 39))
CLUSTER = "footprint"
# Leaves first: each import's growth is that module's own (wiznet_dhcp and wiznet_up import
# names from wiznet, which imports them only inside its functions).
ORDER = ("asyncio", "msgdefs", "cbor", "msw_texts", "auth", "frame", "frame_serial",
         "frame_tcp", "config", "board", "msw_kernel", "engine", "engine_join",
         "link_serial", "link_tcp", "wiznet", "wiznet_dhcp", "wiznet_up", "worker", "worker_up",
         "kernels")
WIZNET_MODULES = ("wiznet_dhcp", "wiznet", "wiznet_up")
# Not in the heap of a joined, idle node: the error texts (imported to render one, then
# dropped), config (read at boot, then dropped), the join's
# code (from the HELLO to the WELCOME), the DHCP client (imported for a lease or a
# renewal, then dropped), the WIZnet chip's bring-up (imported while the driver starts,
# then dropped), the worker's bring-up (the boot, each dial and session setup, then
# dropped), the built-in kernels (loaded on the first task that names one of them).
# Measured, but not in modules_total.
ON_DEMAND = ("msw_texts", "config", "engine_join", "wiznet_dhcp", "wiznet_up", "worker_up",
             "kernels")
# what the report says of each (`on_demand_when`)
ON_DEMAND_WHEN = {
    "msw_texts": "the error texts: imported to render one, then dropped",
    "config": "read at boot, then dropped",
    "engine_join": "the join's code: loaded for the HELLO, dropped after the WELCOME",
    "wiznet_dhcp": "WIZnet boards: for a DHCP lease or renewal, then dropped",
    "wiznet_up": "WIZnet boards: while the driver starts the chip, then dropped",
    "worker_up": "the worker's boot, dial and session setup: dropped before a session runs",
    "kernels": "on the first task that names one of its kernels, then kept",
}
ASYNCIO = "asyncio"
# what `firmware_build` says of the build measured on (key: plain)
FIRMWARE_BUILDS = {
    False: "asyncio frozen and _asyncio in C, as the ESP32 and RP2350 firmware carry it",
    True: "plain ports/qemu build, no asyncio: its package shipped as .mpy",
}
JOIN_TIMEOUT_S = 60
QEMU_ARCH_FOR = {"xtensawin": "armv7emsp"}  # arches the ARM firmware cannot load
QEMU_ARCHES = ("armv6m", "armv7m", "armv7em", "armv7emsp", "armv7emdp")  # what the AN500 loads
# The meter: a kernel package of one module whose kernel reports the heap in use after a
# collection, from inside a task (the task's own few objects included).
METER = "fp_meter"
METER_SOURCE = b"""import gc

from msw_kernel import kernel


@kernel("fp_heap", args=())
def fp_heap():
    gc.collect()
    return gc.mem_alloc()
"""

MEASURE = """
import gc, sys
gc.collect()
gc.collect()
_b = gc.mem_alloc()
_r = []
_p = _b
for _n in {names!r}:
    __import__(_n)
    gc.collect()
    _a = gc.mem_alloc()
    _r.append((_n, _a - _p))
    _p = _a
print('FOOTPRINT', _b, gc.mem_free() + gc.mem_alloc(), _r)
"""


BASE = """
import gc
gc.collect()
gc.collect()
print('BASE', gc.mem_alloc())
"""


def configure(parser: argparse.ArgumentParser) -> None:
    from microswarm import paths

    parser.add_argument("--board", action="append", choices=paths.board_names(),
                        help="board file to measure (repeatable; default: every board whose "
                             "modules the ARM firmware loads, not the unix VM's)")
    parser.add_argument("--no-join", action="store_true",
                        help="imports only: do not start the worker and join a master")
    parser.add_argument("--qemu-board", default="MPS2_AN500",
                        help="ports/qemu board (default MPS2_AN500, a Cortex-M7)")
    parser.add_argument("--no-romfs", action="store_true",
                        help="skip the measurement with the modules in a ROMFS image")
    parser.add_argument("--plain-firmware", action="store_true",
                        help="the plain ports/qemu build (no asyncio: its package shipped as "
                             ".mpy), as measured before; default: asyncio frozen and in C, as "
                             "the boards' firmware carries it")
    parser.add_argument("--heap", type=int, default=None,
                        help="the firmware's GC heap, bytes (default: each board's own, "
                             "board.json's heap_bytes)")


def run(args: argparse.Namespace) -> dict:
    from microswarm import paths

    boards = args.board or [b for b in paths.board_names() if _on_qemu(paths.load_board(b))]
    return measure(boards, join=not args.no_join, qemu_board=args.qemu_board,
                   romfs=not args.no_romfs, plain=args.plain_firmware, heap=args.heap)


def _on_qemu(board_def: dict) -> bool:
    """Whether the ARM firmware loads the board's modules (the unix board's x64 .mpy it
    does not: that board is the VM, measured as `x64`)."""
    return qemu_arch(board_def) in QEMU_ARCHES


def modules_of(board_def: dict) -> list[str]:
    """The firmware modules a board loads up to its join, in import order."""
    names = [n for n in ORDER if n not in WIZNET_MODULES]
    if board_def.get("net_driver") == "wiznet":
        names = [n for n in ORDER]
    return names


def measure(boards: list[str], join: bool = True, qemu_board: str = "MPS2_AN500",
            romfs: bool = True, plain: bool = False, heap: int | None = None) -> dict:
    """`plain`: the plain ports/qemu build, asyncio's package shipped as .mpy; `heap`: the
    firmware's GC heap for every board (default: each board's heap_bytes)."""
    from microswarm import paths

    tools = paths.tools_dir()
    if tools is None:
        raise SystemExit("bench footprint needs a source checkout (tools/qemu_firmware.py)")
    if str(tools) not in sys.path:
        sys.path.insert(0, str(tools))
    import qemu_firmware

    report: dict[str, Any] = {"boards": {}, "goal_bytes": GOAL_BYTES,
                              "on_demand_when": dict(ON_DEMAND_WHEN),
                              "firmware_build": FIRMWARE_BUILDS[plain]}
    heaps = {name: heap or int(paths.load_board(name)["heap_bytes"]) for name in boards}
    try:
        for board_heap in sorted(set(heaps.values()) | {modules_heap(h) for h in heaps.values()}):
            qemu_firmware.firmware(qemu_board, board_heap, esp32=not plain)
    except qemu_firmware.QemuUnavailable as exc:
        raise SystemExit(f"bench footprint: skipped: {exc}") from None
    for name in boards:
        board_heap = heaps[name]
        entry = measure_board(name, join, qemu_board, qemu_firmware, plain=plain,
                              heap=board_heap)
        if romfs:
            entry["romfs"] = measure_board(name, join, qemu_board, qemu_firmware,
                                           romfs=True, plain=plain, heap=board_heap)["qemu"]
            entry["romfs_total"] = _total(entry["romfs"])
        entry["x64"] = measure_x64(name)
        report["boards"][name] = entry
    head = report["boards"].get(HEADLINE_BOARD)
    report["headline"] = {
        "name": f"{HEADLINE_BOARD} resident heap after join on 32-bit MicroPython, "
                "without asyncio",
        "value": _total(head["qemu"]) if head else None, "unit": "bytes",
        "baseline": GOAL_BYTES,
        "after_first_task": _after_task(head["qemu"]) if head else None,
    }
    if romfs:
        report["romfs_headline"] = {
            "name": f"{HEADLINE_BOARD} resident heap after join on 32-bit MicroPython, "
                    "without asyncio, modules imported in place from a ROMFS image",
            "value": head["romfs_total"] if head else None, "unit": "bytes",
            "baseline": GOAL_BYTES,
            "after_first_task": _after_task(head["romfs"]) if head else None,
        }
    return report


def _total(qemu: dict) -> int:
    """After the join where the node joined (its modules' total where it could not),
    without asyncio's modules."""
    total = qemu.get("joined_total") or qemu["modules_total"]
    return total - qemu["modules"].get(ASYNCIO, 0)


def _after_task(qemu: dict) -> int | None:
    """After the first tasks (the built-in kernels loaded), without asyncio's modules."""
    total = qemu.get("after_task_total")
    return None if total is None else total - qemu["modules"].get(ASYNCIO, 0)


def qemu_arch(board_def: dict) -> str | None:
    """The arch the ARM firmware runs a board's modules as: the board's own, or armv7emsp
    for an ESP32 (QEMU_ARCH_FOR: its xtensawin code cannot run on ARM)."""
    arch = board_def.get("native_arch")
    return QEMU_ARCH_FOR.get(arch, arch)


def deploy_files(board: str, config: str, meter: bool = False, asyncio_package: bool = False,
                 kernels: Sequence[Path] = ()) -> dict[str, bytes]:
    """The files `microswarm deploy` ships to `board`, compiled for the arch the ARM
    firmware runs it as (qemu_arch), without a native module when that is not the board's
    own arch (an ESP32's xtensawin module has no ARM stand-in); `meter`: with the METER
    kernel package, deployed as a user's package is; `kernels`: more kernel packages;
    `asyncio_package`: plus asyncio's Python package compiled the same way (for a firmware
    with no asyncio)."""
    from microswarm import paths
    from microswarm.deploy.build import build, compile_module

    board_def = paths.load_board(board)
    arch = qemu_arch(board_def)
    with tempfile.TemporaryDirectory(prefix="msw-meter-") as tmp:
        packages = list(kernels)
        if meter:
            package = Path(tmp) / METER  # (the folder names the package)
            package.mkdir()
            (package / f"{METER}.py").write_bytes(METER_SOURCE)
            packages.insert(0, package)
        files = build(board, config, arch=arch, kernels=packages,
                      native=board_def.get("native_arch") == arch)
    if not asyncio_package:
        return files
    import qemu_firmware

    package = qemu_firmware.source_tree() / "extmod" / "asyncio"
    for path in sorted(package.glob("*.py")):
        if path.name in ("manifest.py", "uasyncio.py"):
            continue
        files[f"asyncio/{path.stem}.mpy"] = compile_module(path.name, path.read_bytes(), arch)
    return files


# The per-module imports load both links' modules and the WIZnet driver together, more
# than any node holds: past 620 interned names, so the sixth pool of names (640 entries,
# 4.5 KB in one block), which the ESP32's heap after those imports does not always have in
# one piece. What an import holds does not depend on the heap's size (docs/qemu.md), so
# they run on at least this heap; the node's own figures (the join) on the board's.
MODULES_HEAP = 160 * 1024


def modules_heap(heap: int) -> int:
    return max(heap, MODULES_HEAP)


def measure_board(name: str, join: bool, qemu_board: str, qemu_firmware,
                  romfs: bool = False, plain: bool = False, heap: int | None = None) -> dict:
    """`romfs`: the .mpy modules in a ROMFS image, the rest on the flash file system;
    `plain`: on the plain build, asyncio's package shipped as .mpy; `heap`: the GC heap
    (None: the firmware's default)."""
    with tempfile.TemporaryDirectory(prefix="msw-footprint-") as tmp:
        return _measure_board(name, join, qemu_board, qemu_firmware,
                              Path(tmp) / "romfs.img" if romfs else None, plain, heap)


def _measure_board(name: str, join: bool, qemu_board: str, qemu_firmware,
                   image: Path | None, plain: bool, heap: int | None) -> dict:
    from microswarm import bundle, paths

    board_def = paths.load_board(name)
    arch = qemu_arch(board_def)
    config = bundle.render_config(f"fp-{name}", CLUSTER, KEY, "", "serial")
    files = deploy_files(name, config, meter=join, asyncio_package=plain)
    native_module = bundle.NATIVE_MODULE in files
    if image is not None:
        files = romfs_image(files, image)
    names = modules_of(board_def)
    with qemu_firmware.Qemu(qemu_board, None if heap is None else modules_heap(heap),
                            romfs_image=image, esp32=not plain) as board:
        board.install(files)
        if image is not None:
            out = board.exec("import sys; print('ROMFS', sys.path)")
            if "/rom" not in out:
                raise RuntimeError(f"the firmware did not mount the ROMFS image:\n{out}")
        out = board.exec(MEASURE.format(names=names + [METER] if join else names))
        base, heap_total, modules = _parse(out)
        meter = modules.pop()[1] if join else 0
        entry: dict[str, Any] = {
            "qemu": {
                "firmware": f"{qemu_board} ({board.board.cpu})", "mpy_arch": arch,
                "asyncio": "shipped as .mpy" if plain else "frozen, _asyncio in C",
                "native_module": native_module, "heap_total": heap_total,
                "modules_heap_total": heap_total,
                "heap_before": base, "modules": dict(modules),
                "modules_total": sum(v for n, v in modules if n not in ON_DEMAND),
                "on_demand": [n for n, _ in modules if n in ON_DEMAND],
            }
        }
    if image is not None:
        entry["qemu"]["romfs_image_bytes"] = image.stat().st_size
    if join:
        # on a freshly booted board, as a real one starts: beside the measurement's
        # leftovers the worker's frame buffers did not fit (MemoryError at its start)
        with qemu_firmware.Qemu(qemu_board, heap, romfs_image=image,
                                esp32=not plain) as board:
            board.install(files)
            # the REPL's own heap in this boot: the node's figures are what main.py adds
            found = re.search(r"BASE (\d+)", board.exec(BASE))
            if found is None:
                raise RuntimeError("the board printed no heap figure")
            base = entry["qemu"]["join_heap_before"] = int(found.group(1))
            try:
                hello = asyncio.run(_join(board))
            except (TimeoutError, OSError, AssertionError) as exc:
                entry["qemu"]["join_error"] = str(exc)
            else:
                entry["qemu"]["heap_total"] = hello["heap_total"]  # (the node's own heap)
                entry["qemu"]["hello_total"] = hello["heap_total"] - hello["heap_free"] - base
                entry["qemu"]["joined_total"] = hello["joined"] - base - meter
                entry["qemu"]["after_task_total"] = hello["after_task"] - base - meter
                entry["qemu"]["meter_module"] = meter
    return entry


async def _join(board) -> dict:
    from microswarm.master import Master

    async with Master(key=KEY, cluster=CLUSTER, tcp_port=None, udp_port=None) as master:
        board.run_detached("import main")
        await master.open_serial(board.port)
        (info,) = await master.wait_for_nodes(1, JOIN_TIMEOUT_S)
        hello = {"heap_total": info.heap_total, "heap_free": info.heap_free}  # HELLO's
        (hello["joined"],) = await master.submit("fp_heap", [[]])
        assert await master.submit("echo", [[b"x" * 1000]]) == [b"x" * 1000]
        data = bytes(range(256)) * 4
        assert await master.submit("sha256", [[data]]) == [hashlib.sha256(data).digest()]
        (hello["after_task"],) = await master.submit("fp_heap", [[]])
        return hello


def _parse(out: str) -> tuple[int, int, list[tuple[str, int]]]:
    found = re.search(r"FOOTPRINT (\d+) (\d+) (\[.*\])", out)
    if found is None:
        raise RuntimeError(f"the board printed no figures:\n{out[-2000:]}")
    pairs = json.loads(found.group(3).replace("(", "[").replace(")", "]").replace("'", '"'))
    return int(found.group(1)), int(found.group(2)), [(n, int(v)) for n, v in pairs]


def measure_x64(name: str) -> dict:
    """The same imports in the x64 unix-port VM (asyncio built in), with twice the board's
    heap: the same modules hold more heap there (64-bit objects)."""
    from microswarm import bundle, paths

    board_def = paths.load_board(name)
    config = bundle.render_config(f"fp-{name}", CLUSTER, KEY, "", "serial")
    from microswarm.deploy.build import build

    files = build(name, config, arch=bundle.VM_ARCH,
                  native=bundle.vm_arch(board_def) is not None)
    with tempfile.TemporaryDirectory(prefix="msw-footprint-") as tmp:
        bundle.write_layout(Path(tmp), files)
        proc = subprocess.run(
            # 64-bit objects take up to twice a 32-bit board's room: the VM gets twice the
            # board's heap to measure in (the board's own fit is the 32-bit figure above)
            [paths.micropython_command(), "-X", f"heapsize={2 * board_def['heap_bytes']}", "-c",
             "import sys; sys.path.insert(0, '')\n" + MEASURE.format(
                 names=modules_of(board_def))],
            capture_output=True, text=True, timeout=120, cwd=tmp)
    base, heap, modules = _parse(proc.stdout + proc.stderr)
    return {"heap_total": heap, "modules": dict(modules),
            "modules_total": sum(v for n, v in modules if n not in ON_DEMAND)}
