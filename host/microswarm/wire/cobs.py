"""Serial framing: Consistent Overhead Byte Stuffing (COBS) plus a 0x00 delimiter.

The encoding is the classic one (Cheshire and Baker): each block is a code byte n (1..255)
followed by n-1 non-zero bytes; a block with n < 255 stands for its bytes plus one zero,
except at the very end. The encoder writes no empty final block after a last run of
exactly 254 non-zero bytes, so every input has exactly one encoding.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from microswarm.protocol.catalog import MAC_TRAILER_SIZE, ErrorCode

from .errors import FrameError
from .frame import MAX_FRAME, Frame, decode_frame

if TYPE_CHECKING:
    from .mac import LinkAuth

DELIMITER = b"\x00"
_BLOCK = 254


def cobs_encode(data: bytes | bytearray | memoryview) -> bytes:
    out = bytearray()
    pieces = bytes(data).split(b"\x00")
    last = len(pieces) - 1
    for index, piece in enumerate(pieces):
        start, size = 0, len(piece)
        while size - start >= _BLOCK:
            out.append(0xFF)
            out += piece[start : start + _BLOCK]
            start += _BLOCK
        if index == last and size and start == size:
            break
        out.append(size - start + 1)
        out += piece[start:]
    return bytes(out)


def cobs_decode(data: bytes | bytearray | memoryview) -> bytes:
    """Invert cobs_encode; FrameError(TRUNCATED) for input no encoder produces."""
    data = bytes(data)
    if not data:
        raise FrameError(ErrorCode.TRUNCATED, "empty COBS frame")
    if b"\x00" in data:
        raise FrameError(ErrorCode.TRUNCATED, "zero byte inside a COBS frame")
    out = bytearray()
    pos, size = 0, len(data)
    while pos < size:
        code = data[pos]
        end = pos + code
        if end > size:
            raise FrameError(ErrorCode.TRUNCATED, "COBS block runs past the end of the frame")
        out += data[pos + 1 : end]
        pos = end
        if code != 0xFF and pos < size:
            out.append(0)
    return bytes(out)


def max_encoded_size(size: int) -> int:
    """Upper bound of len(cobs_encode(x)) for len(x) == size."""
    return size + size // _BLOCK + 1


def serial_encode(frame: bytes | bytearray | memoryview) -> bytes:
    """A frame as it goes on a serial line: COBS, then the delimiter."""
    return cobs_encode(frame) + DELIMITER


class SerialDeframer:
    """Split a serial byte stream into frames at 0x00 delimiters.

    Never fatal: a corrupt frame (bad COBS, CRC, header or payload) becomes a FrameError in
    the output, is counted in `bad_frames`, and reception resumes after the next delimiter.
    Bytes between delimiters beyond the largest valid encoded frame are dropped as they
    arrive, so memory stays bounded whatever the line carries. Empty frames (two delimiters
    in a row, as senders may use to resynchronise) are ignored. Set `auth` (a LinkAuth)
    to check frame MACs.
    """

    def __init__(self, max_frame: int = MAX_FRAME, *, validate: bool = True) -> None:
        self.max_frame = max_frame
        self.validate = validate
        self.bad_frames = 0
        self.auth: LinkAuth | None = None
        self._limit = max_encoded_size(max_frame + MAC_TRAILER_SIZE)
        self._buf = bytearray()
        self._overflow = False

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def set_max_frame(self, max_frame: int) -> None:
        """The limit negotiated at the join, for the frames that follow."""
        self.max_frame = max_frame
        self._limit = max_encoded_size(max_frame + MAC_TRAILER_SIZE)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame | FrameError]:
        out: list[Frame | FrameError] = []
        data = bytes(data)
        start = 0
        while True:
            end = data.find(0, start)
            if end < 0:
                self._append(data, start, len(data))
                return out
            self._append(data, start, end)
            start = end + 1
            if self._overflow:
                self._overflow = False
                self._bad(out, FrameError(ErrorCode.TOO_LARGE, "serial frame over the limit"))
            elif self._buf:
                encoded = bytes(self._buf)
                self._buf.clear()
                try:
                    frame = decode_frame(
                        cobs_decode(encoded), max_frame=self.max_frame, validate=self.validate,
                        auth=self.auth,
                    )
                except FrameError as exc:
                    self._bad(out, exc)
                else:
                    out.append(frame)

    def _append(self, data: bytes, start: int, end: int) -> None:
        if self._overflow or start == end:
            return
        if len(self._buf) + end - start > self._limit:
            self._buf.clear()
            self._overflow = True
            return
        self._buf += data[start:end]

    def _bad(self, out: list[Frame | FrameError], error: FrameError) -> None:
        error.fatal = False
        error.__traceback__ = None
        self.bad_frames += 1
        out.append(error)
