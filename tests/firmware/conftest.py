"""Fixtures for the firmware tests: a board's flash laid out by microswarm.bundle in a tmp
folder, and the real MicroPython VM run there with the board's heap."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from microswarm import bundle, paths
from microswarm.vm import run_script

KEY = bytes(range(32))
CLUSTER = "test"


def make_flash(
    root: Path,
    board: str = "unix",
    *,
    node_id: str = "vm-1",
    master: str = "",
    link: str = "tcp",
    key: bytes = KEY,
    extra: dict | None = None,
    compiled: bool = True,
    kernels: tuple[Path, ...] = (),
) -> Path:
    """Lay out a board's flash in `root` and return it: the bundle, with the modules
    compiled to .mpy as `microswarm deploy` puts them on a board (compiling .py source on
    the board itself needs more heap than an ESP32 has)."""
    import json

    from microswarm.deploy.build import compile_layout

    config = json.loads(bundle.render_config(node_id, CLUSTER, key, master, link))
    config.update(extra or {})
    files = bundle.layout(bundle.virtual_board(board), config, kernels=kernels)
    if compiled:
        files = _compiled(tuple(sorted(files.items())), compile_layout)
    bundle.write_layout(root, files)
    return root


_COMPILED: dict[tuple, dict[str, bytes]] = {}


def _compiled(files: tuple, compile_layout) -> dict[str, bytes]:
    if files not in _COMPILED:
        _COMPILED[files] = compile_layout(dict(files), bundle.VM_ARCH)
    return dict(_COMPILED[files])


def heap_of(board: str) -> int:
    return int(paths.load_board(board)["heap_bytes"])


@pytest.fixture
def vm_script(micropython):
    """Run a script in the VM inside a flash folder: vm_script(flash, source, heap, stdin);
    `modules`: this folder's modules the script imports, copied into the flash folder first."""

    def run(flash: Path, source: str, heap: int, stdin: bytes = b"", timeout: float = 60,
            modules: tuple[str, ...] = ()) -> str:
        for name in modules:
            shutil.copy(Path(__file__).parent / name, flash / name)
        return run_script(source, cwd=flash, heap=heap, stdin=stdin, timeout=timeout,
                          micropython=micropython)

    return run


RESIDENT_PROBE = """
import gc
gc.collect()
before = gc.mem_alloc()
import asyncio, auth, board, cbor, config, frame, kernels, link_serial, link_tcp, msgdefs, worker
gc.collect()
print(gc.mem_alloc() - before)
"""


def firmware_resident(micropython: str, flash: Path) -> int:
    """Heap bytes the imported firmware modules hold in this (64-bit) VM: on a board whose
    modules are frozen into the firmware image that code lives in flash instead."""
    proc = subprocess.run([micropython, "-c", RESIDENT_PROBE], cwd=flash, capture_output=True,
                          timeout=30, check=True)
    return int(proc.stdout)
