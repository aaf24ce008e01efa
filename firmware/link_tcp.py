"""The TCP link to the master, and discovery of the master over UDP (worker.py's comments
say what a link does)."""

import gc
import time

import asyncio
import board
import frame
from micropython import const

# BEGIN GENERATED: protocol constants (tools/gen_protocol.py, from protocol/catalog.py)
_HEADER_SIZE = const(7)
_T_TASK = const(5)
_T_DISCOVER = const(13)
_T_ANNOUNCE = const(14)
_E_NO_MEMORY = const(11)
_DISCOVER_CLUSTER = const(0)
_DISCOVER_NODE_ID = const(1)
_ANNOUNCE_CLUSTER = const(0)
_ANNOUNCE_HOST = const(1)
_ANNOUNCE_PORT = const(2)
# END GENERATED

# Builtins named per frame, bound in this module's own table: MicroPython looks a name up
# there before the builtins, and a table grows only once full, so a miss probes every
# slot (0.3-0.5 us a name in the unix VM; docs/firmware.md, "Benchmark").
len = len

IPPROTO_TCP = 6  # not exported by every port's socket module
TCP_NODELAY = 1
_BEACON_MS = const(500)  # discovery: a DISCOVER beacon every half second until answered


class TcpLink:
    kind = "tcp"
    cobs = False

    def __init__(self, net, host, port):
        self._dial = (net, host, port)
        self._sock = None
        self._stream = None
        self._backlog = None  # bytes put() could not hand to the socket yet
        self._draining = False
        self._held = None  # frame.Reuse of the buffer hold() keeps frames in, while on
        self._n = 0  # bytes held
        self._most = self._left = 0  # frames hold() keeps at most, and may still keep

    async def open(self):
        net, host, port = self._dial
        info = net.getaddrinfo(host, port)[0]
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
                raise OSError("master closed the connection")
            return n

    def read_now(self, view):
        sock = self._sock
        if sock is None:
            raise OSError("link is not open")
        n = sock.readinto(view)  # non-blocking: None when nothing has arrived
        if n == 0:
            raise OSError("master closed the connection")
        return n

    def hold(self, held, count):
        """From now until release(), put() keeps up to `count` frames that fit in `held` (a
        frame.Reuse of a buffer) instead of writing each: the answers to the frames one
        read returned leave together, and the peer reads them together."""
        if count > 1:
            self._held = held
            self._most = self._left = count

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
            raise OSError("link is not open")
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
                    raise OSError("link is not open")
                data = self._backlog
                self._backlog = None
                stream.write(data)
                await stream.drain()
        finally:
            self._draining = False

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


async def find_master(worker):
    """The master's (host, port) for `worker` (worker.Worker): its cluster's ANNOUNCE to a
    DISCOVER beacon, broadcast to the discovery address every _BEACON_MS until one comes;
    a master of another cluster is logged once and not taken."""
    cfg = worker.cfg
    net = worker.net
    writer = frame.FrameWriter(256)
    beacon = bytes(writer.frame(_T_DISCOVER, {
        _DISCOVER_CLUSTER: cfg["cluster"], _DISCOVER_NODE_ID: cfg["node_id"]}))
    told = []
    info = net.getaddrinfo(cfg["discovery_host"], cfg["discovery_port"])[0]
    sock = net.socket(info[0], net.SOCK_DGRAM)
    try:
        try:
            sock.setsockopt(net.SOL_SOCKET, net.SO_BROADCAST, 1)
        except (AttributeError, OSError):
            pass
        sock.setblocking(False)
        while True:
            sock.sendto(beacon, info[-1])
            deadline = time.ticks_add(time.ticks_ms(), _BEACON_MS)
            while time.ticks_diff(deadline, time.ticks_ms()) > 0:
                try:
                    data = sock.recvfrom(2048)[0]
                except OSError:
                    await asyncio.sleep_ms(10)
                    continue
                try:
                    msg_type, _flags, _seq, payload = frame.decode(data, 1024)
                except frame.FrameError:
                    continue
                if msg_type != _T_ANNOUNCE:
                    continue
                name = payload[_ANNOUNCE_CLUSTER]
                if name != cfg["cluster"]:
                    if name not in told:  # a master of another cluster: say so once
                        told.append(name)
                        worker.log("discovery: the master at %s serves cluster '%s', this "
                                   "node is configured for cluster '%s'"
                                   % (payload[_ANNOUNCE_HOST], name, cfg["cluster"]))
                    continue
                return payload[_ANNOUNCE_HOST], payload[_ANNOUNCE_PORT]
    finally:
        sock.close()


async def read_frames(session):
    """The reader of a worker.Session on this link: frames in, to the session's engine."""
    reader = session.reader = session.w.reader(False)
    link = session.link
    eng = session.engine
    held = session.w.held
    while True:
        view = reader.want()
        n = link.read_now(view)
        if n is None:
            # what was read is answered: its RESULTs leave together, and the link
            # writes at once while it waits (heartbeats, a thread's RESULT). At most
            # half the window is held back, so that the master has the other half
            # to answer meanwhile (with 2 slots or fewer: nothing held)
            link.release()
            if link.pending():
                await link.drain()
            n = await link.read_into(view)
            link.hold(held, eng.window >> 1)
        eng.last_rx = board.uptime_ms()  # bytes arriving: the master is not silent
        try:
            item = reader.advance(n)
        except frame.FrameError as e:
            task_id = None
            if e.code == _E_NO_MEMORY and reader._mv[1] == _T_TASK:
                # the frame is still in the reader's buffer: answer with its task id
                from engine_chunks import peek_task_id

                task_id = peek_task_id(reader._mv[_HEADER_SIZE:])
                gc.collect()
            eng.bad_frame(e.code, e.text, e.seq, e.fatal, board.uptime_ms(), task_id)
            if session.link.pending():
                await session.link.drain()
            continue
        if item is not None:
            session.dispatch(item, board.uptime_ms())
            if session.link.pending():
                await session.link.drain()
