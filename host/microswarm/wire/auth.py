"""The two MACs of the mutual join handshake (SPEC.md, "Joining").

Compare received MACs with hmac.compare_digest, never with ==.
"""

from __future__ import annotations

import hashlib
import hmac


def node_mac(key: bytes, master_nonce: bytes, node_nonce: bytes, node_id: str) -> bytes:
    """AUTH_RESPONSE.mac: the node proves it knows the cluster key."""
    message = b"msw-node" + master_nonce + node_nonce + node_id.encode()
    return hmac.new(key, message, hashlib.sha256).digest()


def master_proof(key: bytes, node_nonce: bytes, master_nonce: bytes) -> bytes:
    """WELCOME.proof: the master proves it knows the cluster key."""
    return hmac.new(key, b"msw-master" + node_nonce + master_nonce, hashlib.sha256).digest()
