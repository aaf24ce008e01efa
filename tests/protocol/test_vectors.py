"""The golden vectors are current, and both host codecs (construct reference and fast
wire codec) agree with every one of them byte for byte."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from microswarm import paths, wire
from microswarm.protocol import frame as ref
from microswarm.protocol.catalog import ErrorCode


def load(name: str) -> dict:
    return json.loads((paths.protocol_dir() / "vectors" / f"{name}.json").read_text())


FRAMES = load("frames")["vectors"]
LENIENT = load("lenient")["vectors"]
BAD = load("bad")["vectors"]
CHUNKED = load("chunked")["vectors"]
AUTH = load("auth")


def ids(vectors: list[dict]) -> list[str]:
    return [v["name"] for v in vectors]


def test_generated_files_are_current(repo):
    proc = subprocess.run(
        [sys.executable, str(repo / "tools" / "gen_protocol.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=repo,
    )
    assert proc.returncode == 0, proc.stderr


def test_vectors_cover_every_type_and_tag():
    from microswarm.protocol.catalog import TYPED_ARRAY_TAGS, MsgType

    assert {v["type"] for v in FRAMES} == {int(t) for t in MsgType}
    typed = {v["payload"]["map"][1][1]["typed"] for v in FRAMES if v["name"].startswith("typed_")}
    assert typed == set(ref.TYPED_NAMES[tag] for tag in TYPED_ARRAY_TAGS)
    assert {v["error"] for v in BAD} >= {
        "TRUNCATED", "BAD_CRC", "BAD_VERSION", "TOO_LARGE", "BAD_FLAGS", "UNKNOWN_TYPE",
        "BAD_PAYLOAD",
    }


@pytest.mark.parametrize("vector", FRAMES, ids=ids(FRAMES))
def test_frame_vector(vector):
    frame = bytes.fromhex(vector["frame"])
    payload = ref.from_json(vector["payload"])
    args = (vector["type"], payload, vector["seq"], vector["flags"])
    assert wire.encode_frame(*args) == frame
    assert ref.build_frame(*args) == frame
    decoded = wire.decode_frame(frame)
    assert (decoded.type, decoded.seq, decoded.flags) == (vector["type"], vector["seq"], 0)
    assert ref.to_json(decoded.payload) == vector["payload"]
    assert ref.to_json(ref.parse_frame(frame)["payload"]) == vector["payload"]
    serial = bytes.fromhex(vector["serial"])
    assert wire.serial_encode(frame) == serial == ref.serial_form(frame)
    [again] = wire.SerialDeframer().feed(serial)
    assert again == decoded or ref.to_json(again.payload) == vector["payload"]


@pytest.mark.parametrize("vector", LENIENT, ids=ids(LENIENT))
def test_lenient_vector_decodes_to_its_canonical_form(vector):
    frame = bytes.fromhex(vector["frame"])
    decoded = wire.decode_frame(frame)
    assert ref.to_json(decoded.payload) == vector["payload"]
    assert ref.to_json(ref.parse_frame(frame)["payload"]) == vector["payload"]
    canonical = wire.encode_frame(vector["type"], decoded.payload, decoded.seq)
    assert canonical.hex() == vector["canonical"] != vector["frame"]


@pytest.mark.parametrize("vector", BAD, ids=ids(BAD))
def test_bad_vector_gives_its_error_code(vector):
    frame = bytes.fromhex(vector["frame"])
    expected = ErrorCode[vector["error"]]
    assert int(expected) == vector["code"]
    with pytest.raises(wire.FrameError) as fast:
        wire.decode_frame(frame, max_frame=vector["max_frame"])
    assert fast.value.code == expected
    with pytest.raises(ref.ProtocolError) as reference:
        ref.parse_frame(frame, vector["max_frame"])
    assert reference.value.code == expected


@pytest.mark.parametrize("vector", BAD, ids=ids(BAD))
def test_bad_vector_on_serial_link_is_counted_and_skipped(vector):
    good = bytes.fromhex(FRAMES[0]["frame"])
    deframer = wire.SerialDeframer(vector["max_frame"])
    out = deframer.feed(bytes.fromhex(vector["serial"]) + wire.serial_encode(good))
    assert [type(x) for x in out] == [wire.FrameError, wire.Frame]
    assert out[0].code == ErrorCode[vector["error"]] and not out[0].fatal
    assert deframer.bad_frames == 1


@pytest.mark.parametrize("vector", BAD, ids=ids(BAD))
def test_bad_vector_on_stream_link(vector):
    """A sane header lets the reader skip the frame; an untrusted header is fatal."""
    frame = bytes.fromhex(vector["frame"])
    code = ErrorCode[vector["error"]]
    good = bytes.fromhex(FRAMES[0]["frame"])
    reader = wire.FrameReader(vector["max_frame"])
    out = reader.feed(frame + good)
    if code in (ErrorCode.BAD_VERSION, ErrorCode.TOO_LARGE):
        assert len(out) == 1 and out[0].code == code and out[0].fatal
        assert reader.feed(good) == []
    elif code == ErrorCode.TRUNCATED:
        # A stream has no frame boundaries besides the lengths: a short frame takes the next
        # frame's first bytes. Whatever comes out is typed, and the buffer stays bounded.
        assert all(isinstance(x, (wire.Frame, wire.FrameError)) for x in out)
        assert reader.buffered <= vector["max_frame"]
    else:
        assert [type(x) for x in out] == [wire.FrameError, wire.Frame]
        assert out[0].code == code and not out[0].fatal


@pytest.mark.parametrize("vector", CHUNKED, ids=ids(CHUNKED))
def test_chunked_vector(vector):
    payload = ref.from_json(vector["payload"])
    frames = [bytes.fromhex(f) for f in vector["frames"]]
    options = dict(seq=vector["seq"], max_frame=vector["max_frame"], stream=vector["stream"])
    assert wire.encode_message(vector["type"], payload, **options) == frames
    assert ref.build_message(vector["type"], payload, vector["seq"], vector["max_frame"],
                             vector["stream"]) == frames
    assert all(len(f) <= vector["max_frame"] for f in frames)
    reassembler = wire.Reassembler()
    results = [reassembler.push(wire.decode_frame(f, max_frame=vector["max_frame"]))
               for f in frames]
    assert results[:-1] == [None] * (len(frames) - 1)
    assert results[-1].type == vector["type"] and results[-1].seq == vector["seq"]
    assert ref.to_json(results[-1].payload) == vector["payload"]
    serial = b"".join(bytes.fromhex(s) for s in vector["serial"])
    assert [f.seq for f in wire.SerialDeframer(vector["max_frame"]).feed(serial)] == [
        (vector["seq"] + i) % 65536 for i in range(len(frames))
    ]


def test_auth_vector():
    key, node_id = bytes.fromhex(AUTH["key"]), AUTH["node_id"]
    node_nonce, master_nonce = (bytes.fromhex(AUTH[k]) for k in ("node_nonce", "master_nonce"))
    assert wire.node_mac(key, master_nonce, node_nonce, node_id).hex() == AUTH["node_mac"]
    assert wire.master_proof(key, node_nonce, master_nonce).hex() == AUTH["master_proof"]
    assert wire.node_mac(b"wrong", master_nonce, node_nonce, node_id).hex() == (
        AUTH["wrong_key_mac"])
    hello, challenge, response, welcome = (wire.decode_frame(bytes.fromhex(f["frame"]))
                                           for f in AUTH["frames"])
    assert hello.payload[10] == node_nonce and challenge.payload[0] == master_nonce
    assert response.payload[0].hex() == AUTH["node_mac"]
    assert welcome.payload[4].hex() == AUTH["master_proof"]
