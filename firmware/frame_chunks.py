"""The frame writer's CHUNK sender (frame.py's comment block is its reference): a message
too big for one frame goes out as CHUNK frames, each encoded anew into the writer's frame
buffer a window of the message's encoding at a time, so no buffer ever holds it whole.
frame.py imports this with a node's first such message (or to size one that is too large),
so a node that sends none holds no code for it."""

# (the module, not its names: a dotted fallback would be one more interned name)
try:
    import frame
except ImportError:  # on the host: microswarm.firmware
    from microswarm.firmware import frame

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


# BEGIN GENERATED: protocol constants (tools/gen_protocol.py, from protocol/catalog.py)
_HEADER_SIZE = const(7)
_FRAME_OVERHEAD = const(11)
_FLAG_MORE = const(1)
_T_CHUNK = const(12)
_E_TOO_LARGE = const(5)
_E_BAD_CHUNK = const(8)
# END GENERATED
# BEGIN GENERATED: text numbers (tools/gen_protocol.py, from msw_texts.py)
_TX_FRAME_PEER_LIMIT = const(40)
_TX_FRAME_CHUNK_CHUNKED = const(41)
# END GENERATED

_HEAD_SLACK = const(16)  # (frame.py's)


# The window: while window() runs, the encoder's `_win` is (lo, hi, d, off): bytes lo..hi-1
# of the encoding go to buf[lo + d:hi + d], and `off` bytes have been encoded so far. Heads
# are written to a stage in the buffer's last _HEAD_SLACK bytes (past any frame and its
# trailer) and moved into the window when it fills (flush); data goes straight (copy).


def flush(enc):
    stage = len(enc.buf) - _HEAD_SLACK
    n = enc.pos - stage
    enc.pos = stage
    if n:
        copy(enc, memoryview(enc.buf)[stage : stage + n], n)


def copy(enc, data, n):
    lo, hi, d, off = enc._win
    a = off if off > lo else lo
    b = off + n if off + n < hi else hi
    if a < b:
        enc.buf[a + d : b + d] = memoryview(data)[a - off : b - off]
    enc._win = (lo, hi, d, off + n)


def window(enc, obj, lo, hi, at):
    """Write bytes lo..hi-1 of obj's encoding to enc.buf[at:]; returns the encoding's
    length (lo = hi: just the length)."""
    enc.pos = len(enc.buf) - _HEAD_SLACK
    enc._win = (lo, hi, at - lo, 0)
    try:
        enc._item(obj, 0)
        flush(enc)
        return enc._win[3]
    finally:
        enc._win = None


def _chunk_head(enc, stream, msg_type, total, off, k):
    # The CHUNK map up to its data, at _HEADER_SIZE; returns where the data goes.
    enc.pos = _HEADER_SIZE
    enc._head(0xA0, 5)
    for key, value in ((0, stream), (1, msg_type), (2, total), (3, off)):
        enc._head(0, key)
        enc._head(0, value)
    enc._head(0, 4)
    enc._head(0x40, k)
    return enc.pos


def frames(writer, msg_type, payload, max_message=0):
    """FrameWriter.frames: the frames of one message (one, or CHUNK pieces)."""
    if msg_type == _T_CHUNK:
        raise frame.FrameError(_E_BAD_CHUNK, _TX_FRAME_CHUNK_CHUNKED)
    view = writer.message(msg_type, payload, max_message)
    if view is not None:
        yield view
        return
    enc = writer._enc
    total = writer._total
    if total < 0:
        total = window(enc, payload, 0, 0, 0)
    if max_message and total > max_message:
        raise frame.FrameError(_E_TOO_LARGE, (_TX_FRAME_PEER_LIMIT, total, max_message))
    stream = writer.stream
    writer.stream = (stream + 1) & 0xFFFF
    room = (writer.max_frame - _FRAME_OVERHEAD - 2
            - (_chunk_head(enc, stream, msg_type, total, total, 0) - _HEADER_SIZE))
    off = 0
    while off < total:
        k = min(room, total - off)
        at = _chunk_head(enc, stream, msg_type, total, off, k)
        window(enc, payload, off, off + k, at)
        off += k
        yield writer._finish(enc, _T_CHUNK, _FLAG_MORE if off < total else 0, None,
                             at + k - _HEADER_SIZE)
