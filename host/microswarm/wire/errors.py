"""The one exception every codec in this package raises for bad input."""

from __future__ import annotations

from microswarm.protocol.catalog import ErrorCode


class FrameError(Exception):
    """Input refused by the codec, with the ErrorCode to put in an ERROR reply.

    `seq` is the offending frame's sequence number when its header was readable. `fatal`
    means the byte stream cannot be trusted past this point (bad version, absurd length):
    the receiver must drop the link instead of skipping the frame.
    """

    def __init__(
        self, code: ErrorCode, text: str, seq: int | None = None, *, fatal: bool = False
    ) -> None:
        super().__init__(f"{code.name}: {text}")
        self.code = code
        self.text = text
        self.seq = seq
        self.fatal = fatal

    def __repr__(self) -> str:
        return f"FrameError({self.code.name}, {self.text!r}, seq={self.seq}, fatal={self.fatal})"
