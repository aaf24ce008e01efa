"""Check a decoded payload against the message catalog (required keys, value kinds)."""

from __future__ import annotations

from typing import Any

from microswarm.protocol.catalog import CATALOG, ErrorCode, MsgType

from .cbor import _KEY_TYPES, _LEAVES
from .errors import FrameError

_BYTES = (bytes, bytearray, memoryview)

# kind -> the exact Python types a value of that kind may have (bool is not an int here).
_KIND_TYPES: dict[str, tuple[type, ...]] = {
    "uint": (int,),
    "int": (int,),
    "tstr": (str,),
    "bstr": _BYTES,
    "bool": (bool,),
    "float": (float, int),
    "array": (list, tuple),
    "tstr[]": (list, tuple),
    "map": (dict,),
}

# msg type -> ((key, name, kind, allowed types or None for "any", required), ...)
_RULES: dict[int, tuple[tuple[int, str, str, tuple[type, ...] | None, bool], ...]] = {
    int(msg.type): tuple(
        (f.key, f.name, f.kind, _KIND_TYPES.get(f.kind), f.required) for f in msg.fields
    )
    for msg in CATALOG.values()
}

_MISSING = object()

# The same rules for the common case, one pass over the payload's own keys: msg type ->
# (required keys, key -> (exact types, "uint" / "tstr[]" / "" for a further check)).
# Anything this pass does not accept outright (a missing field, a value of another type,
# a subclass such as an IntEnum member) goes through the rules in catalog order, which
# accept or name the first field at fault.
_FAST: dict[int, tuple[frozenset[int], dict[int, tuple[tuple[type, ...], str]]]] = {
    t: (frozenset(key for key, _, _, _, required in rules if required),
        {key: (types, kind if kind in ("uint", "tstr[]") else "")
         for key, _, kind, types, _ in rules if types is not None})
    for t, rules in _RULES.items()
}


def validate_payload(msg_type: int, payload: Any, seq: int | None = None) -> None:
    """Raise FrameError(BAD_PAYLOAD) unless `payload` is a map holding every required field
    of `msg_type` with a value of the declared kind. Unknown keys are allowed."""
    fast = _FAST.get(msg_type)
    if fast is not None and type(payload) is dict and fast[0] <= payload.keys():
        checks = fast[1]
        for key, value in payload.items():
            check = checks.get(key)
            if check is None:
                continue  # a field of any kind, or one this version does not know
            if type(value) not in check[0]:
                break
            extra = check[1]
            if extra and (value < 0 if extra == "uint"
                          else not all(type(item) is str for item in value)):
                break
        else:
            return
    _validate_by_rules(msg_type, payload, seq)


# accepted()'s form of _FAST: msg type -> (required keys, key -> (the exact types of the
# field that are also decoded leaves or a list, "uint" / "tstr[]" / "list" / "")); a field
# whose kinds are containers other than a list (a map) gets no types: refused here, as
# by the data-model check, and left to the full checks
_ACCEPT: dict[int, tuple[frozenset[int], dict[int, tuple[frozenset[type], str]]]] = {
    t: (required, {
        key: (frozenset(types) & (_LEAVES | {list}),
              extra or ("list" if list in types else ""))
        for key, (types, extra) in checks.items()})
    for t, (required, checks) in _FAST.items()
}


def accepted(msg_type: int, payload: Any) -> bool:
    """One pass over a freshly decoded map for the common case: True when decode_payload's
    data-model check (keys int or text, values leaves or lists of leaves) and
    validate_payload would both pass. False says nothing: run both (they raise the
    error, in their order, or accept)."""
    fast = _ACCEPT.get(msg_type)
    if fast is None or type(payload) is not dict or not fast[0] <= payload.keys():
        return False
    checks = fast[1]
    for key, value in payload.items():
        kind = type(value)
        check = checks.get(key)
        if check is None or type(key) is not int:  # (a bool or float key equals an int)
            if type(key) not in _KEY_TYPES:
                return False
            if kind not in _LEAVES:
                if kind is not list:
                    return False
                for item in value:
                    if type(item) not in _LEAVES:
                        return False
            if check is None:
                continue
        if kind not in check[0]:  # a leaf or a list, of the field's kind
            return False
        extra = check[1]
        if extra:
            if extra == "uint":
                if value < 0:
                    return False
            elif extra == "list":
                for item in value:
                    if type(item) not in _LEAVES:
                        return False
            elif not all(type(item) is str for item in value):  # tstr[]
                return False
    return True


def _validate_by_rules(msg_type: int, payload: Any, seq: int | None) -> None:
    rules = _RULES.get(msg_type)
    if rules is None:
        raise FrameError(ErrorCode.UNKNOWN_TYPE, f"message type {msg_type} is not known", seq)
    if type(payload) is not dict:
        raise FrameError(
            ErrorCode.BAD_PAYLOAD,
            f"{_name(msg_type)} payload must be a map, not {type(payload).__name__}",
            seq,
        )
    get = payload.get
    for key, name, kind, types, required in rules:
        value = get(key, _MISSING)
        if value is _MISSING:
            if required:
                raise FrameError(
                    ErrorCode.BAD_PAYLOAD, f"{_name(msg_type)} lacks field {name} ({key})", seq
                )
            continue
        if types is None or type(value) in types or _subclass_of(value, kind, types):
            if kind == "uint" and value < 0:
                raise FrameError(
                    ErrorCode.BAD_PAYLOAD, f"{_name(msg_type)}.{name} must not be negative", seq
                )
            if kind == "tstr[]" and not all(type(item) is str for item in value):
                raise FrameError(
                    ErrorCode.BAD_PAYLOAD, f"{_name(msg_type)}.{name} must hold text only", seq
                )
            continue
        raise FrameError(
            ErrorCode.BAD_PAYLOAD,
            f"{_name(msg_type)}.{name} must be {kind}, not {type(value).__name__}",
            seq,
        )


def _subclass_of(value: Any, kind: str, types: tuple[type, ...]) -> bool:
    """IntEnum members and other subclasses count as their base kind; bool is not an int."""
    return isinstance(value, types) and (kind == "bool" or not isinstance(value, bool))


def _name(msg_type: int) -> str:
    try:
        return MsgType(msg_type).name
    except ValueError:
        return str(msg_type)
