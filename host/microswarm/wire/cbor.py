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
import threading
from typing import Any

import cbor2

from microswarm.protocol.catalog import MAX_NESTING, TYPECODE_TAGS, TYPED_ARRAY_TAGS, ErrorCode

from .errors import FrameError

_BIG_ENDIAN_HOST = sys.byteorder == "big"

# Leaf types of a decoded payload (typed arrays arrive converted by the tag hook).
_LEAVES = frozenset({int, float, str, bytes, bool, type(None), array.array})
_KEY_TYPES = frozenset({int, str})
# Leaf types cbor2 already encodes the way the protocol wants.
_PLAIN = frozenset({int, float, str, bytes, bytearray, bool, type(None)})
_INT_ONLY = frozenset({int})

# Tags cbor2 interprets on its own (dates, bignums, sets, shared values, string references,
# ...); each is overridden with a refusal so that only typed arrays pass.
# fmt: off
_CBOR2_BUILTIN_TAGS = (
    0, 1, 2, 3, 4, 5, 25, 28, 29, 30, 35, 36, 37, 52, 54, 100, 256, 258, 260, 261, 1004,
    43000, 55799,
)
# fmt: on


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


def _prepare(obj: Any) -> Any:
    """Turn obj into something cbor2's C encoder writes in our deterministic form: maps
    re-ordered, arrays as typed-array tags, memoryviews as bytes. Anything outside the
    data model raises TypeError. Containers holding only scalars are returned as they are."""
    kind = type(obj)
    if kind in _PLAIN:
        return obj
    if kind is dict:
        return _prepare_map(obj)
    if kind is list or kind is tuple:
        for item in obj:
            if type(item) not in _PLAIN:
                return [v if type(v) in _PLAIN else _prepare(v) for v in obj]
        return obj
    if kind is array.array:
        return _typed_array_tag(obj)
    if kind is memoryview:
        return obj.tobytes()
    if isinstance(obj, int) and not isinstance(obj, bool):
        return int(obj)  # IntEnum members and other int subclasses
    if isinstance(obj, float):
        return float(obj)
    raise TypeError(f"{kind.__name__} is not part of the payload data model")


def _prepare_map(value: dict) -> dict:
    # Fast path, one pass: int keys already ascending (how payloads are built).
    previous = -(1 << 64) - 1
    out = None
    for key, item in value.items():
        if type(key) is not int or key <= previous:
            return _prepare_unordered_map(value)
        previous = key
        kind = type(item)
        if kind in _PLAIN:
            continue
        if kind is list:  # a list of scalars (a TASK's arguments) is written as it is
            for element in item:
                if type(element) not in _PLAIN:
                    break
            else:
                continue
        prepared = _prepare(item)
        if prepared is not item:
            if out is None:
                out = dict(value)
            out[key] = prepared
    return value if out is None else out


def _prepare_unordered_map(value: dict) -> dict:
    key_types = set(map(type, value))
    if key_types <= _INT_ONLY:
        keys = sorted(value)
    elif key_types <= _KEY_TYPES:
        keys = sorted(value, key=map_key_order)
    else:
        bad = next(t for t in key_types if t not in _KEY_TYPES)
        raise TypeError(f"map keys must be int or str, not {bad.__name__}")
    for item in value.values():
        if type(item) not in _PLAIN:
            break
    else:
        return value if keys == list(value) else {key: value[key] for key in keys}
    out = {}
    for key in keys:
        item = value[key]
        out[key] = item if type(item) in _PLAIN else _prepare(item)
    return out


def _typed_array_tag(value: array.array) -> cbor2.CBORTag:
    tag = TYPECODE_TAGS.get(value.typecode)
    if tag is None:
        raise TypeError(f"array typecode {value.typecode!r} has no typed-array tag")
    if _BIG_ENDIAN_HOST:
        value = array.array(value.typecode, value)
        value.byteswap()
    return cbor2.CBORTag(tag, value.tobytes())


class _Encoders(threading.local):
    """One encoder per thread, reused: the bytes of cbor2.dumps without building an
    encoder (and its stream) for every payload."""

    def __init__(self) -> None:
        self.encoder = cbor2.CBOREncoder(io.BytesIO())


_encoders = _Encoders()


def encode_payload(obj: Any) -> bytes:
    """Encode one payload item deterministically. Raises TypeError for values outside the
    data model (sets, tags, non-int/str map keys, unknown array typecodes). Integers must
    lie in CBOR's 64-bit range."""
    if type(obj) is dict:  # every message payload
        return _encoders.encoder.encode_to_bytes(_prepare_map(obj))
    return _encoders.encoder.encode_to_bytes(_prepare(obj))


def _reject_tag(value: Any, immutable: bool) -> None:
    raise ValueError("tag not allowed (only RFC 8746 typed arrays)")


_SEMANTIC_DECODERS = {tag: _reject_tag for tag in _CBOR2_BUILTIN_TAGS}


def _typed_array(tag: cbor2.CBORTag, immutable: bool = False) -> array.array:
    """cbor2's tag hook (cbor2 6.3 calls it as hook(tag, immutable)): typed arrays become
    array.array, every other tag is refused."""
    spec = TYPED_ARRAY_TAGS.get(tag.tag)
    if spec is None:
        raise ValueError(f"tag {tag.tag} not allowed (only RFC 8746 typed arrays)")
    typecode, size = spec
    data = tag.value
    if type(data) is not bytes or len(data) % size:
        raise ValueError(f"typed array tag {tag.tag} needs a byte string of whole items")
    result = array.array(typecode, data)
    if _BIG_ENDIAN_HOST:
        result.byteswap()
    return result


def _check(value: Any) -> None:
    """Refuse values outside the data model (simple values, undefined, non-int/str keys)."""
    kind = type(value)
    if kind is dict:
        for key in value:
            if type(key) not in _KEY_TYPES:
                raise ValueError("map keys must be integers or text")
        for item in value.values():
            if type(item) not in _LEAVES:
                _check(item)
    elif kind is list:
        for item in value:
            if type(item) not in _LEAVES:
                _check(item)
    elif kind not in _LEAVES:
        raise ValueError(f"value of kind {kind.__name__} not allowed")


class _Decoders(threading.local):
    """One configured decoder per thread, reading from its own stream, which each payload
    re-initialises (BytesIO.__init__: its buffer replaced, its position 0). Setting up the
    decoder, a new stream and pointing the decoder at it cost about half of a small
    payload's decode. It keeps a reference to the last payload decoded in its thread
    until the next one."""

    def __init__(self) -> None:
        self.stream = io.BytesIO(b"")
        self.decoder = cbor2.CBORDecoder(
            self.stream,
            read_size=16384,  # one read for most payloads: fewer calls into BytesIO
            tag_hook=_typed_array,
            semantic_decoders=_SEMANTIC_DECODERS,
            max_depth=MAX_NESTING,
            allow_indefinite=False,
            allow_duplicate_keys=False,
        )


_decoders = _Decoders()


_DECODE_ERRORS = (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError, RecursionError)


def _bad_cbor(exc: Exception) -> FrameError:
    detail = str(exc.__cause__) if exc.__cause__ is not None else str(exc)
    return FrameError(ErrorCode.BAD_PAYLOAD, f"bad CBOR: {detail}")


def decode_payload(data: bytes | bytearray | memoryview) -> Any:
    """Decode exactly one CBOR item; typed arrays become array.array.

    Raises FrameError(BAD_PAYLOAD) for malformed CBOR, indefinite lengths, nesting deeper
    than MAX_NESTING, trailing bytes, duplicate map keys, tags other than typed arrays,
    simple values other than false/true/null, and map keys other than int or text.
    """
    value = decode_unchecked(data)
    if type(value) not in _LEAVES:
        check_model(value)
    return value


def decode_unchecked(data: bytes | bytearray | memoryview) -> Any:
    """decode_payload without the data-model check (check_model): for a caller that
    checks the decoded value itself (frame.decode_frame, with the catalog's rules)."""
    state = _decoders
    stream = state.stream
    stream.__init__(data)
    try:
        value = state.decoder.decode()
        if stream.tell() != len(data):
            raise ValueError(f"{len(data) - stream.tell()} bytes after the CBOR item")
    except BaseException as exc:
        # a decode that failed part way may leave bytes in the decoder's read buffer:
        # pointing it at its stream again starts it afresh
        state.decoder.fp = stream
        if isinstance(exc, _DECODE_ERRORS):
            raise _bad_cbor(exc) from None
        raise
    return value


def check_model(value: Any) -> None:
    """decode_payload's refusal of values outside the data model, as FrameError."""
    try:
        _check(value)
    except _DECODE_ERRORS as exc:
        raise _bad_cbor(exc) from None
