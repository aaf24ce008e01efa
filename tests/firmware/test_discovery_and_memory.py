"""UDP discovery on loopback, and 32 KB and 64 KB chunked inputs inside the heaps of the real
boards."""

from __future__ import annotations

import array
import hashlib
import socket

import pytest

from microswarm import wire
from microswarm.protocol.catalog import ErrorCode, MsgType

from .conftest import CLUSTER, KEY, firmware_resident, make_flash
from .scripted import VM, T, TcpMaster

pytestmark = pytest.mark.slow


def test_udp_discovery_finds_the_master(tmp_path, micropython):
    master = TcpMaster()
    beacon = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    beacon.bind(("127.0.0.1", 0))
    beacon.settimeout(10)
    flash = make_flash(tmp_path / "flash", "unix", master="", extra={
        "discovery_port": beacon.getsockname()[1], "discovery_host": "127.0.0.1"})
    vm = VM(micropython, flash, "unix")
    try:
        data, addr = beacon.recvfrom(2048)
        request = wire.decode_frame(data)
        assert request.type == MsgType.DISCOVER
        assert request.payload == {0: CLUSTER, 1: "vm-1"}
        wrong = wire.encode_frame(MsgType.ANNOUNCE, {0: "other", 1: "127.0.0.1", 2: 9})
        beacon.sendto(wrong, addr)  # another cluster's master: ignored
        beacon.sendto(b"\x01garbage", addr)  # not a frame: ignored
        answer = {0: CLUSTER, 1: "127.0.0.1", 2: master.port}
        beacon.sendto(wire.encode_frame(MsgType.ANNOUNCE, answer), addr)
        conn = master.accept()
        assert conn.join()[0] == "vm-1"
        conn.task(1, "echo", ["found"])
        assert conn.result()[1] == "found"
        # what the node noted before the join reaches the master after WELCOME, as a LOG
        assert conn.logs == [(2, "discovery: the master at 127.0.0.1 serves cluster 'other', "
                                 "this node is configured for cluster 'test'")]
    finally:
        vm.stop()
        beacon.close()
        master.close()


@pytest.mark.parametrize(("board", "size"), [("w5500-evb-pico2", 32 * 1024),
                                             ("esp32-devkit-w5500", 64 * 1024)])
def test_a_chunked_input_fits_the_board_heap(tmp_path, micropython, board, size):
    """The VM runs with the board's heap and frame limit; the master sends a 32 KB input
    (RP2350) or a 64 KB one (ESP32) in CHUNKs and the results come back; the heartbeat
    reports the lowest free heap.

    The RP2350 runs with its heap as it is. The ESP32's ~111 KB cannot also hold the
    firmware's modules loaded from .mpy in a 64-bit VM (they take ~100 KB here): its board
    file says "frozen_modules" (they go into the firmware image, code in flash), so the VM
    gets the board's heap for data plus what the modules measurably hold, and the test
    checks that the data side of the task stays within the board's heap. The 64 KB task
    comes after a first small one, which loads the kernels module: the message needs one
    65,554-byte block after it (reassembled in place, its byte string a view into that
    block)."""
    from microswarm import paths

    spec = paths.load_board(board)
    master = TcpMaster()
    flash = make_flash(tmp_path / "flash", board, master=f"127.0.0.1:{master.port}")
    resident = firmware_resident(micropython, flash) if spec.get("frozen_modules") else 0
    vm = VM(micropython, flash, board, heap=spec["heap_bytes"] + resident)
    try:
        conn = master.accept()
        hello = conn.join(max_frame=spec["max_frame"], heartbeat_ms=200)
        assert hello[6] <= spec["heap_bytes"] + resident and hello[8] == spec["max_frame"]
        conn.task(9, "sha256", [b"first"])  # loads the kernels module
        assert conn.result()[1] == hashlib.sha256(b"first").digest()
        data = bytes(range(256)) * (size // 256)
        conn.task(1, "sha256", [data], max_frame=spec["max_frame"])
        res = conn.result()
        assert res.get(5) is None, res
        assert res[1] == hashlib.sha256(data).digest()
        if not resident:  # 32 KB in and 32 KB out: the RP2350 has the heap for both
            samples = array.array("h", range(-8192, 8192))
            conn.task(2, "fir", [samples, array.array("h", [1, -1]), 0],
                      max_frame=spec["max_frame"])
            res = conn.result(timeout=60)
            assert res.get(5) is None, res
            assert list(res[1][:3]) == [1, 1, 1] and len(res[1]) == len(samples) - 1
        conn.heartbeats.clear()
        beat = conn.recv(keep_heartbeats=True)
        while beat.type != T.HEARTBEAT:
            beat = conn.recv(keep_heartbeats=True)
        assert 0 < beat.payload[5] <= beat.payload[1]
        assert beat.payload[4] == 0
        data_peak = hello[6] - beat.payload[5] - resident
        assert data_peak < spec["heap_bytes"]
        # a message bigger than the board will reassemble is refused, not fatal
        too_big = bytes(hello[13] + 1)
        conn.task(3, "sha256", [too_big], max_frame=spec["max_frame"])
        err = conn.expect(T.ERROR).payload
        assert err[0] == ErrorCode.TOO_LARGE
        conn.task(4, "echo", ["still here"])
        frame = conn.recv()
        while frame.type == T.ERROR:  # the rest of the refused stream's chunks
            frame = conn.recv()
        assert frame.type == T.RESULT and frame.payload[1] == "still here"
        assert vm.proc.poll() is None
    finally:
        vm.stop()
        master.close()


def test_the_real_master_sends_the_esp32_a_64k_task(tmp_path, micropython):
    """The same ESP32 heap (the board's plus what its modules hold) behind the real master:
    the node reports less free heap than twice the task, and the master counts a chunked
    byte string once (master.heap_need), so the task goes there and comes back exact."""
    import asyncio

    from microswarm import paths
    from microswarm.master import Master

    board = "esp32-devkit-w5500"
    spec = paths.load_board(board)
    data = bytes(range(256)) * 256  # 64 KB

    async def scenario() -> dict:
        master = Master(cluster=CLUSTER, key=KEY, tcp_port=0, udp_port=None,
                        control_port=None, heartbeat_ms=500)
        await master.start()
        flash = make_flash(tmp_path / "flash", board, master=f"127.0.0.1:{master.tcp_port}")
        resident = firmware_resident(micropython, flash)
        vm = VM(micropython, flash, board, heap=spec["heap_bytes"] + resident)
        try:
            (info,) = await master.wait_for_nodes(1, timeout=30)
            assert await master.submit("sha256", [[b"first"]]) == [
                hashlib.sha256(b"first").digest()]
            digest = await asyncio.wait_for(master.submit("sha256", [[data]]), 60)
            return {"info": info, "digest": digest[0]}
        finally:
            await master.stop()
            vm.stop()

    out = asyncio.run(scenario())
    assert out["info"].heap_free < 2 * len(data) <= 2 * out["info"].max_message
    assert out["digest"] == hashlib.sha256(data).digest()
