"""The node's links to its master, behind one small interface:

    await link.open()                 connect (raises OSError when it cannot)
    n = await link.read_into(view)    some bytes into `view`; raises LinkClosed at EOF
    n = link.read_now(view)           the same without waiting: None when none are there yet
                                      (a frame already in costs no coroutine and no poll)
    link.put(data)                    queue `data` (copied when it cannot leave at once)
    link.pending() -> bool            bytes queued by put() wait for drain()
    await link.drain()                send what put() queued, in order
    link.close()

TcpLink dials the master over a `net` object: MicroPython's socket module or a driver
object with the same calls (socket(), getaddrinfo(); sockets that connect, read into a
buffer, write and are pollable through the stream ioctl). Frames travel back to back.

SerialLink speaks COBS frames on the REPL's own stdin/stdout. From the first time it opens
until the worker leaves, Ctrl-C is turned off (`micropython.kbd_intr(-1)`), between sessions
too: every COBS frame begins with a code byte, often 0x03, and a master that speaks while
the worker waits to dial again must not interrupt it. 0x03 is data; the way back to the
REPL is the frame codec's break rule (b"\\r\\x03" or b"\\x03\\x03" at the start of a frame,
what mpremote sends, and something no v1 frame can begin with). On a break, and whenever the
worker stops, `console_to_repl()` turns Ctrl-C back on and the board drops to its REPL.

`discover()` finds the master with a UDP DISCOVER beacon answered by ANNOUNCE.
"""

import select
import sys
import time

# Builtins named per frame, bound in this module's own table: MicroPython looks a name up
# there before the builtins, and a table grows only once full, so a miss probes every
# slot (0.3-0.5 us a name in the unix VM; docs/firmware.md, "Benchmark").
len = len

import asyncio

import micropython
from micropython import const

_CTRL_C = const(0x03)
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
        self._backlog = None  # bytes put() could not hand to the socket yet
        self._draining = False
        self._held = None  # frame.Reuse of the buffer hold() keeps frames in, while on
        self._n = 0  # bytes held
        self._most = self._left = 0  # frames hold() keeps at most, and may still keep

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

    def read_now(self, view):
        sock = self._sock
        if sock is None:
            raise LinkClosed("link is not open")
        n = sock.readinto(view)  # non-blocking: None when nothing has arrived
        if n == 0:
            raise LinkClosed("master closed the connection")
        return n

    def hold(self, held, most):
        """From now until release(), put() keeps up to `most` frames that fit in `held` (a
        frame.Reuse of a buffer) instead of writing each: the answers to the frames one
        read returned leave together, and the peer reads them together."""
        if most > 1:
            self._held = held
            self._most = self._left = most

    def release(self):
        """Write what hold() kept, and write each put() at once again."""
        held = self._held
        self._held = None
        n = self._n
        if n:
            self._n = 0
            self._put(held.view(0, n))

    def put(self, data):
        held = self._held
        if held is not None:
            n = self._n
            k = len(data)
            if n + k <= len(held.mv) and self._backlog is None and not self._draining:
                held.mv[n : n + k] = data
                n += k
                self._left -= 1
                if self._left:
                    self._n = n
                    return
                self._left = self._most  # as many as it keeps: they leave now
                data = held.view(0, n)
            elif n:  # in order: what is held first
                self._put(held.view(0, n))
            self._n = 0
        self._put(data)

    def _put(self, data):
        # The socket is non-blocking: hand it what it takes now, keep the rest in order.
        # Writes during a drain queue behind it (asyncio's Stream drops bytes written
        # while its own drain runs, so only drain() writes through the Stream).
        sock = self._sock
        if sock is None:
            raise LinkClosed("link is not open")
        if self._backlog is not None:
            self._backlog += data
        elif self._draining:  # drain() has taken the backlog and writes it now
            self._backlog = bytearray(data)
        else:
            n = sock.write(data)
            if n is None:
                n = 0
            if n == len(data):
                return
            self._backlog = bytearray(data[n:]) if n else bytearray(data)

    def pending(self):
        return self._backlog is not None

    async def drain(self):
        if self._draining:
            return
        self._draining = True
        try:
            while self._backlog is not None:
                stream = self._stream
                if stream is None:
                    raise LinkClosed("link is not open")
                data = self._backlog
                self._backlog = None
                stream.write(data)
                await stream.drain()
        finally:
            self._draining = False

    async def write(self, data):
        self.put(data)
        await self.drain()

    def close(self):
        if self._n and self._sock is not None:  # (an answer before the link ends, such as
            try:  # the ERROR of a fatal header)
                self.release()
            except OSError:
                pass
        sock = self._sock
        self._sock = None
        self._stream = None
        self._backlog = None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass


class SerialLink:
    """COBS frames on stdin/stdout.

    A port's stdin `readinto` blocks until it has every byte it was asked for, and no port
    says how many bytes are pending (docs/qemu.md). Where the console is a tty whose read
    can be told to return what is there (the unix port: termios, VMIN and VTIME 0), the
    link waits on the event loop until bytes are ready and takes them all in one read.
    Elsewhere it waits for one byte, then takes only the bytes `poll` reports ready, one at
    a time, up to a delimiter. Either way it never blocks the worker on bytes that may not
    come (a half frame, noise announcing a long COBS block), and the frame codec
    resynchronises at the next 0x00. `blocks=False` keeps the byte-by-byte way everywhere.
    """

    kind = "serial"
    cobs = True

    def __init__(self, rx=None, tx=None, blocks=True):
        self._rx = rx if rx is not None else sys.stdin.buffer
        self._tx = tx if tx is not None else sys.stdout.buffer
        self._stream = None
        self._one = bytearray(1)
        self._poller = None
        self._blocks = blocks
        self._tty = None  # (fd, termios attributes to restore) while reading in blocks

    async def open(self):
        micropython.kbd_intr(-1)
        self._stream = asyncio.StreamReader(self._rx)
        if self._blocks:
            self._tty = _reads_what_is_there(self._rx)
        if self._tty is None:
            self._poller = select.poll()
            self._poller.register(self._rx, select.POLLIN)
        # a delimiter first: whatever the console printed before (a raw REPL's "OK", a boot
        # banner) ends as a frame of its own, not glued to the HELLO that follows
        self.put(b"\x00")

    async def read_into(self, view):
        stream = self._stream
        if stream is None:
            raise LinkClosed("link is not open")
        if self._tty is not None:  # ready bytes, all of them: a read returns what is there
            n = await stream.readinto(view)
            if not n:
                raise LinkClosed("serial input closed")
            return n
        if not await stream.readinto(view[:1]):
            raise LinkClosed("serial input closed")
        if view[0] == 0:
            return 1
        n = _take_pending(self._rx, self._one, self._poller, view, 1, len(view))
        if n < 0:
            raise LinkClosed("serial input closed")
        return n

    def read_now(self, view):
        return None  # a console says nothing of what is pending without a poll: read_into

    def put(self, data):
        # A console may take part of a write (a full pty or USB buffer): write the rest,
        # blocking the node as a blocking write would, never dropping bytes mid-frame.
        tx = self._tx
        n = tx.write(data)
        if n is None or n < len(data):
            view = memoryview(data)
            done = n or 0
            while done < len(view):
                n = tx.write(view[done:])
                if n:
                    done += n
                else:
                    time.sleep_ms(1)

    def pending(self):
        return False

    async def drain(self):
        pass

    async def write(self, data):
        self._tx.write(data)

    def close(self):
        """End this session's use of the console. Ctrl-C stays off: see console_to_repl()."""
        self._stream = None
        if self._poller is not None:
            self._poller.unregister(self._rx)
            self._poller = None
        if self._tty is not None:
            import termios

            termios.tcsetattr(self._tty[0], termios.TCSANOW, self._tty[1])
            self._tty = None


def console_to_repl():
    """Give the console back to the REPL: Ctrl-C interrupts again."""
    micropython.kbd_intr(_CTRL_C)


_VTIME = const(5)  # indices of a termios attribute list's control characters (Linux)
_VMIN = const(6)


def _reads_what_is_there(rx):
    """Make a pseudo-terminal console's read return the bytes it has (none: 0) instead of
    waiting for all it was asked for; returns (fd, the attributes to restore), or None
    where the port has no termios (a board's USB or UART console) or the console is no
    pty's terminal end (a pipe; a pty's controlling end, whose reads ignore VMIN)."""
    try:
        import os
        import termios

        fd = rx.fileno()
        me = os.stat("/proc/self/fd/" + str(fd))
        if me[2] != os.stat("/dev/pts")[2] or me[1] == os.stat("/dev/pts/ptmx")[1]:
            return None
        old = termios.tcgetattr(fd)
    except (ImportError, AttributeError, OSError):
        return None
    new = old[:6] + [list(old[6])]
    new[6][_VMIN] = 0
    new[6][_VTIME] = 0
    try:
        termios.tcsetattr(fd, termios.TCSANOW, new)
    except OSError:
        return None
    return fd, old


@micropython.native
def _take_pending(rx, one, poller, view, n, limit):
    """Move the bytes `poller` reports ready from `rx` into view[n:limit], one at a time,
    stopping after a 0x00 delimiter; returns the new fill level, or -1 at end of input."""
    while n < limit:
        for _ in poller.ipoll(0):
            break
        else:
            break
        if not rx.readinto(one):
            return -1
        byte = one[0]
        view[n] = byte
        n += 1
        if byte == 0:
            break
    return n


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
