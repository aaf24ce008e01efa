"""The firmware codec's whole-buffer helpers, for what checks the codec rather than runs a
node: the host's tests against the golden vectors and the benchmarks. A node never imports
this (its codec encodes into and decodes from its own buffers), so none of it is in a
board's heap.

  dumps(obj) -> bytes                      cbor's deterministic encoding of obj
  cobs_encode(data) -> bytes; cobs_decode(data) -> bytes   COBS of a whole buffer (no
      delimiter; ValueError for an empty or malformed input, or one that holds a 0x00)
  raw(writer, msg_type, payload_bytes, seq=None, flags=0) -> memoryview   a frame of an
      already encoded payload, from a frame.FrameWriter (its buffer, seq and MAC)
"""

try:
    import cbor
    import frame
    import frame_serial
except ImportError:  # on the host: microswarm.firmware
    from microswarm.firmware import cbor, frame, frame_serial

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


# BEGIN GENERATED: protocol constants (tools/gen_protocol.py, from protocol/catalog.py)
_HEADER_SIZE = const(7)
_CRC_SIZE = const(4)
_FRAME_OVERHEAD = const(11)
# END GENERATED
# BEGIN GENERATED: text numbers (tools/gen_protocol.py, from msw_texts.py)
_TX_COBS_EMPTY = const(72)
# END GENERATED

_shared = None


def dumps(obj):
    global _shared
    if _shared is None:
        _shared = cbor.Encoder(256)
    return bytes(_shared.encode(obj))


def cobs_encode(data):
    native = frame._native_cobs_encode
    if native is not None:
        return native(data)
    if type(data) is not bytes and type(data) is not bytearray:
        data = bytes(data)
    out = bytearray(frame_serial.cobs_max(len(data)))
    return bytes(memoryview(out)[: frame_serial.cobs_encode_into(data, 0, len(data), out)])


def cobs_decode(data):
    native = frame_serial._native_cobs_decode
    if native is not None:
        return native(data)
    if type(data) is not bytes and type(data) is not bytearray:
        data = bytes(data)
    if not data or data.find(b"\x00") >= 0:
        raise ValueError(cbor.text(_TX_COBS_EMPTY))
    out = bytearray(len(data))
    return bytes(memoryview(out)[: frame_serial.cobs_decode_into(data, 0, len(data), out)])


def raw(writer, msg_type, payload_bytes, seq=None, flags=0):
    n = len(payload_bytes)
    if n + _FRAME_OVERHEAD > writer.max_frame:
        return writer._finish(writer._enc, msg_type, flags, seq, n)
    if n + _FRAME_OVERHEAD > writer.limit:
        writer.reserve(writer.max_frame)
    enc = writer._enc
    enc.reserve(_HEADER_SIZE + n + _CRC_SIZE)
    enc.buf[_HEADER_SIZE : _HEADER_SIZE + n] = payload_bytes
    return writer._finish(enc, msg_type, flags, seq, n)
