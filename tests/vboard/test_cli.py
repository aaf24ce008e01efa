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
        assert (tmp_path / "serial").resolve() == type(tmp_path)(port)
        Mpremote(port, timeout=20).exec("f = open('hello.txt', 'w'); f.write('hi'); f.close()")
        assert (flash / "hello.txt").read_text() == "hi"
        assert Mpremote(f"socket://127.0.0.1:{console}", timeout=20).exec(
            "print(open('/hello.txt').read())").strip() == "hi"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        assert not (tmp_path / "serial").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
