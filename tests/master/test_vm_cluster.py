"""The master with real MicroPython VM boards (the firmware in the unix port) on TCP and
pty serial links, next to in-process nodes; crash, wrong key and master restart."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from microswarm.firmware import kernels
from microswarm.master import Master
from microswarm.master.jobs import mandelbrot
from microswarm.vboard import VirtualBoard

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

KEY = b"vm-cluster-test-key-0123"


async def start_boards(boards: list[VirtualBoard]) -> None:
    await asyncio.gather(*(asyncio.to_thread(b.start) for b in boards))


async def stop_boards(boards: list[VirtualBoard]) -> None:
    await asyncio.gather(*(asyncio.to_thread(b.stop) for b in boards), return_exceptions=True)


def test_job_across_tcp_serial_and_inproc_nodes_is_exact():
    plan = mandelbrot(96, 64, 16, 40)

    async def main():
        async with Master(key=KEY, cluster="t", tcp_port=0, udp_port=None) as m:
            addr = f"127.0.0.1:{m.tcp_port}"
            serial = VirtualBoard(link="serial", node_id="vm-serial", cluster="t", key=KEY,
                                  native=False)
            tcp = [VirtualBoard(link="tcp", node_id=f"vm-tcp{i}", cluster="t", key=KEY,
                                master=addr, native=i == 0) for i in range(2)]
            try:
                await start_boards([serial, *tcp])
                await m.open_serial(serial.serial_port)
                await m.wait_for_nodes(3, 30)
                assert {n.node_id: n.link for n in m.nodes}["vm-serial"] == "serial"
                sha = os.urandom(40000)  # more than one 16 KB frame: travels as CHUNKs
                tile = plan.tasks[5]
                await m.add_inproc_nodes(2)
                await m.wait_for_nodes(5, 30)
                assert sorted(n.link for n in m.nodes) == ["mem", "mem", "serial", "tcp", "tcp"]
                handle = m.submit(plan.kernel, plan.tasks)
                image = plan.gather(await handle)
                assert image == plan.reference()
                links = {n.node_id: n.link for n in m.nodes}
                assert {links[n] for n in handle.nodes} >= {"tcp", "mem"}
                digest, value = await asyncio.gather(m.run("sha256", [[sha]]),
                                                     m.run(plan.kernel, [tile]))
                assert digest == [kernels.sha256(sha)]
                assert value == [kernels.mandelbrot(*tile)]
            finally:
                await stop_boards([serial, *tcp])

    asyncio.run(main())


def test_serial_board_alone_gives_the_reference():
    plan = mandelbrot(48, 32, 16, 30)

    async def main():
        async with Master(key=KEY, cluster="t", tcp_port=None, udp_port=None) as m:
            board = VirtualBoard(link="serial", node_id="vm-serial", cluster="t", key=KEY)
            try:
                await start_boards([board])
                await m.open_serial(board.serial_port)
                (info,) = await m.wait_for_nodes(1, 30)
                assert info.link == "serial" and info.board == "unix"
                image = plan.gather(await m.submit(plan.kernel, plan.tasks))
                assert image == plan.reference()
                assert info.results >= len(plan.tasks) and info.bad_frames == 0
            finally:
                await stop_boards([board])

    asyncio.run(main())


def test_board_killed_mid_job_and_wrong_key_board_refused():
    plan = mandelbrot(128, 96, 16, 60)

    async def main():
        async with Master(key=KEY, cluster="t", tcp_port=0, udp_port=None) as m:
            addr = f"127.0.0.1:{m.tcp_port}"
            good = [VirtualBoard(link="tcp", node_id=f"vm{i}", cluster="t", key=KEY,
                                 master=addr, native=False) for i in range(3)]
            bad = VirtualBoard(link="tcp", node_id="intruder", cluster="t",
                               key=b"not-the-cluster-key!", master=addr, native=False)
            try:
                await start_boards([*good, bad])
                await m.wait_for_nodes(3, 30)
                deadline = time.monotonic() + 20
                while not m.refusals and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
                assert any("wrong cluster key" in r for r in m.refusals)
                assert "intruder" not in {n.node_id for n in m.nodes}
                handle = m.submit(plan.kernel, plan.tasks)
                while handle.done < 8:
                    await asyncio.sleep(0.01)
                assert not handle.future.done()
                victim = good[0]
                await asyncio.to_thread(victim.kill)  # SIGKILL: VM and supervisor
                results = await handle
                assert plan.gather(results) == plan.reference()
                assert "vm0" not in {n.node_id for n in m.nodes}
                assert len(results) == len(plan.tasks)
            finally:
                await stop_boards([*good, bad])

    asyncio.run(main())


def test_master_killed_and_restarted_resumes_from_the_journal(tmp_path):
    journal = tmp_path / "journal.sqlite"
    params = ["width=320", "height=240", "tile=16", "max_iter=200"]
    command = [sys.executable, "-m", "microswarm.cli", "run", "mandelbrot", *params,
               "--inproc", "2", "--journal", str(journal)]
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        done = 0
        while time.monotonic() < deadline and first.poll() is None:
            if journal.exists():
                try:
                    with sqlite3.connect(journal, timeout=1) as db:
                        done = db.execute("SELECT COUNT(*) FROM results").fetchone()[0]
                except sqlite3.OperationalError:
                    done = 0
                if done >= 20:
                    break
            time.sleep(0.05)
        assert first.poll() is None, "the job finished before it could be interrupted"
        os.killpg(first.pid, signal.SIGKILL)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
        first.wait(10)
    with sqlite3.connect(journal) as db:
        kept = db.execute("SELECT COUNT(*) FROM results").fetchone()[0]
    assert 20 <= kept < 300
    second = subprocess.run(command, capture_output=True, text=True, timeout=90)
    assert second.returncode == 0, second.stderr
    # SQLite recovery may also keep a last batch that was in the WAL but not yet indexed
    found = re.search(r"resuming: (\d+) of 300 tasks already in the journal", second.stdout)
    assert found, second.stdout
    resumed = int(found.group(1))
    assert kept <= resumed < 300
    assert f"; {300 - resumed} tasks computed" in second.stdout
    assert f"({resumed} from the journal); matches the reference" in second.stdout


def test_demo_command_small(tmp_path):
    out = tmp_path / "demo.png"
    done = subprocess.run(
        [sys.executable, "-m", "microswarm.cli", "demo", "--tcp-boards", "1", "--serial-boards",
         "1", "--inproc", "1", "--width", "120", "--height", "80", "--tile", "40",
         "--max-iter", "64", "--out", str(out)],
        capture_output=True, text=True, timeout=100,
    )
    assert done.returncode == 0, done.stderr
    assert "image matches the reference" in done.stdout
    for node in ("vm-tcp1", "vm-serial1", "py1"):
        assert node in done.stdout
    from PIL import Image

    with Image.open(out) as picture:
        assert picture.size[0] == 120 and picture.size[1] > 80  # the legend sits below


def test_board_finds_the_master_by_udp_discovery(tmp_path):
    """A VM board with no master address asks by DISCOVER (sent here to the loopback
    address, as a board on a LAN sends it to the broadcast address) and joins over TCP."""
    import json

    from microswarm import bundle

    async def main():
        async with Master(key=KEY, cluster="disc", tcp_port=0, udp_port=0) as m:
            config = json.loads(bundle.render_config("vm-disc", "disc", KEY, "", "tcp"))
            config.update(discovery_host="127.0.0.1", discovery_port=m.udp_port)
            bundle.write_layout(tmp_path / "flash", bundle.layout("unix", json.dumps(config)))
            board = VirtualBoard(link="tcp", node_id="vm-disc", cluster="disc", key=KEY,
                                 workdir=tmp_path, firmware=False)
            try:
                await start_boards([board])
                (info,) = await m.wait_for_nodes(1, 30)
                assert info.node_id == "vm-disc" and info.link == "tcp"
                assert await m.run("echo", [["found"]]) == ["found"]
            finally:
                await stop_boards([board])

    asyncio.run(main())


def test_serial_board_reset_mid_job_rejoins_on_the_same_port():
    plan = mandelbrot(96, 64, 16, 200)

    async def main():
        async with Master(key=KEY, cluster="t", tcp_port=None, udp_port=None) as m:
            board = VirtualBoard(link="serial", node_id="vm-serial", cluster="t", key=KEY,
                                 native=False)
            try:
                await start_boards([board])
                await m.open_serial(board.serial_port)
                await m.wait_for_nodes(1, 30)
                handle = m.submit(plan.kernel, plan.tasks)
                while handle.done < 3:
                    await asyncio.sleep(0.01)
                assert not handle.future.done()
                board.hard_reset()  # the VM restarts and says HELLO on the same pty
                image = plan.gather(await handle)
                assert image == plan.reference()
                (info,) = m.nodes
                assert info.node_id == "vm-serial" and info.link == "serial"
                assert board.boots >= 2
            finally:
                await stop_boards([board])

    asyncio.run(main())


def _noise_until_hello(port: str, timeout: float = 30.0) -> None:
    """Write frame-like lines that begin with 0x03 (as COBS frames often do: the REPL's
    interrupt key) to a serial board every 2 ms until its node says HELLO."""
    import serial

    from microswarm import wire
    from microswarm.protocol.catalog import MsgType

    line = serial.Serial(port, timeout=0)
    deframer = wire.SerialDeframer()
    deadline = time.monotonic() + timeout
    try:
        while True:
            assert time.monotonic() < deadline, "the node said no HELLO through the noise"
            line.write(b"\x03\x05\x01\x00")  # not a REPL break: that is \r\x03 or \x03\x03
            got = deframer.feed(line.read(65536))
            if any(getattr(f, "type", None) == MsgType.HELLO for f in got):
                return
            time.sleep(0.002)
    finally:
        line.close()


def test_frames_arriving_while_a_serial_board_boots_do_not_interrupt_it():
    """Bytes 0x03 sent all through a serial board's boot (power-on, then a reset) are data
    for its worker, never Ctrl-C: the node says HELLO through them, then joins and serves.
    The HELLOs said meanwhile are lost (read by the noise writer, before any master): the
    node joins on one it says again."""

    async def main():
        board = VirtualBoard(link="serial", node_id="vm-noisy", cluster="t", key=KEY,
                             native=False)
        try:
            await start_boards([board])
            await asyncio.to_thread(_noise_until_hello, board.serial_port)
            board.hard_reset()
            await asyncio.to_thread(_noise_until_hello, board.serial_port)
            async with Master(key=KEY, cluster="t", tcp_port=None, udp_port=None) as m:
                await m.open_serial(board.serial_port)
                (info,) = await m.wait_for_nodes(1, 30)
                assert info.node_id == "vm-noisy"
                assert await m.run("echo", [[b"\x03" * 600]]) == [b"\x03" * 600]
            assert board.boots == 2  # power-on and the reset: no crash, no restart
            assert not any("KeyboardInterrupt" in e for e in board.console_errors)
        finally:
            await stop_boards([board])

    asyncio.run(main())


async def _until(predicate, timeout: float) -> None:
    """Wait until predicate() holds, looking every 20 ms (fails after `timeout`)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


def test_serial_board_declared_lost_rejoins_on_its_own():
    """A board frozen for more than 3 heartbeat intervals is declared lost; the master keeps
    its port open, and the board, once it runs again, rejoins with no help."""

    async def main():
        async with Master(key=KEY, cluster="t", tcp_port=None, udp_port=None,
                          heartbeat_ms=200) as m:
            board = VirtualBoard(link="serial", node_id="vm-frozen", cluster="t", key=KEY,
                                 native=False)
            try:
                await start_boards([board])
                port = await m.open_serial(board.serial_port)
                await m.wait_for_nodes(1, 30)
                assert await m.run("echo", [[1]]) == [1]
                os.kill(board.vm_pid, signal.SIGSTOP)
                try:
                    await _until(lambda: not m.nodes, 10)  # lost: 3 silent intervals
                finally:
                    os.kill(board.vm_pid, signal.SIGCONT)
                await m.wait_for_nodes(1, 30)
                (info,) = m.nodes
                assert info.node_id == "vm-frozen" and info.link == "serial"
                assert port.opened == 1 and port.sessions >= 2  # the same open port
                assert await m.run("echo", [[i] for i in range(20)]) == list(range(20))
            finally:
                await stop_boards([board])

    asyncio.run(main())
