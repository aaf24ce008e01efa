"""The microswarm pytest plugin, registered under the ``pytest11`` entry point: installing
microswarm gives any repository's tests these options and fixtures (docs/hil.md).

Options: ``--board-port PORT --board NAME [--board-host IP]`` name a real board; without
them the fixtures start a virtual board (the firmware in the MicroPython VM).
"""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("microswarm", "microswarm boards (conformance suite, board tests)")
    group.addoption("--board-port", default=None,
                    help="serial port of a real board (env MICROSWARM_BOARD_PORT)")
    group.addoption("--board", default=None,
                    help="board definition of that board (env MICROSWARM_BOARD)")
    group.addoption("--board-host", default=None,
                    help="the board's IP address: test its TCP link (env MICROSWARM_BOARD_HOST)")
