"""The firmware in the VM joins the real master (microswarm.master) over TCP, by UDP
discovery, and over a raw pty, and computes jobs the master splits into tasks."""

from __future__ import annotations

import array
import asyncio
import logging
import os
import tty

import pytest

from microswarm.master import Master

from .conftest import CLUSTER, KEY, make_flash
from .scripted import VM

pytestmark = pytest.mark.slow


async def _jobs(master: Master) -> None:
    await master.wait_for_nodes(1, timeout=30)
    node = master.nodes[0]
    assert node.node_id == "vm-1"
    assert await master.submit("echo", [[i] for i in range(20)]) == list(range(20))
    a = array.array("b", range(-32, 32))
    products = await master.submit("matmul", [[a, a, 8, 8, 8]] * 3)
    expected = [sum(a[r * 8 + p] * a[p * 8 + c] for p in range(8))
                for r in range(8) for c in range(8)]
    assert [list(p) for p in products] == [expected] * 3
    hits = await master.submit("monte_carlo_pi", [[seed, 2000] for seed in range(4)])
    assert all(1400 < h < 1700 for h in hits)


def test_tcp_and_discovery_with_the_real_master(tmp_path, micropython):
    async def scenario() -> None:
        master = Master(cluster=CLUSTER, key=KEY, tcp_port=0, udp_port=0, control_port=None,
                        heartbeat_ms=500)
        await master.start()
        flash = make_flash(tmp_path / "flash", "w5500-evb-pico2", master="", extra={
            "discovery_host": "127.0.0.1", "discovery_port": master.udp_port})
        vm = VM(micropython, flash, "w5500-evb-pico2")
        try:
            await _jobs(master)
        finally:
            await master.stop()
            vm.stop()

    asyncio.run(scenario())


def _serve_a_serial_vm(tmp_path, micropython, body, waiting: bytes = b"") -> None:
    """The worker in the VM on a raw pty served by the real master; `body(master)` runs
    once the port is open; `waiting`: bytes already on the node's console."""
    vm_fd, slave_fd = os.openpty()
    tty.setraw(slave_fd)
    path = os.ttyname(slave_fd)
    if waiting:
        os.write(slave_fd, waiting)

    async def scenario() -> None:
        master = Master(cluster=CLUSTER, key=KEY, tcp_port=0, udp_port=None, control_port=None,
                        heartbeat_ms=500)
        await master.start()
        flash = make_flash(tmp_path / "flash", "pico2-usb", link="serial")
        vm = VM(micropython, flash, "pico2-usb", stdio=vm_fd)
        try:
            await master.open_serial(path)
            await body(master)
        finally:
            await master.stop()
            vm.stop()

    try:
        asyncio.run(scenario())
    finally:
        os.close(slave_fd)
        os.close(vm_fd)


def test_serial_with_the_real_master(tmp_path, micropython):
    _serve_a_serial_vm(tmp_path, micropython, _jobs)


def test_a_serial_node_with_leftovers_on_its_console_joins_at_its_first_hello(
        tmp_path, micropython, caplog):
    """What the board's console took in before the worker started (the bytes mpremote sends
    as it leaves, a terminal's keys) are not glued to the master's first frame: the master
    opens each session on a serial port with a delimiter, so its AUTH survives and the
    node joins on its first HELLO (before, the node refused the glued AUTH as bad COBS and
    joined on its next HELLO 5 s later, its LOG then saying why the first session ended)."""
    async def echo(master: Master) -> None:
        await master.wait_for_nodes(1, timeout=30)
        assert await master.submit("echo", [[7]]) == [7]

    with caplog.at_level(logging.INFO, logger="microswarm"):
        _serve_a_serial_vm(tmp_path, micropython, echo, waiting=b"\r\x02\x04leftovers")
    said = [r.getMessage() for r in caplog.records]
    assert any("joined over serial" in m for m in said), said
    assert not [m for m in said if "session ended" in m or "bad COBS" in m], said
