"""The worker on MicroPython's own 32-bit firmware (ports/qemu on a Cortex-M7 under
qemu-system-arm), the files `microswarm deploy` ships (.mpy for armv7emsp, the armv7emsp
native module when built), joins a real master over the emulated UART and runs tasks. The
firmware is built with the board's heap (pico2-usb: a serial-only board). The .mpy files
run from a ROMFS image and the data files are on the emulated flash: copied over the UART
(about 2 KB/s) the whole set took a minute of make test's budget; each module's import from
the flash file system is measured on this firmware by test_footprint.py.

This port has no `_asyncio` C module: the worker runs on asyncio's Python package, whose
task queue keeps links to finished tasks, so the previous session's objects can stay
reachable while the next one starts (the worker keeps its frame buffers for the whole
boot, so a redial allocates no new 16 KB buffer). The worker's first HELLO follows what
the raw REPL printed last (its "OK"); the delimiter the serial link writes first keeps the
two apart."""

from __future__ import annotations

import asyncio
import sys
import tempfile
from array import array
from pathlib import Path

import pytest

from microswarm import bundle, paths
from support.qemu import firmware_tool

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

BOARD = "pico2-usb"
KEY = bytes(range(40, 72))


async def _serve(board) -> dict:
    from microswarm.master import Master

    async with Master(key=KEY, cluster="qemu", tcp_port=None, udp_port=None) as master:
        board.run_detached("import main")
        await master.open_serial(board.port)
        (info,) = await master.wait_for_nodes(1, 90)
        a = array("b", range(-8, 8))
        echo = await master.submit("echo", [[b"q" * 3000], [{"k": [1, 2.5]}]])
        product = await master.submit("matmul", [[a, a, 4, 4, 4]])
        return {"info": info, "echo": echo, "product": product, "a": a}


def test_worker_joins_a_master_over_the_emulated_uart_and_runs_tasks():
    from microswarm.bench.footprint import deploy_files, romfs_image

    heap = paths.load_board(BOARD)["heap_bytes"]
    qemu_firmware = firmware_tool("MPS2_AN500", heap)
    config = bundle.render_config("qemu-1", "qemu", KEY, "", "serial")
    # the plain build has no asyncio: its Python package goes in the image with the set
    files = deploy_files(BOARD, config, asyncio_package=True)
    with tempfile.TemporaryDirectory(prefix="msw-qemu-worker-") as tmp:
        image = Path(tmp) / "romfs.img"
        data_files = romfs_image(files, image)
        with qemu_firmware.Qemu("MPS2_AN500", heap, romfs_image=image) as board:
            board.install(data_files)
            out = asyncio.run(_serve(board))
    info = out["info"]
    assert info.node_id == "qemu-1" and info.board == BOARD and info.link == "serial"
    assert info.heap_total <= heap
    if bundle.NATIVE_MODULE in files:
        assert info.native_arch == "armv7emsp" and "matmul" in info.native_kernels
    assert out["echo"] == [b"q" * 3000, {"k": [1, 2.5]}]
    a = out["a"]
    assert list(out["product"][0]) == [sum(a[r * 4 + p] * a[p * 4 + c] for p in range(4))
                                       for r in range(4) for c in range(4)]
