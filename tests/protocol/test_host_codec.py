"""The fast codec (microswarm.wire) against the construct reference on generated messages,
plus COBS, stream reading, chunking and the auth MACs."""

from __future__ import annotations

import array
import hashlib
import hmac

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from microswarm import wire
from microswarm.protocol import frame as ref
from microswarm.protocol.catalog import FLAG_MORE, ErrorCode, MsgType

from .strategies import messages, values

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(messages)
def test_fast_and_reference_encode_identically_and_decode_alike(message):
    msg_type, payload, seq = message
    frame = wire.encode_frame(msg_type, payload, seq)
    assert ref.build_frame(msg_type, payload, seq) == frame
    fast = wire.decode_frame(frame)
    slow = ref.parse_frame(frame)
    assert (fast.type, fast.flags, fast.seq) == (slow["type"], slow["flags"], slow["seq"])
    assert ref.to_json(fast.payload) == ref.to_json(slow["payload"]) == ref.to_json(payload)
    assert wire.encode_frame(msg_type, fast.payload, seq) == frame


@FAST
@given(values)
def test_payload_encoding_is_deterministic(value):
    encoded = wire.encode_payload(value)
    assert encoded == ref.cbor_encode(value)
    decoded = wire.decode_payload(encoded)
    assert wire.encode_payload(decoded) == encoded
    assert ref.to_json(decoded) == ref.to_json(value)


def test_map_key_order_and_float_forms():
    value = {"bb": 1, "a": 2, 10: 3, 2: 4, "\u00e9": 5}
    # ints ascending, then text by encoded bytes: "a" < "bb" (62 62) < "\u00e9" (c3 a9)
    assert wire.encode_payload(value).hex() == "a5" "0204" "0a03" "616102" "62626201" "62c3a905"
    assert wire.encode_payload([1.0, float("nan"), float("inf"), -float("inf")]).hex() == (
        "84fb3ff0000000000000f97e00f97c00f9fc00"
    )
    assert wire.encode_payload(array.array("h", [1, -2])).hex() == "d84d440100feff"
    assert wire.encode_payload(memoryview(b"ab")) == wire.encode_payload(b"ab") == b"\x42ab"


@pytest.mark.parametrize("bad", [{1.5: 1}, {True: 1}, {b"k": 1}, [{1, 2}], array.array("u", "x")])
def test_encoding_refuses_values_outside_the_data_model(bad):
    with pytest.raises(TypeError):
        wire.encode_payload(bad)


def test_encode_frame_checks_the_catalog_and_the_size():
    with pytest.raises(wire.FrameError) as missing:
        wire.encode_frame(MsgType.CANCEL, {})
    assert missing.value.code == ErrorCode.BAD_PAYLOAD
    with pytest.raises(wire.FrameError) as big:
        wire.encode_frame(MsgType.LOG, {0: 1, 1: "x" * 70000})
    assert big.value.code == ErrorCode.TOO_LARGE
    with pytest.raises(wire.FrameError) as flags:
        wire.encode_frame(MsgType.CANCEL, {0: 1}, flags=FLAG_MORE)
    assert flags.value.code == ErrorCode.BAD_FLAGS
    frame = wire.encode_frame(MsgType.ERROR, {0: ErrorCode.BUSY, 1: "full"})  # IntEnum value
    assert wire.decode_frame(frame).payload == {0: 14, 1: "full"}


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=1200))
def test_cobs_round_trip_and_no_zero(data):
    encoded = wire.cobs_encode(data)
    assert b"\x00" not in encoded
    assert encoded == ref.cobs_encode(data)
    assert len(encoded) <= len(data) + len(data) // 254 + 1
    assert wire.cobs_decode(encoded) == data


@pytest.mark.parametrize("encoded", [b"", b"\x05\x01", b"\x02\x00", b"\x03\x01"])
def test_cobs_decode_refuses_malformed_input(encoded):
    with pytest.raises(wire.FrameError) as error:
        wire.cobs_decode(encoded)
    assert error.value.code == ErrorCode.TRUNCATED


def _frames(n: int) -> list[bytes]:
    return [wire.encode_frame(MsgType.HEARTBEAT, {0: i, 1: i * 7}, seq=i) for i in range(n)]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(1, 40), min_size=1, max_size=30))
def test_frame_reader_handles_any_split(cuts):
    stream = b"".join(_frames(6))
    reader = wire.FrameReader()
    got, pos = [], 0
    for size in cuts * 20:
        got += reader.feed(stream[pos : pos + size])
        pos += size
        if pos >= len(stream):
            break
    got += reader.feed(stream[pos:])
    assert [f.seq for f in got] == list(range(6))
    assert reader.buffered == 0


def test_frame_reader_skips_bad_crc_and_fails_on_bad_version():
    good = _frames(3)
    corrupt = bytearray(good[1])
    corrupt[8] ^= 0xFF
    reader = wire.FrameReader()
    out = reader.feed(good[0] + bytes(corrupt) + good[2])
    assert [type(x).__name__ for x in out] == ["Frame", "FrameError", "Frame"]
    assert out[1].code == ErrorCode.BAD_CRC and out[1].seq == 1 and not out[1].fatal
    out = reader.feed(b"\x09" + good[0][1:] + good[2])
    assert len(out) == 1 and out[0].code == ErrorCode.BAD_VERSION and out[0].fatal
    assert reader.failed is out[0] and reader.feed(good[0]) == [] and reader.buffered == 0


def test_frame_reader_refuses_a_length_over_its_limit_from_the_header_alone():
    reader = wire.FrameReader(max_frame=64)
    frame = wire.encode_frame(MsgType.LOG, {0: 1, 1: "x" * 100})
    [error] = reader.feed(frame[:7])
    assert error.code == ErrorCode.TOO_LARGE and error.fatal


def test_serial_deframer_resyncs_after_garbage_and_bounds_memory():
    good = _frames(2)
    deframer = wire.SerialDeframer(max_frame=256)
    out = deframer.feed(b"\x13\x37garbage\x00" + wire.serial_encode(good[0]))
    assert isinstance(out[0], wire.FrameError) and out[1].seq == 0
    out = deframer.feed(b"\xff" * 5000)
    assert out == [] and deframer.buffered == 0
    out = deframer.feed(b"\xff" * 5000 + b"\x00\x00\x00" + wire.serial_encode(good[1]))
    assert out[0].code == ErrorCode.TOO_LARGE and out[1].seq == 1
    assert deframer.bad_frames == 2


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 20000), st.integers(64, 3000), st.integers(0, 65535),
       st.integers(0, 65535))
def test_chunking_round_trip(size, max_frame, seq, stream):
    payload = {0: 5, 1: "k", 2: [bytes(i % 251 for i in range(size))]}
    frames = wire.encode_message(MsgType.TASK, payload, seq=seq, max_frame=max_frame,
                                 stream=stream)
    assert frames == ref.build_message(MsgType.TASK, payload, seq, max_frame, stream)
    assert all(len(f) <= max_frame for f in frames)
    decoded = [wire.decode_frame(f, max_frame=max_frame) for f in frames]
    assert [f.seq for f in decoded] == [(seq + i) % 65536 for i in range(len(frames))]
    assert [f.flags for f in decoded[:-1]] == [FLAG_MORE] * (len(frames) - 1)
    reassembler = wire.Reassembler(max_message=size + 100)
    results = [reassembler.push(f) for f in decoded]
    assert results[-1].payload == payload and results[-1].seq == seq
    assert results[:-1] == [None] * (len(frames) - 1) and reassembler.open_streams == 0


def _chunks(stream: int = 1, size: int = 3000, max_frame: int = 512) -> list[wire.Frame]:
    payload = {0: 1, 1: "k", 2: [bytes(size)]}
    return [wire.decode_frame(f, max_frame=max_frame) for f in
            wire.encode_message(MsgType.TASK, payload, max_frame=max_frame, stream=stream)]


def _refused(reassembler: wire.Reassembler, frames: list[wire.Frame]) -> ErrorCode:
    with pytest.raises(wire.FrameError) as error:
        for frame in frames:
            reassembler.push(frame)
    return error.value.code


def test_reassembler_refuses_gaps_unknown_streams_and_limits():
    chunks = _chunks()
    assert _refused(wire.Reassembler(), [chunks[0], chunks[2]]) == ErrorCode.BAD_CHUNK
    assert _refused(wire.Reassembler(), [chunks[1]]) == ErrorCode.BAD_CHUNK
    assert _refused(wire.Reassembler(), [chunks[0], chunks[0]]) == ErrorCode.BAD_CHUNK
    assert _refused(wire.Reassembler(max_message=2000), chunks[:1]) == ErrorCode.TOO_LARGE
    many = [_chunks(stream)[0] for stream in range(5)]
    assert _refused(wire.Reassembler(max_streams=4), many) == ErrorCode.TOO_LARGE
    reassembler = wire.Reassembler()
    assert _refused(reassembler, [chunks[0], chunks[1], chunks[3]]) == ErrorCode.BAD_CHUNK
    assert reassembler.open_streams == 0  # the broken stream is dropped
    heartbeat = wire.decode_frame(_frames(1)[0])
    assert reassembler.push(heartbeat) is heartbeat


def test_reassembler_refuses_a_corrupt_whole_message():
    body = wire.encode_payload({0: 1, 1: "k", 2: [bytes(600)]}) + b"\x00"  # trailing byte
    chunk = {0: 3, 1: int(MsgType.TASK), 2: len(body), 3: 0, 4: body}
    frame = wire.decode_frame(wire.encode_frame(MsgType.CHUNK, chunk, seq=9))
    with pytest.raises(wire.FrameError) as error:
        wire.Reassembler().push(frame)
    assert error.value.code == ErrorCode.BAD_PAYLOAD and error.value.seq == 9


@settings(max_examples=50, deadline=None)
@given(st.binary(min_size=1, max_size=64), st.binary(min_size=16, max_size=16),
       st.binary(min_size=16, max_size=16), st.text(max_size=20))
def test_auth_helpers_match_hmac(key, master_nonce, node_nonce, node_id):
    expected = hmac.new(key, b"msw-node" + master_nonce + node_nonce + node_id.encode(),
                        hashlib.sha256).digest()
    assert wire.node_mac(key, master_nonce, node_nonce, node_id) == expected
    proof = hmac.new(key, b"msw-master" + node_nonce + master_nonce, hashlib.sha256).digest()
    assert wire.master_proof(key, node_nonce, master_nonce) == proof
    assert len(proof) == 32 and proof != expected


def test_validate_one_pass_agrees_with_the_rules_in_catalog_order():
    """validate_payload's one pass over a payload's keys accepts exactly what the rules in
    catalog order accept, and refuses with the same error (the first field at fault)."""
    import enum
    import random

    from microswarm.wire.validate import _RULES, _validate_by_rules, validate_payload

    class Member(enum.IntEnum):
        A = 3

    values = [0, 1, -1, 2**40, True, False, None, 1.5, "x", "", b"b", bytearray(b"z"),
              memoryview(b"m"), [], ["a"], ["a", 1], [1], {}, {1: 2}, (1,), ("s",), Member.A]
    rng = random.Random(11)

    def outcome(check, msg_type, payload):
        try:
            check(msg_type, payload, 5)
        except wire.FrameError as exc:
            return exc.code, exc.text, exc.seq
        return None

    for msg_type, rules in _RULES.items():
        keys = [rule[0] for rule in rules] + [99]
        for _ in range(500):
            payload = {k: rng.choice(values) for k in keys if rng.random() < 0.8}
            assert outcome(validate_payload, msg_type, payload) == \
                outcome(_validate_by_rules, msg_type, payload), (msg_type, payload)
