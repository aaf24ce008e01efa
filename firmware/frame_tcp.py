"""The frame codec's stream half (frame.py's comment block is its reference): the
StreamReader that cuts a TCP byte stream into frames, without copying. Imported by what
runs a TCP link; a serial node never loads it.
"""

from frame import MAX_FRAME, FrameError, Reuse, _check_header, _decode_body

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x

# BEGIN GENERATED: protocol constants (tools/gen_protocol.py, from protocol/catalog.py)
_HEADER_SIZE = const(7)
_FRAME_OVERHEAD = const(11)
_FLAG_MAC = const(2)
# END GENERATED

len = len
min = min
memoryview = memoryview
_TRAILER = const(12)  # (frame.py's)
_SPARE_LISTS = const(4)  # argument lists a reader keeps for the next TASKs


class StreamReader:
    def __init__(self, max_frame=MAX_FRAME, copy=True, reuse=False):
        self.max_frame = max_frame
        self.copy = copy
        self.auth = None  # an auth.LinkAuth once the join began
        self._buf = bytearray(max_frame + _TRAILER)
        self._mv = memoryview(self._buf)
        self._head = self._mv[:_HEADER_SIZE]  # want() at a frame's start: no new view
        # reuse: slices of the buffer kept, a TASK decoded into the same dict and lists,
        # one result list (advance() only: feed() would hand out the same objects twice)
        self._reuse = Reuse(self._buf) if reuse else None
        self._result = [0, 0, 0, None] if reuse else None
        self.reset()

    def reset(self):
        self.failed = None
        self._got = 0  # bytes of the frame in so far
        self._need = _HEADER_SIZE
        self._length = -1  # the frame's payload length once its header is in

    def spare(self, args):
        """Hand back a list a TASK's arguments were decoded into, once nothing uses it."""
        reuse = self._reuse
        if reuse is not None and len(reuse.lists) < _SPARE_LISTS:
            for i in range(len(args)):
                args[i] = None
            reuse.lists.append(args)

    def want(self):
        if self.failed is not None:
            raise self.failed
        if self._got == 0 and self._length < 0:
            return self._head
        if self._reuse is not None and self._got == _HEADER_SIZE:  # a payload's start
            return self._reuse.view(_HEADER_SIZE, self._need)
        return self._mv[self._got : self._need]

    def advance(self, n):
        if self.failed is not None:
            raise self.failed
        self._got += n
        if self._got < self._need:
            return None
        b = self._buf  # the header by hand: no tuple per frame
        if self._length < 0:
            length = b[5] | b[6] << 8
            try:
                _check_header(b[0], length, b[3] | b[4] << 8, self.max_frame)
            except FrameError as e:
                self.failed = e
                raise
            self._length = length
            self._need = length + _FRAME_OVERHEAD + (_TRAILER if b[2] & _FLAG_MAC else 0)
            return None
        length = self._length
        self._length = -1
        self._got = 0
        self._need = _HEADER_SIZE
        msg_type = b[1]
        flags = b[2]
        seq = b[3] | b[4] << 8
        # (the whole buffer: every check reads at offsets the header gives)
        payload = _decode_body(self._mv, msg_type, flags, seq, length, self.copy, self.auth,
                               self._reuse)
        out = self._result
        if out is None:
            return msg_type, flags, seq, payload
        out[0] = msg_type
        out[1] = flags
        out[2] = seq
        out[3] = payload
        return out

    def feed(self, data):
        out = []
        src = memoryview(data)
        pos = 0
        total = len(src)
        while pos < total:
            w = self.want()
            k = min(len(w), total - pos)
            w[:k] = src[pos : pos + k]
            pos += k
            try:
                r = self.advance(k)
            except FrameError as e:
                if e.fatal:
                    raise
                out.append(e)
                continue
            if r is not None:
                out.append(r)
        return out
