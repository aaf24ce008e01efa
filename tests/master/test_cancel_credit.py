"""A cancelled task keeps its credit until the node answers CANCELLED: a node with one slot
is never sent a new TASK while the cancelled kernel still runs there, so a cancel-then-new
sequence is never answered BUSY and loses nothing (the real master, in-process nodes on
the node engine, and the scheduler's own record of what it dispatched)."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from microswarm.master import Master
from microswarm.master.scheduler import Dispatch

KEY = b"cancel-credit-test-key-0123"


async def _until(predicate, timeout: float = 20) -> None:
    async def wait() -> None:
        while not predicate():
            await asyncio.sleep(0.002)

    await asyncio.wait_for(wait(), timeout)


@pytest.mark.parametrize("via", ["mem", "tcp"])
def test_cancel_then_new_task_on_one_slot_is_never_busy(via):
    async def main() -> None:
        async with Master(key=KEY, cluster="c", tcp_port=0, udp_port=None,
                          heartbeat_ms=200) as m:
            sent: Counter = Counter()

            def watch(kind: str, data: dict) -> None:
                if kind == "actions":
                    sent.update(a.task_id for a in data["actions"] if isinstance(a, Dispatch))

            m.events.subscribe(watch)
            (node,) = await m.add_inproc_nodes(1, via=via, slots=1)
            await m.wait_for_nodes(1)
            info = m.nodes[0]
            assert info.window == 1
            # a waiting kernel (cut short by CANCEL) and a computing one (finishes first)
            slow = [("sleep_ms", [60_000]), ("monte_carlo_pi", [1, 300_000])]
            values = []
            for i in range(16):
                kernel, args = slow[i % 2]
                first = m.submit(kernel, [args])
                await _until(lambda: node.engine.running)  # noqa: B023 - awaited here
                m.cancel(first)
                second = m.submit("echo", [[i]])  # straight behind the CANCEL
                values += await asyncio.wait_for(second, 30)
            assert values == list(range(16))
            assert all(n == 1 for n in sent.values()), sent  # no task sent twice
            # 16 CANCELLED answers and no BUSY: every error RESULT is a CANCELLED one
            assert info.errors == 16 and info.results == 32 and node.done == 32

    asyncio.run(main())


def test_credit_of_a_cancelled_task_is_kept_until_its_answer():
    async def main() -> None:
        async with Master(key=KEY, cluster="c", tcp_port=0, udp_port=None) as m:
            await m.add_inproc_nodes(1, slots=1)
            (info,) = await m.wait_for_nodes(1)
            state = m.scheduler.nodes[info.node_id]
            first = m.submit("monte_carlo_pi", [[2, 400_000]])
            await _until(lambda: state.inflight)
            m.cancel(first)
            second = m.submit("echo", [[7]])
            assert state.free() == 0  # the node still runs the cancelled kernel
            assert await asyncio.wait_for(second, 30) == [7]
            assert info.errors == 1  # CANCELLED, then the echo: no BUSY

    asyncio.run(main())
