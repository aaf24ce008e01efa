"""Virtual boards of the real WIZnet boards, driven as a new user drives them: the vboard
command, deploy to a blank virtual board, the HIL suite against its pty, and the reasons
given when a board cannot join."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from array import array
from pathlib import Path

import pytest

from microswarm import bundle
from microswarm.vboard import VirtualBoard

pytestmark = pytest.mark.slow

WIZNET_BOARDS = ["w5500-evb-pico2", "w6100-evb-pico2"]
REPO = Path(__file__).resolve().parents[2]
OTHER_KEY = bytes(range(100, 116))
X64 = 2  # MP_NATIVE_ARCH_X64 in a .mpy header


def key_file(tmp_path: Path, key: bytes) -> Path:
    path = tmp_path / "cluster.key"
    path.write_text(key.hex() + "\n")
    return path


def microswarm(*args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "microswarm.cli", *args],
                          capture_output=True, text=True, timeout=timeout)


def mpy_arch(data: bytes) -> int:
    """The arch number in a .mpy header (0: bytecode only, loads anywhere)."""
    assert data[:1] == b"M"
    return data[2] >> 2


def assert_runs_tasks(master, node_id: str, board: str) -> None:
    node = next(n for n in master.master.nodes if n.node_id == node_id)
    assert node.board == board and node.link == "tcp"
    a = array("b", range(-8, 8))
    big = bytes(range(256)) * 32
    assert master.run_job("echo", [[big]]) == [big]
    product = master.run_job("matmul", [[a, a, 4, 4, 4]])[0]
    assert list(product) == [sum(a[r * 4 + p] * a[p * 4 + c] for p in range(4))
                             for r in range(4) for c in range(4)]


def wait_joined(master, node_id: str, timeout: float = 40) -> None:
    deadline = time.monotonic() + timeout
    while not any(n.node_id == node_id for n in master.master.nodes):
        if time.monotonic() > deadline:
            raise AssertionError(f"{node_id} did not join; refusals: {master.master.refusals}")
        time.sleep(0.05)


@pytest.mark.parametrize("board", WIZNET_BOARDS)
def test_vboard_command_runs_the_boards_firmware_through_its_chip(board, master, cluster_key,
                                                                  tmp_path):
    flash = tmp_path / "flash"
    proc = subprocess.Popen(
        [sys.executable, "-m", "microswarm.cli", "vboard", "--board", board, "--link", "tcp",
         "--master", master.address, "--key-file", str(key_file(tmp_path, cluster_key)),
         "--node-id", "vb-" + board, "--flash", str(flash)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        lines = []
        while not any("by DHCP" in line for line in lines):
            line = proc.stdout.readline()
            assert line, "".join(lines)
            lines.append(line)
        banner = "".join(lines)
        assert f"{board[:5].upper()} chip model on the SPI bus" in banner
        assert re.search(r"the board's chip took 10\.77\.0\.\d+ by DHCP", banner)
        wait_joined(master, "vb-" + board)
        assert_runs_tasks(master, "vb-" + board, board)
        # the board's own firmware and board file, built for the VM's arch only
        assert '"net_driver": "wiznet"' in (flash / "board.json").read_text()
        for mpy in flash.glob("*.mpy"):
            assert mpy_arch(mpy.read_bytes()) in (0, X64), mpy.name
        assert {p.name for p in flash.glob("*.py")} == {"main.py"}
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    assert not (tmp_path / "flash.serial").exists()


@pytest.mark.parametrize("board", WIZNET_BOARDS)
def test_deploy_of_a_real_board_to_a_blank_virtual_board(board, master, cluster_key, tmp_path):
    vb = VirtualBoard(board=board, workdir=tmp_path / "board", firmware=False, node_id="b")
    vb.start()
    try:
        # a native module of the board's arch left on the flash must go: the VM cannot load it
        armv7emsp = bundle.native_module("armv7emsp")
        if armv7emsp is not None:
            (vb.flash / bundle.NATIVE_MODULE).write_bytes(armv7emsp.read_bytes())
        out = microswarm("deploy", "--board", board, "--port", vb.serial_port,
                         "--key-file", str(key_file(tmp_path, cluster_key)),
                         "--master", master.address, "--control", master.control,
                         "--node-id", "d-" + board)
        assert out.returncode == 0, out.stdout + out.stderr
        assert f"the target runs x64, not armv7emsp as a {board} does" in out.stdout
        assert "for x64" in out.stdout
        assert_runs_tasks(master, "d-" + board, board)
        native = vb.flash / bundle.NATIVE_MODULE
        if bundle.native_module("x64") is not None:
            assert native.read_bytes() == bundle.native_module("x64").read_bytes()
        else:
            assert not native.exists()
        assert vb.last_error is None, vb.console_errors
    finally:
        vb.stop()


def test_a_board_that_cannot_join_says_why(master, tmp_path):
    """Wrong key: deploy gives the master's refusal and the board's console line. A board
    file the target cannot run (a WIZnet board's firmware on a board with no SPI bus):
    deploy gives the exception the board printed."""
    wrong = key_file(tmp_path, OTHER_KEY)
    vb = VirtualBoard(board="w5500-evb-pico2", workdir=tmp_path / "a", firmware=False)
    vb.start()
    try:
        out = microswarm("deploy", "--board", "w5500-evb-pico2", "--port", vb.serial_port,
                         "--key-file", str(wrong), "--master", master.address,
                         "--control", master.control, "--timeout", "8")
        assert out.returncode == 1
        assert "the master refused: " in out.stderr and "wrong cluster key" in out.stderr
        assert "cannot join" in out.stderr  # at once, not after the --timeout
        assert "the board says: microswarm: auth: master refused the join" in out.stderr
    finally:
        vb.stop()
    plain = VirtualBoard(board="unix", workdir=tmp_path / "b", firmware=False)
    plain.start()
    try:
        out = microswarm("deploy", "--board", "w5500-evb-pico2", "--port", plain.serial_port,
                         "--key-file", str(wrong), "--master", master.address,
                         "--control", master.control, "--timeout", "8")
        assert out.returncode == 1
        assert "the board says: " in out.stderr and "cannot join" in out.stderr
        assert "ImportError: can't import name SPI" in out.stderr
    finally:
        plain.stop()


def test_vboard_command_prints_why_its_board_cannot_join(master, tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "microswarm.cli", "vboard", "--board", "w6100-evb-pico2",
         "--master", master.address, "--key-file", str(key_file(tmp_path, OTHER_KEY)),
         "--flash", str(tmp_path / "flash")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        lines = []
        while not any("board says:" in line for line in lines):
            line = proc.stdout.readline()
            assert line, "".join(lines)
            lines.append(line)
        assert "board says: microswarm: auth: master refused the join" in lines[-1]
        assert "wrong cluster key" in lines[-1]
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_hil_suite_against_a_virtual_boards_pty(tmp_path):
    """`pytest tests/hil --board w5500-evb-pico2 --board-port <pty>` as docs/hil.md says,
    with a blank virtual board of that board on the pty."""
    vb = VirtualBoard(board="w5500-evb-pico2", workdir=tmp_path / "board", firmware=False)
    vb.start()
    try:
        out = subprocess.run(
            [sys.executable, "-m", "pytest", str(REPO / "tests" / "hil"), "-q",
             "-p", "no:cacheprovider", "--board", "w5500-evb-pico2",
             "--board-port", vb.serial_port, "-k", "hello or every_kernel or garbage"],
            capture_output=True, text=True, timeout=240, cwd=REPO,
        )
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
        assert re.search(r"\b1[45] passed", out.stdout), out.stdout[-500:]
    finally:
        vb.stop()
