"""The node's links to its master, behind one small interface:

    await link.open()                 connect (raises OSError when it cannot)
    n = await link.read_into(view)    some bytes into `view`; raises LinkClosed at EOF
    await link.write(data)            all of `data`
    link.close()

TcpLink dials the master over a `net` object: MicroPython's socket module or a driver
object with the same calls (socket(), getaddrinfo(); sockets that connect, read into a
buffer, write and are pollable through the stream ioctl). Frames travel back to back.

SerialLink speaks COBS frames on the REPL's own stdin/stdout. While it is open Ctrl-C is
turned off (`micropython.kbd_intr(-1)`, so 0x03 inside a frame is data); when the bytes
mpremote sends to take the board back (b"\\r\\x03" or b"\\x03\\x03" at the start of a
frame) arrive, Ctrl-C is turned back on and KeyboardInterrupt is raised, so the worker
unwinds and the board drops to its REPL.

`discover()` finds the master with a UDP DISCOVER beacon answered by ANNOUNCE.
"""

import sys
import time

import asyncio

try:
    import micropython
except ImportError:
    micropython = None

CTRL_C = 0x03
CR = 0x0D
IPPROTO_TCP = 6  # not exported by every port's socket module
TCP_NODELAY = 1


class LinkClosed(OSError):
    pass


class TcpLink:
    kind = "tcp"
    cobs = False

    def __init__(self, net, host, port):
        self._net = net
        self._host = host
        self._port = port
        self._sock = None
        self._stream = None

    async def open(self):
        net = self._net
        info = net.getaddrinfo(self._host, self._port)[0]
        sock = net.socket(info[0], net.SOCK_STREAM)
        try:
            sock.connect(info[-1])
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        try:
            # a chunked message leaves in several writes: do not let Nagle hold them back
            sock.setsockopt(IPPROTO_TCP, TCP_NODELAY, 1)
        except (AttributeError, OSError):
            pass
        self._sock = sock
        self._stream = asyncio.StreamReader(sock)

    async def read_into(self, view):
        while True:
            n = await self._stream.readinto(view)
            if n is None:
                continue
            if n == 0:
                raise LinkClosed("master closed the connection")
            return n

    async def write(self, data):
        stream = self._stream
        if stream is None:
            raise LinkClosed("link is not open")
        stream.write(data)
        await stream.drain()

    def close(self):
        sock = self._sock
        self._sock = None
        self._stream = None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass


class SerialLink:
    """COBS frames on stdin/stdout. Reads follow the COBS block structure (a code byte c
    announces c-1 data bytes), so each readinto asks for bytes the sender has already
    committed to: the port's stdin read blocks until it has all it was asked for."""

    kind = "serial"
    cobs = True

    def __init__(self, rx=None, tx=None):
        self._rx = rx if rx is not None else sys.stdin.buffer
        self._tx = tx if tx is not None else sys.stdout.buffer
        self._stream = None
        self._at_frame_start = True

    async def open(self):
        if micropython is not None:
            micropython.kbd_intr(-1)
        self._stream = asyncio.StreamReader(self._rx)
        self._at_frame_start = True

    async def read_into(self, view):
        stream = self._stream
        if stream is None:
            raise LinkClosed("link is not open")
        if not await stream.readinto(view[:1]):
            raise LinkClosed("serial input closed")
        code = view[0]
        if code == 0:
            self._at_frame_start = True
            return 1
        got = 1
        if self._at_frame_start:
            self._at_frame_start = False
            if code == CR or code == CTRL_C:
                self._readinto_all(view[1:2])
                if view[1] == CTRL_C:
                    self.close()
                    raise KeyboardInterrupt
                got = 2
        end = code if code <= len(view) else len(view)
        if end > got:
            self._readinto_all(view[got:end])
            got = end
        return got

    def _readinto_all(self, view):
        n = self._rx.readinto(view)
        if n is None or n < len(view):
            raise LinkClosed("serial input closed inside a frame")

    async def write(self, data):
        self._tx.write(data)

    def close(self):
        self._stream = None
        if micropython is not None:
            micropython.kbd_intr(CTRL_C)


async def discover(net, host, port, request, parse, attempts=0, interval_ms=500):
    """Broadcast `request` (one DISCOVER frame) to host:port until `parse(datagram)`
    returns a result for an answer; `attempts` 0 means keep trying."""
    info = net.getaddrinfo(host, port)[0]
    sock = net.socket(info[0], net.SOCK_DGRAM)
    try:
        try:
            sock.setsockopt(net.SOL_SOCKET, net.SO_BROADCAST, 1)
        except (AttributeError, OSError):
            pass
        sock.setblocking(False)
        sent = 0
        while attempts == 0 or sent < attempts:
            sock.sendto(request, info[-1])
            sent += 1
            deadline = time.ticks_add(time.ticks_ms(), interval_ms)
            while time.ticks_diff(deadline, time.ticks_ms()) > 0:
                try:
                    datagram = sock.recvfrom(2048)[0]
                except OSError:
                    await asyncio.sleep_ms(10)
                    continue
                found = parse(datagram)
                if found is not None:
                    return found
        return None
    finally:
        sock.close()
