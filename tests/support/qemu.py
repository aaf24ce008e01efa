"""The project's QEMU firmware for a test: tools/qemu_firmware.py imported, the firmware
asked for built (or found in its cache), the test skipped where it cannot be had."""

from __future__ import annotations

import sys
from types import ModuleType

import pytest

from microswarm import paths


def firmware_tool(board: str = "MPS2_AN500", heap: int | None = None,
                  esp32: bool = False) -> ModuleType:
    """qemu_firmware, with firmware(board, heap, esp32=esp32) built; skips the test with
    the tool's reason (no MicroPython source, no ARM compiler, no qemu-system-arm)."""
    tools = str(paths.tools_dir())
    if tools not in sys.path:
        sys.path.insert(0, tools)
    import qemu_firmware

    try:
        qemu_firmware.firmware(board, heap, esp32=esp32)
    except qemu_firmware.QemuUnavailable as exc:
        pytest.skip(f"QEMU firmware: {exc}")
    return qemu_firmware
