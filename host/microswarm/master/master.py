"""The master: accepts nodes on every link, drives the scheduler, hands results back.

Every link is a Connection (master/conn.py) driving one sans-IO NodeSession
(master/session.py); session events go to the one Scheduler; every decision the scheduler
makes goes back out through the sessions. One ticker gives every session its timers
(handshake deadline, heartbeats, liveness, task deadlines), looks for stragglers and
flushes the journal.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import json
import logging
import socket
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from microswarm import kernelpkg
from microswarm.keys import DEFAULT_CLUSTER
from microswarm.master import session_events as ev
from microswarm.master.conn import Admission, Connection, SerialPort
from microswarm.master.events import Events
from microswarm.master.handshake import Limits, NodeInfo
from microswarm.master.held import DEADLINE_MIN_S
from microswarm.master.inproc import InprocNode
from microswarm.master.journal import Journal
from microswarm.master.links import Link, SerialLink, TcpLink
from microswarm.master.messages import build, fields
from microswarm.master.operands import REF_SIZE, Shared
from microswarm.master.ratelog import RateLimitedLog
from microswarm.master.scheduler import (
    HEAP_FACTOR,
    Cancel,
    Dispatch,
    JobDone,
    JobFailed,
    NodeCaps,
    Scheduler,
    TaskDone,
)
from microswarm.master.session import JOIN_TIMEOUT_S, NodeSession, State
from microswarm.master.wheel import TimerWheel
from microswarm.protocol.catalog import TCP_PORT, UDP_DISCOVERY_PORT, ErrorCode, MsgType
from microswarm.wire import MAX_FRAME, FrameError, decode_frame, encode_frame

_CLOSED = State.CLOSED
log = logging.getLogger(__name__)

CONTROL_PORT = 5882
ACCEPT_BACKLOG = 1024  # thousands of nodes may dial at once (a cluster powering up)
HOLD_RATIO = 0.7  # a task waits for a busy node that would finish it this much sooner
MAX_PENDING_PER_ADDRESS = 16  # TCP links not yet joined, per peer address
MAX_PENDING = 256  # TCP links not yet joined, in all
MAX_CONNECTIONS = 4096  # TCP node links in all


class JobFailedError(RuntimeError):
    """A task of the job failed more often than the retry limit allows."""


@dataclass(eq=False)
class JobHandle:
    """A submitted job. ``await handle`` gives the results in task order."""

    kernel: str
    total: int
    key: str | None
    future: asyncio.Future
    results: list[Any]
    todo: list[int]  # scheduler index -> task index
    job_id: int = 0
    done: int = 0
    resumed: int = 0  # tasks whose results came from the journal
    started: float = field(default_factory=time.monotonic)
    nodes: list[str | None] = field(default_factory=list)  # who computed each task

    def __await__(self):
        return self.future.__await__()

    @property
    def state(self) -> str:
        if not self.future.done():
            return "running"
        if self.future.cancelled():
            return "cancelled"
        return "failed" if self.future.exception() else "done"


class Master:
    def __init__(
        self,
        *,
        cluster: str = DEFAULT_CLUSTER,
        key: bytes = b"",
        host: str = "127.0.0.1",
        tcp_port: int | None = TCP_PORT,
        udp_port: int | None = UDP_DISCOVERY_PORT,
        control_port: int | None = None,
        journal: str | Path | None = None,
        heartbeat_ms: int = 1000,
        window: int = 4,
        retries: int = 3,
        max_frame: int = MAX_FRAME,
        max_message: int = 1 << 20,
        join_timeout_s: float = JOIN_TIMEOUT_S,
        task_deadline_min_s: float = DEADLINE_MIN_S,
        max_pending_per_address: int = MAX_PENDING_PER_ADDRESS,
        max_pending: int = MAX_PENDING,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        if not key:
            raise ValueError("a cluster key is required (nodes prove they know it)")
        self.cluster = cluster
        self.key = key
        self.host = host
        self.heartbeat_ms = heartbeat_ms
        self.window = window
        self.max_frame = max_frame
        self.max_message = max_message
        self.join_timeout_s = join_timeout_s
        self.task_deadline_min_s = task_deadline_min_s
        self.scheduler = Scheduler(retries=retries, hold_ratio=HOLD_RATIO)
        self.sessions: dict[str, Connection] = {}  # joined nodes by node_id
        self.connections: set[Connection] = set()  # every link, joined or not
        self._wheel = TimerWheel(heartbeat_ms / 1000)  # their timers (wheel.py)
        self.serial_ports: list[SerialPort] = []
        self.admission = Admission(max_pending_per_address, max_pending, max_connections)
        self._tcp_address: dict[Connection, str] = {}  # TCP links not yet joined
        self.stats = {"bad_frames": 0, "refused": 0, "connections_refused": 0}
        self._log = RateLimitedLog(log)
        self.journal = Journal(journal) if journal else None
        self.refusals: list[str] = []  # why nodes were refused at join, most recent last
        self.events = Events()  # observers: client port, dashboard, metrics (events.py)
        self._want_tcp, self._want_udp, self._want_control = tcp_port, udp_port, control_port
        self.tcp_port: int | None = None
        self.udp_port: int | None = None
        self.control_port: int | None = None
        self._servers: list[asyncio.AbstractServer] = []
        self._udp: asyncio.DatagramTransport | None = None
        self._tasks: set[asyncio.Task] = set()
        self._jobs: dict[int, JobHandle] = {}
        self._inproc: list[InprocNode] = []
        self._joined = asyncio.Condition()
        self._started = time.monotonic()
        self._stopping = False

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        if self._want_tcp is not None:
            server = await asyncio.start_server(self._accept_tcp, self.host, self._want_tcp,
                                                backlog=ACCEPT_BACKLOG)
            self._servers.append(server)
            self.tcp_port = server.sockets[0].getsockname()[1]
        if self._want_udp is not None:
            loop = asyncio.get_running_loop()
            self._udp, _ = await loop.create_datagram_endpoint(
                lambda: _Discovery(self), local_addr=(self.host, self._want_udp),
                allow_broadcast=True,
            )
            self.udp_port = self._udp.get_extra_info("sockname")[1]
        if self._want_control is not None:
            server = await asyncio.start_server(self._control, "127.0.0.1", self._want_control)
            self._servers.append(server)
            self.control_port = server.sockets[0].getsockname()[1]
        self._spawn(self._ticker())
        log.info("master %r listening: tcp %s udp %s control %s", self.cluster, self.tcp_port,
                 self.udp_port, self.control_port)

    async def stop(self) -> None:
        self._stopping = True
        for port in self.serial_ports:
            port.stop()
        for conn in list(self.connections):
            conn.close("master stopping")
        for node in self._inproc:
            await node.stop()
        for server in self._servers:
            server.close()
        if self._udp is not None:
            self._udp.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for handle in self._jobs.values():
            if not handle.future.done():
                handle.future.cancel()
        if self.journal is not None:
            self.journal.close()

    async def __aenter__(self) -> Master:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ------------------------------------------------------------------ attaching nodes
    def new_session(self, link: Link) -> NodeSession:
        """A sans-IO session for a new link, with this master's limits."""
        return NodeSession(
            self.key, now=time.monotonic(), cluster=self.cluster, kind=link.kind, peer=link.peer,
            framing=link.framing,
            limits=Limits(heartbeat_ms=self.heartbeat_ms, window=self.window,
                          max_frame=self.max_frame, max_message=self.max_message),
            join_timeout_s=self.join_timeout_s, origin=self._started,
            deadline_min_s=self.task_deadline_min_s,
        )

    def attach_session(self, link: Link, *, owns_link: bool) -> Connection:
        """A new session on `link`, known to the ticker; the caller feeds it."""
        conn = Connection(self, link, self.new_session(link), owns_link=owns_link)
        self.connections.add(conn)
        self._wheel.wake(conn, time.monotonic())
        return conn

    def attach(self, link: Link) -> Connection:
        """Serve a node on an already open link (any kind)."""
        conn = self.attach_session(link, owns_link=True)
        self._spawn(conn.run())
        return conn

    async def _accept_tcp(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        address = str(peer[0]) if peer else "?"
        if self._stopping or not self.admission.admit(address):
            self.stats["connections_refused"] += 1
            self._log.log(logging.WARNING, "refused a TCP link from %s: too many links "
                          "not yet joined (%d from there, %d in all)", address,
                          self.admission.pending.get(address, 0), self.admission.waiting)
            writer.close()
            return
        conn = self.attach_session(TcpLink(reader, writer), owns_link=True)
        self._tcp_address[conn] = address
        await conn.run()

    async def open_serial(self, port: str, baudrate: int = 115200) -> SerialPort:
        """Serve nodes on a serial port, a pty path or a pyserial URL for as long as the
        master runs. The first open must work (a wrong path raises); later the port is
        reopened whenever it fails, and a board lost on it rejoins on its own."""
        for keeper in self.serial_ports:
            if keeper.port == port:
                return keeper
        keeper = SerialPort(self, port, baudrate, SerialLink(port, baudrate))
        self.serial_ports.append(keeper)
        self._spawn(keeper.run())
        return keeper

    async def add_inproc_nodes(self, count: int, *, prefix: str = "py", via: str = "mem",
                               slots: int = 4) -> list[InprocNode]:
        """Start `count` in-process CPython nodes; via "mem" (in-memory pipe) or "tcp"."""
        nodes = []
        first = len(self._inproc)
        for i in range(count):
            node_id = f"{prefix}{first + i + 1}"
            if via == "tcp":
                if self.tcp_port is None:
                    raise RuntimeError("the master has no TCP port")
                node = InprocNode(node_id, self.key, slots=slots)
                await node.connect_tcp(self.host if self.host != "0.0.0.0" else "127.0.0.1",
                                       self.tcp_port)
            else:
                node, far = InprocNode.memory_pair(node_id, self.key, slots=slots)
                self.attach(far)
            nodes.append(node)
        self._inproc.extend(nodes)
        return nodes

    async def wait_for_nodes(self, count: int, timeout: float | None = 30) -> list[NodeInfo]:
        async def enough() -> None:
            async with self._joined:
                await self._joined.wait_for(lambda: len(self.sessions) >= count)

        try:
            await asyncio.wait_for(enough(), timeout)
        except TimeoutError:
            why = f"; last refusal: {self.refusals[-1]}" if self.refusals else ""
            raise TimeoutError(
                f"{len(self.sessions)} of {count} nodes joined within {timeout} s{why}"
            ) from None
        return self.nodes

    @property
    def nodes(self) -> list[NodeInfo]:
        return [c.info for c in self.sessions.values() if c.info is not None]

    # ------------------------------------------------------------------ jobs
    def submit(
        self,
        kernel: str,
        arg_lists: Iterable[Sequence[Any]],
        *,
        priority: int = 0,
        key: str | None = None,
        native: bool = False,
        version: str | None = None,
        timeout: float | None = None,
    ) -> JobHandle:
        """Start a job of one task per argument list; await the handle for the results.
        With `timeout` (seconds) the job fails (JobFailedError) if not done by then.

        `version` is the kernel's content hash: the job runs only on nodes that report
        exactly that hash for it. None (the default) takes the version this process has
        (its built-in kernels and the kernel packages it loaded); "" accepts any version.
        """
        arg_lists = [list(a) for a in arg_lists]
        version = resolve_version(kernel, version)
        infos = self.nodes
        if infos and not any(kernel in i.kernels for i in infos):
            known = sorted({k for i in infos for k in i.kernels})
            raise ValueError(f"no node has kernel {kernel!r}; the nodes have: {', '.join(known)}")
        if version and infos:
            infos = [i for i in infos if i.kernel_hashes.get(kernel) == version]
            if not infos:
                raise ValueError(f"no node has kernel {kernel!r} at version {version}: "
                                 f"{versions_of(self.nodes, kernel)} (deploy the package "
                                 "again, or pass version='' to accept any)")
        known: dict[int, Any] = {}
        if key is not None and self.journal is not None:
            known = self.journal.begin(key, kernel, arg_lists)
            if known:
                log.info("job %s: %d of %d tasks already in the journal", key, len(known),
                         len(arg_lists))
        todo = [i for i in range(len(arg_lists)) if i not in known]
        sizes = [wire_size(arg_lists[i]) for i in todo]
        heaps = [heap_need(arg_lists[i], size) for i, size in zip(todo, sizes, strict=True)]
        if infos and sizes:
            largest = max(i.max_message for i in infos if kernel in i.kernels)
            if max(sizes) > largest:
                raise ValueError(f"a task of {max(sizes)} bytes is larger than any node accepts "
                                 f"({largest} bytes): split the job finer")
        results = [known.get(i) for i in range(len(arg_lists))]
        handle = JobHandle(kernel, len(arg_lists), key, asyncio.get_running_loop().create_future(),
                           results, todo, done=len(known), resumed=len(known),
                           nodes=[None] * len(arg_lists))
        for i in known:
            handle.nodes[i] = "journal"
        job = self.scheduler.submit(
            kernel, [arg_lists[i] for i in todo], priority=priority, native=native,
            sizes=sizes, version=version, timeout=timeout, heaps=heaps,
        )
        handle.job_id = job.job_id
        self._jobs[job.job_id] = handle
        self.events.emit("job_submitted", handle=handle)
        self._apply()
        return handle

    async def run(self, kernel: str, arg_lists: Iterable[Sequence[Any]], **kw: Any) -> list[Any]:
        return await self.submit(kernel, arg_lists, **kw)

    def cancel(self, handle: JobHandle) -> None:
        self.scheduler.cancel_job(handle.job_id)
        self._apply()
        if not handle.future.done():
            handle.future.cancel()
        self.events.emit("job_cancelled", handle=handle)
        if handle.key and self.journal is not None:
            self.journal.finish(handle.key, "cancelled")

    def job(self, job_id: int) -> JobHandle | None:
        return self._jobs.get(job_id)

    def jobs(self) -> list[dict[str, Any]]:
        return [
            {"job_id": j, "kernel": h.kernel, "tasks": h.total, "done": h.done, "state": h.state,
             "key": h.key}
            for j, h in self._jobs.items()
        ]

    # ------------------------------------------------------------------ scheduler glue
    def _apply(self) -> None:
        sched = self.scheduler
        while actions := sched.poll():
            self._apply_actions(actions)

    def _apply_actions(self, actions: list) -> None:
        sched = self.scheduler
        sessions = self.sessions
        written: list[Connection] = []  # what was queued goes out once per link, at the end
        for action in actions:
            kind = type(action)
            if kind is Dispatch:
                conn = sessions.get(action.node_id)
                if conn is None or conn.session.state is _CLOSED:
                    continue  # its removal is already queued
                node = sched.nodes.get(action.node_id)
                estimate = node.inflight.get(action.task_id) if node is not None else None
                now = time.monotonic()
                try:
                    conn.session.send_task(action.task_id, action.kernel, action.args,
                                           action.attempt, now, estimate)
                except (FrameError, TypeError, ValueError) as exc:
                    sched.error(action.node_id, action.task_id, f"cannot encode task: {exc}")
                    continue
                if conn not in written:
                    written.append(conn)
                self._wheel.wake(conn, now)  # the task's deadline
                sched.sent(action.node_id, action.task_id)
            elif kind is Cancel:
                conn = sessions.get(action.node_id)
                if conn is not None and not conn.closed:
                    conn.session.cancel(action.task_id)
                    if conn not in written:
                        written.append(conn)
            elif kind is TaskDone:
                handle = self._jobs.get(action.job_id)
                if handle is None:
                    continue
                index = handle.todo[action.index]
                handle.results[index] = action.value
                handle.nodes[index] = action.node_id
                handle.done += 1
                if handle.key and self.journal is not None:
                    self.journal.record(handle.key, index, action.value, action.node_id)
            elif kind is JobDone:
                handle = self._jobs.get(action.job_id)
                if handle is not None:
                    if handle.key and self.journal is not None:
                        self.journal.finish(handle.key, "done")
                    if not handle.future.done():
                        handle.future.set_result(handle.results)
            elif kind is JobFailed:
                handle = self._jobs.get(action.job_id)
                if handle is not None:
                    if handle.key and self.journal is not None:
                        self.journal.finish(handle.key, "failed")
                    if not handle.future.done():
                        handle.future.set_exception(JobFailedError(action.cause))
        for conn in written:
            conn.flush()
        self.events.emit("actions", actions=actions)

    # ------------------------------------------------------------------ session events
    def on_events(self, conn: Connection, events: list[ev.Event]) -> None:
        """What a session reported (Connection calls this after each input)."""
        sched = self.scheduler
        for e in events:
            kind = type(e)
            if kind is ev.Result:
                value = e.value
                sched.result(conn.node_id, e.task_id, value, e.elapsed_us, wire_size(value))
            elif kind is ev.TaskFailed:
                self._task_failed(conn, e)
            elif kind is ev.TaskLost:
                log.warning("%s: task %d lost on the link, requeued", conn.node_id, e.task_id)
                sched.lost(conn.node_id, e.task_id)
            elif kind is ev.Joined:
                self._node_joined(conn, e.info)
                self._wheel.wake(conn, time.monotonic())  # heartbeats from now on
            elif kind is ev.Left:
                self._node_left(conn, e.info, e.cause)
            elif kind is ev.BadFrame:
                self.stats["bad_frames"] += 1
                self._log.log(logging.WARNING, "%s: bad frame: %s: %s", conn.node_id,
                              ErrorCode(e.code).name if e.code in ErrorCode._value2member_map_
                              else e.code, e.text)
            elif kind is ev.Refused:
                self.stats["refused"] += 1
                text = f"{conn.link.kind} {conn.link.peer}: {e.text}"
                self._log.log(logging.WARNING, "refused a node on %s", text)
                self.refusals.append(text)
                del self.refusals[:-100]
                self.events.emit("node_refused", session=conn, text=e.text)
            elif kind is ev.NodeError:
                self._log.log(logging.WARNING, "%s: ERROR %s: %s", conn.node_id, e.code, e.text)
            elif kind is ev.NodeLog:
                log.log(10 + 10 * min(e.level, 3), "%s: %s", conn.node_id, e.text)
                self.events.emit("node_log", node_id=conn.node_id, level=e.level, text=e.text)
        self._apply()

    def _task_failed(self, conn: Connection, e: ev.TaskFailed) -> None:
        code, text = e.code, e.text
        if code == ErrorCode.CANCELLED:  # the node's slot is free again
            self.scheduler.error(conn.node_id, e.task_id, text, penalty=False)
            return
        if code == ErrorCode.MISSING_OPERAND:  # not a failure: again, operands inline
            self.scheduler.inline_operands(e.task_id)
            self.scheduler.error(conn.node_id, e.task_id, text, penalty=False)
            return
        if code == ErrorCode.DEADLINE:  # requeued elsewhere, CANCEL to the node
            log.warning("task %d %s: requeued elsewhere", e.task_id, text)
            self.scheduler.timed_out(conn.node_id, e.task_id, text)
            return
        # Bad arguments fail the same way on every node: no retry elsewhere.
        fatal = code == ErrorCode.BAD_ARGS or (
            code == ErrorCode.KERNEL_FAILED and text.startswith(("TypeError", "ValueError")))
        self.scheduler.error(conn.node_id, e.task_id, text, penalty=code != ErrorCode.BUSY,
                             fatal=fatal)

    def _node_joined(self, conn: Connection, info: NodeInfo) -> None:
        address = self._tcp_address.pop(conn, None)
        if address is not None:
            self.admission.joined(address)
        old = self.sessions.get(info.node_id)
        if old is not None and old is not conn:
            log.warning("node %s joined again: dropping its old link", info.node_id)
            del self.sessions[info.node_id]  # the old link's Left must not remove the new node
            old.close("replaced by a new link")
            self.scheduler.remove_node(info.node_id, f"node {info.node_id} rejoined")
        self.sessions[info.node_id] = conn
        info.joined_at = time.time()
        log.info("node %s joined over %s (%s)", info.node_id, info.link, info.peer)
        caps = NodeCaps(
            kernels=frozenset(info.kernels),
            native_kernels=frozenset(info.native_kernels),
            max_message=info.max_message,
            window=info.window,
            kernel_hashes=dict(info.kernel_hashes),
            heap_free=info.heap_free,
            operand_cache=info.operand_cache,
        )
        self.scheduler.add_node(info.node_id, caps)
        self.events.emit("node_joined", session=conn, info=info)
        self._spawn(self._notify_joined())

    async def _notify_joined(self) -> None:
        async with self._joined:
            self._joined.notify_all()

    def _node_left(self, conn: Connection, info: NodeInfo, cause: str) -> None:
        node_id = info.node_id
        if self.sessions.get(node_id) is not conn:
            return
        del self.sessions[node_id]
        self.events.emit("node_left", session=conn, info=info, cause=cause)
        log.log(logging.INFO if self._stopping else logging.WARNING, "node %s left: %s",
                node_id, cause)
        # A node that said BYE, or that the master let go, was not taken down by a task.
        blame = not self._stopping and not cause.startswith("node said BYE")
        self.scheduler.remove_node(node_id, f"node {node_id}: {cause}", blame=blame)

    def forget(self, conn: Connection) -> None:
        """The connection's session ended: drop every reference to it (once)."""
        self.connections.discard(conn)
        self._wheel.forget(conn)
        address = self._tcp_address.pop(conn, None)
        if isinstance(conn.link, TcpLink):
            self.admission.gone(address or "", was_pending=address is not None)

    # ------------------------------------------------------------------ ticker
    @property
    def tick_s(self) -> float:
        """The period of the sessions' timers: a silent node is found at most this late."""
        return min(0.1, self.heartbeat_ms / 2000)

    async def _ticker(self) -> None:
        period = self.tick_s
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for conn in self._wheel.due(now):  # only the sessions whose deadline came
                conn.on_timer(now)
                if conn.closed:
                    continue
                self._wheel.wake(conn, now)
                info = conn.info  # what its last HEARTBEAT said (one a heartbeat interval)
                if info is not None and self.sessions.get(info.node_id) is conn:
                    self.scheduler.heap(info.node_id, info.heap_free)
                    ops = conn.session.operands
                    held = ops.take_changes() if ops is not None else None
                    if held is not None:  # what its cache holds, when that changed
                        self.scheduler.holds(info.node_id, held)
                    if "uptime_ms" in info.node_heartbeat:  # restarted while running a task?
                        self.scheduler.uptime(info.node_id,
                                              info.node_heartbeat["uptime_ms"] / 1000)
            self.scheduler.tick()
            self._apply()
            if self.journal is not None and self.journal.due():
                self.journal.flush()

    # ------------------------------------------------------------------ control endpoint
    async def _control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                try:
                    request = json.loads(line)
                    cmd = request.get("cmd")
                    if cmd == "nodes":
                        answer: dict[str, Any] = {
                            "cluster": self.cluster,
                            "nodes": [i.as_dict() for i in self.nodes],
                            "scheduler": self.scheduler.node_stats(),
                            "refusals": self.refusals[-20:],
                        }
                    elif cmd == "jobs":
                        answer = {"jobs": self.jobs()}
                    else:
                        answer = {"error": f"unknown command {cmd!r}; try nodes or jobs"}
                except (ValueError, AttributeError) as exc:
                    answer = {"error": f"bad request: {exc}"}
                writer.write(json.dumps(answer, default=str).encode() + b"\n")
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()


class _Discovery(asyncio.DatagramProtocol):
    """Answers DISCOVER beacons with ANNOUNCE naming this master's cluster (a node asking
    for another cluster ignores it and logs both names)."""

    def __init__(self, master: Master) -> None:
        self.master = master
        self.transport: asyncio.DatagramTransport | None = None
        self.mismatches: set[tuple[str, Any]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        master = self.master
        try:
            frame = decode_frame(data)
        except FrameError as exc:
            log.debug("discovery: bad datagram from %s: %s", addr, exc)
            return
        if frame.type != MsgType.DISCOVER or master.tcp_port is None:
            return
        asked = fields(frame.type, frame.payload)
        if asked.get("cluster") != master.cluster:
            # Answered all the same: the node learns which cluster this master serves and
            # says why it does not join. Logged once per address and name.
            seen = (addr[0], asked.get("cluster"))
            if seen not in self.mismatches and len(self.mismatches) < 256:
                self.mismatches.add(seen)
                log.warning("discovery: node %r at %s asks for cluster %r, this master serves "
                            "cluster %r: give both the same cluster name", asked.get("node_id"),
                            addr[0], asked.get("cluster"), master.cluster)
        host = master.host
        if host in ("0.0.0.0", ""):
            host = _local_address_towards(addr[0])
        reply = encode_frame(MsgType.ANNOUNCE, build(
            MsgType.ANNOUNCE, cluster=master.cluster, host=host, port=master.tcp_port),
            seq=frame.seq)
        assert self.transport is not None
        self.transport.sendto(reply, addr)


def resolve_version(kernel: str, version: str | None) -> str:
    """The version a job asks for: `version` itself, or with None the content hash of the
    kernel as this process has it ("" when it does not have the kernel: any version)."""
    if version is None:
        return kernelpkg.version(kernel) or ""
    return version


def versions_of(nodes: Iterable[NodeInfo], kernel: str) -> str:
    """Which node has which version of `kernel`, for error messages."""
    have = [f"{i.node_id} {i.kernel_hashes.get(kernel, 'unversioned')}"
            for i in nodes if kernel in i.kernels]
    return "the nodes have " + (", ".join(sorted(have)) or "none")


_SCALARS = frozenset({int, float, bool, type(None)})  # 9 bytes at most each


def wire_size(value: Any) -> int:
    """About how many bytes a value takes in CBOR: exact enough to learn link speeds and
    to keep a task off a node whose max_message it exceeds, and far cheaper than encoding."""
    kind = type(value)
    if kind is list or kind is tuple:  # an argument list: its scalars counted here
        total = 1
        for v in value:
            total += 9 if type(v) in _SCALARS else wire_size(v)
        return total
    if kind in _SCALARS:
        return 9
    if kind is Shared:  # a reference; placement counts the operand's own transfer
        return REF_SIZE
    if isinstance(value, bytes | bytearray | memoryview | str):
        return len(value) + 3
    if isinstance(value, array.array):
        return len(value) * value.itemsize + 5
    if isinstance(value, list | tuple):
        return 1 + sum(wire_size(v) for v in value)
    if isinstance(value, dict):
        return 1 + sum(wire_size(k) + wire_size(v) for k, v in value.items())
    return 9


# Messages up to this size may come in one frame (the largest max_frame of a board), which
# a node decodes into copies: the frame buffer is read again.
ONE_FRAME = 16384


def heap_need(value: Any, size: int) -> int:
    """About how much free heap a node needs for a task with arguments `value` (`size`: its
    wire_size). A larger message comes in CHUNKs: a node reassembles it into one buffer and
    decodes byte strings and uint8 typed arrays as views into it, so it needs the message
    once plus the typed arrays of other typecodes, which it decodes into arrays of their
    own. One that may fit a frame is decoded into copies: twice its size (HEAP_FACTOR)."""
    if size <= ONE_FRAME:
        return size * HEAP_FACTOR
    return size + _copied(value)


def _copied(value: Any) -> int:
    if isinstance(value, array.array):
        return 0 if value.typecode == "B" else len(value) * value.itemsize
    if isinstance(value, list | tuple):
        return sum(_copied(v) for v in value)
    if isinstance(value, dict):
        return sum(_copied(v) for v in value.values())
    return 0


def _local_address_towards(peer: str) -> str:
    """The local address a datagram to `peer` leaves from (connect() on UDP sends nothing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect((peer, 9))
            return s.getsockname()[0]
        except OSError:
            return "127.0.0.1"
