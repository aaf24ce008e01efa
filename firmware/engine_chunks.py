"""CHUNK reassembly for the node engine (imported on the first CHUNK: most tasks need none).

Chunks(max_message, count=4, copy=False): the reassembly and its limits (reassembly.py's
Reassembler, for the codec's other users, is this class with copy=True), and what the
engine answers with: the task id of a TASK whose stream failed, read from the stream's
first piece. One module: a node's first CHUNK interns no name the node does not hold
already, next to the message's buffer (docs/qemu.md, the big task).

#   .add(payload, flags, seq=None) -> None, or (inner_type, inner_payload) when a CHUNK
#       stream completes (validated against FIELDS). The whole message's buffer is
#       allocated once, at offset 0, after checking its announced total against
#       max_message and the sum of all open streams' totals against max_message too (a
#       board's heap bounds them together). Errors (the stream is dropped): TOO_LARGE
#       (total, open bytes or stream count over the limit), BAD_CHUNK (unknown stream,
#       restart, offset out of order, total or type changing, MORE set on the last piece
#       or missing before it, inner type CHUNK or unknown), BAD_PAYLOAD, NO_MEMORY.
#       The errors carry `seq` when given, and `task_id` (the TASK's, else None).
#   .reset(): drop every unfinished stream (a new link); .pending() -> bytes held by
#       unfinished streams; .tasks: stream -> task id of the TASK it carries.
"""

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


_MAX_STREAMS = const(4)  # CHUNK streams a node holds open at once

# BEGIN GENERATED: protocol constants (tools/gen_protocol.py, from protocol/catalog.py)
_FLAG_MORE = const(1)
_T_TASK = const(5)
_T_CHUNK = const(12)
_E_TOO_LARGE = const(5)
_E_BAD_CHUNK = const(8)
_E_NO_MEMORY = const(11)
# END GENERATED


def peek_task_id(data):
    """The task id at the start of an encoded TASK payload (a map whose first key is 0,
    task_id, as every sender writes it), or None."""
    n = len(data)
    if n < 3 or not 0xA0 <= data[0] <= 0xB7 or data[1] != 0:
        return None
    head = data[2]
    if head < 24:
        return head
    size = 1 << (head - 24) if 24 <= head <= 27 else 0
    if size == 0 or n < 3 + size:
        return None
    value = 0
    for i in range(size):
        value = (value << 8) | data[3 + i]
    return value


def receive(eng, payload, flags, seq, now):
    """A CHUNK for the engine `eng` of a joined session: the piece kept, the message it
    completes handed to eng.receive, or the stream's failure answered."""
    if eng.chunks is None:
        eng.chunks = Chunks(eng.max_message, _MAX_STREAMS)
    try:
        whole = eng.chunks.add(payload, flags, seq)
    except ValueError as e:  # the codec's FrameError
        eng.stats.bad_frames += 1
        eng._send_error(e.code, e.text, seq, getattr(e, "task_id", None))
        return
    if whole is not None:
        # a reassembled message is a buffer of its own, not the reader's: a PUT may keep
        # its operand as a view into it (operands.py)
        eng.owned = True
        try:
            eng.receive(whole[0], 0, seq, whole[1], now)
        finally:
            eng.owned = False


class Chunks:
    def __init__(self, max_message, count=4, copy=False):
        self.max_message = max_message
        self.count = count  # streams open at once
        self.copy = copy
        self.tasks = {}  # stream -> task id of the TASK it carries
        self.reset()

    def reset(self):
        self.held = {}  # stream -> [inner type, total, buffer, offset, seq]
        self._open = 0

    def pending(self):
        return self._open

    def add(self, payload, flags, seq=None):
        stream = payload[0]
        inner = payload[1]
        total = payload[2]
        off = payload[3]
        data = payload[4]
        if off == 0 and inner == _T_TASK:
            task_id = peek_task_id(data)
            if task_id is not None:
                self.tasks[stream] = task_id
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
        except FrameError as e:
            st = held.pop(stream, None)  # the stream is dropped
            if st is not None:
                self._open -= st[1]
            e.task_id = self.tasks.pop(stream, None)
            raise
        del held[stream]
        self._open -= total
        try:
            message = frame._load_payload(st[2], 0, total, self.copy, st[4])
            frame.check_payload(inner, message, st[4])
        except ValueError as e:  # frame.FrameError
            e.task_id = self.tasks.pop(stream, None)
            raise
        self.tasks.pop(stream, None)
        return inner, message
