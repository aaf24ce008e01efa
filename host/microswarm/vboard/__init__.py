"""Virtual boards: the real firmware in the MicroPython unix port, behind a supervisor
that makes it behave like a board on a serial port (see docs/vboard.md)."""

from microswarm.vboard.board import VirtualBoard, VirtualBoardError

__all__ = ["VirtualBoard", "VirtualBoardError"]
