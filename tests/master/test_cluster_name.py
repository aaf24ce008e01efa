"""A node configured for another cluster name is refused, and both sides say which names:
the master's refusal and log, the node's console (TCP), and over UDP discovery."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import select
import time

import pytest

from microswarm import bundle
from microswarm.master import Master
from microswarm.vboard import VirtualBoard

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

KEY = b"cluster-name-test-key-0123"


def read_console_until(port: str, needle: bytes, timeout: float) -> bytes:
    """Read a board's console (its pty) until `needle` shows up; return what was read."""
    fd = os.open(port, os.O_RDWR | os.O_NOCTTY)
    seen = b""
    try:
        deadline = time.monotonic() + timeout
        while needle not in seen and time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if ready:
                seen += os.read(fd, 4096)
        return seen
    finally:
        os.close(fd)


async def wait_for_refusal(m: Master, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while not m.refusals and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert m.refusals, "the master refused nobody"
    return m.refusals[0]


def test_tcp_node_of_another_cluster_is_refused_naming_both_names():
    async def main():
        async with Master(key=KEY, cluster="lab", tcp_port=0, udp_port=None) as m:
            board = VirtualBoard(link="tcp", node_id="vm-other", cluster="other", key=KEY,
                                 master=f"127.0.0.1:{m.tcp_port}", native=False)
            try:
                await asyncio.to_thread(board.start)
                refusal = await wait_for_refusal(m, 30)
                assert "'vm-other'" in refusal and "'other'" in refusal and "'lab'" in refusal
                console = await asyncio.to_thread(
                    read_console_until, board.serial_port, b"'lab'", 20)
                assert b"master refused the join" in console, console
                assert b"'other'" in console and b"'lab'" in console, console
                assert m.nodes == []
            finally:
                await asyncio.to_thread(board.stop)

    asyncio.run(main())


def test_serial_node_of_another_cluster_is_refused_naming_both_names():
    async def main():
        async with Master(key=KEY, cluster="lab", tcp_port=None, udp_port=None) as m:
            board = VirtualBoard(link="serial", node_id="vm-ser", cluster="other", key=KEY,
                                 native=False)
            try:
                await asyncio.to_thread(board.start)
                await m.open_serial(board.serial_port)
                refusal = await wait_for_refusal(m, 30)
                assert "'vm-ser'" in refusal and "'other'" in refusal and "'lab'" in refusal
                assert m.nodes == []
            finally:
                await asyncio.to_thread(board.stop)

    asyncio.run(main())


def test_udp_discovery_of_another_cluster_says_why_on_both_sides(tmp_path, caplog):
    async def main():
        async with Master(key=KEY, cluster="lab", tcp_port=0, udp_port=0) as m:
            config = json.loads(bundle.render_config("vm-lost", "other", KEY, "", "tcp"))
            config.update(discovery_host="127.0.0.1", discovery_port=m.udp_port)
            bundle.write_layout(tmp_path / "flash", bundle.layout("unix", json.dumps(config)))
            board = VirtualBoard(link="tcp", node_id="vm-lost", workdir=tmp_path,
                                 firmware=False)
            try:
                await asyncio.to_thread(board.start)
                console = await asyncio.to_thread(
                    read_console_until, board.serial_port, b"configured for cluster", 30)
                assert b"serves cluster 'lab'" in console, console
                assert b"configured for cluster 'other'" in console, console
                assert m.nodes == [] and m.refusals == []
            finally:
                await asyncio.to_thread(board.stop)

    with caplog.at_level(logging.WARNING, logger="microswarm"):
        asyncio.run(main())
    told = [r.getMessage() for r in caplog.records if "discovery" in r.getMessage()]
    assert len(told) == 1, told  # once per address and name, however often it asks
    assert "'vm-lost'" in told[0] and "'other'" in told[0] and "'lab'" in told[0]
