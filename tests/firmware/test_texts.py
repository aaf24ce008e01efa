"""The firmware's error texts by number (firmware/msw_texts.py): every number a module names
has a text, each renders to the text its raise site held as a literal before (the literals
below are the oracle), and a node that has rendered one does not keep the texts module."""

from __future__ import annotations

import importlib.util
import re
import sys

import pytest

from microswarm import paths
from microswarm.firmware import cbor, msw_texts

# name -> (format arguments, the text the raise site wrote itself before)
OLD = {
    "CBOR_DEEP": ((16,), "nesting deeper than 16"),
    "CBOR_INT_RANGE": ((), "integer out of 64-bit range"),
    "CBOR_CANNOT_ENCODE": (("set",), "cannot encode set"),
    "CBOR_NO_TAG": (("u",), "no typed-array tag for typecode 'u'"),
    "CBOR_KEYS": ((), "map keys must be int or str"),
    "CBOR_INDEFINITE": ((), "indefinite length not allowed"),
    "CBOR_RESERVED": ((28,), "reserved additional information 28"),
    "CBOR_TRUNCATED_HEAD": ((), "truncated head"),
    "CBOR_TRUNCATED": ((), "truncated input"),
    "CBOR_STRING_PAST": ((5,), "string length 5 past end of input"),
    "CBOR_UTF8": ((), "invalid UTF-8 in text string"),
    "CBOR_ARRAY_PAST": ((7,), "array length 7 past end of input"),
    "CBOR_MAP_PAST": ((3,), "map length 3 past end of input"),
    "CBOR_KEY": ((), "map key must be int or text"),
    "CBOR_DUPLICATE": ((), "duplicate map key"),
    "CBOR_TRUNCATED_FLOAT": ((32,), "truncated float32"),
    "CBOR_BREAK": ((), "unexpected break / indefinite length"),
    "CBOR_SIMPLE": ((23,), "unsupported simple value (additional information 23)"),
    "CBOR_TAG": ((2,), "unsupported tag 2"),
    "CBOR_TRUNCATED_TYPED": ((), "truncated typed array"),
    "CBOR_TYPED_WRAP": ((69,), "typed array tag 69 must wrap a byte string"),
    "CBOR_TYPED_PAST": ((9,), "typed array length 9 past end of input"),
    "CBOR_TYPED_ITEMS": ((3,), "typed array of 3 bytes is not a whole number of items"),
    "CBOR_BOUNDS": ((), "bad input bounds"),
    "CBOR_EMPTY": ((), "empty input"),
    "CBOR_TRAILING": ((2,), "2 trailing bytes"),
    "FRAME_UNKNOWN_TYPE": ((99,), "message type 99 is not known"),
    "FRAME_NOT_MAP": ((5,), "payload of type 5 must be a map"),
    "FRAME_LACKS": ((5, 2), "type 5 lacks required field 2"),
    "FRAME_WRONG_KIND": ((5, 1), "type 5 field 1 has the wrong kind"),
    "FRAME_VERSION": ((2, 1), "protocol version 2, expected 1"),
    "FRAME_OVER": ((4107, 4096), "frame of 4107 bytes over the limit of 4096"),
    "FRAME_CRC": ((), "CRC-32 mismatch"),
    "FRAME_FLAGS": ((4, 5), "flags 0x04 not allowed on type 5"),
    "FRAME_MAC_BEFORE": ((), "MAC before the join"),
    "FRAME_BAD_CBOR": (("truncated input",), "bad CBOR: truncated input"),
    "FRAME_NO_HEAP": ((), "payload does not fit in the heap"),
    "FRAME_SHORT": ((3,), "3 bytes is shorter than any frame"),
    "FRAME_SIZE": ((20, 18), "frame is 20 bytes, its header says 18"),
    "FRAME_CANNOT_ENCODE": (("cannot encode set",), "cannot encode payload: cannot encode set"),
    "FRAME_PEER_LIMIT": ((70000, 65536), "message of 70000 bytes over the peer's limit of 65536"),
    "FRAME_CHUNK_CHUNKED": ((), "a CHUNK cannot itself be chunked"),
    "SERIAL_OVER": ((), "serial frame over the limit"),
    "SERIAL_BAD_COBS": (("malformed COBS block",), "bad COBS: malformed COBS block"),
    "AUTH_BEFORE_JOIN": ((), "authenticated frame before the join"),
    "AUTH_NO_MAC": ((), "frame without a MAC after the join"),
    "AUTH_MISMATCH": ((), "MAC mismatch: forged or altered frame"),
    "AUTH_REPLAYED": ((), "replayed or reordered frame"),
    "ENGINE_NOT_ACCEPTED": ((1,), "a node does not accept message type 1"),
    "ENGINE_BYE": (("shutdown",), "master said bye: shutdown"),
    "ENGINE_UNRECOVERABLE": (("CRC-32 mismatch",), "unrecoverable frame: CRC-32 mismatch"),
    "ENGINE_REFUSED": (("bad key",), "master refused the join: bad key"),
    "ENGINE_MASTER_ERROR": ((2, "version"), "master error 2: version"),
    "ENGINE_PREVIOUS": (("master silent for 31 ms",),
                        "previous session ended: master silent for 31 ms"),
    "ENGINE_NO_WELCOME": ((5000,), "no WELCOME within 5000 ms"),
    "ENGINE_SILENT": ((31,), "master silent for 31 ms"),
    "ENGINE_TASK_EARLY": ((), "TASK before WELCOME"),
    "ENGINE_PUT_EARLY": ((), "PUT before WELCOME"),
    "ENGINE_CHUNK_EARLY": ((), "CHUNK before WELCOME"),
    "ENGINE_SLOTS": ((), "all slots taken"),
    "ENGINE_NO_KERNEL": (("nope",), "no kernel named nope"),
    "ENGINE_NO_OPERANDS": ((), "this node keeps no operands"),
    "ENGINE_NO_HEAP_LOAD": (("sha256",), "no heap to load sha256"),
    "ENGINE_BAD_ARGS": (("echo takes 1 arguments (x), got 2",),
                        "ValueError: echo takes 1 arguments (x), got 2"),
    "ENGINE_CANCELLED_QUEUED": ((), "cancelled before it ran"),
    "ENGINE_CANCELLED_WAITING": ((), "cancelled while waiting for operands"),
    "ENGINE_CANCELLED_RUNNING": ((), "cancelled while running"),
    "ENGINE_NO_HEAP_RESULT": ((), "no heap to encode the result"),
    "ENGINE_NOT_SENDABLE": (("cannot encode payload: cannot encode set",),
                            "result not sendable: cannot encode payload: cannot encode set"),
    "FRAME_MAX_FRAME": ((64, 65546), "max_frame must be in 64..65546"),
    "COBS_MALFORMED": ((), "malformed COBS block"),
    "COBS_LONG": ((), "COBS frame longer than the buffer"),
    "COBS_EMPTY": ((), "empty COBS frame or zero byte inside"),
    "AUTH_EXHAUSTED": ((), "frame counter exhausted: join again"),
    "KERNEL_TAKES": (("dot", 2, "a, b", 1), "dot takes 2 arguments (a, b), got 1"),
    "KERNEL_ARG": (("histogram", "bins", "uint", "negative int"),
                   "histogram: argument bins must be uint, got negative int"),
}


def declared() -> dict[str, tuple[int, str]]:
    """msw_texts.py's texts as tools/gen_protocol.py reads them: name -> (number, text)."""
    tools = paths.tools_dir()
    assert tools is not None
    spec = importlib.util.spec_from_file_location("gen_protocol_texts", tools / "gen_protocol.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.texts()


def test_the_declaration_is_the_module():
    texts = declared()
    assert [text for _, text in sorted(texts.values())] == list(msw_texts.T)


def test_every_text_a_module_names_is_declared_and_every_one_is_named():
    texts = declared()
    named = set()
    for path in paths.firmware_dir().glob("*.py"):
        if path.name != "msw_texts.py":  # (its comments say how a module names one)
            named |= set(re.findall(r"\b_TX_(\w+)", path.read_text()))
    assert named - set(texts) == set()
    assert set(texts) - named == set()  # no text left behind by a site that went


def test_each_text_renders_as_its_old_literal():
    texts = declared()
    assert set(texts) == set(OLD)
    for name, (number, _) in texts.items():
        args, old = OLD[name]
        assert cbor.text((number, *args)) == old, name
        if not args:
            assert cbor.text(number) == old, name
    assert cbor.text("a text") == "a text" and cbor.text(("a text",)) == "a text"


@pytest.mark.parametrize(("data", "old"), [
    (b"", "empty input"),
    (b"\x18", "truncated head"),
    (b"\x62a", "string length 2 past end of input"),
    (b"\x01\x02\x03", "2 trailing bytes"),
    (b"\xa2\x01\x01\x01\x02", "duplicate map key"),
])
def test_a_codec_error_prints_its_text_on_the_host(data, old):
    with pytest.raises(cbor.CBORError) as caught:
        cbor.loads(data)
    assert str(caught.value) == old
    assert f"bad CBOR: {caught.value}" == "bad CBOR: " + old


VM_CBOR = """
import sys, cbor
print("held before", "msw_texts" in sys.modules)
for data in (b"", b"\\x62a", b"\\x01\\x02\\x03", b"\\xa2\\x01\\x01\\x01\\x02"):
    try:
        cbor.loads(data)
    except cbor.CBORError as e:
        print(type(e).__name__ + ": " + str(e))
        print("bad CBOR: %s" % e)
print("held after", "msw_texts" in sys.modules)
"""


def test_micropython_renders_the_texts_and_drops_their_module(run_vm):
    out = run_vm(VM_CBOR).splitlines()
    assert out == [
        "held before False",
        "CBORError: empty input", "bad CBOR: empty input",
        "CBORError: string length 2 past end of input",
        "bad CBOR: string length 2 past end of input",
        "CBORError: 2 trailing bytes", "bad CBOR: 2 trailing bytes",
        "CBORError: duplicate map key", "bad CBOR: duplicate map key",
        "held after False",
    ]


def test_the_host_keeps_its_registered_module():
    # CPython: the firmware package registered the module under its board name; rendering
    # leaves it there (no search of sys.path at every error)
    cbor.text(0)
    assert sys.modules["msw_texts"] is msw_texts


VM_ENGINE = """
import sys, engine

class IO:
    def __init__(self):
        self.sent = []
        self.closed = None
    def send(self, msg_type, payload):
        self.sent.append((msg_type, dict(payload)))
    def close(self, reason):
        self.closed = reason
    def run(self, task):
        pass
    def cancel(self, task):
        pass
    def on_joined(self):
        pass
    def challenged(self, key, master_nonce, node_nonce):
        pass
    def heap_free(self):
        return 50000

io = IO()
eng = engine.Engine(io, {hello!r}, bytes(32), waits=("sleep_ms",))
eng.start(0, bytes(16))
eng.receive({task}, 0, 9, {{0: 9, 1: "echo", 2: [1]}}, 0)
print(io.sent[-1][0], repr(io.sent[-1][1][1]))
print("held", "msw_texts" in sys.modules)
eng.on_timer(6000)
print(io.closed)
print("held", "msw_texts" in sys.modules)
"""


def test_a_node_that_reported_an_error_holds_no_texts(run_vm):
    # in the VM, as on a board: a TASK before the WELCOME is refused with its text, the
    # join's deadline ends the session with its reason, and neither leaves the texts behind
    from microswarm.protocol.catalog import MsgType, key

    def k(name: str) -> int:
        return key(MsgType.HELLO, name)

    hello = {k("node_id"): "n1", k("board"): "unix", k("fw_version"): "t",
             k("proto_version"): 1, k("kernels"): ["echo"], k("heap_total"): 100_000,
             k("heap_free"): 50_000, k("max_frame"): 4096, k("slots"): 2, k("link"): "tcp",
             k("max_message"): 8192, k("threads"): False}
    out = run_vm(VM_ENGINE.format(hello=hello, task=int(MsgType.TASK))).splitlines()
    assert out == [f"{int(MsgType.ERROR)} 'TASK before WELCOME'", "held False",
                   "no WELCOME within 5000 ms", "held False"]
