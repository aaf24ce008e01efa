"""Shared operands on the real firmware in the MicroPython VM, joined to the real master
over TCP: an operand goes once, an evicted one is asked for again (NEED), wrong content
under a hash is refused, and a board that restarts (cache lost) still computes exactly."""

from __future__ import annotations

import array
import asyncio

import pytest

from microswarm.firmware import kernels
from microswarm.master import Master, Shared
from microswarm.protocol.catalog import MsgType

from .conftest import CLUSTER, KEY, make_flash
from .scripted import VM

pytestmark = pytest.mark.slow

HEAP = 512 * 1024  # the worker gives 1/8 of it to operands: 64 KB


def matrix(n: int, seed: int) -> array.array:
    return array.array("b", [(i * 31 + seed * 7) % 255 - 127 for i in range(n)])


def test_operands_on_a_vm_board_miss_evict_restart_and_stale(tmp_path, micropython):
    # B: 25,000 bytes, over the 16 KB frame (each PUT is a CHUNK stream); two fit in the
    # board's 64 KB cache, three do not
    k, n = 125, 200
    a = matrix(2 * k, 1)
    bs = [matrix(k * n, s) for s in (2, 3, 4)]
    shared = [Shared(b) for b in bs]
    expected = [list(kernels.matmul(a, b, 2, k, n)) for b in bs]

    async def run_all(mst: Master, i: int, times: int) -> None:
        parts = await mst.run("matmul", [[a, shared[i], 2, k, n]] * times)
        assert [list(p) for p in parts] == [expected[i]] * times

    async def scenario() -> None:
        # a long heartbeat: the master's view of the cache is not corrected in the job
        mst = Master(cluster=CLUSTER, key=KEY, tcp_port=0, udp_port=None, heartbeat_ms=3000,
                     window=1)
        await mst.start()
        flash = make_flash(tmp_path / "flash", "unix", master=f"127.0.0.1:{mst.tcp_port}")
        vm = VM(micropython, flash, "unix", heap=HEAP)
        try:
            await mst.wait_for_nodes(1, timeout=30)
            info = mst.nodes[0]
            assert info.operand_cache == info.heap_total // 8 > 2 * shared[0].size
            assert 3 * shared[0].size > info.operand_cache and shared[0].size > info.max_frame
            for i in (0, 1, 2):  # the third PUT evicts the first (least recently used)
                await run_all(mst, i, 3)
            assert info.operand_needs == 0
            sent = info.bytes_out
            await run_all(mst, 0, 2)  # the master thinks it is there: the board asks
            assert info.operand_needs == 1
            assert info.bytes_out - sent > len(bs[0])  # sent again, once
            assert info.errors == 0

            # wrong content under a hash the board does not hold: refused, never used
            conn = mst.sessions[info.node_id]
            conn.session._send(int(MsgType.PUT), {0: shared[1].hash, 1: shared[2].data})
            conn.flush()
            await run_all(mst, 1, 2)

            # the board restarts: a new session, an empty cache, the same exact results
            vm.stop()
            vm = VM(micropython, flash, "unix", heap=HEAP)
            for _ in range(300):
                await asyncio.sleep(0.1)
                if mst.nodes and mst.nodes[0] is not info:
                    break
            again = mst.nodes[0]
            assert again is not info and again.operand_needs == 0
            await run_all(mst, 2, 2)
            await run_all(mst, 0, 2)
            assert again.errors == 0
        finally:
            await mst.stop()
            vm.stop()

    asyncio.run(asyncio.wait_for(scenario(), 120))
