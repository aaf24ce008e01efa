"""Payload maps by field name: {name: value} <-> {small int key: value}, from the catalog."""

from __future__ import annotations

from typing import Any

from microswarm.protocol.catalog import CATALOG, MsgType, key

_KEYS: dict[MsgType, dict[str, int]] = {
    t: {f.name: f.key for f in m.fields} for t, m in CATALOG.items()
}
_NAMES: dict[MsgType, dict[int, str]] = {
    t: {f.key: f.name for f in m.fields} for t, m in CATALOG.items()
}


def build(msg_type: MsgType, **fields: Any) -> dict[int, Any]:
    """The payload map of one message; fields given as None are left out."""
    keys = _KEYS[msg_type]
    return {keys[name]: value for name, value in fields.items() if value is not None}


def fields(msg_type: int, payload: dict[int, Any]) -> dict[str, Any]:
    """A received payload by field name; unknown keys are dropped (forward compatibility)."""
    names = _NAMES[MsgType(msg_type)]
    return {names[k]: v for k, v in payload.items() if k in names}


# Keys of the messages on the hot path, where building a map by name costs too much.
TASK_ID, TASK_KERNEL, TASK_ARGS, TASK_ATTEMPT = (
    key(MsgType.TASK, n) for n in ("task_id", "kernel", "args", "attempt")
)
RESULT_TASK_ID, RESULT_VALUE, RESULT_ERROR, RESULT_ELAPSED, RESULT_CODE = (
    key(MsgType.RESULT, n) for n in ("task_id", "value", "error", "elapsed_us", "code")
)
CANCEL_TASK_ID = key(MsgType.CANCEL, "task_id")
