"""Messages larger than one frame: splitting into CHUNK frames and putting them back.

A CHUNK payload is {stream, inner_type, total, offset, data}; every chunk but the last has
flag MORE. Each chunk carries the same number of bytes, D = max_frame - FRAME_OVERHEAD -
len(CBOR({0: stream, 1: inner_type, 2: total, 3: total, 4: b""})) - 2 (the 2 leaves room
for the longest byte-string header), except the last, which carries the rest. SPEC.md
states the same rule, so every sender produces the same frames.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from microswarm.protocol.catalog import (
    CATALOG,
    FLAG_MORE,
    FRAME_OVERHEAD,
    ErrorCode,
    MsgType,
)

from .cbor import decode_payload, encode_payload
from .errors import FrameError
from .frame import MAX_FRAME, Frame, pack_frame
from .validate import validate_payload

if TYPE_CHECKING:
    from .mac import LinkAuth

_CHUNK = int(MsgType.CHUNK)
_STREAM, _INNER, _TOTAL, _OFFSET, _DATA = (
    CATALOG[MsgType.CHUNK].field(n).key for n in ("stream", "inner_type", "total", "offset", "data")
)
DEFAULT_MAX_MESSAGE = 1 << 20


def chunk_room(max_frame: int, stream: int, inner_type: int, total: int) -> int:
    """Payload bytes each CHUNK frame carries (all but the last)."""
    empty = encode_payload(
        {_STREAM: stream, _INNER: inner_type, _TOTAL: total, _OFFSET: total, _DATA: b""}
    )
    return max_frame - FRAME_OVERHEAD - len(empty) - 2


def encode_message(
    msg_type: int,
    payload: Any,
    *,
    seq: int = 0,
    max_frame: int = MAX_FRAME,
    stream: int = 0,
    validate: bool = True,
    auth: LinkAuth | None = None,
) -> list[bytes]:
    """One frame if the message fits in `max_frame`, else CHUNK frames numbered seq, seq+1,
    ... (mod 65536). `stream` must be unique among this sender's unfinished streams."""
    if validate:
        validate_payload(msg_type, payload, seq)
    body = encode_payload(payload)
    max_frame = min(max_frame, MAX_FRAME)
    if len(body) + FRAME_OVERHEAD <= max_frame:
        return [pack_frame(msg_type, body, seq, 0, auth)]
    if msg_type == _CHUNK:
        raise FrameError(ErrorCode.BAD_CHUNK, "a CHUNK cannot itself be chunked", seq)
    total = len(body)
    room = chunk_room(max_frame, stream, msg_type, total)
    if room < 1:
        raise FrameError(ErrorCode.TOO_LARGE, f"max_frame {max_frame} too small to chunk", seq)
    frames = []
    for index, offset in enumerate(range(0, total, room)):
        piece = body[offset : offset + room]
        more = FLAG_MORE if offset + room < total else 0
        chunk = {_STREAM: stream, _INNER: msg_type, _TOTAL: total, _OFFSET: offset, _DATA: piece}
        frames.append(pack_frame(_CHUNK, encode_payload(chunk), (seq + index) & 0xFFFF, more,
                                 auth))
    return frames


class _Stream:
    __slots__ = ("inner_type", "total", "seq", "data")

    def __init__(self, inner_type: int, total: int, seq: int) -> None:
        self.inner_type = inner_type
        self.total = total
        self.seq = seq
        self.data = bytearray()


class Reassembler:
    """Collect CHUNK frames into whole messages; other frames pass through unchanged.

    Frames must come from decode_frame/FrameReader/SerialDeframer with validation on (the
    default), so that every CHUNK holds its fields.

    push() returns the whole message (as a Frame with the first chunk's seq) when its last
    chunk arrives, None while chunks are outstanding, and raises FrameError for a chunk out
    of order or of an unknown stream (BAD_CHUNK; the stream is dropped), a message over
    `max_message` or more than `max_streams` open streams (TOO_LARGE). Memory is bounded by
    max_message * max_streams.
    """

    def __init__(self, max_message: int = DEFAULT_MAX_MESSAGE, *, max_streams: int = 4) -> None:
        self.max_message = max_message
        self.max_streams = max_streams
        self._streams: dict[int, _Stream] = {}

    @property
    def open_streams(self) -> int:
        return len(self._streams)

    def push(self, frame: Frame) -> Frame | None:
        if frame.type != _CHUNK:
            return frame
        p = frame.payload
        stream_id, inner, total, offset, data = (
            p[_STREAM],
            p[_INNER],
            p[_TOTAL],
            p[_OFFSET],
            p[_DATA],
        )
        stream = self._streams.get(stream_id)
        if offset == 0:
            if stream is not None:
                del self._streams[stream_id]
                raise self._error(ErrorCode.BAD_CHUNK, f"stream {stream_id} restarted", frame)
            if total > self.max_message:
                raise self._error(
                    ErrorCode.TOO_LARGE,
                    f"message of {total} bytes exceeds the limit of {self.max_message}",
                    frame,
                )
            if len(self._streams) >= self.max_streams:
                raise self._error(
                    ErrorCode.TOO_LARGE, f"more than {self.max_streams} open streams", frame
                )
            if inner == _CHUNK or inner not in CATALOG:
                raise self._error(ErrorCode.BAD_CHUNK, f"inner type {inner} not allowed", frame)
            stream = _Stream(inner, total, frame.seq)
            self._streams[stream_id] = stream
        elif stream is None:
            raise self._error(ErrorCode.BAD_CHUNK, f"chunk of unknown stream {stream_id}", frame)
        if (
            offset != len(stream.data)
            or total != stream.total
            or inner != stream.inner_type
            or offset + len(data) > total
            or (not frame.flags & FLAG_MORE) != (offset + len(data) == total)
        ):
            del self._streams[stream_id]
            raise self._error(
                ErrorCode.BAD_CHUNK,
                f"stream {stream_id}: chunk at {offset}+{len(data)} does not continue "
                f"{len(stream.data)} of {stream.total} bytes",
                frame,
            )
        stream.data += data
        if frame.flags & FLAG_MORE:
            return None
        del self._streams[stream_id]
        try:
            payload = decode_payload(stream.data)
            validate_payload(stream.inner_type, payload, stream.seq)
        except FrameError as exc:
            exc.seq = stream.seq
            raise
        return Frame(stream.inner_type, 0, stream.seq, payload)

    @staticmethod
    def _error(code: ErrorCode, text: str, frame: Frame) -> FrameError:
        return FrameError(code, text, frame.seq)
