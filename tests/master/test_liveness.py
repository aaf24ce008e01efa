"""Liveness with kernels longer than the loss rule (issue 11): a VM board (the real firmware in
the MicroPython unix port) runs a kernel of several seconds with a 300 ms heartbeat and keeps
its session, because its kernel runs on a second thread while the link heartbeats (also right
after short calls of the same kernel, which may run on its event loop); and a
board killed in the middle of that kernel is declared lost within 3 heartbeat intervals of
the kill, its task finishing on the other board exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time

import pytest

from microswarm.master import Master
from microswarm.master.scheduler import Dispatch, TaskDone
from microswarm.master.session import LOST_BEATS
from microswarm.vboard import VirtualBoard

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

KEY = b"liveness-test-key-0123456"
HEARTBEAT_MS = 300
BEAT_S = HEARTBEAT_MS / 1000
# About 5 s of pure-Python kernel on the unix-port VM of the reference PC (the case).
LONG = [7, 40_000_000]
SHORT = [7, 100]  # the same kernel, microseconds


async def _until(predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


def test_long_kernel_keeps_the_board_and_a_kill_mid_kernel_is_detected():
    async def main() -> None:
        async with Master(key=KEY, cluster="live", tcp_port=0, udp_port=None,
                          heartbeat_ms=HEARTBEAT_MS) as m:
            left: list[tuple[float, str, str]] = []  # (monotonic time, node, cause)
            watched: list = []  # the scheduler's Dispatch and TaskDone actions

            def watch(kind: str, data: dict) -> None:
                if kind == "node_left":
                    left.append((time.monotonic(), data["info"].node_id, data["cause"]))
                elif kind == "actions":
                    watched.extend(a for a in data["actions"]
                                   if isinstance(a, Dispatch | TaskDone))

            m.events.subscribe(watch)
            addr = f"127.0.0.1:{m.tcp_port}"
            boards = [VirtualBoard(link="tcp", node_id=f"vb{i}", cluster="live", key=KEY,
                                   master=addr, native=False) for i in range(2)]
            try:
                await asyncio.to_thread(boards[0].start)
                await m.wait_for_nodes(1, 60)
                (info,) = m.nodes
                assert info.threads  # the unix port runs kernels beside the link

                # 1. The long kernel completes on the board that took it, which stays joined,
                # also right after short calls of the same kernel (which the board may run
                # on its event loop): the long call has other magnitudes, it runs beside the
                # link.
                for _ in range(3):
                    short = m.submit("monte_carlo_pi", [SHORT])
                    (short_hits,) = await short
                    assert 0 < short_hits <= SHORT[1]
                short_us = info.compute_us  # the node's own measure: under 1 ms a call
                assert short_us < 3 * 1000
                handle = m.submit("monte_carlo_pi", [LONG])
                (hits,) = await handle
                assert handle.nodes == ["vb0"] and not left
                assert 3.1 < 4 * hits / LONG[1] < 3.2
                kernel_s = (info.compute_us - short_us) / 1e6  # the node's own measure
                assert kernel_s > LOST_BEATS * BEAT_S  # the case the loss rule used to break

                # 2. Killed in the middle of the same kernel (SIGKILL: the VM's sockets close
                # as a crashed host's would): lost within 3 intervals, the task finishes on
                # the other board exactly once with the same value.
                await asyncio.to_thread(boards[1].start)
                await m.wait_for_nodes(2, 60)
                victim = await _kill_mid_kernel(m, boards, hits, watched, left, "kill")
                boards.remove(victim)

                # 3. Frozen mid-kernel (SIGSTOP: a board that lost power sends no FIN, its
                # link just goes silent): the silence rule finds it, 3 intervals after its
                # last frame, on the master's next tick.
                boards.append(VirtualBoard(link="tcp", node_id="vb2", cluster="live", key=KEY,
                                           master=addr, native=False))
                await asyncio.to_thread(boards[-1].start)
                await m.wait_for_nodes(2, 60)
                await _kill_mid_kernel(m, boards, hits, watched, left, "freeze")
            finally:
                for b in boards:
                    if b.vm_pid is not None:
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(b.vm_pid, signal.SIGCONT)
                await asyncio.gather(*(asyncio.to_thread(b.stop) for b in boards),
                                     return_exceptions=True)

    asyncio.run(main())


async def _kill_mid_kernel(m: Master, boards: list[VirtualBoard], hits: int, watched: list,
                           left: list, how: str) -> VirtualBoard:
    """Submit LONG to two joined boards, stop the one that runs it while its kernel runs
    (`how`: "kill" or "freeze"), check the loss and the task's one completion elsewhere;
    returns the victim."""
    watched.clear()
    left.clear()
    handle = m.submit("monte_carlo_pi", [LONG])
    await _until(lambda: watched, 30)
    victim_id = watched[0].node_id
    (victim,) = [b for b in boards if b.node_id == victim_id]
    (survivor,) = [b.node_id for b in boards if b is not victim]
    await _until(lambda: _running(m, victim_id), 30)  # a HEARTBEAT lists the running kernel
    stopped_at = time.monotonic()
    if how == "kill":
        await asyncio.to_thread(victim.kill)  # SIGKILL: the VM and its supervisor
        bound = LOST_BEATS * BEAT_S
    else:
        os.kill(victim.vm_pid, signal.SIGSTOP)
        # 3 silent intervals, seen by a timer ticking every m.tick_s, plus one interval
        # for that timer to run on a loaded machine.
        bound = (LOST_BEATS + 1) * BEAT_S
    assert await handle == [hits]
    (lost_at, node, cause) = left[0]
    assert node == victim_id and len(left) == 1, left
    assert lost_at - stopped_at <= bound, (how, lost_at - stopped_at, cause)
    if how == "freeze":
        assert cause.startswith(f"lost: no frame for {LOST_BEATS} heartbeat intervals"), cause
    assert handle.nodes == [survivor]
    task_id = watched[0].task_id
    dispatches = [(a.node_id, a.task_id) for a in watched if isinstance(a, Dispatch)]
    assert dispatches == [(victim_id, task_id), (survivor, task_id)]
    assert [(a.node_id, a.value) for a in watched if isinstance(a, TaskDone)] == [
        (survivor, hits)]
    return victim


def _running(m: Master, node_id: str) -> bool:
    for info in m.nodes:
        if info.node_id == node_id:
            return bool(info.node_heartbeat.get("running"))
    return False
