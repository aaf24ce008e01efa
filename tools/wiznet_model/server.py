"""Serve a chip model to a MicroPython VM over a loopback socket.

Bridge protocol (VM -> model), one op byte then its arguments:
  S at:u32        chip select low: a new SPI transaction starts
  D               chip select high: the transaction ends
  W len:u32 data  clock data out (MOSI); MISO is discarded, nothing is answered
  X len:u32 data  clock data out; the model answers with len MISO bytes
  R len:u32       clock len zero bytes out; the model answers with len MISO bytes
  I at:u32        the model answers with the INTn level (one byte, 0 or 1)
  L at:u32 / H at:u32
                  drive RSTn low / high (a rising edge resets the chip; the model records
                  how long RSTn was low and how long the host waited before the next access)
The VM side may batch ops that need no answer and send them with the next one that does.

`at` is the low 32 bits of the VM's time.ticks_us() when it drove the pin. The unix port's
ticks count CLOCK_MONOTONIC microseconds, as time.monotonic() does, so the model recovers
when each pin moved and times resets, settling, the PHY link and command latencies by that:
a loaded machine that leaves this thread unscheduled for a while delays its answers, as a
slow bus would, but does not shorten the waits the driver made (they are the chip's).
"""

from __future__ import annotations

import selectors
import socket
import struct
import threading
import time

from .chip import Chip

_LEN = struct.Struct(">I")
PUMP_S = 0.0005
TICKS_MASK = (1 << 30) - 1  # ticks_us() wraps at 2**30 or a higher power of two
STALE_US = 60_000_000  # an older stamp is not from the host's monotonic clock: use "now"


def stamp_time(at: int, now_ns: int | None = None) -> float:
    """The time.monotonic() at which the VM stamped an op with at (ticks_us, low bits)."""
    if now_ns is None:
        now_ns = time.monotonic_ns()
    late_us = ((now_ns // 1000) - at) & TICKS_MASK
    if late_us > STALE_US:
        late_us = 0
    return (now_ns - late_us * 1000) / 1e9


class ModelServer:
    """A chip model running in a background thread, reachable at 127.0.0.1:port."""

    def __init__(self, kind: str, **chip_options) -> None:
        self.chip = Chip(kind, **chip_options)
        self.lock = threading.RLock()
        self._sel = selectors.DefaultSelector()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(4)
        self._listener.setblocking(False)
        self.port: int = self._listener.getsockname()[1]
        self._sel.register(self._listener, selectors.EVENT_READ, "accept")
        self.chip.watch_hook = self._watch
        self._conns: dict[socket.socket, bytearray] = {}
        self._stop = False
        self._pumped = 0.0
        self._thread = threading.Thread(target=self._run, name=f"{kind}-model", daemon=True)

    def __enter__(self) -> ModelServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop = True
        self._thread.join(timeout=5)
        with self.lock:
            for conn in list(self._conns):
                conn.close()
            self.chip.close()
            self._listener.close()
            self._sel.close()

    def _watch(self, sock: socket.socket, add: bool) -> None:
        try:
            if add:
                self._sel.register(sock, selectors.EVENT_READ, "host")
            else:
                self._sel.unregister(sock)
        except (KeyError, ValueError):
            pass

    def _run(self) -> None:
        while not self._stop:
            events = self._sel.select(timeout=0.005)
            with self.lock:
                for key, _ in events:
                    if key.data == "accept":
                        self._accept()
                    elif key.data == "bridge":
                        self._serve(key.fileobj)  # type: ignore[arg-type]
                self._pump()

    def _pump(self) -> None:
        """Let the network side move (at most every PUMP_S: it costs host system calls)."""
        now = time.monotonic()
        if now - self._pumped >= PUMP_S:
            self._pumped = now
            self.chip.pump_all()
        else:
            self.chip.tick()

    def _accept(self) -> None:
        try:
            conn, _ = self._listener.accept()
        except BlockingIOError:
            return
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.setblocking(False)
        self._conns[conn] = bytearray()
        self._sel.register(conn, selectors.EVENT_READ, "bridge")

    def _serve(self, conn: socket.socket) -> None:
        buf = self._conns[conn]
        try:
            data = conn.recv(1 << 20)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._sel.unregister(conn)
            del self._conns[conn]
            conn.close()
            return
        buf += data
        out = bytearray()
        used = self._execute(buf, out)
        del buf[:used]
        if out:
            conn.setblocking(True)
            try:
                conn.sendall(out)
            finally:
                conn.setblocking(False)

    def _execute(self, buf: bytearray, out: bytearray) -> int:
        """Run every complete op in buf; return how many bytes were consumed."""
        chip = self.chip
        pos = 0
        while pos < len(buf):
            op = buf[pos]
            if op in b"WXR":
                if len(buf) - pos < 5:
                    break
                (n,) = _LEN.unpack_from(buf, pos + 1)
                if op == ord("R"):
                    out += chip.clock(bytes(n))
                    pos += 5
                    continue
                if len(buf) - pos - 5 < n:
                    break
                miso = chip.clock(bytes(buf[pos + 5 : pos + 5 + n]))
                if op == ord("X"):
                    out += miso
                pos += 5 + n
                continue
            if op == ord("D"):
                chip.deselect()
                chip.at = None  # back on the host's clock until the next stamped op
                pos += 1
                continue
            if op not in b"SILH":
                raise ValueError(f"bridge: unknown op {op:#x}")
            if len(buf) - pos < 5:
                break
            (at,) = _LEN.unpack_from(buf, pos + 1)
            pos += 5
            if op in b"SI":
                self._pump()
            chip.at = stamp_time(at)
            if op == ord("S"):
                chip.select()  # the transaction's reads and writes happen at its CS edge
            elif op == ord("I"):
                out.append(chip.interrupt_pin())
                chip.at = None
            else:
                chip.rst_pin(1 if op == ord("H") else 0)
                chip.at = None
        return pos
