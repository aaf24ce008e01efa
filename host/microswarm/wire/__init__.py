"""The host's fast wire codec: frames, serial (COBS) framing, chunking and auth MACs.

Built on struct, zlib.crc32 and cbor2's C extension; protocol/frame.py is the normative
construct definition this codec is tested against (byte for byte, on the golden vectors).
"""

from .auth import master_proof, node_mac
from .cbor import decode_payload, encode_payload
from .chunks import DEFAULT_MAX_MESSAGE, Reassembler, encode_message
from .cobs import SerialDeframer, cobs_decode, cobs_encode, serial_encode
from .errors import FrameError
from .frame import MAX_FRAME, Frame, FrameReader, decode_frame, encode_frame, pack_frame
from .mac import LinkAuth
from .validate import validate_payload

__all__ = [
    "DEFAULT_MAX_MESSAGE",
    "MAX_FRAME",
    "Frame",
    "FrameError",
    "FrameReader",
    "LinkAuth",
    "Reassembler",
    "SerialDeframer",
    "cobs_decode",
    "cobs_encode",
    "decode_frame",
    "decode_payload",
    "encode_frame",
    "encode_message",
    "encode_payload",
    "master_proof",
    "node_mac",
    "pack_frame",
    "serial_encode",
    "validate_payload",
]
