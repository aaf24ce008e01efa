"""A virtual board's Ethernet: the board's WIZnet chip played by the register-level model
(tools/wiznet_model, bridged to loopback sockets) on an emulated SPI bus, and a DHCP server
on its LAN.

The VM's `machine.SPI` and `machine.Pin` come from the model's bus stand-in
(tools/wiznet_model/vm/machine.py), loaded under the name BUS_MODULE and wired to the pins
of the board file (`spi.cs`, `spi.rst`, `spi.int`), so the board's own driver
(`net_driver: "wiznet"`) runs unchanged and every register access crosses the bus.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from microswarm import paths
from microswarm.vboard.dhcp import DhcpServer

BUS_MODULE = "_msw_bus"  # the bus stand-in, as the VM imports it from the supervisor's mount
DHCP_PORT = 67


class NicError(RuntimeError):
    """The board's network chip cannot be emulated here."""


def model_dir() -> Path:
    tools = paths.tools_dir()
    model = tools / "wiznet_model" if tools is not None else None
    if model is None or not (model / "vm" / "machine.py").is_file():
        raise NicError("a virtual board with a WIZnet chip needs the chip model of a source "
                       "checkout (tools/wiznet_model), which this installation lacks")
    return model


class VirtualNic:
    """The chip model of one board (started with `start()`), and its LAN's DHCP server."""

    def __init__(self, board_def: dict, on_lease: Callable[[str], None] | None = None) -> None:
        kind = board_def.get("nic")
        spi = board_def.get("spi")
        if board_def.get("net_driver") != "wiznet" or kind not in ("w5500", "w6100") or not spi:
            raise NicError(f"board {board_def.get('name')!r} has no WIZnet chip on SPI")
        model = model_dir()
        if str(model.parent) not in sys.path:
            sys.path.insert(0, str(model.parent))
        from wiznet_model import ModelServer

        self.kind = kind
        self.pins = f"cs={spi['cs']},rst={spi['rst']},int={spi['int']}"
        self.bus_source = (model / "vm" / "machine.py").read_text()
        self.dhcp = DhcpServer(on_lease=on_lease)
        self.model = ModelServer(kind)
        self.model.chip.port_map[DHCP_PORT] = self.dhcp.port
        self._started = False

    def start(self) -> None:
        self.model.start()
        self._started = True

    def env(self) -> dict[str, str]:
        """What the VM's bus stand-in reads: where the model listens, which pins it has."""
        return {"WIZNET_MODEL": f"127.0.0.1:{self.model.port}", "WIZNET_PINS": self.pins}

    def close(self) -> None:
        if self._started:
            self.model.close()
        self.dhcp.close()


def needs_nic(board_def: dict) -> bool:
    return board_def.get("net_driver") == "wiznet"
