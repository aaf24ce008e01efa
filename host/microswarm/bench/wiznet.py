"""SPI bytes and transactions the WIZnet driver spends per task frame, W5500 and W6100.

The firmware driver runs in the MicroPython VM against the register-level chip model in its
strict (default) mode (tools/wiznet_model, so a source checkout is needed); the model counts
every SPI transaction and byte. A master-side socket sends the node a TASK frame whose
payload is a 1 KB or 16 KB byte string, and the node sends the same frame back (the result
direction). Figures are SPI bytes per payload byte and SPI transactions per frame, each
direction, median over the repetitions; they measure the driver's access pattern, not the
model's speed.

Baseline: the same frames moved by the same driver with byte-at-a-time buffer access (one
SPI transaction per data byte, as a naive register-poke driver does), through the same model.
"""

from __future__ import annotations

import argparse
import os
import queue
import socket
import statistics
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

SIZES = (1024, 16384)
WIDE_SPLIT = (8, 2, 2, 2, 2, 0, 0, 0)  # the task socket gets 8 KB rings
CHIPS = ("w5500", "w6100")

VM_SCRIPT = r"""
import sys
sys.path.insert(0, $vm_dir)
sys.path.insert(1, $firmware)
import machine, wiznet

class Naive(wiznet.WIZnet):
    # Byte-at-a-time buffer access: one SPI transaction per data byte.
    def read(self, addr, bsb, buf):
        one = bytearray(1)
        for i in range(len(buf)):
            wiznet.WIZnet.read(self, (addr + i) & 0xFFFF, bsb, one)
            buf[i] = one[0]

    def write(self, addr, bsb, data):
        for i in range(len(data)):
            wiznet.WIZnet.write(self, (addr + i) & 0xFFFF, bsb, data[i:i + 1])

cls = Naive if $naive else wiznet.WIZnet
spi = machine.SPI(0, baudrate=20000000, sck=18, mosi=19, miso=16)
nic = cls(spi, machine.Pin(17, machine.Pin.OUT, value=1), rst=machine.Pin(20, machine.Pin.OUT),
          intr=machine.Pin(21, machine.Pin.IN), buffers=$buffers)
nic.wait_link(3000)
nic.ifconfig(("10.0.0.2", "255.255.255.0", "10.0.0.1", "0.0.0.0"))
s = nic.socket(nic.AF_INET, nic.SOCK_STREAM)
s.connect(("10.0.0.1", $port))
buf = bytearray(20000)
mv = memoryview(buf)
while True:
    print("READY")
    if sys.stdin.readline().strip() != "go":
        break
    got = 0
    need = 7
    while got < need:
        got += s.recv_into(mv[got:need])
        if need == 7 and got == 7:
            need = 7 + (buf[5] | (buf[6] << 8)) + 4
    print("RX", got)
    sys.stdin.readline()
    s.sendall(mv[:got])
    print("TX", got)
s.close()
"""


def _repo_tools() -> Path:
    tools = Path(__file__).resolve().parents[3] / "tools"
    if not (tools / "wiznet_model").is_dir():
        raise SystemExit("bench wiznet needs a source checkout: tools/wiznet_model not found")
    return tools


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reps", type=int, default=5, help="frames per size (default 5)")


class _Vm:
    def __init__(self, source: str, env: dict[str, str]) -> None:
        from microswarm import paths

        self.proc = subprocess.Popen(
            [paths.micropython_command(), "-X", "heapsize=450000", "-c", source],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.put(raw.decode().strip())
        self.lines.put(None)

    def expect(self, word: str) -> str:
        line = self.lines.get(timeout=60)
        if line is None or not line.startswith(word):
            err = self.proc.stderr.read().decode() if self.proc.stderr else ""
            raise RuntimeError(f"bench VM: expected {word!r}, got {line!r}\n{err}")
        return line

    def say(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text.encode() + b"\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def _recv_exactly(conn: socket.socket, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        chunk = conn.recv(n - len(out))
        if not chunk:
            raise RuntimeError("bench: the node closed the connection")
        out += chunk
    return bytes(out)


def measure(
    kind: str, naive: bool, sizes: tuple[int, ...], reps: int, buffers: tuple[int, ...] | None
) -> dict[str, Any]:
    """Per size: SPI bytes per payload byte and transactions per frame, RX and TX."""
    import string

    from microswarm import paths, wire
    from microswarm.protocol.catalog import MsgType

    tools = _repo_tools()
    if str(tools) not in sys.path:
        sys.path.insert(0, str(tools))
    from wiznet_model import ModelServer

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(30)
    source = string.Template(VM_SCRIPT).substitute(
        vm_dir=repr(str(tools / "wiznet_model" / "vm")),
        firmware=repr(str(paths.firmware_dir())),
        naive="True" if naive else "False",
        buffers=repr(buffers),
        port=listener.getsockname()[1],
    )
    out: dict[str, Any] = {}
    with ModelServer(kind) as model:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WIZNET_")}
        env["WIZNET_MODEL"] = f"127.0.0.1:{model.port}"
        vm = _Vm(source, env)
        try:
            conn, _ = listener.accept()
            conn.settimeout(60)
            for size in sizes:
                frame = wire.encode_frame(MsgType.TASK, {0: 1, 1: "echo", 2: [bytes(size)]})
                rx_bytes, rx_tr, tx_bytes, tx_tr = [], [], [], []
                for _ in range(reps):
                    vm.expect("READY")
                    with model.lock:
                        c0 = model.chip.counters()
                    vm.say("go")
                    conn.sendall(frame)
                    vm.expect("RX")
                    with model.lock:
                        c1 = model.chip.counters()
                    vm.say("go")
                    if _recv_exactly(conn, len(frame)) != frame:
                        raise RuntimeError("bench: the frame came back altered")
                    vm.expect("TX")
                    with model.lock:
                        c2 = model.chip.counters()
                    rx_bytes.append(c1["spi_bytes"] - c0["spi_bytes"])
                    rx_tr.append(c1["transactions"] - c0["transactions"])
                    tx_bytes.append(c2["spi_bytes"] - c1["spi_bytes"])
                    tx_tr.append(c2["transactions"] - c1["transactions"])
                rx_b, tx_b = statistics.median(rx_bytes), statistics.median(tx_bytes)
                out[str(size)] = {
                    "frame_bytes": len(frame),
                    "rx_spi_bytes_per_payload_byte": round(rx_b / size, 4),
                    "tx_spi_bytes_per_payload_byte": round(tx_b / size, 4),
                    "spi_bytes_per_payload_byte": round(max(rx_b, tx_b) / size, 4),
                    "rx_transactions_per_frame": statistics.median(rx_tr),
                    "tx_transactions_per_frame": statistics.median(tx_tr),
                }
            vm.expect("READY")
            vm.say("stop")
            conn.close()
        finally:
            vm.close()
            listener.close()
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    reps = max(1, args.reps)
    ours = {kind: measure(kind, False, SIZES, reps, None) for kind in CHIPS}
    naive = {kind: measure(kind, True, SIZES, 1, None) for kind in CHIPS}
    wide = {kind: measure(kind, False, SIZES[-1:], reps, WIDE_SPLIT) for kind in CHIPS}
    big = str(SIZES[-1])
    worst = max(ours[k][big]["spi_bytes_per_payload_byte"] for k in CHIPS)
    naive_worst = max(naive[k][big]["spi_bytes_per_payload_byte"] for k in CHIPS)
    return {
        "headline": {
            "name": "SPI bytes per payload byte, 16 KB task frame (worse chip, worse direction)",
            "value": worst,
            "unit": "bytes/byte",
            "baseline": naive_worst,
        },
        "driver": ours,
        "naive_byte_at_a_time": naive,
        "driver_8k_rings_on_socket_0": wide,
        "goal": "under 1.05 bytes/byte on 16 KB",
        "buffers": "2 KB TX and RX per socket (the reset split); INTn wired",
        "model": "strict (pointer jumps, command latency, torn counter reads)",
        "reps": reps,
    }
