"""The master's client port: programs and commands on other processes (``Cluster.connect``,
``microswarm run --master``, ``jobs``, ``cancel``, ``top``, ``logs``) submit work and watch
the cluster through it. Wire format and authentication: client_proto.py.

Each connection owns the jobs it submitted: their results stream back as the scheduler
reports them, and its running jobs are cancelled when it goes away (nobody is left to
take their results). Any number of clients may be connected at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from typing import TYPE_CHECKING, Any

from microswarm.master.client_proto import (
    MAX_HANDSHAKE,
    NONCE_SIZE,
    SERVICE,
    VERSION,
    ClientProtocolError,
    client_mac,
    master_mac,
    new_nonce,
    pack,
    read_message,
)
from microswarm.master.operands import unpack_job
from microswarm.master.scheduler import TaskDone

if TYPE_CHECKING:
    from microswarm.master.master import JobHandle, Master
    from microswarm.master.recorder import Recorder

log = logging.getLogger(__name__)

AUTH_TIMEOUT_S = 10.0


class ClientPort:
    def __init__(self, master: Master, *, host: str = "127.0.0.1", port: int = 0,
                 recorder: Recorder | None = None) -> None:
        self.master = master
        self.recorder = recorder
        self.host = host
        self._want = (host, port)
        self.port: int | None = None
        self._server: asyncio.AbstractServer | None = None
        self._clients: set[_Client] = set()

    async def start(self) -> None:
        host, port = self._want
        self._server = await asyncio.start_server(self._accept, host, port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for client in list(self._clients):
            client.close()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        client = _Client(self, reader, writer, f"{peer[0]}:{peer[1]}" if peer else "?")
        self._clients.add(client)
        try:
            await client.run()
        finally:
            self._clients.discard(client)


class _Client:
    def __init__(self, port: ClientPort, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, peer: str) -> None:
        self.port = port
        self.master = port.master
        self.reader = reader
        self.writer = writer
        self.peer = peer
        self.jobs: dict[int, JobHandle] = {}
        self._unsubscribe = None
        self._after: list[dict[str, Any]] = []

    def send(self, message: dict[str, Any]) -> None:
        if not self.writer.is_closing():
            self.writer.write(pack(message))

    def close(self) -> None:
        self.writer.close()

    async def run(self) -> None:
        try:
            if not await asyncio.wait_for(self._authenticate(), AUTH_TIMEOUT_S):
                return
            self._unsubscribe = self.master.events.subscribe(self._on_event)
            while (request := await read_message(self.reader)) is not None:
                self._handle(request)
                await self.writer.drain()
        except (ClientProtocolError, ConnectionError, TimeoutError) as exc:
            log.info("client %s: %s", self.peer, exc or type(exc).__name__)
        finally:
            if self._unsubscribe is not None:
                self._unsubscribe()
            for handle in self.jobs.values():
                if not handle.future.done():
                    log.info("client %s left: cancelling its job %d", self.peer, handle.job_id)
                    self.master.cancel(handle)
            self.writer.close()

    async def _authenticate(self) -> bool:
        nonce = new_nonce()
        self.send({"service": SERVICE, "version": VERSION, "cluster": self.master.cluster,
                   "nonce": nonce})
        answer = await read_message(self.reader, MAX_HANDSHAKE)
        if answer is None:
            return False
        theirs, mac = answer.get("nonce"), answer.get("mac")
        if (not isinstance(theirs, bytes) or len(theirs) != NONCE_SIZE
                or not isinstance(mac, bytes)
                or not hmac.compare_digest(mac, client_mac(self.master.key, nonce, theirs))):
            log.warning("client %s refused: wrong cluster key", self.peer)
            self.master.events.emit("client_refused", peer=self.peer, text="wrong cluster key")
            self.send({"error": "wrong cluster key"})
            await self.writer.drain()
            return False
        self.send({"proof": master_mac(self.master.key, theirs, nonce)})
        return True

    # ------------------------------------------------------------------ requests
    def _handle(self, request: dict[str, Any]) -> None:
        rid = request.get("id")
        op = request.get("op")
        handler = getattr(self, f"_op_{op}", None) if isinstance(op, str) else None
        if handler is None:
            self.send({"id": rid, "error": f"unknown op {op!r}"})
            return
        try:
            answer = handler(request)
        except (ValueError, TypeError, KeyError) as exc:
            self.send({"id": rid, "error": f"{op}: {exc}"})
            return
        answer["id"] = rid
        self.send(answer)
        for message in self._after:  # results a submit already knew (from the journal)
            self.send(message)
        self._after = []

    def _op_submit(self, request: dict[str, Any]) -> dict[str, Any]:
        kernel, tasks = request["kernel"], request["tasks"]
        if not isinstance(kernel, str) or not isinstance(tasks, list):
            raise ValueError("kernel must be text and tasks a list of argument lists")
        if "operands" in request:  # Shared arguments, each sent once (operands.pack_job)
            tasks = unpack_job(tasks, request["operands"], request.get("places", []))
        key = request.get("key")
        version = request.get("version")  # the submitter's kernel version; absent: ours
        handle = self.master.submit(kernel, tasks, priority=int(request.get("priority", 0)),
                                    key=key if isinstance(key, str) else None,
                                    native=bool(request.get("native", False)),
                                    version=version if isinstance(version, str) else None)
        self.jobs[handle.job_id] = handle
        self._after = [{"job": handle.job_id, "index": index, "value": handle.results[index]}
                       for index, who in enumerate(handle.nodes) if who == "journal"]
        handle.future.add_done_callback(lambda _f, h=handle: self._finished(h))
        return {"job": handle.job_id, "total": handle.total, "resumed": handle.resumed}

    def _op_cancel(self, request: dict[str, Any]) -> dict[str, Any]:
        handle = self.master.job(int(request["job"]))
        if handle is None:
            raise ValueError(f"no job {request['job']}")
        was = handle.state
        if was == "running":
            self.master.cancel(handle)
        return {"job": handle.job_id, "was": was, "state": handle.state}

    def _op_nodes(self, _request: dict[str, Any]) -> dict[str, Any]:
        return {"cluster": self.master.cluster,
                "nodes": [i.as_dict() for i in self.master.nodes],
                "scheduler": self.master.scheduler.node_stats()}

    def _op_jobs(self, _request: dict[str, Any]) -> dict[str, Any]:
        return {"jobs": self.master.jobs()}

    def _op_status(self, _request: dict[str, Any]) -> dict[str, Any]:
        if self.port.recorder is None:
            raise ValueError("this master keeps no status")
        return self.port.recorder.snapshot()

    def _op_logs(self, request: dict[str, Any]) -> dict[str, Any]:
        if self.port.recorder is None:
            raise ValueError("this master keeps no logs")
        node = request.get("node")
        return {"logs": self.port.recorder.node_logs(node if isinstance(node, str) else None)}

    # ------------------------------------------------------------------ streaming
    def _on_event(self, kind: str, data: dict[str, Any]) -> None:
        if kind != "actions" or not self.jobs:
            return
        for action in data["actions"]:
            if type(action) is TaskDone:
                handle = self.jobs.get(action.job_id)
                if handle is not None:
                    self.send({"job": action.job_id, "index": handle.todo[action.index],
                               "value": action.value})

    def _finished(self, handle: JobHandle) -> None:
        message: dict[str, Any] = {"job": handle.job_id, "state": handle.state}
        if handle.state == "failed":
            message["error"] = str(handle.future.exception())
        self.jobs.pop(handle.job_id, None)
        self.send(message)
