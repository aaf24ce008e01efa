"""A scripted master for protocol-level firmware tests, built on microswarm.wire.

It plays the master's side of a link frame by frame (blocking, with timeouts), so a test
controls exactly what the worker receives: bad frames, half frames, a wrong key. The VM
runs the real firmware from a flash folder laid out by microswarm.bundle.
"""

from __future__ import annotations

import os
import secrets
import select
import socket
import subprocess
import time
import tty
from pathlib import Path

import serial

from microswarm import wire
from microswarm.protocol.catalog import MsgType, key

from .conftest import KEY, heap_of

HELLO, WELCOME = MsgType.HELLO, MsgType.WELCOME


class _Nothing(bytes):
    """What a receive returns on timeout: no bytes, yet not the end of the stream."""


NOTHING = _Nothing()
T = MsgType


class Conn:
    """One link to a worker: frames in, frames out."""

    def __init__(self, send_bytes, recv_bytes, reader, send_line=None) -> None:
        self._send = send_bytes
        self._send_line = send_line or send_bytes
        self._recv = recv_bytes
        self._reader = reader
        self._pending: list = []
        self.seq = 0
        self.heartbeats: list[dict] = []
        self.logs: list[tuple[int, str]] = []  # (level, text) of the LOG frames
        self.auth: wire.LinkAuth | None = None  # frame MACs, from WELCOME on

    def send(self, msg_type: int, payload: dict, *, max_frame: int = 16384) -> None:
        for f in wire.encode_message(msg_type, payload, seq=self.seq, max_frame=max_frame,
                                     stream=self.seq, auth=self.auth):
            self.send_raw(f)
            self.seq = (self.seq + 1) & 0xFFFF

    def send_raw(self, frame: bytes) -> None:
        """One frame, framed for the link (COBS and delimiter on serial)."""
        self._send(frame)

    def seal(self, frame: bytes) -> bytes:
        """`frame` (e.g. a golden vector) as a joined master sends it: the same type, seq,
        flags and payload bytes, plus the MAC every frame after WELCOME carries."""
        length = frame[5] | frame[6] << 8
        return wire.pack_frame(frame[1], frame[7:7 + length], frame[3] | frame[4] << 8,
                               frame[2], self.auth)

    def send_raw_line(self, data: bytes) -> None:
        """Bytes straight onto the line, unframed."""
        self._send_line(data)

    def recv(self, timeout: float = 10.0, *, keep_heartbeats: bool = False,
             keep_logs: bool = False):
        """The next frame (heartbeats and LOG frames are recorded in .heartbeats and .logs
        and skipped unless asked for)."""
        deadline = time.monotonic() + timeout
        while True:
            while self._pending:
                item = self._pending.pop(0)
                if isinstance(item, wire.FrameError):
                    raise item
                if item.type == T.HEARTBEAT and not keep_heartbeats:
                    self.heartbeats.append(item.payload)
                    continue
                if item.type == T.LOG and not keep_logs:
                    self.logs.append((item.payload[0], item.payload[1]))
                    continue
                return item
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no frame from the worker")
            data = self._recv(left)
            if not data and data is not NOTHING:
                raise ConnectionError("worker closed the link")
            self._pending += self._reader.feed(data)

    def expect(self, msg_type: int, timeout: float = 10.0):
        frame = self.recv(timeout)
        assert frame.type == msg_type, f"expected {T(msg_type).name}, got {frame}"
        return frame

    def join(self, key_bytes: bytes = KEY, *, heartbeat_ms: int = 1000, window: int = 4,
             max_frame: int = 16384) -> dict:
        """Answer HELLO and check the worker's MAC; return the HELLO payload."""
        self.auth = self._reader.auth = None  # a new join: no MACs until WELCOME
        hello = self.expect(HELLO).payload
        nonce = secrets.token_bytes(16)
        self.send(T.AUTH_CHALLENGE, {0: nonce})
        mac = self.expect(T.AUTH_RESPONSE).payload[0]
        node_nonce = hello[key(HELLO, "nonce")]
        node_id = hello[key(HELLO, "node_id")]
        assert mac == wire.node_mac(key_bytes, nonce, node_nonce, node_id)
        self.send(WELCOME, {0: node_id, 1: heartbeat_ms, 2: window, 3: max_frame,
                            4: wire.master_proof(key_bytes, node_nonce, nonce)})
        self.auth = self._reader.auth = wire.LinkAuth.master(key_bytes, nonce, node_nonce)
        return hello

    def task(self, task_id: int, kernel: str, args: list, **kw) -> None:
        self.send(T.TASK, {0: task_id, 1: kernel, 2: args}, **kw)

    def result(self, timeout: float = 30.0, reassembler: wire.Reassembler | None = None):
        """The next RESULT payload, reassembling a chunked one."""
        reassembler = reassembler or wire.Reassembler()
        while True:
            frame = self.recv(timeout)
            if frame.type == T.CHUNK:
                whole = reassembler.push(frame)
                if whole is None:
                    continue
                frame = whole
            assert frame.type == T.RESULT, frame
            return frame.payload


class TcpMaster:
    """A listening socket on loopback; accept() gives a Conn per worker connection."""

    def __init__(self, port: int = 0) -> None:
        self.sock = socket.create_server(("127.0.0.1", port))
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []

    def accept(self, timeout: float = 15.0) -> Conn:
        self.sock.settimeout(timeout)
        s, _ = self.sock.accept()
        self.conns.append(s)

        def recv(left: float) -> bytes:
            s.settimeout(left)
            try:
                return s.recv(65536)
            except TimeoutError:
                return NOTHING

        return Conn(s.sendall, recv, wire.FrameReader())

    def close(self) -> None:
        for s in self.conns:
            s.close()
        self.sock.close()




class VM:
    """The firmware's main.py in the MicroPython VM, in a flash folder."""

    def __init__(self, micropython: str, flash: Path, board: str, *, stdio=None,
                 heap: int | None = None) -> None:
        self.flash = flash
        self.log_path = flash / "vm.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop())
        stdin = stdout = subprocess.DEVNULL
        if stdio is not None:
            stdin = stdout = stdio
        self.proc = subprocess.Popen(
            [micropython, "-X", f"heapsize={heap or heap_of(board)}", "main.py"],
            cwd=flash, stdin=stdin, stdout=stdout, stderr=self._log,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        self._log.close()


class PtyLink:
    """A raw pty between the VM and the test. `vm_end="controller"`: the VM on the
    controlling side, pyserial on /dev/pts/N like a USB port (the VM's reads ignore VMIN:
    its serial link reads byte by byte). `vm_end="terminal"`: the VM on /dev/pts/N as a
    virtual board's VM is (its serial link reads in blocks), the test on the other side."""

    def __init__(self, vm_end: str = "controller") -> None:
        controller, terminal = os.openpty()
        tty.setraw(terminal)
        self.path = os.ttyname(terminal)
        self._fds = (controller, terminal)
        self.port = None
        if vm_end == "controller":
            self.vm_fd, self._fd = controller, None
            self.port = serial.Serial(self.path, baudrate=115200, timeout=0.05)
        else:
            self.vm_fd, self._fd = terminal, controller

    def conn(self, max_frame: int = 16384) -> Conn:
        if self.port is not None:
            port = self.port

            def recv(left: float) -> bytes:
                port.timeout = min(left, 0.2)
                data = port.read(4096)
                return data if data else NOTHING

            write = port.write
        else:
            fd = self._fd

            def recv(left: float) -> bytes:
                ready, _, _ = select.select([fd], [], [], min(left, 0.2))
                return os.read(fd, 65536) if ready else NOTHING

            def write(data: bytes) -> None:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]

        def send(frame: bytes) -> None:
            write(wire.serial_encode(frame))

        return Conn(send, recv, wire.SerialDeframer(max_frame), write)

    def close(self) -> None:
        if self.port is not None:
            self.port.close()
        for fd in self._fds:
            os.close(fd)
