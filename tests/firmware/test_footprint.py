"""The firmware's resident heap on MicroPython's own 32-bit firmware (ports/qemu under
qemu-system-arm, tools/qemu_firmware.py, the build with asyncio frozen and in C as the
boards' firmware carries it): `microswarm bench footprint` for the ESP32 board, the
benchmark's headline board. Skips with the reason where the firmware cannot be built (no
MicroPython source, no cross compiler or QEMU)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from microswarm import paths
from microswarm.bench import footprint
from support.qemu import firmware_tool

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
BOARD = "esp32-devkit-w5500"


@pytest.fixture(scope="module")
def qemu_firmware():
    return firmware_tool("MPS2_AN500", paths.load_board(BOARD)["heap_bytes"], esp32=True)


def test_bench_footprint_measures_every_module_on_32_bit(qemu_firmware):
    out = subprocess.run(
        [sys.executable, "-m", "microswarm.cli", "bench", "footprint", "--json",
         "--board", "esp32-devkit-w5500", "--no-join"],
        capture_output=True, text=True, timeout=800)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout)
    board = report["boards"]["esp32-devkit-w5500"]
    qemu, x64 = board["qemu"], board["x64"]
    assert qemu["mpy_arch"] == "armv7emsp" and not qemu["native_module"]
    # asyncio as the ESP32 firmware carries it (frozen, `_asyncio` in C), not shipped as
    # .mpy; the imports on at least footprint.MODULES_HEAP (the REPL's and the GC's own
    # blocks taken off): they load more than a node holds; a join runs on the board's heap
    assert qemu["asyncio"] == "frozen, _asyncio in C"
    assert report["firmware_build"].startswith("asyncio frozen")
    heap = footprint.modules_heap(paths.load_board(BOARD)["heap_bytes"])
    assert heap - 4096 < qemu["modules_heap_total"] <= heap
    assert set(qemu["modules"]) == {
        "asyncio", "msgdefs", "cbor", "msw_texts", "auth", "frame", "frame_serial", "frame_tcp",
        "config", "board", "msw_kernel", "engine", "engine_join", "link_serial",
        "link_tcp", "wiznet_dhcp", "wiznet", "wiznet_up", "worker", "worker_up", "kernels"}
    assert all(size > 0 for size in qemu["modules"].values()), qemu["modules"]
    # for an error text, read at boot, for the join, around a DHCP lease, the worker's
    # bring-up, on the first task: not held by an idle node
    assert qemu["on_demand"] == ["msw_texts", "config", "engine_join", "wiznet_dhcp",
                                 "wiznet_up", "worker_up", "kernels"]
    assert set(report["on_demand_when"]) == set(qemu["on_demand"])  # each one said
    assert qemu["modules_total"] == sum(v for n, v in qemu["modules"].items()
                                        if n not in qemu["on_demand"])
    # 64-bit objects are larger: the same modules hold more heap in the x64 VM
    assert x64["modules_total"] - x64["modules"]["asyncio"] > (
        qemu["modules_total"] - qemu["modules"]["asyncio"])
    headline = report["headline"]
    assert headline["value"] == qemu["modules_total"] - qemu["modules"]["asyncio"]
    assert headline["unit"] == "bytes" and headline["baseline"] == 40 * 1024
    # beside it, the same .mpy files imported in place from a ROMFS image (found in /rom):
    # each module's code and constants stay in the image, so the modules hold no more heap,
    # and the set holds less. Compared in import order, each run of modules from the first
    # against the same run from the file system, give or take one 16-byte heap block: a
    # module's own figure also holds what its import happened to allocate for the others (a
    # qstr pool when the one before is full, 4.5 KB for 640 names, falls in whichever import
    # fills it: worker's from ROMFS and worker_up's from the file system once msw_texts
    # took the error texts out; `links`, a few dozen bytes of code, read 192 from the file
    # system and 240 from ROMFS in one run)
    romfs = board["romfs"]
    assert romfs["romfs_image_bytes"] > 0 and romfs["on_demand"] == qemu["on_demand"]
    assert set(romfs["modules"]) == set(qemu["modules"])
    from_romfs = from_fs = 0
    for name in [n for n in footprint.ORDER if n in qemu["modules"]]:  # (import order)
        from_romfs += romfs["modules"][name]
        from_fs += qemu["modules"][name]
        assert 0 < romfs["modules"][name] and from_romfs <= from_fs + 16, (name, romfs)
    assert sum(romfs["modules"].values()) < sum(qemu["modules"].values())
    assert board["romfs_total"] == romfs["modules_total"] - romfs["modules"]["asyncio"]
    assert report["romfs_headline"]["value"] == board["romfs_total"] < headline["value"]
