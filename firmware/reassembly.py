"""CHUNK reassembly for the node (frame.py's codec; imported on a link's first CHUNK, so a
node that never receives one never loads it)."""

# Reassembler(max_message, copy=True, count=4)   (count: streams open at once)
#   .add(payload, flags, seq=None) -> None, or (inner_type, inner_payload) when a CHUNK
#       stream completes (validated against FIELDS). The whole message's buffer is
#       allocated once, at offset 0, after checking its announced total against
#       max_message and the sum of all open streams' totals against max_message too (a
#       board's heap bounds them together). Errors (the stream is dropped): TOO_LARGE
#       (total, open bytes or stream count over the limit), BAD_CHUNK (unknown stream,
#       restart, offset out of order, total or type changing, MORE set on the last piece
#       or missing before it, inner type CHUNK or unknown), BAD_PAYLOAD, NO_MEMORY.
#       The errors carry `seq` when given.
#   .reset(): drop every unfinished stream (a new link); .open_bytes() -> bytes held.

# (the module, not its names: a dotted fallback would be one more interned name)
try:
    import frame
except ImportError:  # on the host: microswarm.firmware
    from microswarm.firmware import frame
from msgdefs import FIELDS

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


# BEGIN GENERATED: protocol constants (tools/gen_protocol.py, from protocol/catalog.py)
_FLAG_MORE = const(1)
_T_CHUNK = const(12)
_E_TOO_LARGE = const(5)
_E_BAD_CHUNK = const(8)
_E_NO_MEMORY = const(11)
# END GENERATED


class Reassembler:
    # Its names are few: they are interned at a node's first CHUNK, next to the message's
    # buffer (docs/qemu.md, the big task)
    def __init__(self, max_message, copy=True, count=4):
        self.max_message = max_message
        self.count = count  # streams open at once
        self.copy = copy
        self.reset()

    def reset(self):
        self.held = {}  # stream -> [inner type, total, buffer, offset, seq]
        self._open = 0

    def open_bytes(self):
        return self._open

    def add(self, payload, flags, seq=None):
        stream = payload[0]
        inner = payload[1]
        total = payload[2]
        off = payload[3]
        data = payload[4]
        held = self.held
        st = held.get(stream)
        FrameError = frame.FrameError
        try:
            if st is None:  # a new stream
                if off != 0:
                    raise FrameError(_E_BAD_CHUNK, "chunk of unknown stream %d" % stream, seq)
                if total > self.max_message or self._open + total > self.max_message:
                    raise FrameError(
                        _E_TOO_LARGE, "message of %d bytes over the limit of %d (%d bytes open)"
                        % (total, self.max_message, self._open), seq,
                    )
                if len(held) >= self.count:
                    raise FrameError(_E_TOO_LARGE, "more than %d open streams" % self.count,
                                     seq)
                if inner == _T_CHUNK or inner not in FIELDS:
                    raise FrameError(_E_BAD_CHUNK, "inner type %d not allowed" % inner, seq)
                try:
                    st = [inner, total, bytearray(total), 0, seq]
                except MemoryError:
                    raise FrameError(_E_NO_MEMORY, "no heap for a message of %d bytes" % total,
                                     seq)
                held[stream] = st
                self._open += total
            elif off == 0:
                raise FrameError(_E_BAD_CHUNK, "stream %d restarted" % stream, seq)
            elif inner != st[0] or total != st[1] or off != st[3]:
                raise FrameError(_E_BAD_CHUNK, "chunk of stream %d out of order" % stream, seq)
            n = len(data)
            if off + n > total:
                raise FrameError(_E_BAD_CHUNK, "chunk runs past the total of stream %d" % stream,
                                 seq)
            st[2][off : off + n] = data
            st[3] = off + n
            if flags & _FLAG_MORE:
                if st[3] == total:
                    raise FrameError(_E_BAD_CHUNK, "stream %d complete but MORE set" % stream,
                                     seq)
                return None
            if st[3] != total:
                raise FrameError(_E_BAD_CHUNK, "stream %d ended short of its total" % stream,
                                 seq)
        except FrameError:
            st = held.pop(stream, None)  # the stream is dropped
            if st is not None:
                self._open -= st[1]
            raise
        del held[stream]
        self._open -= total
        message = frame._load_payload(st[2], 0, total, self.copy, st[4])
        frame.check_payload(inner, message, st[4])
        return inner, message
