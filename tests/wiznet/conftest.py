"""Fixtures for the WIZnet driver tests: the chip model (tools/wiznet_model) in a thread of
the test process, and the real MicroPython VM whose `machine.SPI`/`machine.Pin` (the stand-in
in tools/wiznet_model/vm, used only by tests and the bench) carry every SPI transaction to
that model over loopback."""

from __future__ import annotations

import os
import queue
import string
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from microswarm import paths

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "tools"))
VM_DIR = REPO / "tools" / "wiznet_model" / "vm"

from wiznet_model import ModelServer  # noqa: E402

CHIPS = ["w5500", "w6100"]

PRELUDE = """
import sys
sys.path.insert(0, {vm_dir!r})
sys.path.insert(1, {firmware!r})
import machine, wiznet

def open_nic(**kw):
    spi = machine.SPI(0, baudrate=20000000, sck=18, mosi=19, miso=16)
    cs = machine.Pin(17, machine.Pin.OUT, value=1)
    rst = machine.Pin(20, machine.Pin.OUT, value=1)
    intr = kw.pop("intr", machine.Pin(21, machine.Pin.IN))
    link = kw.pop("link", True)
    nic = wiznet.WIZnet(spi, cs, rst=rst, intr=intr, **kw)
    if link:  # the strict model's PHY link comes up a while after reset
        import time
        for _ in range(300):
            if nic.link_up():
                break
            time.sleep_ms(10)
    return nic

def say(*args):
    print(*args)

def wait():
    return sys.stdin.readline().strip()
"""


class VmProcess:
    """A MicroPython VM running one test script; talks with the test by lines."""

    def __init__(self, micropython: str, source: str, env: dict[str, str], heap: int) -> None:
        prelude = PRELUDE.format(vm_dir=str(VM_DIR), firmware=str(paths.firmware_dir()))
        self.proc = subprocess.Popen(
            [micropython, "-X", f"heapsize={heap}", "-c", prelude + source],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=env, cwd=paths.firmware_dir(),
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.put(raw.decode(errors="replace").rstrip("\n"))
        self.lines.put(None)

    def expect(self, prefix: str, timeout: float = 20) -> str:
        """Wait for a line starting with prefix; return the rest of it."""
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"VM said no {prefix!r} in {timeout} s: {self.seen}") from None
            if line is None:
                raise AssertionError(f"VM ended before {prefix!r}: {self.seen}\n{self._stderr()}")
            self.seen.append(line)
            if line.startswith(prefix):
                return line[len(prefix) :].strip()

    def reply(self, text: str = "go") -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text.encode() + b"\n")
        self.proc.stdin.flush()

    def finish(self, timeout: float = 30) -> list[str]:
        """Wait for the script to end successfully; return every line it printed."""
        rc = self.proc.wait(timeout=timeout)
        while True:
            line = self.lines.get(timeout=5)
            if line is None:
                break
            self.seen.append(line)
        if rc != 0:
            raise AssertionError(f"VM exited {rc}\nstdout: {self.seen}\n{self._stderr()}")
        return self.seen

    def _stderr(self) -> str:
        if self.proc.poll() is None or self.proc.stderr is None:
            return ""
        return self.proc.stderr.read().decode(errors="replace")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture(params=CHIPS)
def model(request) -> Iterator[ModelServer]:
    with ModelServer(request.param, retransmit_s=0.15) as server:
        yield server


@pytest.fixture
def vm(micropython):
    """vm(source, model=None, heap=256_000, **values) -> a running VmProcess, killed at
    teardown."""
    started: list[VmProcess] = []

    def start(
        source: str, model: ModelServer | None = None, heap: int = 256_000, **values: object
    ) -> VmProcess:
        """values fill $name placeholders in source (string.Template)."""
        source = string.Template(source).substitute({k: str(v) for k, v in values.items()})
        env = {k: v for k, v in os.environ.items() if not k.startswith("WIZNET_")}
        if model is not None:
            env["WIZNET_MODEL"] = f"127.0.0.1:{model.port}"
        process = VmProcess(micropython, source, env, heap)
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()
