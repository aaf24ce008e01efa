"""The protocol as the simulator speaks it: field keys and frame helpers on top of
microswarm.wire, so nodes and master build exactly the frames a board and the real
master exchange."""

from __future__ import annotations

from typing import Any

from microswarm.protocol.catalog import MsgType, key
from microswarm.wire import (
    FrameError,
    LinkAuth,
    SerialDeframer,
    decode_frame,
    encode_frame,
    encode_payload,
    pack_frame,
    serial_encode,
)

HELLO, WELCOME = int(MsgType.HELLO), int(MsgType.WELCOME)
CHALLENGE, RESPONSE = int(MsgType.AUTH_CHALLENGE), int(MsgType.AUTH_RESPONSE)
TASK, RESULT, CANCEL = int(MsgType.TASK), int(MsgType.RESULT), int(MsgType.CANCEL)
HEARTBEAT, ERROR, BYE = int(MsgType.HEARTBEAT), int(MsgType.ERROR), int(MsgType.BYE)

H = {n: key(MsgType.HELLO, n) for n in (
    "node_id", "board", "fw_version", "proto_version", "kernels", "heap_total", "heap_free",
    "max_frame", "slots", "nonce", "link", "threads")}
W = {n: key(MsgType.WELCOME, n) for n in ("node_id", "heartbeat_ms", "window", "max_frame",
                                          "proof")}
CH_NONCE = key(MsgType.AUTH_CHALLENGE, "nonce")
RS_MAC = key(MsgType.AUTH_RESPONSE, "mac")
T_ID, T_KERNEL, T_ARGS, T_ATTEMPT = (key(MsgType.TASK, n)
                                     for n in ("task_id", "kernel", "args", "attempt"))
R_ID, R_VALUE, R_ERROR, R_ELAPSED, R_CODE = (
    key(MsgType.RESULT, n) for n in ("task_id", "value", "error", "elapsed_us", "code"))
C_ID = key(MsgType.CANCEL, "task_id")
HB_UPTIME, HB_QUEUE, HB_DONE, HB_BAD = (key(MsgType.HEARTBEAT, n)
                                        for n in ("uptime_ms", "queue", "done", "bad_frames"))
E_CODE, E_TEXT, E_REF, E_TASK = (key(MsgType.ERROR, n)
                                 for n in ("code", "text", "ref_seq", "task_id"))


def pack(msg_type: int, payload: dict[int, Any], seq: int, serial: bool,
         auth: LinkAuth | None = None) -> bytes:
    """One frame as it goes on the link: COBS-delimited on serial links.

    The sender skips the catalog check: every receiver validates each frame it decodes,
    so a malformed frame built by the simulator still fails loudly, at the receiver."""
    frame = encode_frame(msg_type, payload, seq & 0xFFFF, validate=False, auth=auth)
    return serial_encode(frame) if serial else frame


def pack_encoded(msg_type: int, payload: bytes, seq: int, serial: bool,
                 auth: LinkAuth | None = None) -> bytes:
    """As pack(), for a payload already encoded (one HEARTBEAT payload sent to many)."""
    frame = pack_frame(msg_type, payload, seq & 0xFFFF, 0, auth)
    return serial_encode(frame) if serial else frame


def encode(payload: dict[int, Any]) -> bytes:
    return encode_payload(payload)


class Receiver:
    """One receiving end of a link: serial bytes go through a SerialDeframer (COBS and
    CRC catch corruption), packet links carry exactly one frame per delivery."""

    __slots__ = ("deframer", "bad_frames", "auth")

    def __init__(self, serial: bool) -> None:
        self.deframer = SerialDeframer() if serial else None
        self.bad_frames = 0
        self.auth: LinkAuth | None = None

    def set_auth(self, auth: LinkAuth | None) -> None:
        """Check frame MACs from now on (None: a new connection, none until WELCOME)."""
        self.auth = auth
        if self.deframer is not None:
            self.deframer.auth = auth

    def feed(self, data: bytes) -> list | tuple:
        if self.deframer is None:
            try:
                return (decode_frame(data, auth=self.auth),)
            except FrameError as exc:
                self.bad_frames += 1
                return (exc,)
        items = self.deframer.feed(data)
        for item in items:
            if isinstance(item, FrameError):
                self.bad_frames += 1
        return items
