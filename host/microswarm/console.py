"""Why a board is not working, from what it prints on its console.

A node that cannot join says so on its console: the worker logs one line ("microswarm:
auth: master refused the key: ...", "microswarm: link down: ..."), and an exception that
ends a program prints a traceback whose last line names it ("ImportError: can't import
name SPI"). `ConsoleErrors` picks those lines out of the console byte stream (which also
carries REPL traffic and, on a serial link, binary frames), so the virtual board, deploy
and the HIL target can report the board's last error instead of only a timeout.
"""

from __future__ import annotations

WORKER_PREFIX = b"microswarm: "
TRACEBACK = b"Traceback (most recent call last):"
MAX_LINE = 400  # a longer "line" is binary traffic, not a message


class ConsoleErrors:
    """Feed console output in any chunks; `feed` returns the error lines it completes."""

    def __init__(self, keep: int = 8) -> None:
        self.keep = keep
        self.recent: list[str] = []  # the last `keep` error lines, oldest first
        self._tail = b""  # end of the last chunk, in case a marker straddles two
        self._line: bytearray | None = None  # a worker line being collected
        self._traceback: bytearray | None = None  # a traceback being collected

    @property
    def last(self) -> str | None:
        return self.recent[-1] if self.recent else None

    def feed(self, data: bytes) -> list[str]:
        found: list[str] = []
        window = self._tail + bytes(data)
        self._tail = b""
        while window:
            if self._line is not None or self._traceback is not None:
                window = self._collect(window, found)
                continue
            at, marker = _first_marker(window)
            if marker is None:
                self._tail = window[-(len(TRACEBACK) - 1):]
                break
            window = window[at + len(marker):]
            if marker == WORKER_PREFIX:
                self._line = bytearray(WORKER_PREFIX)
            else:
                self._traceback = bytearray()
        for text in found:
            self.recent.append(text)
        del self.recent[: -self.keep]
        return found

    def _collect(self, window: bytes, found: list[str]) -> bytes:
        end = window.find(b"\n")
        if end < 0:
            target = self._line if self._line is not None else self._traceback
            assert target is not None
            target += window
            if len(target) > MAX_LINE * 8:
                self._line = self._traceback = None
            return b""
        piece, rest = window[:end], window[end + 1:]
        if self._line is not None:
            line = bytes(self._line + piece)
            self._line = None
            if len(line) <= MAX_LINE:
                found.append(_text(line))
            return rest
        assert self._traceback is not None
        line = bytes(self._traceback + piece)
        self._traceback = bytearray()
        if line.strip() and not line[:1].isspace():
            # the first unindented line after the header names the exception
            self._traceback = None
            if len(line) <= MAX_LINE:
                found.append(_text(line))
        elif len(line) > MAX_LINE:
            self._traceback = None
        return rest


def _first_marker(window: bytes) -> tuple[int, bytes | None]:
    best, which = -1, None
    for marker in (WORKER_PREFIX, TRACEBACK):
        at = window.find(marker)
        if at >= 0 and (best < 0 or at < best):
            best, which = at, marker
    return best, which


def _text(line: bytes) -> str:
    return line.decode(errors="replace").strip()
