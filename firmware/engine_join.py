"""The join, apart from the engine's steady state: the HELLO payload and the limits a node
says in it (heap_limits), the answers to AUTH_CHALLENGE and WELCOME (engine.py's receive()
calls them), and the HMAC-SHA256 and HKDF they and the frame keys (auth.LinkAuth) need.
Every kind of node (board, local, simulated) uses these: one rule each. Loaded for a join,
from the HELLO to the WELCOME; on MicroPython the verified WELCOME drops it from
sys.modules, so a joined node does not hold its code (the next join loads it again).

MicroPython has hashlib.sha256 but no hmac module, so HMAC (RFC 2104) is built here on
sha256 with a 64-byte block. The node proves it knows the cluster key with `node_mac`,
the master with `master_proof`; `equal` compares MACs in time independent of content.
"""

import hashlib
import sys

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


# BEGIN GENERATED: protocol constants (tools/gen_protocol.py, from protocol/catalog.py)
_PROTOCOL_VERSION = const(1)
_NONCE_SIZE = const(16)
_T_AUTH_RESPONSE = const(4)
_E_BAD_PAYLOAD = const(4)
_E_AUTH_FAILED = const(12)
_E_UNEXPECTED = const(19)
_HELLO_NODE_ID = const(0)
_HELLO_BOARD = const(1)
_HELLO_FW_VERSION = const(2)
_HELLO_PROTO_VERSION = const(3)
_HELLO_KERNELS = const(4)
_HELLO_NATIVE_ARCH = const(5)
_HELLO_HEAP_TOTAL = const(6)
_HELLO_HEAP_FREE = const(7)
_HELLO_MAX_FRAME = const(8)
_HELLO_SLOTS = const(9)
_HELLO_LINK = const(11)
_HELLO_NATIVE_KERNELS = const(12)
_HELLO_MAX_MESSAGE = const(13)
_HELLO_THREADS = const(14)
_HELLO_KERNEL_HASHES = const(15)
_HELLO_CLUSTER = const(16)
_HELLO_OPERAND_CACHE = const(17)
_WELCOME_HEARTBEAT_MS = const(1)
_WELCOME_WINDOW = const(2)
_WELCOME_MAX_FRAME = const(3)
_WELCOME_PROOF = const(4)
_WELCOME_MAX_MESSAGE = const(5)
_AUTH_CHALLENGE_NONCE = const(0)
_AUTH_RESPONSE_MAC = const(0)
# END GENERATED

try:
    import engine as E
except ImportError:
    from microswarm.firmware import engine as E

_BLOCK = const(64)
_NODE_LABEL = const(b"msw-node")
_MASTER_LABEL = const(b"msw-master")


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


def hkdf(ikm, salt, info):
    """32 bytes of HKDF-SHA256 (RFC 5869): one extract, one expand block."""
    return hmac_sha256(hmac_sha256(salt, (ikm,)), (info, b"\x01"))


def pads(key):
    """(inner, outer): a key of at most one block, padded and XORed with HMAC's 0x36 and
    0x5C bytes once, so that a frame's tag costs two digests (auth.LinkAuth)."""
    inner = bytearray(_BLOCK)
    inner[: len(key)] = key
    outer = bytearray(inner)
    for i in range(_BLOCK):
        inner[i] ^= 0x36
        outer[i] ^= 0x5C
    return bytes(inner), bytes(outer)


def frame_pads(key, master_nonce, node_nonce):
    """The pads of the node's two frame keys (SPEC.md section 5): (node->master,
    master->node), each HKDF(key, master nonce | node nonce, its direction's label)."""
    salt = bytes(master_nonce) + bytes(node_nonce)
    return (pads(hkdf(key, salt, b"msw-frame node->master")),
            pads(hkdf(key, salt, b"msw-frame master->node")))


def node_mac(key, master_nonce, node_nonce, node_id):
    return hmac_sha256(key, (_NODE_LABEL, master_nonce, node_nonce, node_id.encode()))


def master_proof(key, node_nonce, master_nonce):
    return hmac_sha256(key, (_MASTER_LABEL, node_nonce, master_nonce))


def equal(a, b):
    """True if the byte strings match; the time taken does not depend on where they differ."""
    if len(a) != len(b):
        return False
    diff = 0
    for i in range(len(a)):
        diff |= a[i] ^ b[i]
    return diff == 0


def init(eng, io, hello, key, known, waits, stats, recycle):
    """engine.Engine's own setup (once a session: its code is not held either)."""
    eng.io = io
    eng.hello = hello
    eng.key = key
    eng.node_id = hello[_HELLO_NODE_ID]
    eng.slots = hello[_HELLO_SLOTS]
    eng.threads = hello.get(_HELLO_THREADS, False)
    eng.max_message = hello.get(_HELLO_MAX_MESSAGE, 0)
    eng.known = hello[_HELLO_KERNELS] if known is None else known
    eng.waits = waits
    eng.stats = stats if stats is not None else E.Stats()
    eng.state = E.HELLO_SENT
    eng.end_reason = None
    eng.refused = False
    eng.node_nonce = None
    eng.master_nonce = None
    eng.heartbeat_ms = 1000
    eng.window = 0
    eng.max_frame = hello[_HELLO_MAX_FRAME]
    eng.peer_max_message = 0  # the master's limit for our messages; 0: unknown
    eng.queue = []
    eng.running = []
    # recycle: Task records of finished tasks (at most `slots`) and the RESULT payload,
    # filled anew for each task
    eng.spare = [] if recycle else None
    eng._result = {} if recycle else None
    eng.computing = 0  # running tasks that are not waits
    eng.chunks = None
    eng.owned = False  # the message being received is a reassembled one (engine_chunks)
    eng.cache_bytes = hello.get(_HELLO_OPERAND_CACHE, 0)
    eng.ops = None  # operands.Operands, made on the first PUT or TASK with refs
    eng.join_deadline = 0
    eng.next_beat = 0
    eng.last_rx = 0
    eng.last_tick = 0


_OPERAND_SHARE = const(8)  # shared operands may hold 1/_OPERAND_SHARE of the heap (HELLO)


def heap_limits(heap_total):
    """(max_message, operand_cache) a board says in HELLO for its heap: two thirds of it
    for one message (at most 1 MiB), 1/_OPERAND_SHARE for shared operands. A reassembled
    message is one buffer of its size and its byte strings are decoded as views into it,
    so a message costs about its size: the ESP32's 111,168 bytes take 74,112, a 64 KB
    task (a third was 37,056)."""
    return min(heap_total * 2 // 3, 1 << 20), heap_total // _OPERAND_SHARE


def hello(node_id, board, fw_version, heap_total, heap_free, max_frame, slots, link,
          max_message, operand_cache, threads, about, cluster=None):
    """The HELLO payload every kind of node sends, without its nonce (Engine.start adds
    it). about: msw_boot.hello_fields() (kernels, kernel_hashes, native_arch, native_kernels)."""
    msg = {
        _HELLO_NODE_ID: node_id,
        _HELLO_BOARD: board,
        _HELLO_FW_VERSION: fw_version,
        _HELLO_PROTO_VERSION: _PROTOCOL_VERSION,
        _HELLO_HEAP_TOTAL: heap_total,
        _HELLO_HEAP_FREE: heap_free,
        _HELLO_MAX_FRAME: max_frame,
        _HELLO_SLOTS: slots,
        _HELLO_LINK: link,
        _HELLO_MAX_MESSAGE: max_message,
        _HELLO_OPERAND_CACHE: operand_cache,
        _HELLO_THREADS: threads,
        _HELLO_KERNELS: about["kernels"],
        _HELLO_KERNEL_HASHES: about["kernel_hashes"],
    }
    if cluster is not None:
        msg[_HELLO_CLUSTER] = cluster
    if "native_arch" in about:
        msg[_HELLO_NATIVE_ARCH] = about["native_arch"]
        msg[_HELLO_NATIVE_KERNELS] = about["native_kernels"]
    return msg


def challenge(eng, payload, seq):
    if eng.state != E.HELLO_SENT:
        eng._send_error(_E_UNEXPECTED, "AUTH_CHALLENGE after the challenge", seq)
        return
    nonce = bytes(payload[_AUTH_CHALLENGE_NONCE])
    if len(nonce) != _NONCE_SIZE:
        eng._send_error(_E_BAD_PAYLOAD, "master nonce must be 16 bytes", seq)
        eng.end("bad challenge")
        return
    eng.master_nonce = nonce
    eng.state = E.AUTH_SENT
    mac = node_mac(eng.key, nonce, eng.node_nonce, eng.node_id)
    eng.io.send(_T_AUTH_RESPONSE, {_AUTH_RESPONSE_MAC: mac})
    # every frame from WELCOME on carries a MAC, both ways (SPEC.md section 5): the io
    # hangs the codec's frame authentication on its reader and writer
    eng.io.challenged(eng.key, nonce, eng.node_nonce)


def welcome(eng, payload, seq, now):
    if eng.state == E.JOINED:
        # a master bug or a replay: the session we have stays as it is
        eng.stats.bad_frames += 1
        eng._send_error(_E_UNEXPECTED, "WELCOME after the join", seq)
        return
    if eng.state != E.AUTH_SENT:
        eng._send_error(_E_UNEXPECTED, "WELCOME before AUTH_CHALLENGE", seq)
        eng.end("WELCOME out of order")
        return
    proof = bytes(payload[_WELCOME_PROOF])
    expected = master_proof(eng.key, eng.node_nonce, eng.master_nonce)
    if not equal(proof, expected):
        eng.refused = True
        eng.io.challenged(None, None, None)  # an impostor cannot check MACs: none
        eng._send_error(_E_AUTH_FAILED, "master proof does not verify", seq)
        eng.end("the master's proof does not verify: wrong key or impostor")
        return
    eng.heartbeat_ms = max(E.MIN_HEARTBEAT_MS, payload[_WELCOME_HEARTBEAT_MS])
    eng.window = payload[_WELCOME_WINDOW]
    eng.max_frame = min(eng.max_frame, payload[_WELCOME_MAX_FRAME])
    eng.peer_max_message = payload.get(_WELCOME_MAX_MESSAGE, 0)
    eng.state = E.JOINED
    eng.next_beat = now + eng.heartbeat_ms
    eng.last_tick = now
    if sys.implementation.name == "micropython":  # joined: its code leaves the heap
        sys.modules.pop("engine_join", None)
    eng.io.on_joined()
    if eng.stats.logs:  # what the node noted before this session (SPEC.md, LOG)
        E._log().flush(eng, now)
