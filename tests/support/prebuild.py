"""The QEMU firmwares the collected tests boot, built in the background while the tests
before them run.

A cold `make test` builds five ports/qemu firmwares (tools/qemu_firmware.py), about 25 s
each (the ESP32-like one, with frozen asyncio, about 50 s with its mpy-cross), and the
test that first asks for one waits for its build with the rest of the suite behind it.
Started when collection finishes, one build after the other at a low priority (`nice`),
they use the CPU the serial suite leaves idle; a test that asks for a firmware
still being built waits for that build (qemu_firmware's lock) and finds its
firmware.elf. A build that fails here fails again in the test that needs it, which then
says why (or skips where QEMU cannot be had)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from microswarm import paths

NICE = 10


def _heap(board: str) -> int:
    return int(paths.load_board(board)["heap_bytes"])


# (QEMU board, heap, the ESP32-like build: qemu_firmware.firmware(..., esp32=True))
Firmware = tuple[str, int | None, bool]


def needs() -> dict[str, list[Firmware]]:
    """test id (or its file) -> the (QEMU board, heap, esp32) firmwares it boots."""
    return {
        # --heap 111168 as the docs write it (the headline board's heap) and --romfs: the
        # default build, whose board file names the ROMFS partition
        "tests/docs/test_commands.py::test_source_tree_tools_as_written": [
            ("MPS2_AN500", 111168, False), ("MPS2_AN500", None, False)],
        # bench footprint: the headline board on its own heap, asyncio as its firmware
        # carries it (the ROMFS image too: the board file names the partition)
        "tests/firmware/test_footprint.py": [
            ("MPS2_AN500", _heap("esp32-devkit-w5500"), True)],
        # the ESP32's heap, asyncio carried as the ESP32 firmware carries it
        "tests/firmware/test_qemu_bigtask.py": [
            ("MPS2_AN500", _heap("esp32-devkit-w5500"), True)],
        "tests/firmware/test_qemu_worker.py": [("MPS2_AN500", _heap("pico2-usb"), False)],
        # the heap map from ROMFS, on the ESP32's heap and its asyncio
        "tests/firmware/test_heap_map.py": [
            ("MPS2_AN500", _heap("esp32-devkit-w5500"), True)],
        # tools/mpy_names.py --qemu: the TCP set's imports on the ESP32-like build
        "tests/firmware/test_names.py::test_tcp_count_is_what_the_board_interns": [
            ("MPS2_AN500", _heap("esp32-devkit-w5500"), True)],
        # deploy --romfs to the ESP32's heap and asyncio, written into the ROM partition
        "tests/firmware/test_qemu_deploy_romfs.py": [
            ("MPS2_AN500", _heap("esp32-devkit-w5500"), True)],
        # the writable ROM partition's flash semantics, on the default build
        "tests/firmware/test_qemu_rom_ioctl.py": [("MPS2_AN500", None, False)],
        "tests/native/test_qemu.py": [("MPS2_AN500", None, False), ("MPS2_AN385", None, False)],
    }


def wanted(test_ids: list[str]) -> list[Firmware]:
    """The firmwares the tests (ids in run order) boot, in the order they are needed."""
    table = needs()
    out: list[Firmware] = []
    for test_id in test_ids:
        for prefix, builds in table.items():
            if test_id == prefix or test_id.startswith(prefix + "::"):
                out += [b for b in builds if b not in out]
    return out


class Prebuild:
    """Builds `firmwares` one after the other on a thread of its own; stop() ends it."""

    def __init__(self, firmwares: list[Firmware], repo: Path) -> None:
        self.firmwares = firmwares
        self.tool = repo / "tools" / "qemu_firmware.py"
        self._proc: subprocess.Popen | None = None
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="qemu-prebuild", daemon=True)

    def start(self) -> Prebuild:
        if self.firmwares and self.tool.is_file():
            self._thread.start()
        return self

    def _run(self) -> None:
        for board, heap, esp32 in self.firmwares:
            argv = ["nice", "-n", str(NICE), sys.executable, str(self.tool), "--board", board]
            if heap:
                argv += ["--heap", str(heap)]
            if esp32:
                argv.append("--esp32")
            with self._lock:
                if self._stopped.is_set():
                    return
                self._proc = subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL, start_new_session=True)
            if self._proc.wait() == 2:  # no MicroPython source or no QEMU: no more tries
                return

    def stop(self) -> None:
        """End a build still running (the next run's build goes on from its objects)."""
        with self._lock:
            self._stopped.set()
            proc = self._proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)
        if self._thread.is_alive():
            self._thread.join(5)
