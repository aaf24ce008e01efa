"""Frame authentication after the join (LinkAuth), and the node's random nonces.

The join's own proofs (HMAC-SHA256 over the two nonces: node_mac, master_proof) and the
HKDF that derives the frame keys are in engine_join.py, loaded only for a join.
"""

import hashlib

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


# BEGIN GENERATED: protocol constants (tools/gen_protocol.py, from protocol/catalog.py)
_FRAME_OVERHEAD = const(11)
_FLAG_MAC = const(2)
_T_WELCOME = const(2)
# END GENERATED
# BEGIN GENERATED: text numbers (tools/gen_protocol.py, from msw_texts.py)
_TX_AUTH_BEFORE_JOIN = const(44)
_TX_AUTH_NO_MAC = const(45)
_TX_AUTH_MISMATCH = const(46)
_TX_AUTH_REPLAYED = const(47)
_TX_AUTH_EXHAUSTED = const(73)
# END GENERATED

try:
    from os import urandom as _urandom
except ImportError:
    _urandom = None

try:  # the frame MAC in C, with no heap (hashlib allocates two objects and digests a frame)
    from msw_native import mac8 as _mac8
except (ImportError, ValueError):  # absent, built for another arch, or an older build
    _mac8 = None

# Builtins named per frame, bound in this module's own table: MicroPython looks a name up
# there before the builtins, and a table grows only once full, so a miss probes every
# slot (0.3-0.5 us a name in the unix VM; docs/firmware.md, "Benchmark").
range = range
len = len


def _hmac(pads, counter, data):
    # the frame's full HMAC, its first 8 bytes the tag (without msw_native: this allocates
    # two sha256 objects and two digests a frame)
    h = hashlib.sha256(pads[0])
    h.update(counter)
    h.update(data)
    o = hashlib.sha256(pads[1])
    o.update(h.digest())
    return o.digest()


class LinkAuth:
    # Frame authentication after the join (SPEC.md section 5). The node makes one when
    # AUTH_CHALLENGE arrives and hangs it on its frame reader and writer (their `auth`):
    # frames are accepted without a MAC up to WELCOME; from WELCOME on every frame sent
    # carries, and every frame received needs, the trailer: counter u32 | tag, tag = HMAC
    # (direction key, counter | header | payload)[:8]. check() raises FrameError BAD_MAC.
    # The key blocks are padded once; a frame costs two sha256 objects and two digests.

    def __init__(self, key, master_nonce, node_nonce):
        # (made during the join: the keys' HKDF and pads are the join's code, engine_join.py)
        try:
            import engine_join
        except ImportError:
            from microswarm.firmware import engine_join
        self._tx, self._rx = engine_join.frame_pads(key, master_nonce, node_nonce)
        self.tx_counter = 0
        self.rx_counter = -1
        self.on = False
        self.rejected = 0
        self._ctr = bytearray(4)
        self._got = bytearray(8)  # the tag computed for a received frame
        self._rx_ctr = bytearray(4)  # its counter

    def _mac(self, pads, counter, data, out, off):
        # the first 8 bytes of the frame's HMAC into out[off:off + 8]
        if _mac8 is not None:
            _mac8(pads[0], pads[1], counter, data, out, off)
            return
        tag = _hmac(pads, counter, data)
        for i in range(8):
            out[off + i] = tag[i]

    def seal(self, buf, end, signed):
        """Write the trailer (counter, tag of `signed`) into buf[end:end + 12]."""
        n = self.tx_counter
        if n >> 32:
            try:
                import cbor  # (only here: a text is rendered when it is raised)
            except ImportError:
                from microswarm.firmware import cbor
            raise OSError(cbor.text(_TX_AUTH_EXHAUSTED))
        self.tx_counter = n + 1
        c = self._ctr
        c[0] = n & 0xFF
        c[1] = (n >> 8) & 0xFF
        c[2] = (n >> 16) & 0xFF
        c[3] = (n >> 24) & 0xFF
        for i in range(4):
            buf[end + i] = c[i]
        self._mac(self._tx, c, signed, buf, end + 4)

    def check(self, mv, msg_type, flags, length, signed=None):
        # mv: the whole frame, signed: its header and payload (mv[:7 + length], made here
        # when not given); returns None, or why it is refused, the number of a text in
        # msw_texts.py (the codec raises BAD_MAC with it)
        why = self._why(mv, msg_type, flags, length, signed)
        if why is not None:
            self.rejected += 1
        return why

    def _why(self, mv, msg_type, flags, length, signed):
        if not self.on:
            if flags & _FLAG_MAC:
                return _TX_AUTH_BEFORE_JOIN
            if msg_type == _T_WELCOME:  # the last frame without a MAC
                self.on = True
            return None
        if not flags & _FLAG_MAC:
            return _TX_AUTH_NO_MAC
        end = _FRAME_OVERHEAD + length
        counter = mv[end] | mv[end + 1] << 8 | mv[end + 2] << 16 | mv[end + 3] << 24
        c = self._rx_ctr
        for i in range(4):
            c[i] = mv[end + i]
        tag = self._got
        self._mac(self._rx, c, mv[: end - 4] if signed is None else signed, tag, 0)
        diff = 0  # the first 8 bytes against the trailer's, in time independent of content
        for i in range(8):
            diff |= tag[i] ^ mv[end + 4 + i]
        if diff:
            return _TX_AUTH_MISMATCH
        if counter <= self.rx_counter:
            return _TX_AUTH_REPLAYED
        self.rx_counter = counter
        return None


def nonce(size=16):
    """`size` random bytes from the port's hardware or OS source."""
    if _urandom is not None:
        return _urandom(size)
    import random

    out = bytearray(size)
    for i in range(size):
        out[i] = random.getrandbits(8)
    return bytes(out)
