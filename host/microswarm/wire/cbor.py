"""Deterministic CBOR for payloads, on top of cbor2's C extension.

Encoding rules (SPEC.md, "Payload encoding"): shortest integer and length forms, definite
lengths, map keys in canonical order (integers ascending, then text keys by UTF-8 length
and bytes), floats as float64 except NaN/inf as float16, `array.array` as an RFC 8746
typed array. Decoding accepts any well-formed encoding of the same data model and rejects
everything else with FrameError(BAD_PAYLOAD).
"""

from __future__ import annotations

import array
import io
import sys
from typing import Any

import cbor2

from microswarm.protocol.catalog import MAX_NESTING, TYPECODE_TAGS, TYPED_ARRAY_TAGS, ErrorCode

from .errors import FrameError

_BIG_ENDIAN_HOST = sys.byteorder == "big"

# Types a decoded payload may contain (besides list, dict and array.array).
_SCALARS = frozenset({int, float, str, bytes, bool, type(None)})
_KEY_TYPES = frozenset({int, str})
_INT_ONLY = frozenset({int})

# Tags cbor2 interprets on its own; each is overridden so that only typed arrays pass.
_CBOR2_BUILTIN_TAGS = (
    0,
    1,
    2,
    3,
    4,
    5,
    25,
    28,
    29,
    30,
    35,
    36,
    37,
    52,
    54,
    100,
    256,
    258,
    260,
    261,
    1004,
    43000,
    55799,
)


def map_key_order(key: int | str) -> tuple:
    """Sort key for map keys: integers ascending, then text by (UTF-8 length, bytes).

    For non-negative integer and text keys this is RFC 8949 section 4.2.1 order.
    """
    if type(key) is int:
        return (0, key, b"")
    if type(key) is str:
        raw = key.encode()
        return (1, len(raw), raw)
    raise TypeError(f"map keys must be int or str, not {type(key).__name__}")


def _encode_map(encoder: cbor2.CBOREncoder, value: dict) -> None:
    int_keys = set(map(type, value)) <= _INT_ONLY
    keys = sorted(value) if int_keys else sorted(value, key=map_key_order)
    encoder.encode_length(5, len(keys))
    encode = encoder.encode
    for k in keys:
        encode(k)
        encode(value[k])


def _encode_typed_array(encoder: cbor2.CBOREncoder, value: array.array) -> None:
    tag = TYPECODE_TAGS.get(value.typecode)
    if tag is None:
        raise TypeError(f"array typecode {value.typecode!r} has no typed-array tag")
    if _BIG_ENDIAN_HOST:
        value = array.array(value.typecode, value)
        value.byteswap()
    encoder.encode_length(6, tag)
    encoder.encode_bytes(value.tobytes())


def _encode_memoryview(encoder: cbor2.CBOREncoder, value: memoryview) -> None:
    encoder.encode_bytes(value.tobytes())


def _refuse(encoder: cbor2.CBOREncoder, value: Any) -> None:
    raise TypeError(f"{type(value).__name__} is not part of the payload data model")


_ENCODERS = {
    dict: _encode_map,
    array.array: _encode_typed_array,
    memoryview: _encode_memoryview,
    set: _refuse,
    frozenset: _refuse,
    cbor2.CBORTag: _refuse,
    cbor2.CBORSimpleValue: _refuse,
    type(cbor2.undefined): _refuse,
}


def encode_payload(obj: Any) -> bytes:
    """Encode one payload item deterministically. Raises TypeError for values outside the
    data model (sets, tags, non-int/str map keys, unknown array typecodes)."""
    try:
        return cbor2.dumps(obj, encoders=_ENCODERS)
    except cbor2.CBOREncodeError as exc:
        cause = exc.__cause__
        raise TypeError(str(cause or exc)) from exc


def _typed_array(tag: int):
    typecode, size = TYPED_ARRAY_TAGS[tag]

    def decode(value: Any, immutable: bool) -> array.array:
        if type(value) is not bytes:
            raise ValueError(f"typed array tag {tag} must wrap a byte string")
        if len(value) % size:
            raise ValueError(f"typed array tag {tag}: {len(value)} bytes, item size {size}")
        result = array.array(typecode, value)
        if _BIG_ENDIAN_HOST:
            result.byteswap()
        return result

    return decode


def _reject_tag(value: Any, immutable: bool) -> None:
    raise ValueError("tag not allowed (only RFC 8746 typed arrays)")


def _reject_unknown_tag(tag: cbor2.CBORTag, immutable: bool) -> None:
    raise ValueError(f"tag {tag.tag} not allowed (only RFC 8746 typed arrays)")


_SEMANTIC_DECODERS = {tag: _reject_tag for tag in _CBOR2_BUILTIN_TAGS}
_SEMANTIC_DECODERS.update({tag: _typed_array(tag) for tag in TYPED_ARRAY_TAGS})


def _check_items(values: Any) -> None:
    """Reject decoded values outside the data model (simple values, undefined)."""
    types = set(map(type, values))
    if types <= _SCALARS:
        return
    for value in values:
        kind = type(value)
        if kind in _SCALARS or kind is array.array:
            continue
        if kind is list:
            _check_items(value)
        elif kind is dict:
            _check_map(value)
        else:
            raise ValueError(f"value of kind {kind.__name__} not allowed")


def _check_map(value: dict) -> None:
    if not set(map(type, value)) <= _KEY_TYPES:
        raise ValueError("map keys must be integers or text")
    _check_items(value.values())


def decode_payload(data: bytes | bytearray | memoryview) -> Any:
    """Decode exactly one CBOR item; typed arrays become array.array.

    Raises FrameError(BAD_PAYLOAD) for malformed CBOR, indefinite lengths, nesting deeper
    than MAX_NESTING, trailing bytes, duplicate map keys, tags other than typed arrays,
    simple values other than false/true/null, and map keys other than int or text.
    """
    stream = io.BytesIO(data)
    try:
        value = cbor2.CBORDecoder(
            stream,
            semantic_decoders=_SEMANTIC_DECODERS,
            tag_hook=_reject_unknown_tag,
            max_depth=MAX_NESTING,
            allow_indefinite=False,
            allow_duplicate_keys=False,
        ).decode()
        if stream.tell() != len(data):
            raise ValueError(f"{len(data) - stream.tell()} bytes after the CBOR item")
        kind = type(value)
        if kind is dict:
            _check_map(value)
        elif kind is list:
            _check_items(value)
        elif kind not in _SCALARS and kind is not array.array:
            raise ValueError(f"value of kind {kind.__name__} not allowed")
    except (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError, RecursionError) as exc:
        detail = str(exc.__cause__) if exc.__cause__ is not None else str(exc)
        raise FrameError(ErrorCode.BAD_PAYLOAD, f"bad CBOR: {detail}") from None
    return value
