"""The unchanged firmware worker on an emulated W5500 / W6100 board, through the strict chip
models: it takes its address from DHCP (W6100 board) or its config, finds the real master
by UDP discovery through the chip's hardware UDP socket or dials the address in its config,
joins over a hardware TCP socket (IPv4, or IPv6 on the W6100 to a master on ::1) and runs
tasks: 16 KB frames, and a job that moves several MB each way."""

from __future__ import annotations

import array
import asyncio
import json
import os
import shutil
import socket
import subprocess

import pytest

from microswarm import bundle, paths
from microswarm.master import Master

from .conftest import VM_DIR
from .dhcp_server import DhcpServer

pytestmark = pytest.mark.slow

KEY = bytes(range(32))


def _flash(root, board: str, master: str, udp_port: int | None, dhcp: bool):
    config = json.loads(bundle.render_config("wiz-1", "wiz", KEY, master, "tcp",
                                             discovery_port=udp_port))
    if not dhcp:
        config["ifconfig"] = ["10.0.0.2", "255.255.255.0", "10.0.0.1", "0.0.0.0"]
    bundle.write_layout(root, bundle.layout(board, config))
    shutil.copy(VM_DIR / "machine.py", root / "machine.py")  # the SPI/Pin stand-in
    return root


async def _serve_node(model, board: str, flash, micropython: str, how: str = "discovery",
                      job: list | None = None) -> dict:
    """how: "discovery" (UDP discovery, DHCP on the W6100 board), "tcp" (the board dials
    10.0.0.1:port) or "ipv6" (the board dials fd00::1:port, a master on ::1)."""
    master = Master(cluster="wiz", key=KEY, host="::1" if how == "ipv6" else "127.0.0.1",
                    tcp_port=0, udp_port=0 if how == "discovery" else None,
                    control_port=None, heartbeat_ms=1000)
    await master.start()
    dhcp = DhcpServer() if model.chip.kind == "w6100" and how == "discovery" else None
    if dhcp is not None:
        model.chip.port_map[67] = dhcp.port
    address = {"discovery": "", "tcp": f"10.0.0.1:{master.tcp_port}",
               "ipv6": f"fd00::1:{master.tcp_port}"}[how]
    _flash(flash, board, address, master.udp_port if how == "discovery" else None,
           dhcp is not None)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WIZNET_")}
    env["WIZNET_MODEL"] = f"127.0.0.1:{model.port}"
    heap = paths.load_board(board)["heap_bytes"]
    log = open(flash / "vm.log", "wb")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen([micropython, "-X", f"heapsize={heap}", "main.py"], cwd=flash,
                            env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    try:
        nodes = []
        for _ in range(60):
            if proc.poll() is not None:
                break
            try:
                nodes = await master.wait_for_nodes(1, timeout=0.5)
                break
            except TimeoutError:
                continue
        if not nodes:
            raise AssertionError((flash / "vm.log").read_text(errors="replace"))
        node = nodes[0]
        big = bytes(range(256)) * 64  # 16 KB: a frame that fills the 2 KB rings 8 times
        a = array.array("b", range(-8, 8))
        echo = await master.submit("echo", [[big], [b"x"], [{"k": [1, 2.5]}]])
        product = await master.submit("matmul", [[a, a, 4, 4, 4]])
        long = await master.submit("echo", job) if job else None
        return {"node": node, "echo": echo, "product": product, "big": big, "a": a,
                "long": long}
    finally:
        await master.stop()
        if dhcp is not None:
            dhcp.close()
        proc.kill()
        proc.wait(timeout=10)
        log.close()


@pytest.mark.parametrize("model", ["w5500", "w6100"], indirect=True)
def test_worker_joins_by_discovery_and_runs_tasks(model, micropython, tmp_path):
    board = f"{model.chip.kind}-evb-pico2"
    out = asyncio.run(_serve_node(model, board, tmp_path / "flash", micropython, "discovery"))
    node = out["node"]
    assert node.node_id == "wiz-1" and node.board == board and node.link == "tcp"
    assert out["echo"] == [out["big"], b"x", {"k": [1, 2.5]}]
    a = out["a"]
    expected = [sum(a[r * 4 + p] * a[p * 4 + c] for p in range(4))
                for r in range(4) for c in range(4)]
    assert list(out["product"][0]) == expected
    counters = model.chip.counters()
    assert counters["spi_bytes"] > 2 * len(out["big"])  # the frames really crossed the SPI bus
    udp = [s for s in model.chip.sockets if s.mode == 0x02]
    assert udp, "discovery used a hardware UDP socket"
    m = model.chip.map
    leased = bytes(model.chip.common[m.sipr : m.sipr + 4])
    assert leased == bytes([10, 0, 0, 77] if model.chip.kind == "w6100" else [10, 0, 0, 2])


def _frames(n: int) -> list[list[bytes]]:
    """n different 16 KB payloads (a corrupted or misplaced chunk cannot pass unnoticed)."""
    base = bytes(range(256)) * 64
    return [[base[i % 256:] + base[: i % 256]] for i in range(n)]


@pytest.mark.parametrize("model", ["w5500", "w6100"], indirect=True)
def test_worker_dials_the_master_and_runs_a_long_job(model, micropython, tmp_path):
    """The board dials the master's address from its config; a job of 200 tasks moves
    3.2 MB to the node and 3.2 MB back through the chip, its ring pointers having jumped
    when the connection was established."""
    board = f"{model.chip.kind}-evb-pico2"
    job = _frames(200)
    out = asyncio.run(_serve_node(model, board, tmp_path / "flash", micropython, "tcp", job))
    assert out["node"].link == "tcp"
    assert out["long"] == [args[0] for args in job]
    assert model.chip.counters()["spi_bytes"] > 2 * 200 * 16384
    tcp = [s for s in model.chip.sockets if s.mode & 0x03 == 0x01]
    assert tcp and all(s.jumped is not None for s in tcp)
    assert not [s for s in model.chip.sockets if s.mode & 0x03 == 0x02]  # no discovery


@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6 on this host")
@pytest.mark.parametrize("model", ["w6100"], indirect=True)
def test_worker_joins_a_master_on_ipv6(model, micropython, tmp_path):
    """The W6100 board dials an IPv6 master (the model reaches it on ::1) over a TCP6
    hardware socket and runs tasks."""
    out = asyncio.run(_serve_node(model, "w6100-evb-pico2", tmp_path / "flash", micropython,
                                  "ipv6", _frames(20)))
    assert out["echo"] == [out["big"], b"x", {"k": [1, 2.5]}]
    assert out["long"] == [args[0] for args in _frames(20)]
    tcp6 = [s for s in model.chip.sockets if s.mode == 0x09]
    assert tcp6 and tcp6[0].v6
