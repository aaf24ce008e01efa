"""The master's half of the join (SPEC.md section 5), as pure functions.

The one place where the master checks a HELLO, computes and checks the join MACs and
builds WELCOME. `NodeSession` calls these; nothing else on the host side of a master
computes a join MAC.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import Any

from microswarm.master.messages import build
from microswarm.protocol.catalog import NONCE_SIZE, PROTOCOL_VERSION, ErrorCode, MsgType
from microswarm.wire import master_proof, node_mac

MIN_FRAME = 64  # a node must accept frames at least this large (an ERROR fits, CHUNKs work)


class JoinRefused(Exception):
    """The join cannot go on: the master answers ERROR `code` and closes the link."""

    def __init__(self, code: ErrorCode, text: str, ref_seq: int | None = None) -> None:
        super().__init__(text)
        self.code = code
        self.text = text
        self.ref_seq = ref_seq


@dataclass(slots=True)
class NodeInfo:
    """What the master knows about a joined node (HELLO plus live counters).

    `joined_at` is set by whoever drives the session: the master puts the wall-clock
    time (time.time()) of the join there, for `microswarm nodes` and deploy's wait."""

    node_id: str
    board: str
    fw_version: str
    link: str
    peer: str
    kernels: list[str]
    native_kernels: list[str]
    native_arch: str | None
    heap_total: int
    heap_free: int
    max_frame: int
    max_message: int
    slots: int
    window: int
    threads: bool = False
    joined_at: float = 0.0
    tasks_sent: int = 0
    results: int = 0
    errors: int = 0
    bad_frames: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    compute_us: int = 0
    node_heartbeat: dict[str, Any] = field(default_factory=dict)
    kernel_hashes: dict[str, str] = field(default_factory=dict)  # kernel -> version hash
    operand_cache: int = 0  # bytes it keeps for shared operands (HELLO operand_cache)
    operands: int = 0  # shared operands it holds, by its last HEARTBEAT and our PUTs
    operand_needs: int = 0  # NEEDs it sent: a task found an operand missing
    log_lines: int = 0  # LOG frames it sent (this session)
    log_dropped: int = 0  # of those, over the master's rate limit: counted, not kept

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}  # type: ignore[attr-defined]


@dataclass(slots=True)
class Limits:
    """The master's side of the negotiation."""

    heartbeat_ms: int = 1000
    window: int = 4
    max_frame: int = 65546
    max_message: int = 1 << 20


def check_hello(hello: dict[str, Any], seq: int, cluster: str | None = None) -> None:
    """Refuse a HELLO the master cannot serve (its payload already matched the catalog).
    `cluster`: the master's cluster name (None: any name is accepted)."""
    if hello["proto_version"] != PROTOCOL_VERSION:
        raise JoinRefused(
            ErrorCode.BAD_VERSION,
            f"node speaks protocol {hello['proto_version']}, master speaks {PROTOCOL_VERSION}: "
            "update the firmware", seq)
    if len(hello["nonce"]) != NONCE_SIZE:
        raise JoinRefused(ErrorCode.BAD_PAYLOAD, f"HELLO nonce must be {NONCE_SIZE} bytes", seq)
    if not hello["node_id"]:
        raise JoinRefused(ErrorCode.BAD_PAYLOAD, "HELLO node_id is empty", seq)
    if "cluster" in hello and cluster is not None and hello["cluster"] != cluster:
        raise JoinRefused(
            ErrorCode.AUTH_FAILED,
            f"node {hello['node_id']!r} is configured for cluster {hello['cluster']!r}, this "
            f"master serves cluster {cluster!r}: give both the same cluster name", seq)
    if hello["max_frame"] < MIN_FRAME:
        raise JoinRefused(ErrorCode.BAD_PAYLOAD,
                          f"HELLO max_frame {hello['max_frame']} is below {MIN_FRAME}", seq)


def check_response(key: bytes, hello: dict[str, Any], master_nonce: bytes, mac: bytes,
                   seq: int, cluster: str | None = None) -> None:
    """The node's AUTH_RESPONSE MAC, compared in constant time."""
    expected = node_mac(key, master_nonce, bytes(hello["nonce"]), hello["node_id"])
    if not hmac.compare_digest(bytes(mac), expected):
        raise JoinRefused(
            ErrorCode.AUTH_FAILED,
            f"node {hello['node_id']!r}: wrong cluster key (its proof does not verify with the "
            f"key of this master's cluster {cluster!r}): give both the same key file", seq)


def welcome(key: bytes, hello: dict[str, Any], master_nonce: bytes, limits: Limits, *,
            kind: str, peer: str) -> tuple[dict[int, Any], NodeInfo]:
    """WELCOME's payload and the joined node's NodeInfo.

    max_frame is the smaller of both; window the smaller of the node's slots and the
    master's window (at least 1); the node's max_message defaults to its max_frame."""
    max_frame = min(hello["max_frame"], limits.max_frame)
    max_message = min(hello.get("max_message", max_frame), limits.max_message)
    window = max(1, min(hello["slots"], limits.window))
    payload = build(
        MsgType.WELCOME, node_id=hello["node_id"], heartbeat_ms=limits.heartbeat_ms,
        window=window, max_frame=max_frame,
        proof=master_proof(key, bytes(hello["nonce"]), master_nonce),
        max_message=limits.max_message,
    )
    info = NodeInfo(
        node_id=hello["node_id"], board=hello["board"], fw_version=hello["fw_version"],
        link=kind, peer=peer, kernels=list(hello["kernels"]),
        native_kernels=list(hello.get("native_kernels", [])),
        native_arch=hello.get("native_arch"), heap_total=hello["heap_total"],
        heap_free=hello["heap_free"], max_frame=max_frame, max_message=max_message,
        slots=hello["slots"], window=window, threads=bool(hello.get("threads", False)),
        kernel_hashes={str(k): str(v) for k, v in hello.get("kernel_hashes", {}).items()},
        operand_cache=int(hello.get("operand_cache", 0)),
    )
    return payload, info
