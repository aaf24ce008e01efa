"""A node's outgoing messages on the host: the in-process, local and simulated nodes frame
what their engine sends as a board's firmware does (frame.FrameWriter.frames): one
sequence numbering per session, a message over the link's frame limit as CHUNKs with the
next stream number (streams count chunked messages only), a message over the master's
`max_message` refused as TOO_LARGE before any frame of it is sealed, frame MACs once on.
The differential test (tests/firmware/test_engine_differential.py) holds the two to the
same bytes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from microswarm.protocol.catalog import FRAME_OVERHEAD, ErrorCode

from .cbor import encode_payload
from .chunks import encode_message
from .errors import FrameError
from .frame import pack_frame

if TYPE_CHECKING:
    from .mac import LinkAuth


class MessageWriter:
    __slots__ = ("seq", "stream", "auth")

    def __init__(self) -> None:
        self.seq = 0
        self.stream = 0
        self.auth: LinkAuth | None = None

    def frames(self, msg_type: int, payload: Any, max_frame: int,
               max_message: int = 0) -> list[bytes]:
        """The frames of one message. Raises FrameError (TOO_LARGE, BAD_PAYLOAD) or
        TypeError before anything is numbered or sealed."""
        body = encode_payload(payload)
        total = len(body)
        seq = self.seq
        if total + FRAME_OVERHEAD <= max_frame:
            self.seq = (seq + 1) & 0xFFFF
            return [pack_frame(msg_type, body, seq, 0, self.auth)]
        if max_message and total > max_message:
            raise FrameError(ErrorCode.TOO_LARGE, f"message of {total} bytes over the "
                             f"peer's limit of {max_message}")
        stream = self.stream
        frames = encode_message(msg_type, payload, seq=seq, max_frame=max_frame,
                                stream=stream, validate=False, auth=self.auth)
        self.stream = (stream + 1) & 0xFFFF
        self.seq = (seq + len(frames)) & 0xFFFF
        return frames
