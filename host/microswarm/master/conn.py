"""The asyncio side of a node link: a Link's bytes through one sans-IO NodeSession.

`Connection` reads the link, feeds the session with the time, writes what the session
queued and hands its events to the owner (the Master). `SerialPort` keeps a serial port
served for as long as the master runs: each session on it is a Connection; when a session
ends (the node was lost, refused or said BYE) a new one waits on the same open port for
the board's next HELLO, and when the port itself fails (unplugged, re-enumerated) it is
reopened, retrying with a capped backoff. `Admission` caps the connections that have not
joined yet, per address and in total.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Protocol

from microswarm.master.handshake import NodeInfo
from microswarm.master.links import Link, SerialLink
from microswarm.master.session import NodeSession, State
from microswarm.master.session_events import Event
from microswarm.wire.cobs import DELIMITER

log = logging.getLogger(__name__)
_CLOSED = State.CLOSED

REOPEN_MIN_S = 0.2
REOPEN_MAX_S = 5.0
# A read that held bad frames is followed by a pause of this many times the time it took:
# a link that floods the master with bad frames gets at most a fifth of its loop, and the
# other nodes' jobs go on (TCP flow control then slows the sender down).
BAD_FRAME_BACKOFF = 4.0
SLICE = 4096  # bytes fed to a session at a time, so that a pause can come between slices


class Owner(Protocol):
    def attach_session(self, link: Link, *, owns_link: bool) -> Connection: ...
    def on_events(self, conn: Connection, events: list[Event]) -> None: ...
    def forget(self, conn: Connection) -> None: ...


class Connection:
    """One session on one link. With `owns_link` (TCP, memory pipes) `run()` reads the
    link until the session or the link ends and then closes it; a SerialPort reads its
    port itself and hands each session's bytes to that session's Connection."""

    __slots__ = ("owner", "link", "session", "clock", "owns_link", "_gone", "_drain",
                 "__weakref__")

    def __init__(self, owner: Owner, link: Link, session: NodeSession, *,
                 owns_link: bool = True, clock: Callable[[], float] = time.monotonic) -> None:
        self.owner = owner
        self.link = link
        self.session = session
        self.clock = clock
        self.owns_link = owns_link
        self._gone = False
        self._drain: asyncio.Task[None] | None = None  # waits out the link's backlog

    @property
    def info(self) -> NodeInfo | None:
        return self.session.info

    @property
    def node_id(self) -> str:
        return self.session.node_id

    @property
    def closed(self) -> bool:
        return self.session.closed

    @property
    def last_seen(self) -> float:
        """When the node's last valid frame arrived (the master's monotonic clock)."""
        return self.session.last_rx

    def flush(self) -> None:
        out = self.session.take_output()
        if out:
            link = self.link
            link.write(out[0] if len(out) == 1 else b"".join(out))
            if link.backlogged():
                # the session learns when the bytes leave: a TASK behind a long CHUNK
                # stream on a slow port is not on the wire yet (NodeSession.output_blocked)
                self.session.output_blocked(self.clock())
                if self._drain is None:
                    self._drain = asyncio.get_running_loop().create_task(self._drained())

    async def _drained(self) -> None:
        try:
            while self.link.backlogged():  # (written again while it drained)
                await self.link.drain()
        finally:
            self._drain = None
        self.session.output_drained(self.clock())

    def handle(self, events: list[Event]) -> None:
        """Write what the session queued, report its events, and end the link's service
        once the session is closed."""
        self.flush()
        if events:
            self.owner.on_events(self, events)
        if self.session.state is _CLOSED:
            self.ended()

    def receive(self, data: bytes) -> float:
        """Feed bytes; returns how long to pause reading this link (0 unless they held bad
        frames)."""
        session = self.session
        bad = session.bad_frames
        started = time.perf_counter()
        self.handle(session.receive(data, self.clock()))
        if session.bad_frames == bad:
            return 0.0
        return (time.perf_counter() - started) * BAD_FRAME_BACKOFF

    async def feed(self, data: bytes) -> None:
        """Feed bytes a slice at a time, pausing after a slice that held bad frames: one
        link's flood never holds the event loop for long."""
        if len(data) <= SLICE:
            pause = self.receive(data)
            if pause:
                await asyncio.sleep(pause)
            return
        view = memoryview(data)
        for start in range(0, len(data), SLICE):
            if self.session.closed:
                return
            pause = self.receive(view[start:start + SLICE])
            if pause:
                await asyncio.sleep(pause)

    def on_timer(self, now: float) -> None:
        self.handle(self.session.on_timer(now))

    def close(self, reason: str = "", cause: str = "") -> None:
        """End the session (BYE when `reason` is given)."""
        self.handle(self.session.close(reason, cause))

    def ended(self) -> None:
        """The session is over: close an owned link (its run() then returns) and drop every
        reference the owner holds. Idempotent."""
        if self.owns_link:
            self.link.close()
        if not self._gone:
            self._gone = True
            self.owner.forget(self)

    async def run(self) -> None:
        session = self.session
        try:
            while session.state is not _CLOSED:
                data = await self.link.read()
                if not data:
                    self.handle(session.close(cause="link closed"))
                    break
                if len(data) <= SLICE:  # feed(), without a coroutine per read
                    pause = self.receive(data)
                    if pause:
                        await asyncio.sleep(pause)
                else:
                    await self.feed(data)
        except Exception as exc:  # a bug must not leave the link half served
            log.exception("%s: session failed", self.node_id)
            self.handle(session.close(cause=f"session failed: {exc!r}"))
        finally:
            self.flush()
            self.link.close()
            self.ended()


class SerialPort:
    """Serves a serial port until stop(): one session after another on the open port,
    reopening the port when it fails."""

    def __init__(self, owner: Owner, port: str, baudrate: int = 115200,
                 link: SerialLink | None = None) -> None:
        self.owner = owner
        self.port = port
        self.baudrate = baudrate
        self.link = link
        self.opened = 1 if link is not None else 0  # how often the port was opened
        self.sessions = 0  # how many sessions it has served
        self.connection: Connection | None = None
        self._stopping = False

    def _next(self, link: Link) -> Connection:
        # A delimiter before the session's first frame (SPEC: a sender may flush noise out
        # of the receiver so): what the node's console took in before (the bytes mpremote
        # sends as it leaves, a terminal's keys, a half frame of the last session) ends as
        # an empty or bad frame of its own instead of gluing itself to the AUTH that
        # answers the HELLO, which cost a refused join and one more HELLO 5 s later.
        link.write(DELIMITER)
        conn = self.owner.attach_session(link, owns_link=False)
        self.connection = conn
        self.sessions += 1
        return conn

    async def run(self) -> None:
        delay = REOPEN_MIN_S
        while not self._stopping:
            if self.link is None:
                try:
                    self.link = SerialLink(self.port, self.baudrate)
                except Exception as exc:  # absent for now (a board resetting): retry
                    log.debug("serial %s: cannot open (%s); retrying in %.1f s", self.port,
                              exc, delay)
                    await asyncio.sleep(delay)
                    delay = min(REOPEN_MAX_S, delay * 2)
                    continue
                self.opened += 1
                log.info("serial %s: reopened", self.port)
            delay = REOPEN_MIN_S
            link = self.link
            conn = self._next(link)
            try:
                while not self._stopping:
                    data = await link.read()
                    if not data:
                        break
                    if conn.closed:  # lost, refused or BYE: the next session takes over
                        conn = self._next(link)
                    await conn.feed(data)
            finally:
                conn.handle(conn.session.close(cause="serial port closed"))
                link.close()
                self.link = None

    def stop(self) -> None:
        self._stopping = True
        if self.connection is not None:
            self.connection.close("master stopping")
        if self.link is not None:
            self.link.close()


class Admission:
    """Caps on links that have not joined yet (pre-authentication), per peer address and
    in total, plus a cap on all node links."""

    def __init__(self, per_address: int, pending: int, total: int) -> None:
        self.per_address = per_address
        self.pending_cap = pending
        self.total_cap = total
        self.pending: dict[str, int] = {}
        self.waiting = 0  # sum of pending
        self.total = 0
        self.refused = 0

    def admit(self, address: str) -> bool:
        waiting = self.pending.get(address, 0)
        if (waiting >= self.per_address or self.waiting >= self.pending_cap
                or self.total >= self.total_cap):
            self.refused += 1
            return False
        self.pending[address] = waiting + 1
        self.waiting += 1
        self.total += 1
        return True

    def joined(self, address: str) -> None:
        self._unpend(address)

    def gone(self, address: str, was_pending: bool) -> None:
        self.total -= 1
        if was_pending:
            self._unpend(address)

    def _unpend(self, address: str) -> None:
        self.waiting -= 1
        left = self.pending.get(address, 0) - 1
        if left > 0:
            self.pending[address] = left
        else:
            self.pending.pop(address, None)
