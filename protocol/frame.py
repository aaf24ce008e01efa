"""The normative definition of a frame, written with `construct`.

This module is the reference the fast codecs are tested against (the host's
`microswarm.wire`, the firmware's `frame.py`): it favours being obviously right over being
fast. Golden vectors (`protocol/vectors/`) are built with it.

    frame   = header payload crc [mac]
    header  = version:u8 type:u8 flags:u8 seq:u16le length:u16le      (7 bytes)
    payload = `length` bytes holding exactly one CBOR item: a map with small int keys
    crc     = CRC-32 (IEEE 802.3, as zlib.crc32) of header+payload, u32le
    mac     = counter:u32le tag:8 bytes, present when flags has MAC (0x02): every frame
              after WELCOME. tag = HMAC-SHA256(direction key, counter | header | payload)
              truncated to 8 bytes; direction keys: `direction_keys` below.

A receiver checks, in this order, and answers the first failure with its ErrorCode:
  1. at least HEADER_SIZE + CRC_SIZE bytes              else TRUNCATED
  2. version == PROTOCOL_VERSION                         else BAD_VERSION (link closes)
  3. length + FRAME_OVERHEAD <= negotiated max_frame     else TOO_LARGE   (link closes)
  4. the frame is exactly length + FRAME_OVERHEAD bytes (+ MAC_TRAILER_SIZE with flag
     MAC)                                                else TRUNCATED
  5. CRC matches                                         else BAD_CRC
  6. flags: no reserved bit, MORE only on CHUNK          else BAD_FLAGS
  7. after the join: flag MAC set, tag valid, counter above the last accepted; before
     it: flag MAC clear                                  else BAD_MAC
  8. type is in the catalog                              else UNKNOWN_TYPE
  9. payload is one well-formed CBOR item of the data model, fields match the catalog
                                                         else BAD_PAYLOAD
Checks 2 and 3 come before the CRC because a stream receiver must decide from the header
alone whether it can trust the length to find the next frame.
"""

from __future__ import annotations

import array
import hashlib
import hmac
import io
import math
import struct
import zlib
from typing import Any

import cbor2
from construct import (
    Adapter,
    Bytes,
    Checksum,
    ChecksumError,
    GreedyBytes,
    If,
    Int8ul,
    Int16ul,
    Int32ul,
    RawCopy,
    Struct,
    this,
)

from .catalog import (
    CATALOG,
    CRC_SIZE,
    FLAG_MAC,
    FLAG_MORE,
    FLAGS_KNOWN,
    FRAME_OVERHEAD,
    HEADER_SIZE,
    MAC_TAG_SIZE,
    MAC_TRAILER_SIZE,
    MAX_NESTING,
    MAX_PAYLOAD,
    PROTOCOL_VERSION,
    TYPECODE_TAGS,
    TYPED_ARRAY_TAGS,
    ErrorCode,
    MsgType,
)

MAX_FRAME = MAX_PAYLOAD + FRAME_OVERHEAD


class ProtocolError(Exception):
    """Input the protocol refuses, with the ErrorCode a receiver answers."""

    def __init__(self, code: ErrorCode, text: str) -> None:
        super().__init__(f"{code.name}: {text}")
        self.code = code
        self.text = text


# --- CBOR payloads ----------------------------------------------------------------------


def _map_key_order(key: Any) -> tuple:
    # Integers ascending, then text keys by the bytes of their encoding, i.e. by UTF-8
    # length then UTF-8 bytes (RFC 8949 section 4.2.1 for non-negative int and text keys).
    if type(key) is int:
        return (0, key, b"")
    if type(key) is str:
        return (1, len(key.encode()), key.encode())
    raise ProtocolError(ErrorCode.BAD_PAYLOAD, f"map key of kind {type(key).__name__}")


def _encode_map(encoder: cbor2.CBOREncoder, value: dict) -> None:
    keys = sorted(value, key=_map_key_order)
    encoder.encode_length(5, len(keys))
    for key in keys:
        encoder.encode(key)
        encoder.encode(value[key])


def _encode_array(encoder: cbor2.CBOREncoder, value: array.array) -> None:
    if value.typecode not in TYPECODE_TAGS:
        raise ProtocolError(ErrorCode.BAD_PAYLOAD, f"array typecode {value.typecode!r}")
    encoder.encode_semantic(TYPECODE_TAGS[value.typecode], value.tobytes())


def _encode_int(encoder: cbor2.CBOREncoder, value: int) -> None:
    if not -(2**64) <= value < 2**64:
        raise ProtocolError(ErrorCode.BAD_PAYLOAD, "integer outside CBOR's 64-bit range")
    if value >= 0:
        encoder.encode_length(0, value)
    else:
        encoder.encode_length(1, -1 - value)


def _encode_float(encoder: cbor2.CBOREncoder, value: float) -> None:
    if math.isnan(value):
        encoder.write(b"\xf9\x7e\x00")
    elif math.isinf(value):
        encoder.write(b"\xf9\x7c\x00" if value > 0 else b"\xf9\xfc\x00")
    else:
        encoder.write(b"\xfb" + struct.pack(">d", value))


def _refuse(encoder: cbor2.CBOREncoder, value: Any) -> None:
    raise ProtocolError(ErrorCode.BAD_PAYLOAD, f"{type(value).__name__} is not in the data model")


_ENCODERS = {
    dict: _encode_map,
    array.array: _encode_array,
    int: _encode_int,
    float: _encode_float,
    memoryview: lambda encoder, value: encoder.encode_bytes(value.tobytes()),
    set: _refuse,
    frozenset: _refuse,
    cbor2.CBORTag: _refuse,
    cbor2.CBORSimpleValue: _refuse,
}


def _typed_array(tag: int, value: Any) -> array.array:
    typecode, size = TYPED_ARRAY_TAGS[tag]
    if type(value) is not bytes or len(value) % size:
        raise ProtocolError(ErrorCode.BAD_PAYLOAD, f"typed array tag {tag}: bad byte string")
    return array.array(typecode, value)


def _tag_hook(tag: cbor2.CBORTag, immutable: bool) -> Any:
    if tag.tag in TYPED_ARRAY_TAGS:
        return _typed_array(tag.tag, tag.value)
    raise ProtocolError(ErrorCode.BAD_PAYLOAD, f"tag {tag.tag} is not a typed array")


def _reject(value: Any, immutable: bool) -> Any:
    raise ProtocolError(ErrorCode.BAD_PAYLOAD, "tag is not a typed array")


# cbor2 decodes these tags itself unless told otherwise; none is part of the protocol.
# fmt: off
_NOT_TYPED_ARRAYS = (
    0, 1, 2, 3, 4, 5, 25, 28, 29, 30, 35, 36, 37, 52, 54, 100, 256, 258, 260, 261, 1004,
    43000, 55799,
)
# fmt: on
_SEMANTIC = {tag: _reject for tag in _NOT_TYPED_ARRAYS}


def _check_value(value: Any) -> None:
    """Every decoded value must be of the protocol's data model."""
    if value is None or isinstance(value, (bool, int, float, str, bytes, array.array)):
        return
    if isinstance(value, list):
        for item in value:
            _check_value(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            if type(key) not in (int, str):
                raise ProtocolError(ErrorCode.BAD_PAYLOAD, "map key is not int or text")
            _check_value(item)
    else:
        raise ProtocolError(ErrorCode.BAD_PAYLOAD, f"{type(value).__name__} not allowed")


def cbor_encode(value: Any) -> bytes:
    """Deterministic CBOR (SPEC.md, "Payload encoding")."""
    try:
        return cbor2.dumps(value, encoders=_ENCODERS)
    except cbor2.CBOREncodeError as exc:
        if isinstance(exc.__cause__, ProtocolError):
            raise exc.__cause__ from None
        raise ProtocolError(ErrorCode.BAD_PAYLOAD, str(exc)) from None


def cbor_decode(data: bytes) -> Any:
    stream = io.BytesIO(data)
    try:
        value = cbor2.CBORDecoder(
            stream,
            tag_hook=_tag_hook,
            semantic_decoders=_SEMANTIC,
            max_depth=MAX_NESTING,
            allow_indefinite=False,
            allow_duplicate_keys=False,
        ).decode()
    except cbor2.CBORDecodeError as exc:
        raise ProtocolError(ErrorCode.BAD_PAYLOAD, f"malformed CBOR: {exc}") from None
    if stream.tell() != len(data):
        raise ProtocolError(ErrorCode.BAD_PAYLOAD, "bytes after the CBOR item")
    _check_value(value)
    return value


class Cbor(Adapter):
    """Exactly one CBOR item of the protocol's data model."""

    def _decode(self, obj: bytes, context: Any, path: str) -> Any:
        return cbor_decode(obj)

    def _encode(self, obj: Any, context: Any, path: str) -> bytes:
        return cbor_encode(obj)


# --- payload schema ---------------------------------------------------------------------


def _kind_ok(kind: str, value: Any) -> bool:
    is_int = isinstance(value, int) and not isinstance(value, bool)
    return {
        "uint": lambda: is_int and value >= 0,
        "int": lambda: is_int,
        "tstr": lambda: isinstance(value, str),
        "bstr": lambda: isinstance(value, (bytes, bytearray, memoryview)),
        "bool": lambda: isinstance(value, bool),
        "float": lambda: is_int or isinstance(value, float),
        "any": lambda: True,
        "array": lambda: isinstance(value, (list, tuple)),
        "tstr[]": lambda: (
            isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)
        ),
        "map": lambda: isinstance(value, dict),
    }[kind]()


def check_payload(msg_type: int, payload: Any) -> None:
    """Required fields present, every known field of its declared kind."""
    if msg_type not in CATALOG:
        raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"message type {msg_type}")
    if not isinstance(payload, dict):
        raise ProtocolError(ErrorCode.BAD_PAYLOAD, "payload is not a map")
    message = CATALOG[MsgType(msg_type)]
    for field in message.fields:
        if field.key not in payload:
            if field.required:
                raise ProtocolError(
                    ErrorCode.BAD_PAYLOAD, f"{message.type.name} lacks {field.name}"
                )
        elif not _kind_ok(field.kind, payload[field.key]):
            raise ProtocolError(
                ErrorCode.BAD_PAYLOAD, f"{message.type.name}.{field.name} is not {field.kind}"
            )


# --- frame ------------------------------------------------------------------------------

HEADER = Struct(
    "version" / Int8ul,
    "type" / Int8ul,
    "flags" / Int8ul,
    "seq" / Int16ul,
    "length" / Int16ul,
)
assert HEADER.sizeof() == HEADER_SIZE

# The frame's byte layout with its checksum. The payload stays raw here so that the CRC
# is checked before any payload byte is interpreted (check order in the module docstring).
_BODY = Struct(
    "body" / RawCopy(Struct("header" / HEADER, "payload" / Bytes(this.header.length))),
    "crc" / Checksum(Int32ul, zlib.crc32, this.body.data),
)
FRAME = Struct(
    *_BODY.subcons,
    "mac" / If(this.body.value.header.flags & FLAG_MAC,
               Struct("counter" / Int32ul, "tag" / Bytes(MAC_TAG_SIZE))),
)

PAYLOAD = Cbor(GreedyBytes)


# --- frame authentication after the join ------------------------------------------------


def hkdf(ikm: bytes, salt: bytes, info: bytes, length: int = 32) -> bytes:
    """RFC 5869 HKDF with HMAC-SHA256."""
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    okm, t = b"", b""
    for i in range(1, -(-length // 32) + 1):
        t = hmac.new(prk, t + info + bytes([i]), hashlib.sha256).digest()
        okm += t
    return okm[:length]


def direction_keys(key: bytes, master_nonce: bytes, node_nonce: bytes) -> dict[str, bytes]:
    """The two keys of one joined link: HKDF(ikm=cluster key, salt=master nonce | node
    nonce, info=b"msw-frame master->node" or b"msw-frame node->master")."""
    salt = master_nonce + node_nonce
    return {"master->node": hkdf(key, salt, b"msw-frame master->node"),
            "node->master": hkdf(key, salt, b"msw-frame node->master")}


def frame_tag(direction_key: bytes, counter: int, header_and_payload: bytes) -> bytes:
    message = struct.pack("<I", counter) + header_and_payload
    return hmac.new(direction_key, message, hashlib.sha256).digest()[:MAC_TAG_SIZE]


def build_frame(msg_type: int, payload: Any, seq: int = 0, flags: int = 0,
                mac: tuple[bytes, int] | None = None) -> bytes:
    """The bytes of one frame. Refuses what a receiver would refuse. `mac`: (direction
    key, counter) of a frame after the join."""
    if msg_type not in CATALOG:
        raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"message type {msg_type}")
    if flags & ~FLAGS_KNOWN or (flags & FLAG_MORE and msg_type != MsgType.CHUNK):
        raise ProtocolError(ErrorCode.BAD_FLAGS, f"flags {flags:#x}")
    check_payload(msg_type, payload)
    raw = PAYLOAD.build(payload)
    if len(raw) > MAX_PAYLOAD:
        raise ProtocolError(ErrorCode.TOO_LARGE, f"payload of {len(raw)} bytes")
    return build_raw(msg_type, raw, seq, flags, mac=mac)


def build_raw(
    msg_type: int, payload: bytes, seq: int = 0, flags: int = 0, version: int = PROTOCOL_VERSION,
    mac: tuple[bytes, int] | None = None,
) -> bytes:
    """Header + given payload bytes + CRC (+ MAC trailer), unchecked (for bad vectors)."""
    if mac is not None:
        flags |= FLAG_MAC
    header = dict(version=version, type=msg_type, flags=flags, seq=seq, length=len(payload))
    body = dict(body=dict(value=dict(header=header, payload=payload)))
    if mac is None:  # (a MAC flag without its trailer only in a bad vector)
        return _BODY.build(body)
    signed = HEADER.build(header) + payload
    return FRAME.build(dict(body, mac=dict(counter=mac[1], tag=frame_tag(mac[0], mac[1], signed))))


def parse_frame(data: bytes, max_frame: int = MAX_FRAME,
                mac: tuple[bytes, int] | None = None) -> dict:
    """Parse one frame: {"type", "flags", "seq", "payload"} (and "counter" when
    authenticated); ProtocolError on bad input. `mac`: (direction key, last counter
    accepted, -1 for none) on a joined link; None before the join."""
    if len(data) < HEADER_SIZE + CRC_SIZE:
        raise ProtocolError(ErrorCode.TRUNCATED, f"{len(data)} bytes")
    header = HEADER.parse(data[:HEADER_SIZE])
    if header.version != PROTOCOL_VERSION:
        raise ProtocolError(ErrorCode.BAD_VERSION, f"version {header.version}")
    if header.length + FRAME_OVERHEAD > max_frame:
        raise ProtocolError(ErrorCode.TOO_LARGE, f"length {header.length}")
    trailer = MAC_TRAILER_SIZE if header.flags & FLAG_MAC else 0
    if len(data) != header.length + FRAME_OVERHEAD + trailer:
        raise ProtocolError(ErrorCode.TRUNCATED, "size disagrees with the header's length")
    try:
        frame = FRAME.parse(data)
    except ChecksumError:
        raise ProtocolError(ErrorCode.BAD_CRC, "CRC-32 mismatch") from None
    if header.flags & ~FLAGS_KNOWN or (header.flags & FLAG_MORE and header.type != MsgType.CHUNK):
        raise ProtocolError(ErrorCode.BAD_FLAGS, f"flags {header.flags:#x}")
    result = {"type": header.type, "flags": header.flags, "seq": header.seq}
    if mac is None and frame.mac is not None:
        raise ProtocolError(ErrorCode.BAD_MAC, "authenticated frame before the join")
    if mac is not None:
        if frame.mac is None:
            raise ProtocolError(ErrorCode.BAD_MAC, "frame without a MAC after the join")
        expected = frame_tag(mac[0], frame.mac.counter, frame.body.data)
        if not hmac.compare_digest(expected, frame.mac.tag):
            raise ProtocolError(ErrorCode.BAD_MAC, "MAC mismatch")
        if frame.mac.counter <= mac[1]:
            raise ProtocolError(ErrorCode.BAD_MAC, "replayed or reordered counter")
        result["counter"] = frame.mac.counter
    if header.type not in CATALOG:
        raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"message type {header.type}")
    payload = PAYLOAD.parse(frame.body.value.payload)
    check_payload(header.type, payload)
    result["payload"] = payload
    return result


# --- serial framing and chunking --------------------------------------------------------


def cobs_encode(data: bytes) -> bytes:
    """COBS one byte at a time: the plain statement of the rule in SPEC.md."""
    out = bytearray([0])
    code_at, code = 0, 1
    for index, byte in enumerate(data):
        if byte:
            out.append(byte)
            code += 1
        if not byte or code == 0xFF:
            out[code_at] = code
            code = 1
            if byte and index + 1 == len(data):
                return bytes(out)  # a full block ended the data: no empty block after it
            code_at = len(out)
            out.append(0)
    out[code_at] = code
    return bytes(out)


def cobs_decode(data: bytes) -> bytes:
    if not data or 0 in data:
        raise ProtocolError(ErrorCode.TRUNCATED, "empty COBS frame or zero inside it")
    out = bytearray()
    index = 0
    while index < len(data):
        code = data[index]
        if index + code > len(data):
            raise ProtocolError(ErrorCode.TRUNCATED, "COBS block past the end")
        out += data[index + 1 : index + code]
        index += code
        if code < 0xFF and index < len(data):
            out.append(0)
    return bytes(out)


def serial_form(frame: bytes) -> bytes:
    return cobs_encode(frame) + b"\x00"


def chunk_payload_room(max_frame: int, stream: int, inner_type: int, total: int) -> int:
    empty = {0: stream, 1: inner_type, 2: total, 3: total, 4: b""}
    return max_frame - FRAME_OVERHEAD - len(cbor_encode(empty)) - 2


def build_message(
    msg_type: int, payload: Any, seq: int, max_frame: int, stream: int
) -> list[bytes]:
    """One frame, or CHUNK frames when the message does not fit in max_frame."""
    check_payload(msg_type, payload)
    raw = cbor_encode(payload)
    if len(raw) + FRAME_OVERHEAD <= max_frame:
        return [build_raw(msg_type, raw, seq)]
    room = chunk_payload_room(max_frame, stream, msg_type, len(raw))
    frames = []
    for index, offset in enumerate(range(0, len(raw), room)):
        piece = raw[offset : offset + room]
        last = offset + len(piece) == len(raw)
        chunk = {0: stream, 1: msg_type, 2: len(raw), 3: offset, 4: piece}
        frames.append(
            build_frame(MsgType.CHUNK, chunk, (seq + index) % 65536, 0 if last else FLAG_MORE)
        )
    return frames


# --- JSON form of payloads (golden vectors) ---------------------------------------------
# JSON has no byte strings, typed arrays, non-finite floats or int map keys, so vectors
# write those as one-key objects: {"hex": "..."}, {"typed": "int8", "data": [...]},
# {"float": "nan" | "inf" | "-inf"} (also inside typed arrays), and every map as
# {"map": [[key, value], ...]} in encoded order. Integers are JSON integers; floats always
# carry a "." or an exponent.

TYPED_NAMES = {
    64: "uint8",
    69: "uint16",
    70: "uint32",
    71: "uint64",
    72: "int8",
    77: "int16",
    78: "int32",
    79: "int64",
    85: "float32",
    86: "float64",
}
_NAME_TAGS = {name: tag for tag, name in TYPED_NAMES.items()}


def to_json(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return {"float": "nan"}
        if math.isinf(value):
            return {"float": "inf" if value > 0 else "-inf"}
        return value
    if isinstance(value, array.array):
        name = TYPED_NAMES[TYPECODE_TAGS[value.typecode]]
        return {"typed": name, "data": [to_json(item) for item in value.tolist()]}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"hex": bytes(value).hex()}
    if isinstance(value, (list, tuple)):
        return [to_json(item) for item in value]
    if isinstance(value, dict):
        keys = sorted(value, key=_map_key_order)
        return {"map": [[key, to_json(value[key])] for key in keys]}
    raise TypeError(f"{type(value).__name__} has no JSON form")


def from_json(value: Any) -> Any:
    if isinstance(value, list):
        return [from_json(item) for item in value]
    if not isinstance(value, dict):
        return value
    if "hex" in value:
        return bytes.fromhex(value["hex"])
    if "typed" in value:
        typecode = TYPED_ARRAY_TAGS[_NAME_TAGS[value["typed"]]][0]
        return array.array(typecode, [from_json(item) for item in value["data"]])
    if "float" in value:
        return float(value["float"])
    return {key: from_json(item) for key, item in value["map"]}
