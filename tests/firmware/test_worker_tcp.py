"""The firmware worker in the real VM over TCP on loopback, against a scripted master."""

from __future__ import annotations

import array
import struct
import time
import zlib

import pytest

from microswarm import kernelpkg, paths, wire
from microswarm.protocol.catalog import ErrorCode, MsgType, key

from .conftest import make_flash
from .scripted import VM, T, TcpMaster

pytestmark = pytest.mark.slow


@pytest.fixture
def tcp_node(tmp_path, micropython):
    """(master, conn, vm): a unix-board worker joined to a scripted master."""
    master = TcpMaster()
    flash = make_flash(tmp_path / "flash", "unix", master=f"127.0.0.1:{master.port}",
                       extra={"slots": 3})
    vm = VM(micropython, flash, "unix")
    try:
        conn = master.accept()
        yield master, conn, vm
    finally:
        vm.stop()
        master.close()


def test_join_announces_the_node_and_serves_tasks(tcp_node):
    _master, conn, vm = tcp_node
    hello = conn.join(heartbeat_ms=300)
    assert hello[0] == "vm-1" and hello[1] == "unix" and hello[11] == "tcp"
    assert hello[9] == 3 and hello[8] == 16384
    assert 0 < hello[7] < hello[6] <= 2 * 1024 * 1024 + 65536
    assert "matmul" in hello[4] and "echo" in hello[4]

    conn.task(1, "echo", [{"k": [1, 2.5, None]}])
    assert conn.result()[1] == {"k": [1, 2.5, None]}

    a = array.array("b", range(-8, 8))
    conn.task(2, "matmul", [a, a, 4, 4, 4])
    res = conn.result()
    assert res[0] == 2 and res[4] is ("matmul" in hello.get(12, [])) and res[3] >= 0
    assert list(res[1]) == [sum(a[r * 4 + p] * a[p * 4 + c] for p in range(4))
                            for r in range(4) for c in range(4)]

    conn.task(3, "no_such_kernel", [])
    res = conn.result()
    assert res[5] == ErrorCode.UNKNOWN_KERNEL and 1 not in res

    conn.task(4, "dot", [array.array("b", [1]), array.array("h", [1])])
    res = conn.result()  # the kernel's own check: a ValueError is the arguments' fault
    assert res[5] == ErrorCode.BAD_ARGS and "ValueError" in res[2]

    conn.task(5, "dot", [array.array("b", [1]), "text"])
    res = conn.result()  # the declared kinds, checked before the kernel runs
    assert res[5] == ErrorCode.BAD_ARGS
    assert res[2].endswith("dot: argument b must be tarray:bhf, got str")

    # every kernel with its version: the built-in ones are the source hash of kernels.py
    # or kernels_small.py, from the manifest (the node holds only their .mpy)
    version = {stem: kernelpkg.source_hash((paths.firmware_dir() / f"{stem}.py").read_bytes())
               for stem in ("kernels", "kernels_small")}
    assert hello[15] == {name: version["kernels_small" if name in ("echo", "sleep_ms", "sha256")
                                       else "kernels"] for name in hello[4]}

    beats = []
    while len(beats) < 2:
        frame = conn.recv(keep_heartbeats=True)
        if frame.type == T.HEARTBEAT:
            beats.append(frame.payload)
    assert beats[-1][3] == 4 and beats[-1][2] == 0 and beats[-1][4] == 0  # 4 tasks ran
    assert beats[-1][5] <= beats[-1][1] and beats[-1][0] > 0
    assert vm.proc.poll() is None


def test_sleep_does_not_block_and_cancel_and_busy(tcp_node):
    """Orders that hold however slow the machine: what must come first never races a sleep
    that could end meanwhile (sleeps that must not end are a minute long and cancelled),
    and the master's silence rule (it sends no HEARTBEATs) is out of the way."""
    _master, conn, _vm = tcp_node
    conn.join(heartbeat_ms=60_000)
    conn.task(10, "sleep_ms", [60_000])
    conn.task(11, "echo", ["quick"])
    first = conn.result()
    assert first[0] == 11, "echo must overtake the sleeping task"
    conn.task(12, "sleep_ms", [400])
    res = conn.result()  # ends while task 10 still sleeps
    assert res[0] == 12 and res[1] == 400 and res[3] >= 400_000
    conn.send(T.CANCEL, {0: 10})
    cancelled = conn.result()
    assert cancelled[0] == 10 and cancelled[5] == ErrorCode.CANCELLED and 1 not in cancelled

    conn.task(20, "sleep_ms", [60_000])
    conn.task(21, "sleep_ms", [60_000])
    conn.task(22, "sleep_ms", [60_000])
    conn.task(23, "echo", [1])
    busy = conn.result()
    assert busy[0] == 23 and busy[5] == ErrorCode.BUSY
    conn.send(T.CANCEL, {0: 21})
    cancelled = conn.result()
    assert cancelled[0] == 21 and cancelled[5] == ErrorCode.CANCELLED and 1 not in cancelled


def test_a_cancel_read_before_the_sleep_starts_is_answered_at_once(tcp_node):
    """TASK and CANCEL in one read: the engine marks the task cancelled before the runner
    has started its sleep, which then never sleeps (it used to sleep it out, or, cancelled
    before its first step, end without an answer and keep its slot)."""
    _master, conn, _vm = tcp_node
    conn.join(heartbeat_ms=60_000)
    frames = []
    for msg_type, payload in ((T.TASK, {0: 5, 1: "sleep_ms", 2: [60_000]}), (T.CANCEL, {0: 5})):
        (f,) = wire.encode_message(msg_type, payload, seq=conn.seq, auth=conn.auth)
        conn.seq += 1
        frames.append(f)
    conn.send_raw(b"".join(frames))
    got = conn.result(timeout=20)
    assert got[0] == 5 and got[5] == ErrorCode.CANCELLED and 1 not in got
    conn.task(6, "echo", [6])  # the slot is free again
    assert conn.result()[1] == 6


def test_chunked_result_and_bad_frames_keep_the_link(tcp_node):
    _master, conn, _vm = tcp_node
    conn.join()
    big = bytes(range(256)) * 160  # 40 KB: chunked both ways over a 16 KB frame limit
    conn.task(30, "echo", [big])
    assert conn.result()[1] == big

    good = wire.encode_frame(T.TASK, {0: 31, 1: "echo", 2: [7]}, seq=900)
    sealed = conn.seal(good)
    crc_at = len(sealed) - 12 - 4  # the 12-byte MAC trailer follows the CRC
    bad_crc = sealed[:crc_at] + struct.pack("<I", zlib.crc32(sealed[:crc_at]) ^ 1) + \
        sealed[crc_at + 4:]
    conn.send_raw(bad_crc)
    err = conn.expect(T.ERROR).payload
    assert err[0] == ErrorCode.BAD_CRC and err[2] == 900
    bad_payload = wire.pack_frame(T.TASK, b"\xa1\x00\x61", seq=901)  # {0: "..." truncated
    conn.send_raw(conn.seal(bad_payload))
    assert conn.expect(T.ERROR).payload[0] == ErrorCode.BAD_PAYLOAD
    conn.send_raw(good)  # no MAC after the join: refused, never run
    err = conn.expect(T.ERROR).payload
    assert err[0] == ErrorCode.BAD_MAC and err[2] == 900
    conn.send_raw(conn.seal(good))
    assert conn.result()[1] == 7
    beat = conn.recv(keep_heartbeats=True, timeout=5)
    while beat.type != T.HEARTBEAT:
        beat = conn.recv(keep_heartbeats=True, timeout=5)
    assert beat.payload[4] == 3


def test_fatal_header_drops_the_link_and_the_worker_dials_again(tcp_node):
    master, conn, _vm = tcp_node
    conn.join()
    conn.send_raw(b"\x07" + bytes(10))  # version 7: the stream cannot be trusted
    assert conn.expect(T.ERROR).payload[0] == ErrorCode.BAD_VERSION
    again = master.accept()
    again.join()
    again.task(1, "echo", ["back"])
    assert again.result()[1] == "back"


def test_reconnects_after_the_master_goes_away(tmp_path, micropython):
    master = TcpMaster()
    port = master.port
    flash = make_flash(tmp_path / "flash", "unix", master=f"127.0.0.1:{port}")
    vm = VM(micropython, flash, "unix")
    try:
        conn = master.accept()
        conn.join(heartbeat_ms=200)
        conn.task(1, "echo", [1])
        assert conn.result()[1] == 1
        master.close()
        time.sleep(1.0)  # the worker meets refused connections and backs off
        master = TcpMaster(port)
        conn = master.accept(timeout=20)
        hello = conn.join()
        assert hello[0] == "vm-1"
        conn.task(2, "echo", [2])
        assert conn.result()[1] == 2
        assert "link down" in vm.log()
    finally:
        vm.stop()
        master.close()


def test_silent_master_is_dropped(tmp_path, micropython):
    master = TcpMaster()
    flash = make_flash(tmp_path / "flash", "unix", master=f"127.0.0.1:{master.port}")
    vm = VM(micropython, flash, "unix")
    try:
        conn = master.accept()
        conn.join(heartbeat_ms=100)
        again = master.accept(timeout=10)  # after 3 silent intervals the worker redials
        assert again.join()[0] == "vm-1"
        assert "master silent" in vm.log()
    finally:
        vm.stop()
        master.close()


@pytest.mark.parametrize("side", ["node", "master"])
def test_wrong_key_is_refused(tmp_path, micropython, side):
    master = TcpMaster()
    flash = make_flash(tmp_path / "flash", "unix", master=f"127.0.0.1:{master.port}")
    vm = VM(micropython, flash, "unix")
    wrong = bytes(32)
    try:
        conn = master.accept()
        if side == "master":
            # the master checks the node's MAC with its own key: it does not verify
            hello = conn.expect(MsgType.HELLO).payload
            nonce = bytes(range(16))
            conn.send(T.AUTH_CHALLENGE, {0: nonce})
            mac = conn.expect(T.AUTH_RESPONSE).payload[0]
            assert mac != wire.node_mac(wrong, nonce, hello[10], hello[0])
            conn.send(T.ERROR, {0: ErrorCode.AUTH_FAILED, 1: "wrong key"})
            with pytest.raises(ConnectionError):
                conn.recv(timeout=5)
        else:
            # the node checks the master's proof: an impostor's WELCOME is refused
            with pytest.raises(AssertionError):
                conn.join(wrong)
            conn.send(T.WELCOME, {0: "vm-1", 1: 1000, 2: 4, 3: 16384, 4: bytes(32)})
            # ... with an ERROR that says so, and the node hangs up
            assert conn.expect(T.ERROR).payload[0] == ErrorCode.AUTH_FAILED
            with pytest.raises(ConnectionError):
                conn.recv(timeout=5)
            assert "proof does not verify" in vm.log()
        assert vm.proc.poll() is None
    finally:
        vm.stop()
        master.close()


def test_a_long_kernel_runs_beside_the_link(tcp_node):
    """The VM runs kernels on a second thread: while one runs for many heartbeat intervals
    the node keeps heartbeating, its heartbeats name the running task, and it still
    notices the master's own heartbeats (it would hang up after 3 silent intervals)."""
    _master, conn, _vm = tcp_node
    hello = conn.join(heartbeat_ms=150)
    assert hello[key(MsgType.HELLO, "threads")] is True
    conn.task(1, "monte_carlo_pi", [7, 6_000_000])
    beats: list[dict] = []
    res = None
    while res is None:
        conn.send(T.HEARTBEAT, {0: 1})
        try:
            frame = conn.recv(timeout=0.1, keep_heartbeats=True)
        except TimeoutError:
            continue
        if frame.type == T.HEARTBEAT:
            beats.append(frame.payload)
        else:
            assert frame.type == T.RESULT
            res = frame.payload
    assert res[0] == 1 and res[3] > 3 * 150_000, "the kernel must outlast 3 intervals"
    running = [b[6] for b in beats if 6 in b]
    assert len(running) >= 3, beats
    assert all(r[0][0] == 1 for r in running) and running[-1][0][1] > running[0][0][1]
    assert all(b[2] == 1 for b in beats if 6 in b), "queue counts the running task"
    conn.task(2, "echo", ["same link"])
    assert conn.result()[1] == "same link"


def test_a_task_before_welcome_is_refused(tcp_node):
    _master, conn, _vm = tcp_node
    conn.expect(MsgType.HELLO)
    conn.task(9, "echo", [1])
    err = conn.expect(T.ERROR).payload
    assert err[0] == ErrorCode.NOT_JOINED and err[3] == 9
