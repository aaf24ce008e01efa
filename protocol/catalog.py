"""The message catalog: every message type, every payload field, every error code.

This table is the single source of truth for what a payload holds. The construct frame
definition (`frame.py`) validates payloads against it, `tools/gen_protocol.py` renders
SPEC.md's tables and the firmware's constants module (`firmware/msgdefs.py`) from it, and
the golden vectors are built from it. Pure data: no third-party imports, so the host's
fast codec can use it without construct.

A payload is one CBOR map whose keys are the small integers below. Unknown keys are
ignored by receivers (forward compatibility); a missing required key or a value of the
wrong kind is a BAD_PAYLOAD error.
"""

from __future__ import annotations

from enum import IntEnum
from typing import NamedTuple

PROTOCOL_VERSION = 1

HEADER_SIZE = 7
CRC_SIZE = 4
FRAME_OVERHEAD = HEADER_SIZE + CRC_SIZE
MAX_PAYLOAD = 0xFFFF  # the header's length field is 16 bits; larger messages travel as CHUNKs

# Header flag bits. Every bit not listed here must be zero.
FLAG_MORE = 0x01  # CHUNK only: more chunks of the same stream follow
FLAG_MAC = 0x02  # a MAC trailer (counter + tag) follows the CRC: every frame after WELCOME
FLAGS_KNOWN = FLAG_MORE | FLAG_MAC

TCP_PORT = 5880  # master's listening port for node links
UDP_DISCOVERY_PORT = 5881  # master answers DISCOVER beacons here

NONCE_SIZE = 16
MAC_SIZE = 32
# Frame authentication after the join (SPEC.md, "Frame authentication"): a trailer of a
# u32 counter and the first MAC_TAG_SIZE bytes of HMAC-SHA256 follows the CRC.
MAC_COUNTER_SIZE = 4
MAC_TAG_SIZE = 8
MAC_TRAILER_SIZE = MAC_COUNTER_SIZE + MAC_TAG_SIZE


class MsgType(IntEnum):
    HELLO = 1
    WELCOME = 2
    AUTH_CHALLENGE = 3
    AUTH_RESPONSE = 4
    TASK = 5
    RESULT = 6
    CANCEL = 7
    HEARTBEAT = 8
    LOG = 9
    ERROR = 10
    BYE = 11
    CHUNK = 12
    DISCOVER = 13
    ANNOUNCE = 14
    PUT = 15
    NEED = 16


class ErrorCode(IntEnum):
    BAD_CRC = 1  # frame checksum mismatch
    BAD_VERSION = 2  # protocol version not spoken here
    UNKNOWN_TYPE = 3  # message type not in this catalog
    BAD_PAYLOAD = 4  # malformed CBOR, or a field missing or of the wrong kind
    TOO_LARGE = 5  # frame or reassembled message over the negotiated limit
    TRUNCATED = 6  # frame shorter than its header says
    BAD_FLAGS = 7  # reserved flag bits set, or MORE on a non-CHUNK frame
    BAD_CHUNK = 8  # chunk out of order, or of an unknown stream
    UNKNOWN_KERNEL = 9  # task names a kernel this node does not have
    KERNEL_FAILED = 10  # the kernel raised (bad arguments, arithmetic error)
    NO_MEMORY = 11  # the node ran out of heap for this task
    AUTH_FAILED = 12  # wrong cluster key, or master proof did not verify
    NOT_JOINED = 13  # message other than HELLO/AUTH before WELCOME
    BUSY = 14  # a task arrived with no credit left in the window
    CANCELLED = 15  # task cancelled before it finished
    BAD_ARGS = 16  # arguments do not match the kernel (deterministic: fail at once, no retry)
    BAD_MAC = 17  # frame authentication failed: no or a wrong MAC, or a replayed counter
    HANDSHAKE_TIMEOUT = 18  # the join did not complete in time
    UNEXPECTED = 19  # a known message in the wrong direction or state
    DEADLINE = 20  # a running task passed its deadline; the master requeued it elsewhere
    MISSING_OPERAND = 21  # a task's shared operand is not on the node and did not arrive


class LogLevel(IntEnum):
    DEBUG = 0
    INFO = 1
    WARNING = 2
    ERROR = 3


# Field kinds. "tarray" is an RFC 8746 typed array (see TYPED_ARRAY_TAGS); "any" is any
# CBOR item the protocol allows (ints, floats, text, bytes, bool, null, arrays, maps with
# int or text keys, typed arrays).
KINDS = ("uint", "int", "tstr", "bstr", "bool", "float", "any", "array", "tstr[]", "map")


class Field(NamedTuple):
    key: int
    name: str
    kind: str
    required: bool
    doc: str


class Message(NamedTuple):
    type: MsgType
    direction: str
    doc: str
    fields: tuple[Field, ...]

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"{self.type.name} has no field {name!r}")


def _m(type_: MsgType, direction: str, doc: str, *fields: Field) -> Message:
    return Message(type_, direction, doc, fields)


REQ, OPT = True, False

CATALOG: dict[MsgType, Message] = {
    m.type: m
    for m in (
        _m(
            MsgType.HELLO, "node -> master", "First frame on every link: who the node is.",
            Field(0, "node_id", "tstr", REQ, "stable node name, unique in the cluster"),
            Field(1, "board", "tstr", REQ, "board definition name (boards/<board>.json)"),
            Field(2, "fw_version", "tstr", REQ, "firmware version"),
            Field(3, "proto_version", "uint", REQ, "protocol version the node speaks"),
            Field(4, "kernels", "tstr[]", REQ, "names of the kernels the node can run"),
            Field(5, "native_arch", "tstr", OPT, "arch of the loaded native module, if any"),
            Field(6, "heap_total", "uint", REQ, "heap size in bytes"),
            Field(7, "heap_free", "uint", REQ, "free heap in bytes at HELLO time"),
            Field(8, "max_frame", "uint", REQ, "largest frame (header+payload+CRC) it accepts"),
            Field(9, "slots", "uint", REQ, "tasks it can hold at once (queued + running)"),
            Field(10, "nonce", "bstr", REQ, "16 random bytes for the mutual authentication"),
            Field(11, "link", "tstr", REQ, "link kind: tcp, serial, mem"),
            Field(12, "native_kernels", "tstr[]", OPT, "kernels served by the native module"),
            Field(13, "max_message", "uint", OPT, "largest reassembled CHUNK message accepted"),
            Field(14, "threads", "bool", OPT, "kernels run beside the link (second core or "
                  "thread): heartbeats continue during a kernel; absent/false: they do not"),
            Field(15, "kernel_hashes", "map", OPT, "kernel name -> short content hash (tstr) "
                  "of its code: the kernel's version"),
            Field(16, "cluster", "tstr", OPT, "the cluster name the node was configured with; "
                  "a master serving another name refuses it (AUTH_FAILED naming both)"),
            Field(17, "operand_cache", "uint", OPT, "bytes the node gives to cached shared "
                  "operands (PUT); absent or 0: none, tasks carry every argument"),
        ),
        _m(
            MsgType.WELCOME, "master -> node", "The node is admitted; the link limits.",
            Field(0, "node_id", "tstr", REQ, "the node's name as the master knows it"),
            Field(1, "heartbeat_ms", "uint", REQ, "heartbeat interval; silent 3 intervals = lost"),
            Field(2, "window", "uint", REQ, "credits: tasks the master may have in flight"),
            Field(3, "max_frame", "uint", REQ, "negotiated frame limit for both directions"),
            Field(4, "proof", "bstr", REQ, "HMAC-SHA256(key, 'msw-master' | node nonce | "
                  "master nonce): the node checks the master knows the key"),
            Field(5, "max_message", "uint", OPT, "largest reassembled message the master accepts"),
        ),
        _m(
            MsgType.AUTH_CHALLENGE, "master -> node", "Answer to HELLO.",
            Field(0, "nonce", "bstr", REQ, "16 random bytes"),
        ),
        _m(
            MsgType.AUTH_RESPONSE, "node -> master", "Proof that the node knows the cluster key.",
            Field(0, "mac", "bstr", REQ, "HMAC-SHA256(key, 'msw-node' | master nonce | node "
                  "nonce | node_id as UTF-8)"),
        ),
        _m(
            MsgType.TASK, "master -> node", "Run one kernel call. Uses one credit.",
            Field(0, "task_id", "uint", REQ, "unique per master; results are matched by it"),
            Field(1, "kernel", "tstr", REQ, "kernel name; never code"),
            Field(2, "args", "array", REQ, "positional arguments"),
            Field(3, "attempt", "uint", OPT, "0 for the first try, +1 per retry or speculation"),
            Field(4, "refs", "map", OPT, "shared operands: argument index -> operand hash "
                  "(bstr, 16 bytes); args holds null at those indexes (section 6)"),
        ),
        _m(
            MsgType.RESULT, "node -> master", "Outcome of one TASK. Returns its credit.",
            Field(0, "task_id", "uint", REQ, "the TASK's id"),
            Field(1, "value", "any", OPT, "the kernel's return value (absent on error)"),
            Field(2, "error", "tstr", OPT, "why the kernel failed (absent on success)"),
            Field(3, "elapsed_us", "uint", REQ, "kernel run time on the node"),
            Field(4, "native", "bool", OPT, "true if the native module ran it"),
            Field(5, "code", "uint", OPT, "ErrorCode when error is present"),
        ),
        _m(
            MsgType.CANCEL, "master -> node", "Drop a task. The node still answers with one "
            "RESULT, code CANCELLED (a running kernel finishes first).",
            Field(0, "task_id", "uint", REQ, "the TASK's id"),
        ),
        _m(
            MsgType.HEARTBEAT, "both", "Liveness and load; also sent by the master.",
            Field(0, "uptime_ms", "uint", REQ, "ms since the sender started"),
            Field(1, "heap_free", "uint", OPT, "free heap in bytes"),
            Field(2, "queue", "uint", OPT, "tasks queued or running"),
            Field(3, "done", "uint", OPT, "tasks completed since start"),
            Field(4, "bad_frames", "uint", OPT, "frames rejected since start"),
            Field(5, "heap_min", "uint", OPT, "lowest free heap seen since start"),
            Field(6, "running", "array", OPT, "[[task_id, elapsed_ms], ...] of the kernels "
                  "running now (queue counts them too)"),
            Field(7, "operands", "array", OPT, "hashes (bstr) of the shared operands the node "
                  "holds now, least recently used first; after a change and every 8th beat"),
        ),
        _m(
            MsgType.LOG, "node -> master", "A line for the master's log.",
            Field(0, "level", "uint", REQ, "LogLevel"),
            Field(1, "text", "tstr", REQ, "the message"),
        ),
        _m(
            MsgType.ERROR, "both", "A frame or request was refused. The link stays up "
            "unless the code is AUTH_FAILED, BAD_VERSION or NOT_JOINED.",
            Field(0, "code", "uint", REQ, "ErrorCode"),
            Field(1, "text", "tstr", REQ, "what went wrong and what to do"),
            Field(2, "ref_seq", "uint", OPT, "sequence number of the offending frame"),
            Field(3, "task_id", "uint", OPT, "task concerned, if any"),
        ),
        _m(
            MsgType.BYE, "both", "Orderly close; the sender closes the link after it.",
            Field(0, "reason", "tstr", OPT, "why"),
        ),
        _m(
            MsgType.CHUNK, "both", "One piece of a message larger than max_frame. Flag MORE "
            "is set on all but the last piece. Pieces arrive in order.",
            Field(0, "stream", "uint", REQ, "sender-chosen id, unique among open streams"),
            Field(1, "inner_type", "uint", REQ, "MsgType of the whole message"),
            Field(2, "total", "uint", REQ, "length of the whole message's CBOR payload"),
            Field(3, "offset", "uint", REQ, "where this piece starts in the whole payload"),
            Field(4, "data", "bstr", REQ, "the piece"),
        ),
        _m(
            MsgType.DISCOVER, "node -> broadcast (UDP)", "Where is the master?",
            Field(0, "cluster", "tstr", REQ, "cluster name the node wants"),
            Field(1, "node_id", "tstr", REQ, "who asks"),
        ),
        _m(
            MsgType.ANNOUNCE, "master -> node (UDP)", "Answer to DISCOVER.",
            Field(0, "cluster", "tstr", REQ, "cluster name"),
            Field(1, "host", "tstr", REQ, "address to dial"),
            Field(2, "port", "uint", REQ, "TCP port to dial"),
        ),
        _m(
            MsgType.PUT, "master -> node", "One shared operand for the node's cache, sent "
            "before the first TASK that refers to it (a CHUNK stream when large).",
            Field(0, "hash", "bstr", REQ, "the first 16 bytes of SHA-256 over data"),
            Field(1, "data", "bstr", REQ, "the operand's deterministic CBOR encoding"),
        ),
        _m(
            MsgType.NEED, "node -> master", "A TASK referred to operands the node does not "
            "hold: send them (PUT). The task waits for them.",
            Field(0, "hashes", "array", REQ, "the missing operands' hashes (bstr)"),
            Field(1, "task_id", "uint", OPT, "the task that waits for them"),
        ),
    )
}

OPERAND_HASH_SIZE = 16  # bytes of SHA-256 that name a shared operand

# RFC 8746 typed arrays (all little-endian): CBOR tag -> array.array typecode, item size.
# Python's array typecodes: 'i'/'I' are 4 bytes and 'q'/'Q' 8 bytes on every platform we
# run on (CPython on 64-bit Linux and MicroPython ports alike).
TYPED_ARRAY_TAGS: dict[int, tuple[str, int]] = {
    64: ("B", 1),  # uint8
    69: ("H", 2),  # uint16 LE
    70: ("I", 4),  # uint32 LE
    71: ("Q", 8),  # uint64 LE
    72: ("b", 1),  # sint8
    77: ("h", 2),  # sint16 LE
    78: ("i", 4),  # sint32 LE
    79: ("q", 8),  # sint64 LE
    85: ("f", 4),  # float32 LE
    86: ("d", 8),  # float64 LE
}
TYPECODE_TAGS: dict[str, int] = {code: tag for tag, (code, _size) in TYPED_ARRAY_TAGS.items()}

MAX_NESTING = 16  # deepest container nesting a decoder accepts (payloads are shallow)


def key(msg: MsgType, name: str) -> int:
    """The integer key of field `name` in message `msg`."""
    return CATALOG[msg].field(name).key
