"""Fixtures for virtual-board tests: a blank board with small boot/main files of a test's
own, and a serial console opened with pyserial."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import serial

from microswarm.deploy.mpremote import Mpremote
from microswarm.vboard import VirtualBoard


class Console:
    """The board's serial port seen from the host, with deadlines on every read."""

    def __init__(self, port: str) -> None:
        self.serial = serial.Serial(port, timeout=0.05)
        self.seen = bytearray()

    def write(self, data: bytes) -> None:
        self.serial.write(data)
        self.serial.flush()

    def expect(self, marker: bytes, timeout: float = 10.0) -> bytes:
        """Read until `marker`; return everything read up to and including it."""
        deadline = time.monotonic() + timeout
        while marker not in self.seen:
            if time.monotonic() > deadline:
                raise AssertionError(f"no {marker!r} in {bytes(self.seen[-400:])!r}")
            self.seen += self.serial.read(4096)
        end = self.seen.index(marker) + len(marker)
        got = bytes(self.seen[:end])
        del self.seen[:end]
        return got

    def raw_exec(self, code: str, timeout: float = 10.0) -> bytes:
        """Run code in the raw REPL (already entered); return its output."""
        self.write(code.encode() + b"\x04")
        self.expect(b"OK", timeout)
        out = self.expect(b"\x04", timeout)[:-1]
        err = self.expect(b"\x04>", timeout)[:-2]
        assert not err, err.decode(errors="replace")
        return out

    def close(self) -> None:
        self.serial.close()


@pytest.fixture
def blank_board(tmp_path: Path) -> Iterator[Callable[..., VirtualBoard]]:
    """Start a board whose flash holds only the files given: make(files={"main.py": ...})."""
    boards: list[VirtualBoard] = []

    def make(files: dict[str, str] | None = None, **options) -> VirtualBoard:
        workdir = tmp_path / f"board{len(boards)}"
        flash = workdir / "flash"
        flash.mkdir(parents=True)
        for name, text in (files or {}).items():
            (flash / name).write_text(text)
        vb = VirtualBoard(workdir=workdir, firmware=False, **options)
        boards.append(vb)
        return vb.start()

    yield make
    for vb in boards:
        vb.stop()


@pytest.fixture
def console_of() -> Iterator[Callable[[str], Console]]:
    consoles: list[Console] = []

    def open_console(port: str) -> Console:
        console = Console(port)
        consoles.append(console)
        return console

    yield open_console
    for console in consoles:
        console.close()


@pytest.fixture
def mpremote_of() -> Callable[[str], Mpremote]:
    return lambda port: Mpremote(port, timeout=20)
