"""The client port's wire format, shared by the master's end (client_port.py) and the
user's end (client.py).

Each message is one CBOR map (the payload codec of the node protocol, so typed arrays
travel exactly) behind a 4-byte big-endian length. The connection opens with a mutual
challenge like a node's join (docs/master.md, "Client port"):

  master -> client  {"service": "microswarm-client", "version": 1, "cluster": NAME, "nonce": Nm}
  client -> master  {"nonce": Nc, "mac": HMAC-SHA256(key, "msw-client" Nm Nc)}
  master -> client  {"proof": HMAC-SHA256(key, "msw-client-master" Nc Nm)}   or {"error": TEXT}

Neither side sends anything else before the other proved it knows the cluster key; the
key itself never crosses the connection. Then the client sends requests
``{"id": N, "op": OP, ...}``; the master answers each with ``{"id": N, ...}`` (or
``{"id": N, "error": TEXT}``) and streams a job's results as they finish:
``{"job": J, "index": I, "value": V}`` and, last, ``{"job": J, "state": S, "error": TEXT?}``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import struct
from pathlib import Path
from typing import Any

from microswarm.keys import read_key
from microswarm.wire import decode_payload, encode_payload

SERVICE = "microswarm-client"
VERSION = 1
CLIENT_PORT = 5883
NONCE_SIZE = 16
MAX_MESSAGE = 64 << 20
MAX_HANDSHAKE = 1024  # before the peer proved the key, nothing longer is read
_LEN = struct.Struct(">I")


class ClientProtocolError(ConnectionError):
    """The peer broke the client protocol or failed its proof."""


def client_mac(key: bytes, master_nonce: bytes, client_nonce: bytes) -> bytes:
    return hmac.new(key, b"msw-client" + master_nonce + client_nonce, hashlib.sha256).digest()


def master_mac(key: bytes, client_nonce: bytes, master_nonce: bytes) -> bytes:
    return hmac.new(key, b"msw-client-master" + client_nonce + master_nonce,
                    hashlib.sha256).digest()


def new_nonce() -> bytes:
    return os.urandom(NONCE_SIZE)


def pack(message: dict[str, Any]) -> bytes:
    body = encode_payload(message)
    return _LEN.pack(len(body)) + body


async def read_message(reader: asyncio.StreamReader,
                       limit: int = MAX_MESSAGE) -> dict[str, Any] | None:
    """The next message; None at a clean end of stream."""
    try:
        head = await reader.readexactly(_LEN.size)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise ClientProtocolError("connection closed inside a message") from None
        return None
    (size,) = _LEN.unpack(head)
    if size > limit:
        raise ClientProtocolError(f"message of {size} bytes is over the {limit} limit")
    try:
        body = await reader.readexactly(size)
    except asyncio.IncompleteReadError:
        raise ClientProtocolError("connection closed inside a message") from None
    try:
        message = decode_payload(body)
    except Exception as exc:  # noqa: BLE001 - any decoding failure is the peer's fault
        raise ClientProtocolError(f"undecodable message: {exc}") from None
    if not isinstance(message, dict):
        raise ClientProtocolError("a message must be a map")
    return message


def parse_address(text: str, default_port: int = CLIENT_PORT) -> tuple[str, int]:
    """HOST:PORT, [V6]:PORT, HOST or :PORT -> (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or "]" in port:
        host, port = text, str(default_port)
    host = host.strip("[]") or "127.0.0.1"
    try:
        return host, int(port)
    except ValueError:
        raise ValueError(f"bad address {text!r}: expected HOST:PORT") from None


def read_key_file(path: str | Path) -> bytes:
    """The cluster key in a key file, read by the project's one key reader."""
    return read_key(path)
