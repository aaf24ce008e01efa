"""A large chunked task on the ESP32 board's own heap, on MicroPython's 32-bit firmware
(ports/qemu on a Cortex-M7 under qemu-system-arm, built with the board's 111,168-byte GC
heap and nothing added for its modules). The firmware carries asyncio as the ESP32's does
(tools/qemu_firmware.py's esp32 build: its Python package frozen, `_asyncio` in C), so the
deploy set's copy of asyncio is left out. The ESP32 set's .mpy files (armv7emsp) run in
place from a ROMFS image, as modules frozen into a board's firmware would; its data files
are on the emulated flash, whose code is in the image too (a real board's file system is C
code in its flash; compiled at the REPL it held 1.8 KB of this heap). The WIZnet driver is
imported before main.py, as a TCP node holds it; the worker joins the real master over the
emulated UART.

The real master sends a small sha256 task, then two whose input is BIG bytes, one after
the other (the second finds the first's room again): each a TASK of BIG + 20 bytes that
comes in CHUNKs (the board's max_frame, 1,024), reassembled into one buffer whose byte
string the kernel hashes in place; each chunk's data is a view into the serial
reader's buffer, copied once, into that buffer. The master sends it only if the node's
heartbeat reports that much free heap. 64 KB + 512 bytes runs too, 64 KB + 768 does not:
docs/qemu.md has the figures."""

from __future__ import annotations

import asyncio
import hashlib
import sys
import tempfile
from pathlib import Path

import pytest

from microswarm import bundle, paths

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

BOARD = "esp32-devkit-w5500"
KEY = bytes(range(72, 104))
BIG = 64 * 1024
# The data files are written with code whose names the firmware holds (`_`, `open`,
# `write`) and whose string literals are over 10 characters (the REPL's compiler interns
# shorter ones; "/./" is dropped from the path): mpremote's file copies intern names of
# their own (f, h, w), and each name the REPL holds is one fewer before the node's opens a
# qstr pool (test_the_big_tasks_node_stays_in_five_qstr_pools).
WRITE = "with open({path!r}, 'wb (binary)')as _:\n    _.write({data!r})"


def with_flash_module(files: dict[str, bytes]) -> dict[str, bytes]:
    """`files` and the emulated flash file system's code (tools/qemu_flash.py) as a .mpy, to
    go in the ROMFS image with the node's modules: a real board's file system is C code in
    its flash, and compiled at the REPL this one's bytecode took about 1.8 KB of the
    node's heap (64 KB ran in no boot with it there)."""
    from microswarm.bench.footprint import qemu_arch
    from microswarm.deploy.build import compile_module

    source = (paths.tools_dir() / "qemu_flash.py").read_bytes()  # (viper: built for an arch)
    arch = qemu_arch(paths.load_board(BOARD))  # the arch the node's own modules are built for
    return {**files, "qemu_flash.mpy": compile_module("qemu_flash.py", source, arch)}


def install(board, files: dict[str, bytes]) -> None:
    """Qemu.install()'s flash (qemu_flash, from the ROMFS image: with_flash_module(),
    mounted at /) with `files` (no folders)."""
    board.exec("pass")  # (mpremote's soft reset, before the mount)
    board.exec("import qemu_flash\n_msw_flash = qemu_flash.mount()\n")
    for name, data in sorted(files.items()):
        assert "/" not in name, name
        board.exec(WRITE.format(path="/./" + name if len(name) > 7 else "/./././" + name,
                                data=data))


# What the mount leaves beside the mounted flash: its module, in the REPL's globals and in
# sys.modules (its class stays, with the flash object; mpremote's file copies, not used here,
# left `f`, `h`, `w`, `buf`, `hashlib` and `os` too, about 1.8 KB of one block): a board
# started from its main.py holds none of them, so the worker starts without them.
LEFTOVERS = ("qemu_flash",)
# (`_`, a name in the firmware: a new one would be interned beside the node's own)
START = (f"for _ in {LEFTOVERS!r}:\n    globals().pop(_, None)\n"
         "    __import__('sys').modules.pop(_, None)\n"
         "import gc\ngc.collect()\nimport wiznet\nimport main")


# The names the test's REPL holds before main.py (the flash mount's, mpremote's) and the few
# the node interns at run time beyond what mpy_names counts: the qstr pools' fill after the
# first task that `python tools/heap_map.py --layout` prints (595, 1 of them its kernel's),
# less the count below (560, each module's file name and the manifest's stubs included).
REPL_NAMES = 34


def test_the_big_tasks_node_stays_in_five_qstr_pools():
    """The names the test's node interns by its first CHUNK (the driver, the serial join,
    the first task, the chunk path) and its REPL's stay within the five qstr pools of 620
    names. The sixth (640 entries, 4,512 bytes) would open at the first CHUNK, at the start
    of the free run the message's buffer needs, and the big task below would find no room:
    if this fails, a change added names (`python tools/mpy_names.py --board
    esp32-devkit-w5500 --list` says which module adds which)."""
    sys.path.insert(0, str(paths.tools_dir()))
    import mpy_names

    rom = mpy_names.firmware_names(mpy_names.ESP32_QSTRS_FILE)
    join = tuple(m for m in mpy_names.JOIN_MODULES if m != "fp_meter")  # (the bench's)
    order = ("wiznet", *join, *mpy_names.TASK_MODULES, "engine_chunks")
    added = mpy_names.new_names(mpy_names.esp32_modules(BOARD), order, rom)
    count = sum(len(added[name]) for name in order)
    assert count + REPL_NAMES <= mpy_names.boundaries()[4], (
        f"the big task's node interns {count} names by its first CHUNK (+{REPL_NAMES} its "
        f"REPL's): past {mpy_names.boundaries()[4]}, the sixth qstr pool opens there")


async def _serve(board, big: bytes) -> dict:
    from microswarm.master import Master

    async with Master(key=KEY, cluster="qemu", tcp_port=None, udp_port=None) as master:
        board.run_detached(START)
        await master.open_serial(board.port)
        (info,) = await master.wait_for_nodes(1, 90)
        small = bytes(range(256)) * 4
        first = await master.submit("sha256", [[small]], timeout=60)
        await asyncio.sleep(2.5)  # a heartbeat after that task: the free heap it left
        free = master.nodes[0].heap_free
        digest = await master.submit("sha256", [[big]], timeout=120)
        # and another right after it: the first one's room is the second's again
        again = await master.submit("sha256", [[big[::-1]]], timeout=120)
        return {"info": info, "first": first, "small": small, "free": free, "digest": digest,
                "again": again}


def test_a_64k_chunked_task_runs_at_the_esp32_heap_from_romfs():
    from microswarm.bench.footprint import deploy_files, romfs_image
    from support.qemu import firmware_tool  # (here: tools/heap_map.py imports this module)

    heap = paths.load_board(BOARD)["heap_bytes"]
    qemu_firmware = firmware_tool("MPS2_AN500", heap, esp32=True)
    config = bundle.render_config("qemu-esp32", "qemu", KEY, "", "serial")
    files = deploy_files(BOARD, config)  # (an ESP32's: no native module, pure kernels)
    files = {name: data for name, data in files.items() if not name.startswith("asyncio/")}
    files = with_flash_module(files)
    big = bytes((i * 7 + (i >> 8)) & 0xFF for i in range(BIG))
    with tempfile.TemporaryDirectory(prefix="msw-bigtask-") as tmp:
        image = Path(tmp) / "romfs.img"
        data_files = romfs_image(files, image)
        with qemu_firmware.Qemu("MPS2_AN500", heap, romfs_image=image, esp32=True) as board:
            install(board, data_files)
            out = asyncio.run(_serve(board, big))
    info = out["info"]
    assert info.board == BOARD and info.heap_total <= heap and info.max_frame == 1024
    assert out["first"] == [hashlib.sha256(out["small"]).digest()]
    assert out["free"] >= BIG + 20  # what the master checked before it sent the task
    assert out["digest"] == [hashlib.sha256(big).digest()]
    assert out["again"] == [hashlib.sha256(big[::-1]).digest()]
