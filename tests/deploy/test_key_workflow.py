"""The key workflow of docs/deploy.md, run as written: keygen, master --key-file, vboard
--key-file, deploy --key-file, nodes. The commands use the documented fixed ports, so they
run in a network namespace of their own (unshare) when the machine allows it."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from microswarm.keys import read_key

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

PORTS = (5880, 5881, 5882, 5883, 5884, 7000)  # master: tcp, udp, control, client, http


def documented_workflow(repo: Path) -> list[str]:
    text = (repo / "docs" / "deploy.md").read_text()
    start = text.index("The whole workflow on one PC")
    block = re.search(r"```sh\n(.*?)```", text[start:], re.S)
    assert block, "docs/deploy.md: the workflow block is missing"
    return [line for line in block.group(1).splitlines() if line.strip()]


class Namespace:
    """A private network namespace with loopback up, or the host's when none can be made
    and the documented ports are free here."""

    def __init__(self) -> None:
        self.holder: subprocess.Popen | None = None
        self.prefix: list[str] = []
        if os.geteuid() == 0 and shutil.which("unshare") and shutil.which("nsenter"):
            holder = subprocess.Popen(
                ["unshare", "--net", "--", "sh", "-c",
                 "ip link set lo up 2>/dev/null || ifconfig lo up; echo up; exec sleep 600"],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            if holder.stdout.readline().strip() == "up":
                self.holder = holder
                self.prefix = ["nsenter", f"--net=/proc/{holder.pid}/ns/net", "--"]
                return
            holder.kill()
            holder.wait()
        for port in PORTS:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    pytest.skip(f"no network namespace can be made here and port {port} is "
                              "taken: the documented workflow needs ports 5880-5884 and 7000")

    def close(self) -> None:
        if self.holder is not None:
            self.holder.kill()
            self.holder.wait()


class Command:
    """One documented command, its output gathered as it comes."""

    def __init__(self, prefix: list[str], line: str, cwd: Path, env: dict) -> None:
        self.line = line
        self.output = ""
        self.proc = subprocess.Popen(prefix + shlex.split(line.rstrip("& ")), cwd=cwd, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for chunk in self.proc.stdout:
            self.output += chunk

    def wait_for(self, pattern: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not re.search(pattern, self.output):
            assert self.proc.poll() is None, f"{self.line!r} ended:\n{self.output}"
            assert time.monotonic() < deadline, f"{self.line!r}: no {pattern!r}:\n{self.output}"
            time.sleep(0.05)

    def finish(self, timeout: float) -> str:
        self.proc.wait(timeout)
        self._reader.join(10)
        assert self.proc.returncode == 0, f"{self.line!r} exited {self.proc.returncode}:\n" \
                                          f"{self.output}"
        return self.output

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


# What shows that a background command is up before the next line runs.
READY = {"master": r"listening", "vboard": r"serial port: "}


def test_documented_key_workflow_runs_as_written(repo, tmp_path):
    lines = documented_workflow(repo)
    assert [line.split()[1] for line in lines] == [
        "keygen", "master", "vboard", "vboard", "deploy", "nodes"]
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}"
                                f"{os.environ.get('PATH', '')}")
    namespace = Namespace()
    running: list[Command] = []
    try:
        for line in lines:
            command = Command(namespace.prefix, line, tmp_path, env)
            name = line.split()[1]
            if line.endswith("&"):
                running.append(command)
                command.wait_for(READY[name], 60)
            elif name == "nodes":
                deadline = time.monotonic() + 60
                while True:  # the board started first may still be dialling
                    listing = command.finish(30)
                    if ("vb-1" in listing and "vb-2" in listing) or time.monotonic() > deadline:
                        break
                    time.sleep(0.5)
                    command = Command(namespace.prefix, line, tmp_path, env)
                assert "vb-1" in listing and "vb-2" in listing, listing
            else:
                command.finish(180)
                running.append(command)
        key = read_key(tmp_path / "cluster.key")
        assert len(key) == 32
        assert (tmp_path / "cluster.key").stat().st_mode & 0o777 == 0o600
        assert all(key.hex() not in c.output for c in running), "the key was printed"
    finally:
        for command in reversed(running):
            command.stop()
        namespace.close()
