"""Poison tasks on both links a board has (issue 15): one task of each class sent to the
worker in the real VM, over TCP and over a serial pty, is answered with its code and its
task id, and the same session goes on serving."""

from __future__ import annotations

import array

import pytest

from microswarm import wire
from microswarm.protocol.catalog import ErrorCode, MsgType, key

from .conftest import make_flash
from .scripted import VM, PtyLink, T, TcpMaster

pytestmark = pytest.mark.slow

CODE = 5  # RESULT key: the error code
# A user's kernel package whose kernel has a bug: KERNEL_FAILED (not the arguments' fault)
BUGGY = '''from msw_kernel import kernel


@kernel("buggy", args=[("n", "uint")])
def buggy(n):
    return [1, 2][n]
'''


@pytest.fixture(params=["tcp", "serial"])
def joined(request, tmp_path, micropython):
    """(conn, hello): a worker joined to a scripted master over TCP (the unix board) or a
    pty (the serial-only pico2-usb board, with its heap), with the buggy kernel installed."""
    package = tmp_path / "buggy_pkg"
    package.mkdir()
    (package / "buggy.py").write_text(BUGGY)
    flash = tmp_path / "flash"
    if request.param == "tcp":
        master = TcpMaster()
        make_flash(flash, "unix", master=f"127.0.0.1:{master.port}", kernels=(package,))
        vm = VM(micropython, flash, "unix")
        close = master.close
        conn = master.accept()
    else:
        link = PtyLink("terminal")  # as a virtual board's VM: block reads
        make_flash(flash, "pico2-usb", link="serial", kernels=(package,))
        vm = VM(micropython, flash, "pico2-usb", stdio=link.vm_fd)
        close = link.close
        conn = link.conn()
    try:
        hello = conn.join()
        assert hello[key(MsgType.HELLO, "link")] == request.param
        yield conn, hello
        assert vm.proc.poll() is None, vm.log()
    finally:
        vm.stop()
        close()


def _chunk(conn, stream: int, task_id: int, total: int, more: bool) -> None:
    """The first CHUNK of a TASK stream announcing `total` bytes (the encoded TASK starts
    with its task id, as every sender writes it)."""
    head = wire.encode_payload({0: task_id, 1: "echo", 2: [b""]})[:8]
    payload = {0: stream, 1: int(T.TASK), 2: total, 3: 0, 4: head}
    conn.send_raw(wire.encode_frame(T.CHUNK, payload, conn.seq, flags=1 if more else 0,
                                    auth=conn.auth))
    conn.seq += 1


def test_poison_tasks_get_their_code_and_the_board_keeps_serving(joined):
    conn, hello = joined
    # empty typed arrays of every item width encode (they used to end the session)
    for n, tc in enumerate("bBhHiIqQfd"):
        conn.task(100 + n, "echo", [array.array(tc)])
        res = conn.result()
        assert res[0] == 100 + n and len(res[1]) == 0 and CODE not in res
    conn.task(120, "mandelbrot", [0, 0, 8, 0, 4, 16])  # w=0: an empty result
    assert list(conn.result()[1]) == []
    # wrong arguments: deterministic, BAD_ARGS
    conn.task(121, "dot", [array.array("h", [1, 2]), array.array("h", [1])])
    conn.task(122, "matmul", [array.array("b", [1])])
    assert [(r[0], r[CODE]) for r in (conn.result(), conn.result())] == [
        (121, ErrorCode.BAD_ARGS), (122, ErrorCode.BAD_ARGS)]
    # a kernel's own bug: KERNEL_FAILED, with the exception
    conn.task(123, "buggy", [5])
    res = conn.result()
    assert res[0] == 123 and res[CODE] == ErrorCode.KERNEL_FAILED and "IndexError" in res[2]
    # a result that does not fit the heap (32 MB of pixels): NO_MEMORY
    conn.task(124, "mandelbrot", [0, 0, 8, 4096, 4096, 1])
    res = conn.result()
    assert res[0] == 124 and res[CODE] == ErrorCode.NO_MEMORY
    # arguments that do not fit the heap once decoded (a dict per byte): NO_MEMORY with the
    # task's id, in one frame (16,000 dicts: over the serial board's heap) and in a CHUNK
    # stream (150,000: over either heap)
    for task_id, count in ((125, 16000), (126, 150000)):
        conn.task(task_id, "echo", [[{}] * count])
        frame = conn.recv(30)
        payload = frame.payload
        if frame.type == T.RESULT and CODE not in payload:
            assert count == 16000 and len(payload[1]) == count  # the unix board's 2 MB heap
            continue
        got = (payload[0], payload[CODE]) if frame.type == T.RESULT else (payload[3],
                                                                           payload[0])
        assert got == (task_id, ErrorCode.NO_MEMORY), frame
    # a CHUNK stream over max_message: TOO_LARGE with the task's id
    _chunk(conn, 1, 130, hello[key(MsgType.HELLO, "max_message")] + 1, more=True)
    err = conn.expect(T.ERROR).payload
    assert err[0] == ErrorCode.TOO_LARGE and err[3] == 130
    # more open CHUNK streams than the stated limit: the extra one is refused, not a restart
    for stream in range(2, 7):
        _chunk(conn, stream, 140 + stream, 4000, more=True)
    err = conn.expect(T.ERROR).payload
    assert err[0] == ErrorCode.TOO_LARGE and err[3] == 146
    # an unexpected WELCOME after the join: answered, the session stays
    conn.send(T.WELCOME, {0: "vm-1", 1: 1000, 2: 4, 3: 16384, 4: bytes(32)})
    err = conn.expect(T.ERROR).payload
    assert err[0] == ErrorCode.UNEXPECTED
    conn.task(150, "echo", ["still serving"])
    assert conn.result()[1] == "still serving"
