"""`microswarm vboard` as a user runs it: ports printed, mpremote works, SIGTERM stops it."""

from __future__ import annotations

import re
import signal
import subprocess
import sys

from microswarm.deploy.mpremote import Mpremote


def test_vboard_command_serves_a_blank_board_until_terminated(tmp_path):
    flash = tmp_path / "flash"
    proc = subprocess.Popen(
        [sys.executable, "-m", "microswarm.cli", "vboard", "--blank", "--flash", str(flash),
         "--tcp-port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        banner = "".join(proc.stdout.readline() for _ in range(5))
        port = re.search(r"serial port: (/dev/pts/\d+)", banner).group(1)
        console = re.search(r"socket://127\.0\.0\.1:(\d+)", banner).group(1)
        assert (tmp_path / "flash.serial").resolve() == type(tmp_path)(port)
        Mpremote(port, timeout=20).exec("f = open('hello.txt', 'w'); f.write('hi'); f.close()")
        assert (flash / "hello.txt").read_text() == "hi"
        assert Mpremote(f"socket://127.0.0.1:{console}", timeout=20).exec(
            "print(open('/hello.txt').read())").strip() == "hi"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        assert not (tmp_path / "flash.serial").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def _start(flash, *extra):
    return subprocess.Popen(
        [sys.executable, "-m", "microswarm.cli", "vboard", "--blank", "--flash", str(flash),
         *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def test_boards_whose_flash_folders_share_a_parent_get_their_own_serial_link(tmp_path):
    procs = [_start(tmp_path / "a"), _start(tmp_path / "b")]
    try:
        ports = []
        for proc in procs:
            banner = "".join(proc.stdout.readline() for _ in range(4))
            ports.append(re.search(r"serial port: (/dev/pts/\d+)", banner).group(1))
        assert ports[0] != ports[1]
        assert (tmp_path / "a.serial").resolve() == type(tmp_path)(ports[0])
        assert (tmp_path / "b.serial").resolve() == type(tmp_path)(ports[1])
        # a second board on a flash folder in use is refused, and says why
        third = _start(tmp_path / "a")
        assert third.wait(timeout=30) == 1
        assert f"flash folder {tmp_path / 'a'} is in use by another virtual board" in (
            third.stdout.read())
        assert (tmp_path / "a.serial").resolve() == type(tmp_path)(ports[0])
        assert Mpremote(str(tmp_path / "b.serial"), timeout=20).exec("print(6 * 7)").strip() \
            == "42"
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=15)
