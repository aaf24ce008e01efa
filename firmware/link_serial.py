"""The serial link to the master: COBS frames on the REPL's own console (worker.py's
comments say what a link does, and how Ctrl-C is kept off and given back)."""

import select
import sys
import time

import asyncio
import board
import frame
import micropython
from micropython import const

# BEGIN GENERATED: protocol constants (tools/gen_protocol.py, from protocol/catalog.py)
_HEADER_SIZE = const(7)
_T_TASK = const(5)
_E_BAD_VERSION = const(2)
# END GENERATED

_CTRL_C = const(0x03)


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
            try:
                import termios  # noqa: F401  (the unix port's: a board's console has none)
            except ImportError:
                pass
            else:
                import link_tty

                self._tty = link_tty.reads_what_is_there(self._rx)
        if self._tty is None:
            self._poller = select.poll()
            self._poller.register(self._rx, select.POLLIN)
        # a delimiter first: whatever the console printed before (a raw REPL's "OK", a boot
        # banner) ends as a frame of its own, not glued to the HELLO that follows
        self.put(b"\x00")

    async def read_into(self, view):
        stream = self._stream
        if stream is None:
            raise OSError("link is not open")
        if self._tty is not None:  # ready bytes, all of them: a read returns what is there
            n = await stream.readinto(view)
            if not n:
                raise OSError("serial input closed")
            return n
        if not await stream.readinto(view[:1]):
            raise OSError("serial input closed")
        if view[0] == 0:
            return 1
        n = _take_pending(self._rx, self._one, self._poller, view, 1, len(view))
        if n < 0:
            raise OSError("serial input closed")
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

    def close(self):
        """End this session's use of the console. Ctrl-C stays off: see console_to_repl()."""
        self._stream = None
        if self._poller is not None:
            self._poller.unregister(self._rx)
            self._poller = None
        if self._tty is not None:
            import link_tty

            link_tty.restore(self._tty)
            self._tty = None


def console_to_repl():
    """Give the console back to the REPL: Ctrl-C interrupts again."""
    micropython.kbd_intr(_CTRL_C)


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


async def read_frames(session):
    """The reader of a worker.Session on this link: frames in, to the session's engine."""
    # copy=True: one feed may complete several frames, and in-place views into the
    # deframer's buffer would not survive the next one; but a CHUNK's data is a view
    # (chunk_views: no copy of up to max_frame bytes beside a large message's buffer, the
    # engine copies it into that buffer at once): feed() stops after such a frame and
    # leaves what followed in deframer.rest
    deframer = session.reader = session.w.reader(True)
    from frame_serial import BREAK

    buf = session.w.serial_buf
    view = memoryview(buf)
    link = session.link
    eng = session.engine
    while True:
        n = await link.read_into(view)
        eng.last_rx = board.uptime_ms()  # bytes arriving: the master is not silent
        items = deframer.feed(buf, n)
        while items:
            for item in items:
                if item is BREAK:
                    link.close()
                    raise KeyboardInterrupt
                if isinstance(item, frame.FrameError):
                    if item.seq is None or item.code == _E_BAD_VERSION:
                        # no readable header of this version (a console's echo, boot text,
                        # line noise): counted, never answered (SPEC section 1), for an
                        # answer could only feed a loop with a console that echoes it
                        eng.stats.bad_frames += 1
                        continue
                    task_id = None
                    head = getattr(item, "head", None)
                    if head is not None and head[1] == _T_TASK:  # a TASK with no heap
                        from engine_chunks import peek_task_id

                        task_id = peek_task_id(memoryview(head)[_HEADER_SIZE:])
                    eng.bad_frame(item.code, item.text, item.seq, False, board.uptime_ms(),
                                  task_id)
                else:
                    session.dispatch(item, board.uptime_ms())
            if deframer.rest is None:
                break
            items = deframer.feed(deframer.rest)  # what followed a CHUNK frame in this read
        if session.link.pending():
            await session.link.drain()
