"""Deterministic CBOR (RFC 8949) for the microswarm wire protocol, in MicroPython.

Runs unchanged on the unix port, RP2350 and ESP32 (and on CPython). Covers what the
protocol carries and nothing more, so a node never decodes what it cannot check.

The details are the comment block below: on a board a long docstring costs heap while
the module compiles, a comment costs nothing.
"""

# Encoding (`dumps`, `Encoder`) writes the project's deterministic form, byte for byte the
# same as the host codec:
#   * int               shortest head, major 0 (n >= 0) or 1 (n < 0); -2**64 <= n < 2**64
#   * float             always float64 (0xfb), except NaN -> f97e00, +inf -> f97c00,
#                       -inf -> f9fc00
#   * str               text string (UTF-8)
#   * bytes, bytearray, memoryview of bytes   byte string
#   * list, tuple       array
#   * dict              map with int or text keys: int keys first, in ascending numeric
#                       order, then text keys by (UTF-8 length, bytes); for keys >= 0 and
#                       text keys this is RFC 8949 4.2.1 order
#   * True/False/None   f5 / f4 / f6
#   * array.array       RFC 8746 typed array: its tag (msgdefs.TYPED_ARRAYS) around a
#                       byte string of the little-endian items
# Anything else raises CBORError.
#
# Decoding (`loads`) accepts every valid CBOR item the protocol uses: all integer widths,
# byte/text strings, arrays, maps with int or text keys, true/false/null, float16/32/64,
# and typed-array tags (-> array.array, or memoryview for uint8 when copy=False). It rejects,
# with CBORError, before allocating anything for them: indefinite lengths, nesting deeper
# than msgdefs.MAX_NESTING (an item enclosed by more than MAX_NESTING arrays, maps and
# tags), lengths that run past the end of the input, trailing bytes,
# simple values other than false/true/null (including undefined), reserved additional
# information values, tags other than typed arrays, invalid UTF-8, duplicate or
# non-int/non-text map keys.
#
# API
#   CBORError(ValueError)
#   frame_tools.dumps(obj) -> bytes (for the codec's tests: a node never needs it)
#   Encoder(size=256, headroom=0)
#       .encode(obj) -> memoryview over the encoded bytes in the encoder's own buffer,
#           starting `headroom` bytes in (room for a frame header). The view is valid until
#           the next encode() (the buffer is reused, and replaced by a bigger one only when
#           a message does not fit).
#       .buf, .view, .reserve(n): the current buffer, a memoryview of it, and growing it to
#           at least n bytes with its content kept (frame.FrameWriter adds header and CRC in
#           place). Writes past .limit call .reserve, or ._spill(data, n) for n bytes of
#           data: frame._FrameEncoder overrides both to cut a message into CHUNK pieces.
#   loads(buf, start=0, end=None, copy=True, reuse=None, fill=False) -> object
#       Decodes exactly one item spanning buf[start:end]. copy=False returns byte strings
#       and uint8 typed arrays as memoryview slices of buf (zero copy; keep buf alive and
#       unchanged while they are used); other typed arrays are always array.array copies.
#       reuse: what a reader keeps from one frame to the next (frame.Reuse): slices of buf
#       come from reuse.view(start, stop); fill=True also decodes a top-level map into
#       reuse.map (the same dict every time, its keys and values those of this map) and
#       its array values into lists taken from reuse.lists when one has their length, so
#       a frame of the usual shape allocates nothing of its own.
#
# Typed arrays travel little-endian; every target this firmware runs on is little-endian.


import struct
from array import array

from msgdefs import MAX_NESTING, TYPED_ARRAYS

try:
    import uctypes
except ImportError:
    uctypes = None

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


# BEGIN GENERATED: text numbers (tools/gen_protocol.py, from msw_texts.py)
_TX_CBOR_DEEP = const(0)
_TX_CBOR_INT_RANGE = const(1)
_TX_CBOR_CANNOT_ENCODE = const(2)
_TX_CBOR_NO_TAG = const(3)
_TX_CBOR_KEYS = const(4)
_TX_CBOR_INDEFINITE = const(5)
_TX_CBOR_RESERVED = const(6)
_TX_CBOR_TRUNCATED_HEAD = const(7)
_TX_CBOR_TRUNCATED = const(8)
_TX_CBOR_STRING_PAST = const(9)
_TX_CBOR_UTF8 = const(10)
_TX_CBOR_ARRAY_PAST = const(11)
_TX_CBOR_MAP_PAST = const(12)
_TX_CBOR_KEY = const(13)
_TX_CBOR_DUPLICATE = const(14)
_TX_CBOR_TRUNCATED_FLOAT = const(15)
_TX_CBOR_BREAK = const(16)
_TX_CBOR_SIMPLE = const(17)
_TX_CBOR_TAG = const(18)
_TX_CBOR_TRUNCATED_TYPED = const(19)
_TX_CBOR_TYPED_WRAP = const(20)
_TX_CBOR_TYPED_PAST = const(21)
_TX_CBOR_TYPED_ITEMS = const(22)
_TX_CBOR_BOUNDS = const(23)
_TX_CBOR_EMPTY = const(24)
_TX_CBOR_TRAILING = const(25)
# END GENERATED

# Builtins named per frame, bound in this module's own table: MicroPython looks a name up
# there before the builtins, and a table grows only once full, so a miss probes every
# slot (0.3-0.5 us a name in the unix VM; docs/firmware.md, "Benchmark").
len = len
type = type
range = range
str = str
bytes = bytes


class CBORError(ValueError):
    # args: a text's number in msw_texts.py and its format arguments (or a text)
    def __str__(self):
        return text(self.args)


def text(t):
    # The text `t` names: a number in msw_texts.py, or a tuple of one and its format
    # arguments (a str is its own text). msw_texts is imported for it and, on MicroPython,
    # dropped again: a node holds its error texts only while it renders one.
    if type(t) is int:
        t = (t,)
    elif type(t[0]) is str:
        return t if type(t) is str else t[0]
    try:
        try:
            import msw_texts
        except ImportError:
            from microswarm.firmware import msw_texts
        s = msw_texts.T[t[0]]
    except MemoryError:  # no heap for the texts: the number says which
        return "text %d" % t[0]
    import sys

    if sys.implementation.name == "micropython":
        sys.modules.pop("msw_texts", None)
    return s % t[1:] if len(t) > 1 else s


_INF = float("inf")
_NAN_BYTES = b"\xf9\x7e\x00"
_INF_BYTES = b"\xf9\x7c\x00"
_NINF_BYTES = b"\xf9\xfc\x00"
_U64_LIMIT = 1 << 64
_U32_LIMIT = 1 << 32
_HAS_FROMBYTES = hasattr(array("B"), "frombytes")  # CPython; MicroPython's extend() takes raw bytes
_TYPED_FIRST = const(64)  # RFC 8746's first typed-array tag: msgdefs.TYPED_ARRAYS[0]'s


def typecode(arr):
    # An array.array's typecode (msw_kernel's checks ask too). MicroPython: no .typecode,
    # but the repr of an empty slice is "array('x')" (getattr with a default: a caught
    # AttributeError would be an exception object per call).
    code = getattr(arr, "typecode", None)
    return repr(arr[:0])[7] if code is None else code


class Encoder:
    def __init__(self, size=256, headroom=0):
        self.buf = bytearray(max(size, headroom + 16))
        self.view = memoryview(self.buf)
        self.headroom = headroom
        self.pos = 0
        self.limit = len(self.buf)

    def reserve(self, n):
        if n > len(self.buf):
            bigger = bytearray(max(n, 2 * len(self.buf)))
            bigger[: self.pos] = self.view[: self.pos]
            self.buf = bigger
            self.view = memoryview(bigger)
            self.limit = len(bigger)

    def encode(self, obj):
        self.pos = self.headroom
        self._item(obj, 0)
        return self.view[self.headroom : self.pos]

    def _head(self, major, n):
        p = self.pos
        if p + 9 > self.limit:
            self.reserve(p + 9)
            p = self.pos
        buf = self.buf
        if n < 24:
            buf[p] = major | n
            self.pos = p + 1
        elif n < 0x100:
            buf[p] = major | 24
            buf[p + 1] = n
            self.pos = p + 2
        elif n < 0x10000:
            struct.pack_into(">BH", buf, p, major | 25, n)
            self.pos = p + 3
        elif n < _U32_LIMIT:
            struct.pack_into(">BI", buf, p, major | 26, n)
            self.pos = p + 5
        else:
            struct.pack_into(">BQ", buf, p, major | 27, n)
            self.pos = p + 9

    def _raw(self, data, n):
        p = self.pos
        if p + n > self.limit:
            self._spill(data, n)
            return
        self.buf[p : p + n] = data
        self.pos = p + n

    def _spill(self, data, n):
        self.reserve(self.pos + n)
        p = self.pos
        self.buf[p : p + n] = data
        self.pos = p + n

    def _item(self, obj, depth):
        if depth > MAX_NESTING:
            raise CBORError(_TX_CBOR_DEEP, MAX_NESTING)
        t = type(obj)
        if obj is None:
            self._raw(b"\xf6", 1)
        elif obj is True:
            self._raw(b"\xf5", 1)
        elif obj is False:
            self._raw(b"\xf4", 1)
        elif t is int:
            if obj >= 0:
                if obj >= _U64_LIMIT:
                    raise CBORError(_TX_CBOR_INT_RANGE)
                self._head(0x00, obj)
            else:
                if obj < -_U64_LIMIT:
                    raise CBORError(_TX_CBOR_INT_RANGE)
                self._head(0x20, -1 - obj)
        elif t is str:
            data = obj.encode("utf-8")
            self._head(0x60, len(data))
            self._raw(data, len(data))
        elif t is bytes or t is bytearray or t is memoryview:
            self._head(0x40, len(obj))
            self._raw(obj, len(obj))
        elif t is float:
            self._float(obj)
        elif t is list or t is tuple:
            self._head(0x80, len(obj))
            for x in obj:
                self._item(x, depth + 1)
        elif t is dict:
            self._map(obj, depth)
        elif isinstance(obj, array):
            if depth >= MAX_NESTING:
                raise CBORError(_TX_CBOR_DEEP, MAX_NESTING)
            self._typed_array(obj)
        else:
            raise CBORError(_TX_CBOR_CANNOT_ENCODE, t.__name__)

    def _float(self, x):
        if x != x:
            self._raw(_NAN_BYTES, 3)
        elif x == _INF:
            self._raw(_INF_BYTES, 3)
        elif x == -_INF:
            self._raw(_NINF_BYTES, 3)
        else:
            p = self.pos
            if p + 9 > self.limit:
                self.reserve(p + 9)
                p = self.pos
            struct.pack_into(">Bd", self.buf, p, 0xFB, x)
            self.pos = p + 9

    def _map(self, obj, depth):
        mask = 0  # bit k: key k, while every key is a protocol field key (an int 0..23)
        for k in obj:
            if type(k) is not int or k < 0 or k > 23:
                mask = -1
                break
            mask |= 1 << k
        self._head(0xA0, len(obj))
        depth += 1
        if obj and depth > MAX_NESTING:
            raise CBORError(_TX_CBOR_DEEP, MAX_NESTING)
        if mask < 0:
            for k in _canonical_key_order(obj):
                self._item(k, depth)
                self._item(obj[k], depth)
            return
        # field keys in ascending order, one byte each, whatever the dict's own order (no
        # list of keys to sort)
        k = 0
        while mask:
            if mask & 1:
                p = self.pos
                if p >= self.limit:
                    self.reserve(p + 1)
                    p = self.pos
                self.buf[p] = k
                self.pos = p + 1
                self._item(obj[k], depth)
            mask >>= 1
            k += 1

    def _typed_array(self, arr):
        code = typecode(arr)
        i = TYPED_ARRAYS.find(code) if code != "-" else -1
        if i < 0:
            raise CBORError(_TX_CBOR_NO_TAG, code)
        tag = _TYPED_FIRST + i
        size = struct.calcsize(code)
        nbytes = len(arr) * size
        self._head(0xC0, tag)
        self._head(0x40, nbytes)
        if nbytes == 0:
            return  # nothing to copy (and an empty wide array cannot be sliced into bytes)
        if size == 1:
            self._raw(arr, nbytes)
        elif uctypes is not None:
            self._raw(uctypes.bytearray_at(uctypes.addressof(arr), nbytes), nbytes)
        else:
            self._raw(bytes(arr), nbytes)


def _canonical_key_order(keys):
    ints = []
    texts = []
    for k in keys:
        if type(k) is int:
            ints.append(k)
        elif type(k) is str:
            raw = k.encode("utf-8")
            texts.append((len(raw), raw, k))
        else:
            raise CBORError(_TX_CBOR_KEYS)
    ints.sort()
    texts.sort()
    for t in texts:
        ints.append(t[2])
    return ints


_GONE = object()  # a filled map's value for a key the map being decoded has not had yet


class _Decoder:
    # One item at a time; the read position lives in self.pos, so decoding allocates
    # nothing but the values themselves (no (value, pos) tuples per item).

    def __init__(self, mv, pos, end, copy):
        self.mv = mv
        self.pos = pos
        self.end = end
        self.copy = copy
        self.reuse = None  # a Reuse of mv
        self.fill = None  # the Reuse whose map and lists a top-level map goes into

    def _arg(self, ai):
        # The argument of a head whose initial byte has been read.
        if ai < 24:
            return ai
        if ai > 27:
            if ai == 31:
                raise CBORError(_TX_CBOR_INDEFINITE)
            raise CBORError(_TX_CBOR_RESERVED, ai)
        pos = self.pos
        k = 1 << (ai - 24)
        if pos + k > self.end:
            raise CBORError(_TX_CBOR_TRUNCATED_HEAD)
        self.pos = pos + k
        mv = self.mv
        if k == 1:
            return mv[pos]
        if k == 2:  # (by hand: unpack_from makes a tuple)
            return mv[pos] << 8 | mv[pos + 1]
        # (formats as literals, not a tuple of them: a literal is an interned name, a
        # tuple's items are str objects in the heap)
        return struct.unpack_from(">I" if k == 4 else ">Q", mv, pos)[0]

    def item(self, depth):
        if depth > MAX_NESTING:
            raise CBORError(_TX_CBOR_DEEP, MAX_NESTING)
        pos = self.pos
        if pos >= self.end:
            raise CBORError(_TX_CBOR_TRUNCATED)
        ib = self.mv[pos]
        self.pos = pos + 1
        if ib < 24:  # the most common item: a small unsigned int (field keys, counts)
            return ib
        major = ib >> 5
        if major == 0:
            return self._arg(ib & 0x1F)
        if major == 7:
            return self._simple(ib & 0x1F)
        n = self._arg(ib & 0x1F)
        if major == 1:
            return -1 - n
        pos = self.pos
        if major == 2 or major == 3:
            if n > self.end - pos:
                raise CBORError(_TX_CBOR_STRING_PAST, n)
            stop = pos + n
            self.pos = stop
            reuse = self.reuse
            view = self.mv[pos:stop] if reuse is None else reuse.view(pos, stop)
            if major == 3:
                # (a text that is an interned name, a kernel's, is no new object)
                try:
                    return str(view, "utf-8")
                except UnicodeError:
                    raise CBORError(_TX_CBOR_UTF8)
            if self.copy:
                return bytes(view)
            return view
        depth += 1
        if major == 4:
            if n > self.end - pos:
                raise CBORError(_TX_CBOR_ARRAY_PAST, n)
            out = self._list(n) if depth == 2 and self.fill else [None] * n
            for i in range(n):
                out[i] = self.item(depth)
            return out
        if major == 5:
            if n > (self.end - pos) >> 1:
                raise CBORError(_TX_CBOR_MAP_PAST, n)
            if depth == 1 and self.fill:
                return self._fill(n, depth)
            return self._map({}, n, depth)
        return self._typed(n, depth)

    def _list(self, n):
        # a filled map's array value: a spare list of its length, if there is one
        lists = self.fill.lists
        for i in range(len(lists)):
            if len(lists[i]) == n:
                return lists.pop(i)
        return [None] * n

    def _fill(self, n, depth):
        out = self.fill.map
        for k in out:
            out[k] = _GONE  # (values replaced in place: the dict keeps its table)
        self._map(out, n, depth)
        while len(out) > n:  # keys of an earlier map that this one lacks
            for k in out:
                if out[k] is _GONE:
                    break
            del out[k]
        return out

    def _map(self, out, n, depth):
        for _ in range(n):
            key = self.item(depth)
            if type(key) is not int and type(key) is not str:
                raise CBORError(_TX_CBOR_KEY)
            if out.get(key, _GONE) is not _GONE:
                raise CBORError(_TX_CBOR_DUPLICATE)
            out[key] = self.item(depth)
        return out

    def _simple(self, ai):
        if ai == 20:
            return False
        if ai == 21:
            return True
        if ai == 22:
            return None
        if 25 <= ai <= 27:
            pos = self.pos
            k = 1 << (ai - 24)
            if pos + k > self.end:
                raise CBORError(_TX_CBOR_TRUNCATED_FLOAT, 8 * k)
            self.pos = pos + k
            # (float16 "e": in MicroPython's struct since 1.23, as old as the .mpy
            # version this firmware ships)
            return struct.unpack_from(">e" if k == 2 else (">f" if k == 4 else ">d"), self.mv,
                                      pos)[0]
        if ai == 31:
            raise CBORError(_TX_CBOR_BREAK)
        if ai > 27:
            raise CBORError(_TX_CBOR_RESERVED, ai)
        raise CBORError(_TX_CBOR_SIMPLE, ai)

    def _typed(self, tag, depth):
        i = tag - _TYPED_FIRST
        code = TYPED_ARRAYS[i] if 0 <= i < len(TYPED_ARRAYS) else "-"
        if code == "-":
            raise CBORError(_TX_CBOR_TAG, tag)
        size = struct.calcsize(code)
        if depth > MAX_NESTING:
            raise CBORError(_TX_CBOR_DEEP, MAX_NESTING)
        pos = self.pos
        if pos >= self.end:
            raise CBORError(_TX_CBOR_TRUNCATED_TYPED)
        ib = self.mv[pos]
        if ib >> 5 != 2:
            raise CBORError(_TX_CBOR_TYPED_WRAP, tag)
        self.pos = pos + 1
        n = self._arg(ib & 0x1F)
        pos = self.pos
        if n > self.end - pos:
            raise CBORError(_TX_CBOR_TYPED_PAST, n)
        if n % size:
            raise CBORError(_TX_CBOR_TYPED_ITEMS, n)
        stop = pos + n
        self.pos = stop
        if code == "B" and not self.copy:
            return self.mv[pos:stop]
        out = array(code)
        if _HAS_FROMBYTES:
            out.frombytes(self.mv[pos:stop])
        else:
            out.extend(self.mv[pos:stop])
        return out


_spare = None


def loads(buf, start=0, end=None, copy=True, reuse=None, fill=False):
    mv = buf if type(buf) is memoryview else memoryview(buf)
    if end is None:
        end = len(mv)
    if start < 0 or end > len(mv) or start > end:
        raise CBORError(_TX_CBOR_BOUNDS)
    if start == end:
        raise CBORError(_TX_CBOR_EMPTY)
    global _spare
    dec = _spare  # one decoder object reused: a frame's decode allocates only its values
    if dec is None:
        dec = _Decoder(mv, start, end, copy)
    else:
        _spare = None  # (a loads() meanwhile, on another thread, makes its own)
        dec.mv = mv
        dec.pos = start
        dec.end = end
        dec.copy = copy
    dec.reuse = reuse
    dec.fill = reuse if fill else None
    try:
        obj = dec.item(0)
        if dec.pos != end:
            raise CBORError(_TX_CBOR_TRAILING, end - dec.pos)
    finally:
        dec.mv = dec.reuse = dec.fill = None
        _spare = dec
    return obj
