"""The frame codec's serial half (frame.py's comment block is its reference): COBS, and
the Deframer that cuts a serial line into frames. Imported by what runs a serial link (and
by FrameWriter(serial=True) without the native COBS encoder); a TCP node never loads it.
"""

import cbor  # (its text(): the texts below by number; frame.py has loaded it)
from frame import MAX_FRAME, FrameError, decode

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x

# BEGIN GENERATED: protocol constants (tools/gen_protocol.py, from protocol/catalog.py)
_HEADER_SIZE = const(7)
_T_CHUNK = const(12)
_E_TOO_LARGE = const(5)
_E_TRUNCATED = const(6)
_E_NO_MEMORY = const(11)
# END GENERATED
# BEGIN GENERATED: text numbers (tools/gen_protocol.py, from msw_texts.py)
_TX_SERIAL_OVER = const(42)
_TX_SERIAL_BAD_COBS = const(43)
_TX_COBS_MALFORMED = const(70)
_TX_COBS_LONG = const(71)
# END GENERATED

try:  # (imported by name: a name in quotes longer than 10 characters is a str object)
    from msw_native import cobs_decode as _native_cobs_decode
except (ImportError, ValueError):  # absent, or built for another arch / .mpy version
    _native_cobs_decode = None

len = len
type = type
memoryview = memoryview
_TRAILER = const(12)  # (frame.py's)

BREAK = "BREAK"


# COBS (Cheshire and Baker): blocks of a code byte n (1..255) and n-1 non-zero bytes; a
# block with n < 255 stands for its bytes plus one zero, except at the end. No empty final
# block follows a last run of exactly 254 non-zero bytes (one encoding per input, as the
# host writes it). The loops below run once per block or zero, never once per byte.


def cobs_max(n):
    return n + n // 254 + 1


def cobs_encode_into(src, start, end, dst):
    """COBS-encode src[start:end] (bytes or bytearray) into dst; return the length."""
    view = memoryview(src)
    d = 0
    s = start
    while True:
        z = src.find(b"\x00", s, end)
        stop = end if z < 0 else z
        long_run = False
        while stop - s >= 254:
            dst[d] = 0xFF
            dst[d + 1 : d + 255] = view[s : s + 254]
            d += 255
            s += 254
            long_run = True
        if z < 0 and long_run and s == stop:
            return d
        r = stop - s
        dst[d] = r + 1
        dst[d + 1 : d + 1 + r] = view[s:stop]
        d += r + 1
        if z < 0:
            return d
        s = z + 1


def cobs_decode_into(src, start, end, dst):
    """Decode the COBS block sequence src[start:end] (no zero bytes in it) into dst.

    Raises ValueError for a block running past `end` or output longer than dst. dst may
    be a memoryview of src itself (decoding in place): no byte is written past the one
    being read, and slice copies between views of one buffer are overlap-safe.
    """
    view = memoryview(src)
    cap = len(dst)
    d = 0
    s = start
    while s < end:
        code = src[s]
        nxt = s + code
        if code == 0 or nxt > end:
            raise ValueError(cbor.text(_TX_COBS_MALFORMED))
        k = code - 1
        if d + k > cap:
            raise ValueError(cbor.text(_TX_COBS_LONG))
        dst[d : d + k] = view[s + 1 : nxt]
        d += k
        s = nxt
        if code != 0xFF and s < end:
            if d >= cap:
                raise ValueError(cbor.text(_TX_COBS_LONG))
            dst[d] = 0
            d += 1
    return d


class Deframer:
    def __init__(self, max_frame=MAX_FRAME, copy=True, chunk_views=False):
        self.max_frame = max_frame
        self.copy = copy
        self.chunk_views = chunk_views
        self.bad_frames = 0
        self.auth = None  # an auth.LinkAuth once the join began
        self._cap = cobs_max(max_frame + _TRAILER)
        self._acc = bytearray(self._cap)
        # Without the native decoder a frame is decoded in place, into the front of the
        # buffer its COBS bytes came in (a block's data never lands after where it was
        # read): no second max_frame buffer. The view is no larger than a frame may be.
        self._frame = (None if _native_cobs_decode is not None
                       else memoryview(self._acc)[: max_frame + _TRAILER])
        self.reset()

    def reset(self):
        self._n = 0
        self._dropping = False
        self.after_break = b""
        self._held = False
        self.rest = None

    def pending(self):
        return self._n + self._dropping

    def spare(self, lst):
        pass  # (StreamReader's: a Deframer hands out new lists)

    def _bad(self, out, error):
        self.bad_frames += 1
        out.append(error)

    def _take(self, out):
        n = self._n
        self._n = 0
        try:
            if self._frame is None:
                frame = _native_cobs_decode(memoryview(self._acc)[:n])
                if len(frame) > self.max_frame + _TRAILER:
                    raise FrameError(_E_TOO_LARGE, _TX_SERIAL_OVER)
            else:
                k = cobs_decode_into(self._acc, 0, n, self._frame)
                frame = self._frame[:k]
        except ValueError as e:
            if isinstance(e, FrameError):
                self._bad(out, e)
            else:
                self._bad(out, FrameError(_E_TRUNCATED, (_TX_SERIAL_BAD_COBS, e)))
            return
        try:
            held = self.chunk_views and frame[1] == _T_CHUNK
            out.append(decode(frame, self.max_frame, self.copy and not held, self.auth))
            self._held = held
        except FrameError as e:
            e.fatal = False
            if e.code == _E_NO_MEMORY:
                # the frame's start, for the task id of a TASK that did not fit: the buffer
                # may hold another frame by the time the error is answered
                e.head = bytes(frame[:_HEADER_SIZE + 12])
            self._bad(out, e)

    def feed(self, data, end=None):
        out = []
        self.rest = None
        if type(data) is not bytes and type(data) is not bytearray:
            data = bytes(data)
        acc = self._acc
        total = len(data) if end is None else end
        view = memoryview(data)
        pos = 0
        while pos < total:
            z = data.find(b"\x00", pos, total)
            stop = total if z < 0 else z
            if not self._dropping and stop > pos:
                n = self._n
                k = stop - pos
                if n + k > self._cap:
                    self._dropping = True
                    self._n = 0
                else:
                    acc[n : n + k] = view[pos:stop]
                    self._n = n + k
                    if n < 2 <= n + k and acc[1] == 0x03 and (acc[0] == 0x0D or acc[0] == 0x03):
                        self._n = 0
                        self.after_break = bytes(view[pos + 2 - n : total])
                        out.append(BREAK)
                        return out
            if z < 0:
                break
            if self._dropping:
                self._dropping = False
                self._bad(out, FrameError(_E_TOO_LARGE, _TX_SERIAL_OVER))
            elif self._n:
                self._take(out)
                if self._held:  # its data is a view into this buffer: stop here
                    self._held = False
                    if z + 1 < total:
                        self.rest = bytes(view[z + 1 : total])
                    return out
            pos = z + 1
        return out
