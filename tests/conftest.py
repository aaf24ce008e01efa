"""Fixtures shared by every test area. Areas keep their own fixtures next to their tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from microswarm import paths
from microswarm.vm import run_script

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def micropython() -> str:
    return paths.micropython_command()


@pytest.fixture(scope="session")
def run_vm(micropython):
    """Run a MicroPython script in the real VM with firmware/ on its path; return stdout.

    Usage: run_vm(source, heap=None, stdin=b"", timeout=60). A non-zero exit fails the test
    with the VM's stderr.
    """

    def run(source: str, heap: int | None = None, stdin: bytes = b"", timeout: float = 60) -> str:
        return run_script(source, cwd=paths.firmware_dir(), heap=heap, stdin=stdin,
                          timeout=timeout, micropython=micropython)

    return run


def pytest_addoption(parser: pytest.Parser) -> None:
    """Options of the hardware-in-the-loop suite (tests/hil); see docs/hil.md."""
    group = parser.getgroup("hil", "hardware-in-the-loop conformance suite (tests/hil)")
    group.addoption("--board-port", default=None,
                    help="serial port of a real board (env MICROSWARM_BOARD_PORT)")
    group.addoption("--board", default=None,
                    help="board definition of that board (env MICROSWARM_BOARD)")
    group.addoption("--board-host", default=None,
                    help="the board's IP address: test its TCP link (env MICROSWARM_BOARD_HOST)")
