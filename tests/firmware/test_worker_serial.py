"""The firmware worker in the real VM on a raw pty (the USB-serial link of a board), with
pyserial on the master's side."""

from __future__ import annotations

import array
import random

import pytest

from microswarm import wire
from microswarm.protocol.catalog import ErrorCode

from .conftest import make_flash
from .scripted import VM, PtyLink, T

pytestmark = pytest.mark.slow


@pytest.fixture(params=["terminal", "controller"],
                ids=["block-reads", "byte-reads"])
def serial_node(request, tmp_path, micropython):
    """The worker on either end of a pty: on the terminal end (a virtual board's VM) its
    link reads in blocks, on the controlling end byte by byte after poll."""
    link = PtyLink(request.param)
    flash = make_flash(tmp_path / "flash", "pico2-usb", link="serial")
    vm = VM(micropython, flash, "pico2-usb", stdio=link.vm_fd)
    try:
        yield link.conn(), vm
    finally:
        vm.stop()
        link.close()


def test_join_and_tasks_over_serial(serial_node):
    conn, vm = serial_node
    hello = conn.join(heartbeat_ms=300)
    assert hello[11] == "serial" and hello[1] == "pico2-usb"
    frame_bytes = bytes(range(256))  # every byte value, 0x00 and 0x03 included
    conn.task(1, "echo", [frame_bytes])
    assert conn.result()[1] == frame_bytes
    x = array.array("h", [random.Random(3).randint(-3000, 3000) for _ in range(12000)])
    conn.task(2, "fir", [x, array.array("h", [1, 2, 1]), 2])  # 24 KB in, 24 KB out: chunked
    out = conn.result()[1]
    assert len(out) == len(x) - 2
    assert out[0] == (x[2] + 2 * x[1] + x[0] + 2) >> 2
    assert vm.proc.poll() is None


def test_noise_is_counted_and_a_bad_frame_with_a_header_answered(serial_node):
    """Noise costs only itself (SPEC section 1, serial): bytes with no readable header (a
    console's echo, line noise, half a COBS block) are counted and never answered, for an
    answer could feed a loop with a console that echoes it; a frame whose header is
    readable but whose CRC is wrong is counted and answered with an ERROR naming its seq;
    the very next good frame is served (the worker resynchronises at the delimiter)."""
    conn, vm = serial_node
    conn.join(heartbeat_ms=300)
    rnd = random.Random(7)
    bad_crc = bytearray(conn.seal(wire.encode_frame(T.TASK, {0: 6, 1: "echo", 2: ["y"]},
                                                    seq=4242)))
    whole = wire.serial_encode(conn.seal(wire.encode_frame(T.TASK, {0: 5, 1: "echo",
                                                                    2: ["x" * 40]})))
    bad_crc[-16] ^= 0x55  # inside the CRC-32 (the 12-byte MAC trailer follows it)
    noise = bytes(rnd.randrange(1, 256) for _ in range(300))
    conn.send_raw_line(noise + b"\x00")
    conn.send_raw_line(b"\x05\x01\x02\x00")  # a COBS block that runs past its frame
    conn.send_raw_line(wire.serial_encode(bytes(bad_crc)))
    conn.send_raw_line(whole)
    errors = []
    while True:
        frame = conn.recv()
        if frame.type == T.RESULT:
            break
        assert frame.type == T.ERROR
        errors.append((frame.payload[0], frame.payload.get(2)))
    assert frame.payload[1] == "x" * 40
    assert errors == [(ErrorCode.BAD_CRC, 4242)]
    beat = conn.recv(keep_heartbeats=True)
    while beat.type != T.HEARTBEAT:
        beat = conn.recv(keep_heartbeats=True)
    assert beat.payload[4] == 3  # the noise, the broken block and the bad CRC
    assert vm.proc.poll() is None


def test_repl_break_hands_the_console_back(serial_node):
    conn, vm = serial_node
    conn.join()
    conn.task(1, "echo", [1])
    assert conn.result()[1] == 1
    conn.send_raw_line(b"\r\x03")  # what mpremote sends first
    assert vm.proc.wait(timeout=10) == 0  # main.py returned: a board is now at its REPL


def test_a_half_frame_then_silence_does_not_hang_the_worker(serial_node):
    """The line stops in the middle of a frame and the master falls silent: the worker's
    event loop keeps running, so it notices the silence and offers a new HELLO."""
    conn, vm = serial_node
    conn.join(heartbeat_ms=200)
    whole = wire.serial_encode(wire.encode_frame(T.TASK, {0: 6, 1: "echo", 2: ["y" * 300]}))
    conn.send_raw_line(whole[:-40])
    frame = conn.recv(keep_heartbeats=True, timeout=10)
    while frame.type == T.HEARTBEAT:
        frame = conn.recv(keep_heartbeats=True, timeout=10)
    assert frame.type == T.HELLO
    assert vm.proc.poll() is None


def test_a_join_the_master_let_die_is_explained_after_the_rejoin(serial_node):
    """A serial board's console is its link: why its session ended comes from the node
    itself, in a LOG frame (MAC'd) right after the next WELCOME, never before it."""
    conn, vm = serial_node
    conn.expect(T.HELLO)  # and the master says nothing: the node gives the join up
    conn.join(heartbeat_ms=300)  # its next HELLO (join checks nothing came between)
    conn.task(1, "echo", ["after"])
    assert conn.result()[1] == "after"
    assert conn.logs == [(2, "previous session ended: no WELCOME within 5000 ms")]
    assert vm.proc.poll() is None
