"""Mutual authentication of a node and its master: HMAC-SHA256 over the two nonces.

MicroPython has hashlib.sha256 but no hmac module, so HMAC (RFC 2104) is built here on
sha256 with a 64-byte block. The node proves it knows the cluster key with `node_mac`,
the master with `master_proof`; `equal` compares MACs in time independent of content.
"""

import hashlib

try:
    from os import urandom as _urandom
except ImportError:
    _urandom = None

_BLOCK = 64
NODE_LABEL = b"msw-node"
MASTER_LABEL = b"msw-master"


def hmac_sha256(key, parts):
    """HMAC-SHA256 of the concatenation of the byte strings in `parts`."""
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    pad = bytearray(_BLOCK)
    pad[: len(key)] = key
    for i in range(_BLOCK):
        pad[i] ^= 0x36
    inner = hashlib.sha256(pad)
    for part in parts:
        inner.update(part)
    inner_digest = inner.digest()
    for i in range(_BLOCK):
        pad[i] ^= 0x36 ^ 0x5C
    outer = hashlib.sha256(pad)
    outer.update(inner_digest)
    return outer.digest()


def node_mac(key, master_nonce, node_nonce, node_id):
    return hmac_sha256(key, (NODE_LABEL, master_nonce, node_nonce, node_id.encode()))


def master_proof(key, node_nonce, master_nonce):
    return hmac_sha256(key, (MASTER_LABEL, node_nonce, master_nonce))


def equal(a, b):
    """True if the byte strings match; the time taken does not depend on where they differ."""
    if len(a) != len(b):
        return False
    diff = 0
    for i in range(len(a)):
        diff |= a[i] ^ b[i]
    return diff == 0


def nonce(size=16):
    """`size` random bytes from the port's hardware or OS source."""
    if _urandom is not None:
        return _urandom(size)
    import random

    out = bytearray(size)
    for i in range(size):
        out[i] = random.getrandbits(8)
    return bytes(out)
