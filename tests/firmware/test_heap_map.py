"""tools/heap_map.py as docs/qemu.md tells it: the ESP32 set joins the ESP32-like QEMU build
over its UART and a kernel walks the GC's allocation table. Its modules from a ROMFS image
(the file system's run differs only in where the bytecode lies), on the ESP32's own heap:
from ROMFS the walk's tables fit there, and that firmware is the one the other ESP32 tests
boot (support/prebuild.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from microswarm import paths
from support.qemu import firmware_tool

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

COMMAND = "python tools/heap_map.py --board esp32-devkit-w5500 --romfs"
BOARD = "esp32-devkit-w5500"


def _run_as_written(command: str, *more: str) -> tuple[dict, int]:
    """`command` run as docs/qemu.md gives it (plus `more` and --json) on the ESP32's
    heap's firmware (skipped where it cannot be built): its report and that heap."""
    heap = int(paths.load_board(BOARD)["heap_bytes"])
    firmware_tool("MPS2_AN500", heap, esp32=True)
    argv = [sys.executable, *command.split()[1:], *more, "--json"]
    proc = subprocess.run(argv, cwd=paths.tools_dir().parent, capture_output=True, text=True,
                          timeout=540)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout), heap


def test_heap_map_as_written():
    heap = int(paths.load_board(BOARD)["heap_bytes"])
    found, _ = _run_as_written(COMMAND, "--heap", str(heap))
    kinds = found["types"]
    assert found["mapped"] == sum(size for _, size in kinds.values())
    # every allocation in use is in the map once, the walk's own tables left out (its
    # closures and the task's few objects make the difference)
    assert abs(found["used_before"] - found["mapped"]) < 1024, found
    assert kinds["qstr pool"][1] >= 2048  # 320 names' pool at least
    assert kinds["function"][1] > 0 and kinds["dict table (globals)"][1] > 0
    # the serial link's frame buffers, max_frame (+ header and COBS overhead)
    max_frame = paths.load_board(BOARD)["max_frame"]
    assert kinds["bytearray data (frame_serial.Deframer)"][1] >= max_frame
    assert kinds["bytearray data (frame._FrameEncoder)"][1] >= max_frame
    assert [size for size, _ in found["big"]] == sorted(
        (size for size, _ in found["big"]), reverse=True)


LAYOUT = "python tools/heap_map.py --layout"


def test_layout_as_written():
    """The big task's node (tests/firmware/test_qemu_bigtask.py's setup) mapped block by
    block: every block is in the map once, and the largest free run is the map's."""
    found, heap = _run_as_written(LAYOUT)
    import heap_map  # (tools/: on the path once _run_as_written ran)

    layout = found["layout"]
    assert len(layout) == found["blocks"] and 16 * found["blocks"] <= heap
    assert set(layout) <= set(heap_map.LETTERS) | {"=", "."}
    assert 16 * layout.count(".") == found["free"]  # what the collection left free
    runs = heap_map._runs(layout)
    assert 16 * max(n for _, n, free in runs if free) == found["largest_free"]
    assert sum(n for _, n, _ in runs) == len(layout)
    assert layout.count("Q") == len(found["pools"]) >= 5  # the qstr pools: 20 to 320 names
    assert "free runs" in heap_map.layout_report(found)
