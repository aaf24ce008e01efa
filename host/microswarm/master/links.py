"""Links: one small async byte-pipe interface over TCP, serial and memory.

A link moves bytes and nothing else. ``framing`` tells the session which codec to put on
top: ``"stream"`` (frames back to back: TCP and the in-memory pipe) or ``"cobs"`` (each
frame COBS-encoded and ended by a zero byte: serial ports).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from abc import ABC, abstractmethod
from concurrent.futures import ThreadPoolExecutor

log = logging.getLogger(__name__)

READ_SIZE = 65536


class Link(ABC):
    kind: str  # "tcp", "serial" or "mem": what HELLO's link field should say
    framing: str  # "stream" or "cobs"
    peer: str  # where the bytes come from, for logs and `microswarm nodes`

    @abstractmethod
    async def read(self) -> bytes:
        """The next bytes that arrived; b"" once the link is closed."""

    @abstractmethod
    def write(self, data: bytes) -> None:
        """Queue bytes for sending (never blocks)."""

    async def drain(self) -> None:
        """Wait until the queued bytes are handed to the OS (flow control)."""
        return None

    def backlogged(self) -> bool:
        """Whether written bytes wait in the link itself, not yet handed to the OS (a serial
        port slower than the frames queued for it); drain() waits them out."""
        return False

    @abstractmethod
    def close(self) -> None:
        """Close the link; a pending read returns b""."""


class TcpLink(Link):
    kind = "tcp"
    framing = "stream"

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "tcp"
        sock = writer.get_extra_info("socket")
        if sock is not None:
            import socket

            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    @classmethod
    async def connect(cls, host: str, port: int) -> TcpLink:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def read(self) -> bytes:
        try:
            return await self._reader.read(READ_SIZE)
        except (ConnectionError, OSError):
            return b""

    def write(self, data: bytes) -> None:
        if not self._writer.is_closing():
            self._writer.write(data)

    async def drain(self) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            await self._writer.drain()

    def close(self) -> None:
        self._writer.close()


class MemoryLink(Link):
    """One end of an in-memory pipe; make both ends with ``MemoryLink.pair()``."""

    kind = "mem"
    framing = "stream"

    def __init__(self, peer: str) -> None:
        self.peer = peer
        self._inbox: asyncio.Queue[bytes] = asyncio.Queue()
        self._other: MemoryLink | None = None
        self._closed = False

    @classmethod
    def pair(cls, name: str = "mem") -> tuple[MemoryLink, MemoryLink]:
        a, b = cls(name), cls(name)
        a._other, b._other = b, a
        return a, b

    async def read(self) -> bytes:
        if self._closed and self._inbox.empty():
            return b""
        return await self._inbox.get()

    def write(self, data: bytes) -> None:
        other = self._other
        if not self._closed and other is not None and not other._closed:
            other._inbox.put_nowait(bytes(data))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._inbox.put_nowait(b"")
        other = self._other
        if other is not None and not other._closed:
            other._closed = True
            other._inbox.put_nowait(b"")


class SerialLink(Link):
    """A serial port, a pty path, or any pyserial URL (``socket://``, ``loop://``).

    Ports with a file descriptor are read and written on the event loop (``add_reader``,
    and ``add_writer`` for what the port does not take at once); URL ports without one are
    read in a worker thread and written by another, in order. Writes never block the loop:
    a node that is itself busy writing a RESULT must not stall the master's reading.
    """

    kind = "serial"
    framing = "cobs"

    def __init__(self, port: str, baudrate: int = 115200) -> None:
        import serial

        self.peer = port
        self._serial = serial.serial_for_url(port, baudrate=baudrate, timeout=0.2,
                                             write_timeout=5)
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[bytes] = asyncio.Queue()
        self._closed = False
        self._fd: int | None = None
        try:
            self._fd = self._serial.fileno()
        except Exception:  # pyserial URL handlers without a descriptor
            self._fd = None
        self._wfd = self._fd
        self._out = bytearray()
        self._flushed = asyncio.Event()
        self._flushed.set()
        self._writer_thread: ThreadPoolExecutor | None = None
        self._writes = 0  # writes handed to the writer thread and not yet done
        if self._fd is not None:
            self._serial.timeout = 0
            os.set_blocking(self._fd, False)
            self._loop.add_reader(self._fd, self._on_readable)
        else:
            self._writer_thread = ThreadPoolExecutor(1, thread_name_prefix="serial-write")
            self._thread_task = self._loop.run_in_executor(None, self._read_thread)

    def _on_readable(self) -> None:
        try:
            data = os.read(self._fd, READ_SIZE)  # type: ignore[arg-type]
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._stop_reading()
        self._queue.put_nowait(data)

    def _read_thread(self) -> None:
        while not self._closed:
            try:
                data = self._serial.read(max(1, self._serial.in_waiting))
            except Exception:
                data = b""
                self._closed = True
            if data or self._closed:
                self._loop.call_soon_threadsafe(self._queue.put_nowait, data)

    def _stop_reading(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self._fd)
            self._fd = None

    async def read(self) -> bytes:
        if self._closed and self._queue.empty():
            return b""
        return await self._queue.get()

    def write(self, data: bytes) -> None:
        if self._closed:
            return
        if self._writer_thread is not None:
            self._writes += 1
            self._flushed.clear()
            self._writer_thread.submit(self._blocking_write, bytes(data))
            return
        if self._out:
            self._out += data
            return
        try:
            sent = os.write(self._wfd, data)  # type: ignore[arg-type]
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self._write_failed(exc)
            return
        if sent < len(data):
            self._out += memoryview(data)[sent:]
            self._flushed.clear()
            self._loop.add_writer(self._wfd, self._on_writable)  # type: ignore[arg-type]

    def _on_writable(self) -> None:
        try:
            sent = os.write(self._wfd, self._out)  # type: ignore[arg-type]
        except BlockingIOError:
            return
        except OSError as exc:
            self._write_failed(exc)
            return
        del self._out[:sent]
        if not self._out:
            self._loop.remove_writer(self._wfd)  # type: ignore[arg-type]
            self._flushed.set()

    def _blocking_write(self, data: bytes) -> None:
        try:
            self._serial.write(data)
        except Exception as exc:
            self._loop.call_soon_threadsafe(self._write_failed, exc)
        finally:
            with contextlib.suppress(RuntimeError):  # (the loop is closed)
                self._loop.call_soon_threadsafe(self._written)

    def _written(self) -> None:
        self._writes -= 1
        if self._writes <= 0:
            self._writes = 0
            self._flushed.set()

    def backlogged(self) -> bool:
        return not self._flushed.is_set()

    def _write_failed(self, exc: BaseException) -> None:
        log.warning("serial %s: write failed: %s", self.peer, exc)
        self.close()

    async def drain(self) -> None:
        await self._flushed.wait()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop_reading()
        if self._out and self._wfd is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_writer(self._wfd)
        self._out.clear()
        self._flushed.set()
        if self._writer_thread is not None:
            self._writer_thread.shutdown(wait=False, cancel_futures=True)
        with contextlib.suppress(Exception):
            self._serial.close()
        self._queue.put_nowait(b"")
