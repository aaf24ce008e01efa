"""What a joined node's heap holds, by kind of object, on MicroPython's 32-bit firmware.

  python tools/heap_map.py --board esp32-devkit-w5500            # modules from the file system
  python tools/heap_map.py --board esp32-devkit-w5500 --romfs    # from a ROMFS image

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
    args = parser.parse_args(argv)
    found = heap_map(args.board, args.romfs, args.heap)
    print(json.dumps(found, indent=1) if args.json else report(found))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
