"""Shared operands end to end (SPEC.md section 6): the real master and the node engine in
in-process nodes over memory pipes and loopback TCP, and the simulator's boards. Results
are checked against the kernel called directly on the whole arguments."""

from __future__ import annotations

import array
import asyncio
import re
from pathlib import Path

import pytest

from microswarm.firmware import kernels
from microswarm.master import Master, inproc
from microswarm.master.operands import Shared
from microswarm.master.split import BlockMatmul
from microswarm.sim import scenario
from microswarm.sim.cluster import Simulation

KEY = b"test cluster key"

pytestmark = pytest.mark.timeout(60)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 50))


def master(**kw) -> Master:
    return Master(key=KEY, tcp_port=0, udp_port=None, **kw)


def matrix(n: int, seed: int) -> array.array:
    return array.array("b", [(i * 37 + seed * 11) % 251 - 125 for i in range(n)])


def row_tasks(a, b, m, k, n, rows=2):
    return [[a[r * k:(r + rows) * k], b, rows, k, n] for r in range(0, m, rows)]


def joined(parts) -> list[int]:
    out: list[int] = []
    for p in parts:
        out.extend(p)
    return out


def test_a_shared_operand_goes_to_each_node_once_and_results_are_exact():
    m, k, n = 64, 32, 32
    a, b = matrix(m * k, 1), matrix(k * n, 2)
    expected = list(kernels.matmul(a, b, m, k, n))

    async def main():
        async with master() as mst:
            await mst.add_inproc_nodes(2, via="mem")
            await mst.add_inproc_nodes(1, via="tcp", prefix="tcp")
            await mst.wait_for_nodes(3)
            inline = await mst.run("matmul", row_tasks(a, b, m, k, n))
            sent_inline = sum(i.bytes_out for i in mst.nodes)
            shared = Shared(b)
            parts = await mst.run("matmul", row_tasks(a, shared, m, k, n))
            sent_shared = sum(i.bytes_out for i in mst.nodes) - sent_inline
            held = [c.session.operands.held for c in mst.sessions.values()]
            return inline, parts, sent_inline, sent_shared, held, shared

    inline, parts, sent_inline, sent_shared, held, shared = run(main())
    assert joined(inline) == joined(parts) == expected
    # B (1 KB) went at most once to each of the 3 nodes instead of once per task (32)
    assert sent_shared < sent_inline - 25 * len(b)
    assert all(shared.hash in h for h in held if h)


def test_an_evicted_operand_is_asked_for_again_and_results_stay_exact(monkeypatch):
    m, k, n = 16, 24, 24
    a = matrix(m * k, 3)
    bs = [matrix(k * n, s) for s in (4, 5)]
    shared = [Shared(b) for b in bs]
    monkeypatch.setattr(inproc, "OPERAND_CACHE", shared[0].size + 10)  # room for one
    # one node, tasks alternating between two operands: each PUT evicts the other, and
    # the master (its view still says "held" until a HEARTBEAT) sends a reference the
    # node no longer has: the node asks for it (NEED)
    tasks, expected = [], []
    for i in range(8):
        tasks += row_tasks(a[:2 * k], shared[i % 2], 2, k, n)
        expected.append(list(kernels.matmul(a[:2 * k], bs[i % 2], 2, k, n)))

    async def main():
        async with master(heartbeat_ms=5000, window=1) as mst:
            await mst.add_inproc_nodes(1, via="mem")
            await mst.wait_for_nodes(1)
            parts = await mst.run("matmul", tasks)
            return parts, mst.nodes[0]

    parts, info = run(main())
    assert [list(p) for p in parts] == expected
    assert info.operand_needs > 0 and info.errors == 0


def test_new_content_is_a_new_hash_and_never_the_old_operand():
    k, n = 8, 8
    a = matrix(2 * k, 6)
    b = matrix(k * n, 7)

    async def main():
        async with master() as mst:
            await mst.add_inproc_nodes(1, via="mem")
            await mst.wait_for_nodes(1)
            first = Shared(b)
            before = await mst.run("matmul", [[a, first, 2, k, n]] * 3)
            b[0] = (b[0] + 1) % 100  # the user changes the matrix in place
            second = Shared(b)
            after = await mst.run("matmul", [[a, second, 2, k, n], [a, first, 2, k, n]])
            return first, second, before, after

    first, second, before, after = run(main())
    assert first.hash != second.hash
    old = matrix(k * n, 7)
    assert [list(p) for p in before] == [list(kernels.matmul(a, old, 2, k, n))] * 3
    assert list(after[0]) == list(kernels.matmul(a, b, 2, k, n))
    assert list(after[1]) == list(kernels.matmul(a, old, 2, k, n))  # the snapshot it took


def test_block_matmul_shares_its_b_blocks():
    m, k, n = 24, 16, 16
    a, b = matrix(m * k, 8), matrix(k * n, 9)
    split = BlockMatmul(a, b, m, k, n, block=8, share=True)
    tasks = split.tasks()
    assert all(type(t[1]) is Shared for t in tasks)
    assert len({t[1].hash for t in tasks}) == 4  # one per (depth, column) block of B

    async def main():
        async with master() as mst:
            await mst.add_inproc_nodes(2, via="mem")
            await mst.wait_for_nodes(2)
            return await mst.run("matmul", tasks)

    assert split.assemble(run(main())) == list(kernels.matmul(a, b, m, k, n))


CRASH_AND_BACK = {
    "name": "crash-and-back",
    "duration_s": 60,
    "master": {"heartbeat_ms": 250, "window": 2},
    "nodes": [{"count": 6, "prefix": "pico-", "board": "rp2350", "link": "uart115200"}],
    "job": {"kind": "matmul", "m": 240, "k": 48, "n": 48, "rows_per_task": 4},
    "faults": [{"kind": "crash", "nodes": ["pico-1", "pico-4"], "at_s": 0.8,
                "restart_after_s": 0.3}],
}


def test_simulated_boards_that_restart_lose_their_cache_and_stay_exact():
    sim = Simulation(scenario.parse(CRASH_AND_BACK), keep_gantt=True)
    report = sim.run()
    r = report["result"]
    assert r["verified"] and r["lost"] == 0 and r["duplicated"] == 0, r
    # the restarted boards rejoined (a new session: an empty cache) and computed again
    back = {sim.node_by_id[name].index for name in ("pico-1", "pico-4")}
    assert any(g[0] in back and g[2] > 1.1 and g[4] == "ok" for g in sim.gantt)
    assert report["links"]["bytes"] < 240 // 4 * 48 * 48  # B did not travel with each task


def test_the_documented_example_runs_as_written():
    doc = (Path(__file__).resolve().parents[2] / "docs" / "master.md").read_text()
    section = doc.split("## Shared operands", 1)[1].split("\n## ", 1)[0]
    code, = re.findall(r"```python\n(.*?)```", section, re.S)
    exec(compile(code, "docs/master.md", "exec"), {"__name__": "__doc_example__"})


def test_placement_prefers_the_node_that_holds_the_operand():
    """The transfer a holder saves counts in the finish-time estimate: a node holding B
    wins over one that would start a little sooner but must first receive B."""
    from microswarm.master.scheduler import Dispatch, NodeCaps, Scheduler

    b = Shared(matrix(48 * 48, 1))  # 2.3 KB: 0.2 s on a 115200-baud UART
    caps = dict(kernels=frozenset({"matmul", "echo"}), window=2, bandwidth=11_520.0,
                operand_cache=50_000)
    for holder_has_it, winner in ((True, "holder"), (False, "other")):
        sched = Scheduler(clock=lambda: 0.0)
        sched.add_node("holder", NodeCaps(**caps))
        sched.add_node("other", NodeCaps(**caps))
        sched.submit("echo", [[1]])  # the holder is a little busier...
        (d,) = [a for a in sched.poll() if type(a) is Dispatch]
        assert d.node_id == "holder"
        if holder_has_it:
            sched.holds("holder", [b.hash])  # ...but holds B
        sched.submit("matmul", [[matrix(192, 2), b, 4, 48, 48]])
        (d,) = [a for a in sched.poll() if type(a) is Dispatch]
        assert d.node_id == winner


@pytest.mark.parametrize("seed", [3, 5])
def test_lossy_serial_links_lose_puts_and_needs_yet_results_stay_exact(seed):
    """15% of frames lost and 10% damaged on UART: a PUT, a NEED or a TASK with refs may
    vanish; the node waits, answers MISSING_OPERAND, the task goes again inline."""
    spec = {
        "name": "lossy-shared", "seed": seed, "duration_s": 120,
        "master": {"heartbeat_ms": 250, "window": 2},
        "nodes": [{"count": 4, "prefix": "pico-", "board": "rp2350", "link": "uart115200",
                   "loss": 0.15, "corrupt": 0.1}],
        "job": {"kind": "matmul", "m": 160, "k": 48, "n": 48, "rows_per_task": 4},
    }
    sim = Simulation(scenario.parse(spec), keep_gantt=False)
    report = sim.run()
    r = report["result"]
    assert r["verified"] and r["lost"] == 0 and r["duplicated"] == 0, r
    assert report["links"]["lost"] > 0 and report["links"]["corrupted"] > 0


def test_the_session_puts_once_refers_after_and_answers_every_need():
    """The master's NodeSession, frame by frame on a fake clock (tests/master/test_session
    drives the join)."""
    from microswarm.protocol.catalog import MsgType

    from .test_session import frame, join, out, session

    b = Shared(matrix(64, 1))
    s = session()
    join(s, operand_cache=10_000)
    assert s.operands is not None and s.operands.capacity == 4096 - 64  # its max_message
    s.send_task(1, "matmul", [matrix(8, 2), b, 1, 8, 8], 0, 1.0)
    put, task = out(s)
    assert put.type == MsgType.PUT and put.payload == {0: b.hash, 1: b.data}
    assert task.type == MsgType.TASK and task.payload[2][1] is None
    assert task.payload[4] == {1: b.hash}
    s.send_task(2, "matmul", [matrix(8, 3), b, 1, 8, 8], 0, 1.1)
    (task,) = out(s)  # the node holds it: a reference only
    assert task.type == MsgType.TASK and task.payload[4] == {1: b.hash}
    s.receive(frame(MsgType.NEED, {0: [b.hash], 1: 2}, 2), 1.2)  # evicted meanwhile
    (put,) = out(s)
    assert put.type == MsgType.PUT and s.info.operand_needs == 1
    # asked again (a second waiting task, or evicted again by another PUT): sent again;
    # the master cannot tell a PUT on its way from one the node has already dropped
    s.receive(frame(MsgType.NEED, {0: [b.hash], 1: 1}, 3), 1.3)
    assert [f.type for f in out(s)] == [MsgType.PUT]
    s.send_task(3, "matmul", [matrix(8, 4), b, 1, 8, 8], 0, 4.9)  # a reference only
    assert [f.type for f in out(s)] == [MsgType.TASK]
    s.receive(frame(MsgType.HEARTBEAT, {0: 9000, 7: []}, 4), 5.0)  # holds nothing now
    s.send_task(4, "matmul", [matrix(8, 4), b, 1, 8, 8], 0, 5.1)
    assert [f.type for f in out(s)] == [MsgType.PUT, MsgType.TASK]


def test_a_node_without_a_cache_gets_shared_operands_inline():
    from microswarm.protocol.catalog import MsgType

    from .test_session import join, out, session

    b = Shared(matrix(64, 1))
    s = session()
    join(s)
    assert s.operands is None
    s.send_task(1, "matmul", [matrix(8, 2), b, 1, 8, 8], 0, 1.0)
    (task,) = out(s)
    assert task.type == MsgType.TASK and 4 not in task.payload
    assert list(task.payload[2][1]) == list(b.value)
