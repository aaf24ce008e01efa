"""Frame codec for byte streams and datagrams: header, CBOR payload, CRC-32.

Layout (little-endian): version u8 | type u8 | flags u8 | seq u16 | length u16 | payload
| crc32 u32, the CRC covering header and payload; with flag MAC (every frame after the
join) a trailer follows: counter u32 | tag (mac.py). protocol/frame.py holds the normative
construct definition; this module is the fast path and must agree with it byte for byte.
"""

from __future__ import annotations

import struct
import zlib
from hmac import compare_digest as _compare
from typing import TYPE_CHECKING, Any, NamedTuple

from microswarm.protocol.catalog import (
    CATALOG,
    CRC_SIZE,
    FLAG_MAC,
    FLAG_MORE,
    FLAGS_KNOWN,
    FRAME_OVERHEAD,
    HEADER_SIZE,
    MAC_COUNTER_SIZE,
    MAC_TAG_SIZE,
    MAC_TRAILER_SIZE,
    MAX_PAYLOAD,
    PROTOCOL_VERSION,
    ErrorCode,
    MsgType,
)

from .cbor import _LEAVES, check_model, decode_unchecked, encode_payload
from .errors import FrameError
from .mac import COUNTER_LIMIT
from .validate import accepted, validate_payload

if TYPE_CHECKING:
    from .mac import LinkAuth

MAX_FRAME = MAX_PAYLOAD + FRAME_OVERHEAD

_HEADER = struct.Struct("<BBBHH")
_CRC = struct.Struct("<I")
_COUNTER = _CRC  # the MAC trailer's counter: u32 little-endian too
_KNOWN_TYPES = frozenset(int(t) for t in CATALOG)
_CHUNK = int(MsgType.CHUNK)


class Frame(NamedTuple):
    type: int
    flags: int
    seq: int
    payload: Any


_new_frame = tuple.__new__


def pack_frame(msg_type: int, payload: bytes, seq: int = 0, flags: int = 0,
               auth: LinkAuth | None = None) -> bytes:
    """Wrap an already encoded payload in header and CRC (and the MAC trailer when `auth`
    is sending)."""
    size = len(payload)
    if size > MAX_PAYLOAD:
        raise FrameError(
            ErrorCode.TOO_LARGE, f"payload of {size} bytes exceeds {MAX_PAYLOAD}", seq
        )
    if msg_type not in _KNOWN_TYPES:
        raise FrameError(ErrorCode.UNKNOWN_TYPE, f"message type {msg_type} is not known", seq)
    if flags and (flags & ~FLAGS_KNOWN or (flags & FLAG_MORE and msg_type != _CHUNK)):
        raise FrameError(ErrorCode.BAD_FLAGS, f"flags {flags:#04x} not allowed here", seq)
    # header and payload joined once: one CRC call over them (and one MAC update)
    if auth is not None and auth.sending:
        sealed = _HEADER.pack(PROTOCOL_VERSION, msg_type, flags | FLAG_MAC, seq & 0xFFFF,
                              size) + payload
        counter = auth.tx_counter
        if counter >= COUNTER_LIMIT:
            raise FrameError(ErrorCode.BAD_MAC, "frame counter exhausted: join again")
        auth.tx_counter = counter + 1
        packed = _COUNTER.pack(counter)
        mac = auth._tx  # auth.trailer(sealed), inline: one per frame sent
        h = mac.inner.copy()
        h.update(packed)
        h.update(sealed)
        o = mac.outer.copy()
        o.update(h.digest())
        return b"".join((sealed, _CRC.pack(zlib.crc32(sealed)), packed,
                         o.digest()[:MAC_TAG_SIZE]))
    sealed = _HEADER.pack(PROTOCOL_VERSION, msg_type, flags, seq & 0xFFFF, size) + payload
    return sealed + _CRC.pack(zlib.crc32(sealed))


def encode_frame(
    msg_type: int, payload: Any, seq: int = 0, flags: int = 0, *, validate: bool = True,
    auth: LinkAuth | None = None,
) -> bytes:
    """Encode one frame. Raises FrameError when the payload does not match the catalog
    (BAD_PAYLOAD) or does not fit in one frame (TOO_LARGE: use encode_message)."""
    if validate:
        validate_payload(msg_type, payload, seq)
    return pack_frame(msg_type, encode_payload(payload), seq, flags, auth)


def check_header(version: int, length: int, seq: int, max_frame: int) -> FrameError | None:
    """The checks that decide whether a stream's framing can still be trusted."""
    if version != PROTOCOL_VERSION:
        return FrameError(
            ErrorCode.BAD_VERSION,
            f"protocol version {version}, expected {PROTOCOL_VERSION}",
            seq,
            fatal=True,
        )
    if length + FRAME_OVERHEAD > max_frame:
        return FrameError(
            ErrorCode.TOO_LARGE,
            f"frame of {length + FRAME_OVERHEAD} bytes exceeds the limit of {max_frame}",
            seq,
            fatal=True,
        )
    return None


# CRC-32 of any message followed by its own CRC-32 (little-endian): one pass over the frame
# checks it, without slicing off the trailer.
_CRC_RESIDUE = 0x2144DF1C


def frame_size(length: int, flags: int) -> int:
    """Bytes of a whole frame whose header says `length` and `flags`."""
    return length + FRAME_OVERHEAD + (MAC_TRAILER_SIZE if flags & FLAG_MAC else 0)


def decode_body(
    frame: bytes, msg_type: int, flags: int, seq: int, length: int, validate: bool,
    auth: LinkAuth | None = None,
) -> Frame:
    """Check CRC, flags, MAC and type of one complete frame, then decode its payload.

    The order of checks is normative (SPEC.md, "Receiving a frame"); the caller has already
    checked version, length limit and size.
    """
    if flags & FLAG_MAC:
        # a copy of the covered part: cheaper than a memoryview for frames this small
        crc_ok = zlib.crc32(frame[: length + FRAME_OVERHEAD]) == _CRC_RESIDUE
    else:
        crc_ok = zlib.crc32(frame) == _CRC_RESIDUE
    if not crc_ok:
        raise FrameError(ErrorCode.BAD_CRC, "CRC-32 mismatch", seq)
    if flags & ~FLAGS_KNOWN or (flags & FLAG_MORE and msg_type != _CHUNK):
        raise FrameError(ErrorCode.BAD_FLAGS, f"flags {flags:#04x} not allowed here", seq)
    if auth is not None:
        auth.check(frame, msg_type, flags, seq, length)
    elif flags & FLAG_MAC:
        raise FrameError(ErrorCode.BAD_MAC, "authenticated frame on a link that has not "
                         "joined", seq)
    if msg_type not in _KNOWN_TYPES:
        raise FrameError(ErrorCode.UNKNOWN_TYPE, f"message type {msg_type} is not known", seq)
    return _payload_frame(frame[HEADER_SIZE : HEADER_SIZE + length], msg_type, flags, seq,
                          validate)


def _payload_frame(body: bytes, msg_type: int, flags: int, seq: int, validate: bool) -> Frame:
    """The Frame of a checked frame's payload bytes: decoded, data model and catalog checked."""
    try:
        payload = decode_unchecked(body)
        checked = validate and accepted(msg_type, payload)  # both checks in one pass
        if not checked and type(payload) not in _LEAVES:
            check_model(payload)  # as decode_payload
    except FrameError as exc:
        exc.seq = seq
        raise
    if validate and not checked:
        validate_payload(msg_type, payload, seq)
    return _new_frame(Frame, (msg_type, flags, seq, payload))  # Frame(...) without its
    # Python-level __new__: one of these per frame received


def decode_frame(
    data: bytes | bytearray | memoryview, *, max_frame: int = MAX_FRAME, validate: bool = True,
    auth: LinkAuth | None = None,
) -> Frame:
    """Decode exactly one frame (a datagram, a COBS-decoded serial frame).

    Raises FrameError; a buffer longer or shorter than the header says is TRUNCATED.

    The common frame of a joined link (known type and flags, a MAC that verifies, a
    counter above the last one) is checked and decoded here in one pass, with the checks
    that change nothing first and the MAC's counter taken only once the tag verifies;
    anything else goes through decode_body, whose checks run in the normative order and
    raise the error it names.
    """
    if type(data) is not bytes:
        data = bytes(data)
    got = len(data)
    if got < FRAME_OVERHEAD:
        raise FrameError(ErrorCode.TRUNCATED, f"{got} bytes is shorter than any frame")
    version, msg_type, flags, seq, length = _HEADER.unpack_from(data)
    if version != PROTOCOL_VERSION or length + FRAME_OVERHEAD > max_frame:
        error = check_header(version, length, seq, max_frame)
        if error is not None:
            raise error
    if flags != FLAG_MAC or auth is None or not auth.receiving or msg_type not in _KNOWN_TYPES:
        size = length + FRAME_OVERHEAD + (MAC_TRAILER_SIZE if flags & FLAG_MAC else 0)
        if got != size:
            raise FrameError(
                ErrorCode.TRUNCATED, f"frame is {got} bytes, its header says {size}", seq)
        return decode_body(data, msg_type, flags, seq, length, validate, auth)
    # flags exactly MAC: known, and MORE (CHUNK only) not set
    end = length + FRAME_OVERHEAD  # the CRC's end: the MAC trailer follows
    if got != end + MAC_TRAILER_SIZE:
        raise FrameError(
            ErrorCode.TRUNCATED, f"frame is {got} bytes, its header says "
            f"{end + MAC_TRAILER_SIZE}", seq)
    mac = auth._rx  # LinkAuth.check's tag, inline
    h = mac.inner.copy()
    h.update(data[end:end + MAC_COUNTER_SIZE])
    h.update(data[:end - CRC_SIZE])
    o = mac.outer.copy()
    o.update(h.digest())
    (counter,) = _COUNTER.unpack_from(data, end)
    if (zlib.crc32(data[:end]) != _CRC_RESIDUE
            or not _compare(o.digest()[:MAC_TAG_SIZE], data[end + MAC_COUNTER_SIZE:])
            or counter <= auth.rx_counter):
        # CRC, MAC or counter refused: decode_body names the first check that fails
        return decode_body(data, msg_type, flags, seq, length, validate, auth)
    auth.rx_counter = counter
    return _payload_frame(data[HEADER_SIZE:HEADER_SIZE + length], msg_type, flags, seq, validate)


class FrameReader:
    """Split a byte stream (TCP) into frames.

    feed() returns, in order, the Frames and FrameErrors completed by the new bytes. A frame
    whose header is sane but whose CRC, flags, type or payload is bad comes out as a
    FrameError and is skipped. A header that cannot be trusted (wrong version, length over
    `max_frame`) gives one FrameError with fatal=True; the reader then stops and the caller
    must close the link. Buffered bytes never exceed max_frame plus one feed. Set `auth`
    (a LinkAuth) to check frame MACs.
    """

    def __init__(self, max_frame: int = MAX_FRAME, *, validate: bool = True) -> None:
        self.max_frame = max_frame
        self.validate = validate
        self.failed: FrameError | None = None
        self.auth: LinkAuth | None = None
        self._buf = bytearray()

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def set_max_frame(self, max_frame: int) -> None:
        """The limit negotiated at the join, for the frames that follow."""
        self.max_frame = max_frame

    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame | FrameError]:
        if self.failed is not None:
            return []
        buf = self._buf
        buf += data
        out: list[Frame | FrameError] = []
        view = memoryview(buf)
        pos = 0
        try:
            while len(buf) - pos >= HEADER_SIZE:
                version, msg_type, flags, seq, length = _HEADER.unpack_from(view, pos)
                error = check_header(version, length, seq, self.max_frame)
                if error is not None:
                    self.failed = error
                    out.append(error)
                    pos = len(buf)
                    break
                size = frame_size(length, flags)
                if len(buf) - pos < size:
                    break
                # A copy, so that nothing returned (or a traceback) pins the buffer.
                frame = bytes(view[pos : pos + size])
                pos += size
                try:
                    out.append(decode_body(frame, msg_type, flags, seq, length, self.validate,
                                           self.auth))
                except FrameError as exc:
                    exc.__traceback__ = None
                    out.append(exc)
        finally:
            view.release()
        if pos:
            del buf[:pos]
        return out
