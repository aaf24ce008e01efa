"""Frame codec of the microswarm wire protocol, in MicroPython (boards and the unix port).

The API reference is the comment block below: on a board a docstring this long costs
about 15 KB of heap while the module compiles, a comment costs nothing.
"""

# A frame (v1, little-endian) is
#     version u8 (=1) | type u8 | flags u8 | seq u16 | length u16 | payload | crc32 u32
# where the payload is `length` bytes holding one CBOR map (see cbor.py) and the CRC-32
# (IEEE, as binascii.crc32) covers header and payload. Flag bit 0 is MORE, allowed on CHUNK
# frames only; every other flag bit must be zero. Over TCP frames follow each other back to
# back; over serial each frame is COBS-encoded and followed by one 0x00 delimiter.
#
# Checks, in this order (the same order as the host codec, so both give the same code):
#   1. fewer bytes than a header + CRC          TRUNCATED
#   2. version != 1                              BAD_VERSION  (fatal on a stream)
#   3. header + length + CRC > max_frame         TOO_LARGE    (fatal on a stream)
#   4. buffer longer or shorter than the header says   TRUNCATED
#   5. CRC mismatch                              BAD_CRC
#   6. unknown flag bits, or MORE on a non-CHUNK BAD_FLAGS
#   7. MAC flag before the join; after it (an `auth` is on) no MAC flag, a wrong tag or a
#      counter not above the last one accepted   BAD_MAC
#   8. type not in the catalog                   UNKNOWN_TYPE
#   9. payload not one valid CBOR item, or not a map with every required field of the
#      declared kind (msgdefs.FIELDS; unknown keys are ignored)   BAD_PAYLOAD
# With flag MAC (0x02) a 12-byte trailer follows the CRC: counter u32 | 8-byte tag
# (auth.LinkAuth); it does not count towards max_frame. Readers and writers have an
# `auth` attribute (None, or the session's auth.LinkAuth) that checks and adds it.
# A payload that does not fit in the heap is NO_MEMORY.
#
# API (everything raises or returns FrameError; nothing else escapes for bad input)
#   FrameError(code, text, seq=None, fatal=False)   ValueError; code is an ErrorCode value,
#       seq the offending frame's sequence number when its header was readable, fatal=True
#       when a byte stream cannot be trusted past this point (close the link). text: a text,
#       or (as the codec raises them) a text's number in msw_texts.py, alone or in a tuple
#       with its format arguments; .text and str() are the text.
# The codec is three modules: frame.py (what both links need: FrameError, the CRC, header
# and payload checks, decode, FrameWriter), frame_tcp.py (StreamReader) and frame_serial.py
# (COBS, Deframer, BREAK), each link's half imported only by a node that runs that link.
#
#   BREAK            (frame_serial) marker that Deframer.feed returns when the line asks
#       for the REPL.
#   crc32(data, crc=0) -> int
#   check_payload(msg_type, payload, seq=None)   validate a decoded map against FIELDS.
#   decode(frame, max_frame=MAX_FRAME, copy=True, auth=None) -> (type, flags, seq, payload)
#       Exactly one frame (a datagram, a COBS-decoded serial frame). copy=False: byte
#       strings and uint8 typed arrays in the payload are memoryview slices of `frame`.
#   FrameWriter(max_frame, serial=False, size=0)
#       size (0: max_frame): its buffer holds frames of up to `size` bytes at first and is
#       made anew for max_frame at the first frame that needs more (.reserve(n): a buffer
#       for frames of n bytes; .limit: the frame size it holds). The frames are the same.
#       .frame(msg_type, payload, seq=None, flags=0) -> memoryview   one complete frame
#           (COBS-encoded with its 0x00 delimiter when serial=True), in a buffer the writer
#           reuses: send it before the next call. seq=None takes the writer's counter
#           (.seq, incremented mod 2**16 per frame written). TOO_LARGE if it does not fit.
#       .message(msg_type, payload, max_message=0) -> memoryview   the message as one frame,
#           or None when it needs CHUNKs (then frames(); no generator for a frame that fits)
#       .frames(msg_type, payload, max_message=0) -> iterator of memoryview   the message
#           as one frame if it fits, else as CHUNK frames with consecutive seqs (a new
#           stream id per message, MORE on all but the last). Each chunk but the last carries D = max_frame -
#           _FRAME_OVERHEAD - len(CBOR({0: stream, 1: inner_type, 2: total, 3: total,
#           4: b""})) - 2 bytes, the rule every sender follows (same frames as the host).
#           Send each view before advancing the iterator; do not call frame() while
#           iterating. TOO_LARGE, before any frame, when max_message (the receiver's limit
#           on a reassembled message; 0: none) is exceeded.
#       (frame_tools.raw(writer, msg_type, payload_bytes, seq=None, flags=0): a frame of an
#       already encoded payload, for the codec's tests)
#   frame_tcp.StreamReader(max_frame, copy=True, reuse=False)   TCP-like byte streams, no copy of
#       the data:
#       .want() -> memoryview   where the next bytes go (e.g. sock.readinto(r.want()));
#       .advance(n) -> (type, flags, seq, payload) or None   after n bytes were written into
#           want(). Raises FrameError: non-fatal errors skip that frame (the stream stays
#           aligned), fatal ones (bad version, length over max_frame) leave the reader
#           failed and every later call raises again; close the link.
#       .feed(data) -> list of results and FrameErrors (non-fatal ones, in stream order);
#           raises the fatal FrameError.
#       reuse=True (with copy=False, for advance() only): what a frame needs is made once
#           and reused (Reuse): advance() returns the same list each time and a TASK's
#           payload is the same dict, valid until the next advance(); a TASK's argument
#           list is its own until it is handed back with .spare(lst), for later TASKs.
#       .reset(): start over on a new connection, reusing the buffer.
#       With copy=False, payload memoryviews point into the reader's buffer: use them
#       before the next want()/feed().
#   frame_serial.Deframer(max_frame, copy=True)         serial lines (COBS + 0x00):
#       .feed(data, end=None) -> list of (type, flags, seq, payload), FrameError and BREAK
#           items in line order, for the bytes data[:end]. Pass a bytes or bytearray (e.g.
#           the read buffer and the count read): a memoryview is copied first. A bad frame (bad COBS, header, CRC, payload) is a FrameError and is
#           counted in .bad_frames; bytes past the largest encoded frame are dropped until
#           the next delimiter (one TOO_LARGE), so memory stays bounded; empty chunks (0x00
#           0x00) are ignored. After BREAK, feed() stops: the bytes not yet consumed are in
#           .after_break and the caller leaves frame mode.
#       chunk_views=True: a CHUNK's data is a memoryview into the deframer's buffer (no
#           copy of up to max_frame bytes beside a large message's reassembly buffer), and
#           feed() returns right after that frame: the bytes that followed it in data are
#           in .rest (else None; each feed() sets it anew), for the caller to feed()
#           once it has used the CHUNK.
#       REPL break rule: a chunk (the bytes since the last 0x00) that begins with b"\r\x03"
#       or b"\x03\x03" is a request to interrupt (what mpremote sends). It can never start
#       a v1 frame, because a COBS-encoded frame's second byte is always the version, 0x01.
#       It is recognised as soon as its two bytes arrive, without waiting for a delimiter.
#       .reset(): forget a partial chunk (e.g. when frame mode is entered again).
#       .pending() -> bytes held of an unfinished chunk (1 while dropping an oversize one).
#       A break that arrives behind a partial frame (a sender that died mid-frame) is not
#       at a chunk start; a worker that finds pending() > 0 on a line idle for ~100 ms
#       calls reset(), so the next interrupt request is seen.
#   Reassembler: CHUNK reassembly, engine_chunks.Chunks (loaded on a link's first CHUNK).
#   frame_serial.cobs_encode_into / cobs_decode_into(src, start, end, dst) -> length
#   written; frame_tools.cobs_encode(data) / cobs_decode(data) -> bytes (ValueError when
#   malformed), whole buffers, for the codec's tests.
#
# msw_native.crc32 / cobs_encode / cobs_decode are used when that native module imports.


import struct

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x

import cbor
from msgdefs import FIELDS

# BEGIN GENERATED: protocol constants (tools/gen_protocol.py, from protocol/catalog.py)
_PROTOCOL_VERSION = const(1)
_HEADER_SIZE = const(7)
_CRC_SIZE = const(4)
_FRAME_OVERHEAD = const(11)
_MAX_PAYLOAD = const(65535)
_FLAG_MORE = const(1)
_FLAG_MAC = const(2)
_FLAGS_KNOWN = const(3)
_T_TASK = const(5)
_T_CHUNK = const(12)
_E_BAD_CRC = const(1)
_E_BAD_VERSION = const(2)
_E_UNKNOWN_TYPE = const(3)
_E_BAD_PAYLOAD = const(4)
_E_TOO_LARGE = const(5)
_E_TRUNCATED = const(6)
_E_BAD_FLAGS = const(7)
_E_NO_MEMORY = const(11)
_E_BAD_MAC = const(17)
_K_UINT = const(0)
_K_INT = const(1)
_K_TSTR = const(2)
_K_BSTR = const(3)
_K_BOOL = const(4)
_K_FLOAT = const(5)
_K_ANY = const(6)
_K_ARRAY = const(7)
_K_TSTRS = const(8)
_K_MAP = const(9)
# END GENERATED
# BEGIN GENERATED: text numbers (tools/gen_protocol.py, from msw_texts.py)
_TX_FRAME_UNKNOWN_TYPE = const(26)
_TX_FRAME_NOT_MAP = const(27)
_TX_FRAME_LACKS = const(28)
_TX_FRAME_WRONG_KIND = const(29)
_TX_FRAME_VERSION = const(30)
_TX_FRAME_OVER = const(31)
_TX_FRAME_CRC = const(32)
_TX_FRAME_FLAGS = const(33)
_TX_FRAME_MAC_BEFORE = const(34)
_TX_FRAME_BAD_CBOR = const(35)
_TX_FRAME_NO_HEAP = const(36)
_TX_FRAME_SHORT = const(37)
_TX_FRAME_SIZE = const(38)
_TX_FRAME_CANNOT_ENCODE = const(39)
_TX_FRAME_PEER_LIMIT = const(40)
_TX_FRAME_MAX_FRAME = const(69)
# END GENERATED

try:
    import msw_native as _native
except (ImportError, ValueError):  # absent, or built for another arch / .mpy version
    _native = None
try:  # (imported by name: a name in quotes longer than 10 characters is a str object)
    from msw_native import cobs_encode as _native_cobs_encode
except (ImportError, ValueError):
    _native_cobs_encode = None

# Builtins named per frame, bound in this module's own table: MicroPython looks a name up
# there before the builtins, and a table grows only once full, so a miss probes every
# slot (0.3-0.5 us a name in the unix VM; docs/firmware.md, "Benchmark").
len = len
type = type
range = range
memoryview = memoryview

MAX_FRAME = _MAX_PAYLOAD + _FRAME_OVERHEAD
# Largest CBOR overhead of a CHUNK map around its data: map head, five keys, stream,
# inner_type, total and offset as uint32, a byte-string head for up to 65535 bytes.
_CHUNK_MAP_OVERHEAD = const(1 + 5 + 5 + 2 + 5 + 5 + 3)
_MIN_FRAME = const(_FRAME_OVERHEAD + _CHUNK_MAP_OVERHEAD + 8)
_HEAD_SLACK = const(16)
_TRAILER = const(12)  # MAC trailer after the CRC once joined (auth.LinkAuth): not in max_frame


class Reuse:
    # What a reader or writer keeps from one frame to the next (cbor.loads(reuse=)): the
    # dict and the lists a TASK is decoded into, and slices of its buffer. A memoryview
    # slice is an object of its own (32 bytes of heap on a 64-bit port): a frame's decode
    # and its CRC and MAC took four. Slices of one buffer are kept by their
    # bounds (start << 15 | stop: a small int on a 32-bit port too); when `size` are kept
    # the next new one starts a new set.
    def __init__(self, buf, size=16):
        self.mv = memoryview(buf)
        self._kept = {}
        self._size = size
        self.map = {}
        self.lists = []

    def view(self, start, stop):
        if stop >= 32768:
            return self.mv[start:stop]
        key = start << 15 | stop
        kept = self._kept
        v = kept.get(key)
        if v is None:
            if len(kept) >= self._size:  # a new set (clear() would free the table now:
                kept = self._kept = {}  # no gc.mem_alloc() drop that is no collection)
            v = kept[key] = self.mv[start:stop]
        return v


class FrameError(ValueError):
    # text: a text's number in msw_texts.py, a tuple of one and its format arguments, or a
    # text; .text and str() render it (cbor.text)
    def __init__(self, code, text, seq=None, fatal=False):
        super().__init__(text)
        self.code = code
        self.seq = seq
        self.fatal = fatal

    def __str__(self):
        return cbor.text(self.args[0])

    text = property(__str__)


# the CRC-32: the native module's, else the port's binascii, else (a port built without
# it) a table-driven one in Python, slow: crc_table.py, a fallback a board never loads
crc32 = getattr(_native, "crc32", None)
if crc32 is None:
    try:
        from binascii import crc32
    except ImportError:
        from crc_table import crc32


def _kind_ok(kind, v):
    t = type(v)
    if kind == _K_UINT:
        return t is int and v >= 0
    if kind == _K_TSTR:
        return t is str
    if kind == _K_BSTR:
        return t is bytes or t is bytearray or t is memoryview
    if kind == _K_INT:
        return t is int
    if kind == _K_BOOL:
        return v is True or v is False
    if kind == _K_ARRAY:
        return t is list
    if kind == _K_TSTRS:
        if t is not list:
            return False
        for x in v:
            if type(x) is not str:
                return False
        return True
    if kind == _K_FLOAT:
        return t is float or t is int
    if kind == _K_MAP:
        return t is dict
    return kind == _K_ANY


def check_payload(msg_type, payload, seq=None):
    rules = FIELDS.get(msg_type)
    if rules is None:
        raise FrameError(_E_UNKNOWN_TYPE, (_TX_FRAME_UNKNOWN_TYPE, msg_type), seq)
    if type(payload) is not dict:
        raise FrameError(_E_BAD_PAYLOAD, (_TX_FRAME_NOT_MAP, msg_type), seq)
    for i in range(0, len(rules), 3):
        key = rules[i]
        kind = rules[i + 1]
        if key not in payload:
            if rules[i + 2]:
                raise FrameError(
                    _E_BAD_PAYLOAD, (_TX_FRAME_LACKS, msg_type, key), seq
                )
        elif not _kind_ok(kind, payload[key]):
            raise FrameError(
                _E_BAD_PAYLOAD, (_TX_FRAME_WRONG_KIND, msg_type, key), seq
            )


def _check_header(version, length, seq, max_frame):
    if version != _PROTOCOL_VERSION:
        raise FrameError(
            _E_BAD_VERSION, (_TX_FRAME_VERSION, version, _PROTOCOL_VERSION),
            seq, True,
        )
    if length + _FRAME_OVERHEAD > max_frame:
        raise FrameError(
            _E_TOO_LARGE, (_TX_FRAME_OVER, length + _FRAME_OVERHEAD, max_frame),
            seq, True,
        )


def _decode_body(mv, msg_type, flags, seq, length, copy, auth=None, reuse=None):
    # The payload of a frame whose header was read; reuse: the reader's Reuse of mv
    # (slices kept; a TASK's map and arguments decoded into the same dict and lists).
    end = _HEADER_SIZE + length
    signed = mv[:end] if reuse is None else reuse.view(0, end)
    # (the stored CRC read by hand: no tuple)
    if crc32(signed) != mv[end] | mv[end + 1] << 8 | mv[end + 2] << 16 | mv[end + 3] << 24:
        raise FrameError(_E_BAD_CRC, _TX_FRAME_CRC, seq)
    if flags & ~_FLAGS_KNOWN or (flags & _FLAG_MORE and msg_type != _T_CHUNK):
        raise FrameError(_E_BAD_FLAGS, (_TX_FRAME_FLAGS, flags, msg_type), seq)
    if auth is not None or flags & _FLAG_MAC:  # (`is not None`: a truth test of an instance
        # looks for __bool__ and __len__ in its class)
        why = (auth.check(mv, msg_type, flags, length, signed) if auth is not None
               else _TX_FRAME_MAC_BEFORE)
        if why is not None:
            raise FrameError(_E_BAD_MAC, why, seq)
    if msg_type not in FIELDS:
        raise FrameError(_E_UNKNOWN_TYPE, (_TX_FRAME_UNKNOWN_TYPE, msg_type), seq)
    payload = _load_payload(mv, _HEADER_SIZE, end, copy, seq, reuse, msg_type == _T_TASK)
    check_payload(msg_type, payload, seq)
    return payload


def _load_payload(buf, start, end, copy, seq, reuse=None, fill=False):
    try:
        return cbor.loads(buf, start, end, copy, reuse, fill and reuse is not None)
    except cbor.CBORError as e:
        raise FrameError(_E_BAD_PAYLOAD, (_TX_FRAME_BAD_CBOR, e), seq)
    except MemoryError:
        raise FrameError(_E_NO_MEMORY, _TX_FRAME_NO_HEAP, seq)


def decode(frame, max_frame=MAX_FRAME, copy=True, auth=None):
    mv = frame if type(frame) is memoryview else memoryview(frame)
    n = len(mv)
    if n < _FRAME_OVERHEAD:
        raise FrameError(_E_TRUNCATED, (_TX_FRAME_SHORT, n))
    # (the formats as literals: an interned name each, where a const() str is a str object)
    version, msg_type, flags, seq, length = struct.unpack_from("<BBBHH", mv, 0)
    _check_header(version, length, seq, max_frame)
    size = length + _FRAME_OVERHEAD + (_TRAILER if flags & _FLAG_MAC else 0)
    if n != size:
        raise FrameError(_E_TRUNCATED, (_TX_FRAME_SIZE, n, size), seq)
    return msg_type, flags, seq, _decode_body(mv, msg_type, flags, seq, length, copy, auth)


def _chunks():
    # the sender's CHUNK code (frame_chunks.py): loaded with the first message too big for
    # one frame, so a node that sends none holds no code for it
    try:
        import frame_chunks
    except ImportError:
        from microswarm.firmware import frame_chunks
    return frame_chunks


class _Full(Exception):
    pass


class _FrameEncoder(cbor.Encoder):
    # The writer's frame buffer: never grows (a message too big for a frame is chunked).
    # A message that does not fit raises _Full, unless frame_chunks.window() is encoding it
    # a window at a time (`_win` set): only the bytes of one CHUNK piece land in the buffer,
    # so no buffer ever holds a chunked message whole.
    def reserve(self, n):
        if n > len(self.buf):
            if self._win is None:
                raise _Full
            _chunks().flush(self)

    def _spill(self, data, n):
        if self._win is None:
            raise _Full
        chunks = _chunks()
        chunks.flush(self)
        chunks.copy(self, data, n)


class FrameWriter:
    def __init__(self, max_frame, serial=False, size=0):
        if not _MIN_FRAME <= max_frame <= MAX_FRAME:
            raise ValueError(cbor.text((_TX_FRAME_MAX_FRAME, _MIN_FRAME, MAX_FRAME)))
        self.max_frame = max_frame
        self.serial = serial
        self.seq = 0
        self.stream = 0
        self.auth = None  # an auth.LinkAuth: frames carry the MAC trailer once it is on
        self._total = 0
        self._cobs = None
        if serial and _native_cobs_encode is None:
            from frame_serial import cobs_encode_into

            self._cobs = cobs_encode_into
        # `size` (0: max_frame): the buffer holds frames of up to that many bytes to begin
        # with (a small heap's node sends heartbeats and small RESULTs), and is made anew
        # for max_frame at the first frame that needs more (reserve()); the frames on the
        # wire are the same either way.
        self.reserve(size if _MIN_FRAME <= size < max_frame else max_frame)

    def reserve(self, size):
        # The frame buffer, for frames of up to `size` bytes (self.limit).
        # The slack covers the longest CBOR head the encoder reserves room for before
        # writing it, so a payload that fits in a frame never grows the buffer.
        # Serial: a frame is COBS-encoded in place, in the frame buffer (no second one).
        # The frame moves up by _shift first; the encoding, written from the buffer's
        # start, gains one byte per 254-byte run and so never reaches the byte it reads.
        # The room: the shifted frame, or its encoding and the 0x00 delimiter.
        # The writer changes only once the new buffer is made: a MemoryError leaves it
        # whole, with its first buffer, for the frames that fit there (the session that
        # asked for more ends; the node and its next session go on).
        shift = (size + _TRAILER) // 254 + 1 if self.serial else 0
        slack = shift + 1 if shift >= _HEAD_SLACK else _HEAD_SLACK
        enc = _FrameEncoder(size + _TRAILER + slack, _HEADER_SIZE)
        enc._win = None
        self._enc = enc
        self._shift = shift
        self.limit = size
        self._views = Reuse(enc.buf)  # (made anew with the buffer)
        self._cobs_view = memoryview(enc.buf) if self.serial else None

    def _finish(self, enc, msg_type, flags, seq, n):
        # The payload sits at enc.buf[_HEADER_SIZE:_HEADER_SIZE + n]; add header and CRC.
        if n + _FRAME_OVERHEAD > self.max_frame:
            raise FrameError(
                _E_TOO_LARGE, (_TX_FRAME_OVER, n + _FRAME_OVERHEAD, self.max_frame),
                seq,
            )
        end = _HEADER_SIZE + n
        auth = self.auth
        if auth is not None and auth.on:
            flags |= _FLAG_MAC
        total = end + _CRC_SIZE + (_TRAILER if flags & _FLAG_MAC else 0)
        enc.reserve(total)
        buf = enc.buf
        if seq is None:  # the writer's counter
            seq = self.seq
        self.seq = (seq + 1) & 0xFFFF
        struct.pack_into("<BBBHH", buf, 0, _PROTOCOL_VERSION, msg_type, flags, seq, n)
        views = self._views
        signed = views.view(0, end)
        struct.pack_into("<I", buf, end, crc32(signed))
        if flags & _FLAG_MAC:
            auth.seal(buf, end + _CRC_SIZE, signed)
        if not self.serial:
            return views.view(0, total)
        out = self._cobs_view
        if _native_cobs_encode is not None:
            encoded = _native_cobs_encode(views.view(0, total))
            k = len(encoded)
            out[:k] = encoded
        else:
            d = self._shift
            out[d : d + total] = out[:total]  # (memoryview copies are overlap-safe)
            k = self._cobs(buf, d, d + total, out)
        out[k] = 0
        return out[: k + 1]

    def _encode(self, payload, seq=None):
        # The payload's length, encoded at _HEADER_SIZE when it fits the frame buffer (-1:
        # it does not, nothing kept).
        enc = self._enc
        enc.pos = _HEADER_SIZE
        try:
            try:
                enc._item(payload, 0)
                n = enc.pos - _HEADER_SIZE
            except _Full:
                n = -1
        except cbor.CBORError as e:
            raise FrameError(_E_BAD_PAYLOAD, (_TX_FRAME_CANNOT_ENCODE, e), seq)
        if (n < 0 or n + _FRAME_OVERHEAD > self.limit) and self.limit < self.max_frame:
            self.reserve(self.max_frame)  # a frame the first buffer does not hold
            return self._encode(payload, seq)
        return n

    def frame(self, msg_type, payload, seq=None, flags=0):
        n = self._encode(payload, seq)
        if n < 0:
            n = _chunks().window(self._enc, payload, 0, 0, 0)  # its length, for TOO_LARGE
        return self._finish(self._enc, msg_type, flags, seq, n)

    def message(self, msg_type, payload, max_message=0):
        n = self._encode(payload)
        if n < 0 or n + _FRAME_OVERHEAD > self.max_frame:
            self._total = n  # for frames(): CHUNKs
            return None
        if max_message and n > max_message:
            raise FrameError(_E_TOO_LARGE, (_TX_FRAME_PEER_LIMIT, n, max_message))
        return self._finish(self._enc, msg_type, 0, None, n)

    def frames(self, msg_type, payload, max_message=0):
        # the frames of a message: one, or CHUNK pieces (frame_chunks.py)
        return _chunks().frames(self, msg_type, payload, max_message)
