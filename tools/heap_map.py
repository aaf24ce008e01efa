"""What a joined node's heap holds, by kind of object, on MicroPython's 32-bit firmware.

  python tools/heap_map.py --board esp32-devkit-w5500            # modules from the file system
  python tools/heap_map.py --board esp32-devkit-w5500 --romfs    # from a ROMFS image
  python tools/heap_map.py --layout                              # the big task's heap, in order

The board's set is deployed as `bench footprint` deploys it (with its meter), onto the
ESP32-like QEMU build (asyncio frozen, `_asyncio` in C: the set's own asyncio left out),
the worker joins a real master over the emulated UART, and after the meter's first task a
second kernel (heap_map/fp_map.py, a package deployed beside the firmware) walks the GC's
allocation table with `machine.mem8`/`mem32` (the node's UART carries frames, so
`micropython.mem_info(1)`'s printed table cannot be read there): each allocation's size, and
its kind from its first word (a type: built-in types, classes found in `sys.modules`, whose
instances are named by class) or, for data without a type of its own, from the object that
points at it (a dict's table, a bytearray's data, a function's bytecode, an instance's
members), with the largest single allocations. The heap's start and size come from the
firmware's `gc_heap` symbol. The firmware's heap is 256 KB (room for the walk's tables).
What the walk allocates itself (`walk_own`: its tables, its labels' strings) is left out.

`--layout` maps the heap as tests/firmware/test_qemu_bigtask.py's node has it when its big
message arrives: the board's own heap, modules in ROMFS, the WIZnet driver imported, the
REPL's leftovers dropped, a first small `sha256` task run; then a kernel (fp_layout) collects
and reads the allocation table into one byte a block (the letters of LETTERS), and this prints
it in address order with the free runs and what sits above the largest one (its own
package, heap_map/layout, with few names: what it interns lands in the heap it maps).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAP = "heap_map"  # the kernel package (a folder beside this file)
KEY = bytes(range(40, 72))
CLUSTER = "heapmap"
# The walk's own tables take up to 20 KB beside the node's 71 KB (file system): on the
# ESP32's 111,168 bytes they find no room. What the node holds does not depend on the heap.
HEAP = 256 * 1024


# fp_layout's letters: an allocation's first block by its type, data by what holds it
LETTERS = {"T": "tuple", "L": "list", "D": "dict", "S": "str", "Y": "bytes", "A": "bytearray",
           "V": "memoryview", "R": "array", "B": "function", "G": "generator",
           "C": "closure", "N": "bound method", "M": "module", "K": "class", "Z": "long int",
           "F": "float", "E": "set", "I": "instance", "Q": "qstr pool", "W": "raw code",
           "O": "other typed", "h": "other", "d": "dict table", "l": "list items",
           "a": "bytearray data", "r": "array data", "s": "str data", "y": "bytes data",
           "b": "bytecode", "q": "qstr table", "i": "members", "c": "qstr chars"}


def heap_symbol(elf: Path) -> tuple[int, int]:
    """(address, size) of the firmware's static GC heap."""
    out = subprocess.run(["arm-none-eabi-nm", "-S", str(elf)], capture_output=True, text=True,
                         check=True).stdout
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[3] == "gc_heap":
            return int(parts[0], 16), int(parts[1], 16)
    raise RuntimeError(f"no gc_heap symbol in {elf}")


async def _join(board, heap: tuple[int, int]) -> dict:
    from microswarm.master import Master

    async with Master(key=KEY, cluster=CLUSTER, tcp_port=None, udp_port=None) as master:
        board.run_detached("import main")
        await master.open_serial(board.port)
        await master.wait_for_nodes(1, 90)
        (joined,) = await master.submit("fp_heap", [[]])
        (found,) = await master.submit("fp_map", [list(heap)], timeout=300)
        found["joined"] = joined
        return found


async def _big_task_heap(board, heap: tuple[int, int], start: str) -> dict:
    from microswarm.master import Master

    async with Master(key=KEY, cluster=CLUSTER, tcp_port=None, udp_port=None) as master:
        board.run_detached(start)
        await master.open_serial(board.port)
        await master.wait_for_nodes(1, 90)
        await master.submit("sha256", [[bytes(range(256)) * 4]], timeout=60)
        await asyncio.sleep(2.5)  # as the test: a heartbeat, then the big TASK's first CHUNK
        (found,) = await master.submit("fp_layout", [list(heap)], timeout=300)
        keys = ("pool", "blocks", "free", "largest_free", "layout", "pools", "classes", "below")
        return dict(zip(keys, found, strict=True))


def big_task_layout(board_name: str) -> dict:
    """The heap of tests/firmware/test_qemu_bigtask.py's node before its big task."""
    sys.path.insert(0, str(ROOT / "tools"))
    sys.path.insert(0, str(ROOT / "tests" / "firmware"))
    import qemu_firmware
    import test_qemu_bigtask as bigtask

    from microswarm import bundle, paths
    from microswarm.bench import footprint

    heap = int(paths.load_board(board_name)["heap_bytes"])
    config = bundle.render_config(f"hm-{board_name}", CLUSTER, KEY, "", "serial")
    files = footprint.deploy_files(board_name, config,
                                   kernels=[Path(__file__).resolve().parent / MAP / "layout"])
    files = {name: data for name, data in files.items() if not name.startswith("asyncio/")}
    own = own_names(files)
    files = bigtask.with_flash_module(files)
    with tempfile.TemporaryDirectory(prefix="msw-heapmap-") as tmp:
        image = Path(tmp) / "romfs.img"
        data_files = footprint.romfs_image(files, image)
        with qemu_firmware.Qemu("MPS2_AN500", heap, romfs_image=image, esp32=True) as board:
            bigtask.install(board, data_files)
            found = asyncio.run(_big_task_heap(board, heap_symbol(board.elf), bigtask.START))
    found["board"] = board_name
    found["layout"] = bytes(found["layout"]).decode()
    found["own_names"] = own
    return found


def own_names(files: dict[str, bytes]) -> list[str]:
    """The names the layout kernel's module interns that nothing else in `files` or the
    firmware's image holds (tools/mpy_names.py's count): they are in the map's qstr pools."""
    import mpy_names

    rom = mpy_names.firmware_names(ROOT / "tools" / "qemu_esp32_qstrs.txt")
    mine = [n for n in files if n.endswith("fp_layout.mpy")]
    others = set(rom)
    for name, data in files.items():
        if name.endswith(".mpy") and name not in mine:
            others.update(q for q in mpy_names.qstr_table(data) if isinstance(q, str))
    return sorted({q for n in mine for q in mpy_names.qstr_table(files[n])
                   if isinstance(q, str) and q not in others})


def _runs(layout: str) -> list[tuple[int, int, bool]]:
    """(first block, blocks, free) for each run of free or used blocks, in address order."""
    runs: list[tuple[int, int, bool]] = []
    for b, c in enumerate(layout):
        free = c == "."
        if runs and runs[-1][2] == free:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1, free)
        else:
            runs.append((b, 1, free))
    return runs


def _end(layout: str, b: int, hi: int) -> int:
    """The block after the allocation that starts at block b (its "=" blocks, below hi)."""
    end = b + 1
    while end < hi and layout[end] == "=":
        end += 1
    return end


def _kinds(layout: str, classes: dict[int, str], lo: int, hi: int) -> str:
    counts: dict[str, list[int]] = {}
    b = lo
    while b < hi:
        c = layout[b]
        if c == ".":
            b += 1
            continue
        end = _end(layout, b, hi)
        kind = classes.get(b, LETTERS.get(c, c))
        counts.setdefault(kind, [0, 0])
        counts[kind][0] += 1
        counts[kind][1] += 16 * (end - b)
        b = end
    return ", ".join(f"{kind} {n}x {size:,}" for kind, (n, size) in
                     sorted(counts.items(), key=lambda kv: -kv[1][1]))


def layout_report(found: dict, width: int = 64) -> str:
    layout, pool = found["layout"], found["pool"]
    classes = {b: name for b, name in found["classes"]}
    runs = _runs(layout)
    free = [r for r in runs if r[2]]
    big = max(free, key=lambda r: r[1])
    lines = [f"{found['board']}, the big task's node after its first task: "
             f"{16 * sum(r[1] for r in free):,} bytes free of {16 * len(layout):,} "
             f"(gc.mem_free {found['free']:,}), the largest free run "
             f"{16 * big[1]:,} at {pool + 16 * big[0]:#x} (block {big[0]})",
             "qstr pools [alloc, names]: " + ", ".join(str(p) for p in found["pools"])
             + f"; the map's kernel interns {len(found['own_names'])} of those names", "",
             "the heap, one letter a block (" + ", ".join(f"{k} {v}" for k, v in
                                                        LETTERS.items()) + ", = the rest "
             "of an allocation, . free):"]
    for b in range(0, len(layout), width):
        lines.append(f"  {pool + 16 * b:#010x} {layout[b:b + width]}")
    lines += ["", "free runs of 256 bytes or more, in address order, and what follows each:"]
    for i, (b, n, _) in enumerate(runs):
        if runs[i][2] and n >= 16:
            after = runs[i + 1] if i + 1 < len(runs) else None
            what = (_kinds(layout, classes, after[0], after[0] + after[1])
                    if after else "(the heap's end)")
            lines.append(f"  {16 * n:>7,} at block {b:>5}, then {16 * after[1] if after else 0:,} "
                         f"used: {what}")
    small = [r for r in free if r[1] < 16]
    lines += ["", f"holes under 256 bytes: {len(small)}, {16 * sum(r[1] for r in small):,} "
              "bytes", "", "below the largest free run: "
              + _kinds(layout, classes, 0, big[0]),
              "above it: " + _kinds(layout, classes, big[0] + big[1], len(layout))]
    lines += ["", "the allocations just below the largest free run, top down (a path from a "
              "module's globals where one reaches them):"]
    for b, path in sorted(found["below"], reverse=True):
        end = _end(layout, b, len(layout))
        kind = classes.get(b, LETTERS.get(layout[b], layout[b]))
        lines.append(f"  block {b:>5} {16 * (end - b):>6,} {kind}: {path or '?'}")
    return "\n".join(lines)


def heap_map(board_name: str, romfs: bool = False, heap: int = HEAP) -> dict:
    sys.path.insert(0, str(ROOT / "tools"))
    import qemu_firmware

    from microswarm import bundle
    from microswarm.bench import footprint

    config = bundle.render_config(f"hm-{board_name}", CLUSTER, KEY, "", "serial")
    files = footprint.deploy_files(board_name, config, meter=True,
                                   kernels=[Path(__file__).resolve().parent / MAP])
    with tempfile.TemporaryDirectory(prefix="msw-heapmap-") as tmp:
        image = Path(tmp) / "romfs.img" if romfs else None
        if image is not None:
            files = footprint.romfs_image(files, image)
        with qemu_firmware.Qemu("MPS2_AN500", heap, romfs_image=image, esp32=True) as board:
            board.install(files)
            found = asyncio.run(_join(board, heap_symbol(board.elf)))
    found["board"] = board_name
    found["romfs"] = romfs
    return found


def report(found: dict) -> str:
    lines = [f"{found['board']} ({'ROMFS' if found['romfs'] else 'file system'}): "
             f"{found['used_before']:,} bytes in use at the walk's start "
             f"(the walk's own {found['walk_own']:,} left out)",
             "", "| kind | objects | bytes |", "|---|---|---|"]
    for kind, (count, size) in sorted(found["types"].items(), key=lambda kv: -kv[1][1]):
        lines.append(f"| {kind} | {count} | {size:,} |")
    lines += ["", "largest single allocations (bytes, kind):"]
    lines += [f"  {size:>6,}  {kind}" for size, kind in found["big"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--board", default="esp32-devkit-w5500")
    parser.add_argument("--romfs", action="store_true",
                        help="the .mpy modules in a ROMFS image (bytecode left in flash)")
    parser.add_argument("--heap", type=int, default=HEAP,
                        help=f"the firmware's GC heap (default {HEAP})")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--layout", action="store_true",
                        help="the big task's node (its own heap, ROMFS) in address order")
    args = parser.parse_args(argv)
    if args.layout:
        found = big_task_layout(args.board)
        print(json.dumps(found, indent=1) if args.json else layout_report(found))
        return 0
    found = heap_map(args.board, args.romfs, args.heap)
    print(json.dumps(found, indent=1) if args.json else report(found))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
