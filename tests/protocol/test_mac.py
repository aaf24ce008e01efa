"""Frame authentication after the join: HMAC-SHA256 and HKDF against their RFCs (host and
MicroPython), the golden vectors of protocol/vectors/mac.json in every codec (the host's,
the construct reference, the firmware's in the VM), and the receive rules: forged,
altered, replayed, reordered and reflected frames refused and counted, the link kept."""

from __future__ import annotations

import hmac
import json

import pytest

from microswarm import paths
from microswarm.protocol import frame as ref
from microswarm.protocol.catalog import FLAG_MAC, MAC_TRAILER_SIZE, ErrorCode, MsgType
from microswarm.wire import (
    FrameError,
    FrameReader,
    LinkAuth,
    SerialDeframer,
    decode_frame,
    encode_frame,
    encode_message,
    serial_encode,
)
from microswarm.wire.mac import _Mac, direction_keys, hkdf_sha256

# RFC 4231 section 4: HMAC-SHA256 test cases 1-4, 6, 7 (key, data, full MAC).
RFC4231 = [
    ("0b" * 20, b"Hi There".hex(),
     "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
    (b"Jefe".hex(), b"what do ya want for nothing?".hex(),
     "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
    ("aa" * 20, "dd" * 50,
     "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"),
    ("0102030405060708090a0b0c0d0e0f10111213141516171819", "cd" * 50,
     "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"),
    ("aa" * 131, b"Test Using Larger Than Block-Size Key - Hash Key First".hex(),
     "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
    ("aa" * 131, (b"This is a test using a larger than block-size key and a larger than "
                  b"block-size data. The key needs to be hashed before being used by the "
                  b"HMAC algorithm.").hex(),
     "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"),
]
# RFC 5869 appendix A.1 (HKDF-SHA256), the first 32 bytes of its 42-byte OKM.
RFC5869 = ("0b" * 22, "000102030405060708090a0b0c", "f0f1f2f3f4f5f6f7f8f9",
           "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf")

VECTORS = json.loads((paths.protocol_dir() / "vectors" / "mac.json").read_text())
KEY = bytes.fromhex(VECTORS["key"])
MN, NN = bytes.fromhex(VECTORS["master_nonce"]), bytes.fromhex(VECTORS["node_nonce"])


def test_host_hmac_and_hkdf_give_the_rfc_vectors():
    for key, data, mac in RFC4231:  # keys longer than a block too (hashed first)
        assert _Mac(bytes.fromhex(key)).tag(b"", bytes.fromhex(data)) == \
            bytes.fromhex(mac)[:8]
    ikm, salt, info, okm = (bytes.fromhex(x) for x in RFC5869)
    assert hkdf_sha256(ikm, salt, info) == okm
    assert ref.hkdf(ikm, salt, info) == okm
    assert hkdf_sha256(ikm, salt, info, 42).hex().endswith("34007208d5b887185865")


def test_precomputed_pads_agree_with_cpython_hmac():
    """The tag from the key's hashed pad blocks, split across updates as the codec does
    (counter, header, payload), is CPython's hmac over their concatenation."""
    for n in (0, 1, 31, 32, 63, 64, 65, 200):
        key = bytes((7 * i + n) & 0xFF for i in range(n))
        for parts in ((b"", b""), (b"\x01\x00\x00\x00", b"head", b"payload" * n)):
            want = hmac.new(key, b"".join(parts), "sha256").digest()[:8]
            assert _Mac(key).tag(*parts) == want


def test_direction_keys_are_the_vectors():
    m2n, n2m = direction_keys(KEY, MN, NN)
    assert m2n.hex() == VECTORS["master_to_node_key"]
    assert n2m.hex() == VECTORS["node_to_master_key"]
    assert ref.direction_keys(KEY, MN, NN) == {"master->node": m2n, "node->master": n2m}


def receiver(direction: str, last: int) -> LinkAuth:
    """The LinkAuth of the side that receives `direction`, having accepted `last`."""
    auth = (LinkAuth.node(KEY, MN, NN) if direction == "master->node"
            else LinkAuth.master(KEY, MN, NN))
    auth.sending = auth.receiving = True
    auth.rx_counter = last
    return auth


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=lambda v: v["name"])
def test_mac_vectors_in_the_host_codec(vector):
    frame = bytes.fromhex(vector["frame"])
    auth = receiver(vector["direction"], vector["last"])
    if "error" in vector:
        with pytest.raises(FrameError) as err:
            decode_frame(frame, auth=auth)
        assert err.value.code == ErrorCode.BAD_MAC and auth.rejected == 1
        assert auth.rx_counter == vector["last"]  # a refused frame moves nothing
        return
    got = decode_frame(frame, auth=auth)
    assert got.type == vector["type"] and got.seq == vector["seq"]
    assert got.payload == ref.from_json(vector["payload"])
    assert auth.rx_counter == vector["counter"]
    # the sender at that counter writes the same bytes
    sender = (LinkAuth.master(KEY, MN, NN) if vector["direction"] == "master->node"
              else LinkAuth.node(KEY, MN, NN))
    sender.sending = True
    sender.tx_counter = vector["counter"]
    assert encode_frame(vector["type"], got.payload, vector["seq"], auth=sender) == frame
    assert serial_encode(frame).hex() == vector["serial"]


def joined_pair() -> tuple[LinkAuth, LinkAuth]:
    return LinkAuth.master(KEY, MN, NN), LinkAuth.node(KEY, MN, NN)


def test_node_switches_on_at_welcome_even_in_one_read():
    master, node = joined_pair()
    welcome = encode_frame(MsgType.ERROR, {0: 12, 1: "not yet"}, 1)  # before: no MAC
    stream = welcome + encode_frame(MsgType.WELCOME, {0: "n", 1: 1000, 2: 2, 3: 4096,
                                                      4: b"p" * 32}, 2)
    stream += encode_frame(MsgType.HEARTBEAT, {0: 5}, 3, auth=master)
    stream += encode_frame(MsgType.TASK, {0: 1, 1: "echo", 2: [1], 3: 0}, 4, auth=master)
    reader = FrameReader()
    reader.auth = node
    assert not node.sending
    items = reader.feed(stream)
    assert [i.type for i in items] == [MsgType.ERROR, MsgType.WELCOME, MsgType.HEARTBEAT,
                                       MsgType.TASK]
    assert node.sending and node.rx_counter == 1
    answer = encode_frame(MsgType.RESULT, {0: 1, 1: 1, 3: 9}, 1, auth=node)
    assert answer[2] & FLAG_MAC and len(answer) > MAC_TRAILER_SIZE
    reply = FrameReader()
    reply.auth = master
    (result,) = reply.feed(answer)
    assert result.payload[1] == 1


def test_forged_replayed_reordered_and_unauthenticated_frames_are_refused_link_kept():
    master, node = joined_pair()
    node.sending = node.receiving = True
    reader = FrameReader()
    reader.auth = master
    good = [encode_frame(MsgType.RESULT, {0: i, 1: i, 3: 1}, i, auth=node) for i in range(4)]
    forger = LinkAuth.node(b"a guessed cluster key", MN, NN)
    forger.sending = True
    bad = [
        encode_frame(MsgType.RESULT, {0: 9, 1: "forged", 3: 1}, 50),  # no MAC
        encode_frame(MsgType.RESULT, {0: 9, 1: "forged", 3: 1}, 51, auth=forger),
        good[0],  # replayed
    ]
    stream = good[0] + good[1] + b"".join(bad) + good[3] + good[2]  # 2 after 3: reordered
    items = reader.feed(stream)
    kinds = [i.code.name if isinstance(i, FrameError) else i.payload[1] for i in items]
    assert kinds == [0, 1, "BAD_MAC", "BAD_MAC", "BAD_MAC", 3, "BAD_MAC"]
    assert master.rejected == 4 and master.rx_counter == 3
    assert reader.failed is None  # the stream stays aligned and open
    reflected = encode_frame(MsgType.TASK, {0: 1, 1: "echo", 2: [], 3: 0}, 9, auth=master)
    with pytest.raises(FrameError, match="MAC mismatch"):
        decode_frame(reflected, auth=master)  # the master's own frame sent back to it


def test_serial_deframer_and_chunks_carry_the_mac():
    master, node = joined_pair()
    node.sending = node.receiving = True
    frames = encode_message(MsgType.RESULT, {0: 1, 1: bytes(5000), 3: 1}, seq=7,
                            max_frame=1024, stream=3, auth=node)
    assert len(frames) > 4 and all(f[2] & FLAG_MAC for f in frames)
    deframer = SerialDeframer(1024)
    deframer.auth = master
    line = b"".join(serial_encode(f) for f in frames)
    items = deframer.feed(line[:-300] + b"\x00" + serial_encode(frames[1]))
    assert all(not isinstance(i, FrameError) for i in items[:-2])
    # the frame cut short is refused by its framing, the replayed one by its MAC
    assert [i.code for i in items[-2:]] == [ErrorCode.TRUNCATED, ErrorCode.BAD_MAC]
    accepted = [i for i in items if not isinstance(i, FrameError)]
    assert len(accepted) >= 3 and master.rx_counter == len(accepted) - 1


def test_a_hello_without_mac_passes_a_joined_master_for_the_restart_rule():
    master, _ = joined_pair()
    hello = encode_frame(MsgType.HELLO, {0: "n", 1: "unix", 2: "t", 3: 1, 4: [], 6: 1, 7: 1,
                                         8: 512, 9: 1, 10: b"x" * 16, 11: "serial"}, 0)
    assert decode_frame(hello, auth=master).type == MsgType.HELLO
    with pytest.raises(FrameError, match="has not joined"):
        decode_frame(encode_frame(MsgType.HEARTBEAT, {0: 1}, 0, auth=master))


VM_SCRIPT = """
import sys, json, auth, frame, frame_serial, frame_tools
import engine_join as J
for line in sys.stdin:
    cmd = json.loads(line)
    if cmd[0] == "hmac":
        print(J.hmac_sha256(bytes.fromhex(cmd[1]), (bytes.fromhex(cmd[2]),)).hex())
    elif cmd[0] == "hkdf":
        print(J.hkdf(bytes.fromhex(cmd[1]), bytes.fromhex(cmd[2]), bytes.fromhex(cmd[3])).hex())
    elif cmd[0] == "keys":
        la = auth.LinkAuth(bytes.fromhex(cmd[1]), bytes.fromhex(cmd[2]), bytes.fromhex(cmd[3]))
        print(bytes(la._tx[0][i] ^ 0x36 for i in range(32)).hex(),
              bytes(la._rx[0][i] ^ 0x36 for i in range(32)).hex())
    elif cmd[0] == "check":
        _, direction, last, hexed = cmd
        la = auth.LinkAuth(bytes.fromhex(cmd[0] and %(key)r), bytes.fromhex(%(mn)r),
                           bytes.fromhex(%(nn)r))
        if direction == "node->master":  # play the master's receiving side
            la._rx = la._tx
        la.on = True
        la.rx_counter = last
        data = bytes.fromhex(hexed)
        try:
            t, fl, seq, payload = frame.decode(data, auth=la)
            print("ok", la.rx_counter)
        except frame.FrameError as e:
            print("err", e.code, la.rx_counter, la.rejected)
        r = frame_serial.Deframer(1024)
        r.auth = la
        la.rx_counter = last
        out = r.feed(frame_tools.cobs_encode(data) + b"\\x00")
        print("serial", "err" if isinstance(out[0], frame.FrameError) else "ok")
    elif cmd[0] == "write":
        _, counter, t, seq, hexed = cmd
        la = auth.LinkAuth(bytes.fromhex(%(key)r), bytes.fromhex(%(mn)r), bytes.fromhex(%(nn)r))
        if counter < 0:
            la._tx = la._rx  # write as the master
            counter = -counter - 1
        la.on = True
        la.tx_counter = counter
        w = frame.FrameWriter(1024)
        w.auth = la
        print(bytes(frame_tools.raw(w, t, bytes.fromhex(hexed), seq)).hex())
"""


def test_firmware_hmac_hkdf_and_mac_vectors_in_the_vm(run_vm):
    script = VM_SCRIPT % {"key": VECTORS["key"], "mn": VECTORS["master_nonce"],
                          "nn": VECTORS["node_nonce"]}
    cmds = [["hmac", k, d] for k, d, _ in RFC4231]
    cmds.append(["hkdf", *RFC5869[:3]])
    cmds.append(["keys", VECTORS["key"], VECTORS["master_nonce"], VECTORS["node_nonce"]])
    for v in VECTORS["vectors"]:
        cmds.append(["check", v["direction"], v["last"], v["frame"]])
    writes = [v for v in VECTORS["vectors"] if "error" not in v]
    for v in writes:
        frame = bytes.fromhex(v["frame"])
        length = frame[5] | frame[6] << 8
        counter = v["counter"] if v["direction"] == "node->master" else -v["counter"] - 1
        cmds.append(["write", counter, v["type"], v["seq"], frame[7:7 + length].hex()])
    out = run_vm(script, stdin="".join(json.dumps(c) + "\n" for c in cmds).encode())
    lines = out.splitlines()
    for (_, _, mac), got in zip(RFC4231, lines, strict=False):
        assert got == mac
    rest = lines[len(RFC4231):]
    assert rest[0] == RFC5869[3]
    assert rest[1].split() == [VECTORS["node_to_master_key"], VECTORS["master_to_node_key"]]
    checks = rest[2:2 + 2 * len(VECTORS["vectors"])]
    for i, v in enumerate(VECTORS["vectors"]):
        got, serial = checks[2 * i].split(), checks[2 * i + 1]
        if "error" in v:
            assert got == ["err", str(int(ErrorCode.BAD_MAC)), str(v["last"]), "1"], v["name"]
            assert serial == "serial err"
        else:
            assert got == ["ok", str(v["counter"])], v["name"]
            assert serial == "serial ok"
    assert rest[2 + 2 * len(VECTORS["vectors"]):] == [v["frame"] for v in writes]
