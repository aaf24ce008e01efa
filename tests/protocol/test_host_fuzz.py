"""Fuzzing the receivers: random bytes and mutated valid frames never raise anything but
FrameError, the fast codec and the construct reference agree on every verdict, and the
stream receivers stay within their memory bounds."""

from __future__ import annotations

import zlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from microswarm import wire
from microswarm.protocol import frame as ref
from microswarm.protocol.catalog import MAC_TRAILER_SIZE
from microswarm.wire.cobs import max_encoded_size

from .strategies import messages

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def verdicts(data: bytes, max_frame: int = wire.MAX_FRAME) -> tuple[object, object]:
    """(fast, reference): the decoded payload in JSON form, or the ErrorCode."""
    try:
        fast = ref.to_json(wire.decode_frame(data, max_frame=max_frame).payload)
    except wire.FrameError as exc:
        fast = exc.code
    try:
        slow = ref.to_json(ref.parse_frame(data, max_frame)["payload"])
    except ref.ProtocolError as exc:
        slow = exc.code
    return fast, slow


def fix_crc(frame: bytearray) -> bytes:
    body = bytes(frame[:-4])
    return body + zlib.crc32(body).to_bytes(4, "little")


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes(data):
    fast, slow = verdicts(data)
    assert fast == slow


@FUZZ
@given(st.binary(max_size=200), st.integers(0, 255), st.integers(0, 255))
def test_random_payload_bytes_behind_a_valid_header(payload, msg_type, flags):
    frame = ref.build_raw(msg_type % 16, payload, 1, flags % 4)
    fast, slow = verdicts(frame)
    assert fast == slow


mutations = st.lists(
    st.tuples(st.sampled_from(["flip", "set", "insert", "delete"]), st.integers(0, 10**6),
              st.integers(0, 255)),
    min_size=1, max_size=4,
)


def mutate(frame: bytes, edits: list[tuple[str, int, int]]) -> bytearray:
    data = bytearray(frame)
    for op, where, byte in edits:
        at = where % (len(data) + 1)
        if op == "insert":
            data[at:at] = bytes([byte])
        elif data and op == "delete":
            del data[at % len(data)]
        elif data and op == "flip":
            data[at % len(data)] ^= 1 << (byte % 8)
        elif data:
            data[at % len(data)] = byte
    return data


@FUZZ
@given(messages, mutations, st.booleans())
def test_mutated_frames(message, edits, keep_crc_valid):
    msg_type, payload, seq = message
    data = mutate(wire.encode_frame(msg_type, payload, seq), edits)
    if keep_crc_valid and len(data) >= 11:
        data[5:7] = (len(data) - 11).to_bytes(2, "little")
        data = bytearray(fix_crc(data))
    fast, slow = verdicts(bytes(data))
    assert fast == slow


@FUZZ
@given(st.lists(st.binary(max_size=80) | messages.map(lambda m: wire.encode_frame(*m)),
                max_size=8),
       st.integers(1, 97))
def test_frame_reader_on_noise(pieces, step):
    reader = wire.FrameReader(max_frame=512)
    stream = b"".join(pieces)
    for pos in range(0, len(stream), step):
        for item in reader.feed(stream[pos : pos + step]):
            assert isinstance(item, (wire.Frame, wire.FrameError))
        assert reader.buffered <= 512


@FUZZ
@given(st.lists(st.binary(max_size=120) | messages.map(lambda m: wire.encode_frame(*m)),
                max_size=8),
       st.integers(1, 97))
def test_serial_deframer_on_noise_then_recovers(pieces, step):
    deframer = wire.SerialDeframer(max_frame=512)
    stream = b"".join(wire.serial_encode(p) if i % 2 else p for i, p in enumerate(pieces))
    for pos in range(0, len(stream), step):
        for item in deframer.feed(stream[pos : pos + step]):
            assert isinstance(item, (wire.Frame, wire.FrameError))
            assert not getattr(item, "fatal", False)
        # a frame's MAC trailer may follow its max_frame bytes (SPEC.md section 5)
        assert deframer.buffered <= max_encoded_size(512 + MAC_TRAILER_SIZE)
    good = wire.encode_frame(8, {0: 1}, seq=4242)
    out = deframer.feed(b"\x00" + wire.serial_encode(good))
    assert out and out[-1] == wire.decode_frame(good)
