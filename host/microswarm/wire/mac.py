"""Frame authentication after the join (SPEC.md, "Frame authentication").

Both sides derive two direction keys from the cluster key and the join's two nonces
(HKDF-SHA256, RFC 5869, written out here on hmac). After WELCOME every frame carries the
MAC flag and a trailer after its CRC: the sender's counter of that direction (u32, +1 per
frame) and the first MAC_TAG_SIZE bytes of HMAC-SHA256(direction key, counter | header |
payload). A receiver accepts a frame only with a valid tag and a counter above the last
one it accepted: a forged, replayed, reordered or reflected frame is BAD_MAC, counted and
skipped, and the link stays up. Frames lost on a noisy line leave gaps, which is fine.

`LinkAuth.master(...)` / `LinkAuth.node(...)` is the one call each side makes; the codec
does the rest through the `auth` argument of pack_frame/encode_frame/encode_message and
the `auth` attribute of FrameReader/SerialDeframer.
"""

from __future__ import annotations

import hashlib
import hmac
import struct

from microswarm.protocol.catalog import (
    CRC_SIZE,
    FLAG_MAC,
    HEADER_SIZE,
    MAC_COUNTER_SIZE,
    MAC_TAG_SIZE,
    MAC_TRAILER_SIZE,
    ErrorCode,
    MsgType,
)

from .errors import FrameError

LABEL_M2N = b"msw-frame master->node"
LABEL_N2M = b"msw-frame node->master"
COUNTER_LIMIT = 1 << 32  # a direction's counter never wraps: the link ends first

_COUNTER = struct.Struct("<I")
_WELCOME = int(MsgType.WELCOME)
_HELLO = int(MsgType.HELLO)
_BLOCK = 64
# each byte XOR the HMAC pads (RFC 2104), as translation tables: one C call per key block
_IPAD = bytes(b ^ 0x36 for b in range(256))
_OPAD = bytes(b ^ 0x5C for b in range(256))
_compare = hmac.compare_digest
try:
    # CPython's own SHA-256 (not OpenSSL's): the same digest, and its state is a plain
    # struct, so the copy each frame's HMAC starts from is a memcpy (OpenSSL's
    # EVP_MD_CTX_copy allocates): HMAC of a small frame ~0.8 us instead of ~1.0
    from _sha256 import sha256 as _sha256
except ImportError:  # a build without it
    _sha256 = hashlib.sha256


def hkdf_sha256(ikm: bytes, salt: bytes, info: bytes, length: int = 32) -> bytes:
    """HKDF (RFC 5869) with HMAC-SHA256: extract, then expand to `length` bytes."""
    prk = hmac.digest(salt, ikm, "sha256")
    out, block, i = b"", b"", 1
    while len(out) < length:
        block = hmac.digest(prk, block + info + bytes([i]), "sha256")
        out += block
        i += 1
    return out[:length]


def direction_keys(key: bytes, master_nonce: bytes, node_nonce: bytes) -> tuple[bytes, bytes]:
    """(master->node key, node->master key) of one joined link."""
    salt = bytes(master_nonce) + bytes(node_nonce)
    return hkdf_sha256(key, salt, LABEL_M2N), hkdf_sha256(key, salt, LABEL_N2M)


class _Mac:
    """HMAC-SHA256 with a fixed key, its padded key blocks hashed once."""

    __slots__ = ("inner", "outer")

    def __init__(self, key: bytes) -> None:
        if len(key) > _BLOCK:  # RFC 2104: a longer key is hashed first
            key = hashlib.sha256(key).digest()
        padded = bytes(key).ljust(_BLOCK, b"\0")
        self.inner = _sha256(padded.translate(_IPAD))
        self.outer = _sha256(padded.translate(_OPAD))

    def tag(self, counter: bytes, data: bytes | memoryview, more: bytes = b"") -> bytes:
        """HMAC(counter | data | more), truncated."""
        h = self.inner.copy()
        h.update(counter)
        h.update(data)
        if more:
            h.update(more)
        o = self.outer.copy()
        o.update(h.digest())
        return o.digest()[:MAC_TAG_SIZE]


class LinkAuth:
    """One side's frame authentication on one joined link: seals what it sends, checks
    what it receives. `sending`/`receiving` say whether each direction is on; a node's
    receiving side is armed at AUTH_CHALLENGE and turns on with the WELCOME frame itself,
    so frames the master sends right behind WELCOME are checked whatever the read
    batching; its sending side turns on at the same moment."""

    __slots__ = ("_tx", "_rx", "tx_counter", "rx_counter", "sending", "receiving", "_armed",
                 "rejected")

    def __init__(self, send_key: bytes, recv_key: bytes, *, armed: bool = False) -> None:
        self._tx = _Mac(send_key)
        self._rx = _Mac(recv_key)
        self.tx_counter = 0
        self.rx_counter = -1  # the last counter accepted
        self.sending = self.receiving = not armed
        self._armed = armed
        self.rejected = 0  # frames refused as BAD_MAC

    @classmethod
    def master(cls, key: bytes, master_nonce: bytes, node_nonce: bytes) -> LinkAuth:
        """The master's side: on from the first frame after WELCOME, both directions."""
        m2n, n2m = direction_keys(key, master_nonce, node_nonce)
        return cls(m2n, n2m)

    @classmethod
    def node(cls, key: bytes, master_nonce: bytes, node_nonce: bytes) -> LinkAuth:
        """The node's side, made when AUTH_CHALLENGE arrives: on after WELCOME."""
        m2n, n2m = direction_keys(key, master_nonce, node_nonce)
        return cls(n2m, m2n, armed=True)

    def check(self, frame: bytes, msg_type: int, flags: int, seq: int, length: int) -> None:
        """Check one received frame (CRC already checked); FrameError BAD_MAC if refused."""
        if not self.receiving:
            if flags & FLAG_MAC:
                return self._refuse("authenticated frame before the join", seq)
            if self._armed and msg_type == _WELCOME:  # the last frame without a MAC
                self.sending = self.receiving = True
            return None
        if not flags & FLAG_MAC:
            if msg_type == _HELLO:  # a node that restarted joins again: the join decides
                return None
            return self._refuse("frame without a MAC after the join", seq)
        end = HEADER_SIZE + length + CRC_SIZE
        (counter,) = _COUNTER.unpack_from(frame, end)
        mac = self._rx  # its tag(counter, header | payload), inline: one per frame received
        h = mac.inner.copy()
        h.update(frame[end : end + MAC_COUNTER_SIZE])
        h.update(frame[: end - CRC_SIZE])  # a copy: cheaper than a memoryview of a frame
        o = mac.outer.copy()
        o.update(h.digest())
        tag = o.digest()[:MAC_TAG_SIZE]
        if not _compare(tag, frame[end + MAC_COUNTER_SIZE : end + MAC_TRAILER_SIZE]):
            return self._refuse("MAC mismatch: forged or altered frame", seq)
        if counter <= self.rx_counter:
            return self._refuse(f"replayed or reordered frame (counter {counter}, last "
                                f"accepted {self.rx_counter})", seq)
        self.rx_counter = counter
        return None

    def _refuse(self, text: str, seq: int) -> None:
        self.rejected += 1
        raise FrameError(ErrorCode.BAD_MAC, text, seq)
