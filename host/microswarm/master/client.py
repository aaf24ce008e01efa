"""A client of a running master over its client port (client_proto.py): the same
``submit`` / ``map`` / ``submit_job`` / ``wait`` / ``nodes`` as ``Cluster``, for work
sent to a master another process runs (``microswarm master`` or ``microswarm up``):

    with Cluster.connect("127.0.0.1:5883", key_file="cluster.key") as cluster:
        print(cluster.map("monte_carlo_pi", [(seed, 10000) for seed in range(64)]))

Results stream back as they finish (``handle.done`` counts them). The connection runs on
a background event loop, so the methods can be called from ordinary code and threads.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hmac
import itertools
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from microswarm.master.client_proto import (
    MAX_HANDSHAKE,
    SERVICE,
    ClientProtocolError,
    client_mac,
    master_mac,
    new_nonce,
    pack,
    parse_address,
    read_key_file,
    read_message,
)
from microswarm.master.master import JobFailedError
from microswarm.master.operands import pack_job
from microswarm.master.session import NodeInfo


class RemoteError(RuntimeError):
    """The master refused a request (the text says why)."""


@dataclass(eq=False)
class RemoteJob:
    """A job submitted through the client port; ``future`` gives the results in order."""

    job_id: int
    kernel: str
    total: int
    resumed: int = 0
    done: int = 0
    results: list[Any] = field(default_factory=list)
    future: concurrent.futures.Future = field(default_factory=concurrent.futures.Future)

    @property
    def state(self) -> str:
        if not self.future.done():
            return "running"
        if self.future.cancelled():
            return "cancelled"
        return "failed" if self.future.exception() else "done"

    def _result(self, index: int, value: Any) -> None:
        if 0 <= index < self.total and self.results[index] is _MISSING:
            self.results[index] = value
            self.done += 1

    def _finish(self, state: str, error: str | None) -> None:
        if self.future.done():
            return
        if state == "done":
            self.future.set_result(list(self.results))
        elif state == "cancelled":
            self.future.cancel()
        else:
            self.future.set_exception(JobFailedError(error or state))


_MISSING = object()


class _Connection:
    """The asyncio end of one client connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.cluster = ""
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future] = {}
        self._jobs: dict[int, RemoteJob] = {}
        self._early: dict[int, list[dict[str, Any]]] = {}
        self._reader_task: asyncio.Task | None = None
        self.lost: BaseException | None = None

    @classmethod
    async def open(cls, host: str, port: int, key: bytes, timeout: float) -> _Connection:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        conn = cls(reader, writer)
        try:
            await asyncio.wait_for(conn._authenticate(key), timeout)
        except BaseException:
            writer.close()
            raise
        conn._reader_task = asyncio.ensure_future(conn._read())
        return conn

    async def _authenticate(self, key: bytes) -> None:
        hello = await read_message(self.reader, MAX_HANDSHAKE)
        if hello is None or hello.get("service") != SERVICE:
            raise ClientProtocolError("not a microswarm client port")
        theirs, mine = hello["nonce"], new_nonce()
        self.writer.write(pack({"nonce": mine, "mac": client_mac(key, theirs, mine)}))
        answer = await read_message(self.reader, MAX_HANDSHAKE)
        if answer is None or "error" in answer:
            text = answer["error"] if answer else "connection closed"
            raise ClientProtocolError(f"the master refused this client: {text}")
        if not hmac.compare_digest(answer.get("proof", b""), master_mac(key, mine, theirs)):
            raise ClientProtocolError("the master failed to prove it knows the cluster key")
        self.cluster = hello.get("cluster", "")

    async def _read(self) -> None:
        try:
            while (message := await read_message(self.reader)) is not None:
                self._dispatch(message)
            self.lost = ConnectionError("the master closed the connection")
        except (ClientProtocolError, ConnectionError, OSError) as exc:
            self.lost = exc
        except asyncio.CancelledError:
            self.lost = ConnectionError("client closed")
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(ConnectionError(f"lost the master: {self.lost}"))
        for job in self._jobs.values():
            if not job.future.done():
                job.future.set_exception(ConnectionError(f"lost the master: {self.lost}"))

    def _dispatch(self, message: dict[str, Any]) -> None:
        if "id" in message:
            fut = self._pending.pop(message["id"], None)
            if fut is not None and not fut.done():
                fut.set_result(message)
            return
        job_id = message.get("job")
        job = self._jobs.get(job_id)
        if job is None:
            self._early.setdefault(job_id, []).append(message)
            return
        self._job_message(job, message)

    def _job_message(self, job: RemoteJob, message: dict[str, Any]) -> None:
        if "index" in message:
            job._result(message["index"], message.get("value"))
        elif "state" in message:
            self._jobs.pop(job.job_id, None)
            job._finish(message["state"], message.get("error"))

    async def request(self, op: str, **fields: Any) -> dict[str, Any]:
        if self.lost is not None:
            raise ConnectionError(f"lost the master: {self.lost}")
        rid = next(self._ids)
        fut = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        self.writer.write(pack({"id": rid, "op": op, **fields}))
        await self.writer.drain()
        answer = await fut
        if "error" in answer:
            raise RemoteError(answer["error"])
        return answer

    async def submit(self, kernel: str, tasks: list[list[Any]], **kw: Any) -> RemoteJob:
        tasks, operands, places = pack_job(tasks)  # each Shared operand once
        if operands:
            kw.update(operands=operands, places=places)
        answer = await self.request("submit", kernel=kernel, tasks=tasks,
                                    **{k: v for k, v in kw.items() if v is not None})
        job = RemoteJob(answer["job"], kernel, answer["total"], answer.get("resumed", 0))
        job.results = [_MISSING] * job.total
        self._jobs[job.job_id] = job
        for message in self._early.pop(job.job_id, []):
            self._job_message(job, message)
        return job

    async def close(self) -> None:
        self.writer.close()
        if self._reader_task is not None:
            self._reader_task.cancel()
            await asyncio.gather(self._reader_task, return_exceptions=True)


class ClusterClient:
    """Synchronous use of a running master; made by ``Cluster.connect``."""

    def __init__(self, address: str, *, key: bytes | str | None = None,
                 key_file: str | Path | None = None, timeout: float = 10) -> None:
        if key is None and key_file is None:
            raise ValueError("the cluster key is needed: key_file=... or key=...")
        self.key = read_key_file(key_file) if key is None else (
            key.encode() if isinstance(key, str) else key)
        self.address = address
        self.host, self.port = parse_address(address)
        self.timeout = timeout
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="microswarm-client",
                                        daemon=True)
        self._conn: _Connection | None = None

    # ------------------------------------------------------------------ lifecycle
    def connect(self) -> ClusterClient:
        self._thread.start()
        try:
            self._conn = self._call(_Connection.open(self.host, self.port, self.key,
                                                     self.timeout))
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        if self._conn is not None:
            self._call(self._conn.close(), 5)
            self._conn = None
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
        if not self._loop.is_running():
            self._loop.close()

    def __enter__(self) -> ClusterClient:
        return self if self._conn is not None else self.connect()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def cluster(self) -> str:
        return self._connection.cluster

    @property
    def _connection(self) -> _Connection:
        if self._conn is None:
            raise RuntimeError("not connected")
        return self._conn

    def _call(self, coro, timeout: float | None = None) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def _request(self, op: str, **fields: Any) -> dict[str, Any]:
        return self._call(self._connection.request(op, **fields), self.timeout)

    # ------------------------------------------------------------------ queries
    def nodes(self) -> list[NodeInfo]:
        answer = self._request("nodes")
        return [NodeInfo(**n) for n in answer["nodes"]]

    def jobs(self) -> list[dict[str, Any]]:
        return self._request("jobs")["jobs"]

    def status(self) -> dict[str, Any]:
        """What the dashboard shows: nodes, jobs, throughput, timeline, events, logs."""
        return self._request("status")

    def logs(self, node: str | None = None) -> dict[str, list]:
        return self._request("logs", **({"node": node} if node else {}))["logs"]

    # ------------------------------------------------------------------ work
    def submit_job(self, kernel: str, arg_lists: Iterable[Sequence[Any]], *,
                   priority: int = 0, key: str | None = None,
                   native: bool = False, version: str | None = None) -> RemoteJob:
        """Start a job of many tasks; ``wait(handle)`` or ``map`` give the results.
        `version` as in Cluster.map: None takes the kernel's version in this process (a
        package it loaded, or the built-in kernels), else the master's."""
        from microswarm import kernelpkg

        tasks = [list(a) for a in arg_lists]
        if version is None:
            version = kernelpkg.version(kernel)
        return self._call(self._connection.submit(kernel, tasks, priority=priority, key=key,
                                                  native=native or None, version=version),
                          self.timeout)

    def submit(self, kernel: str, *args: Any, priority: int = 0,
               version: str | None = None) -> concurrent.futures.Future:
        """One kernel call; the future gives its result."""
        job = self.submit_job(kernel, [args], priority=priority, version=version)
        one: concurrent.futures.Future = concurrent.futures.Future()

        def chain(fut: concurrent.futures.Future) -> None:
            if fut.cancelled():
                one.cancel()
            elif fut.exception() is not None:
                one.set_exception(fut.exception())
            else:
                one.set_result(fut.result()[0])

        job.future.add_done_callback(chain)
        return one

    def wait(self, handle: RemoteJob, progress: Callable[[int, int], None] | None = None,
             timeout: float | None = None) -> list[Any]:
        """The job's results; `progress(done, total)` is called while it runs."""
        if progress is None:
            return handle.future.result(timeout)
        waited = 0.0
        while not handle.future.done():
            progress(handle.done, handle.total)
            concurrent.futures.wait([handle.future], timeout=0.1)
            waited += 0.1
            if timeout is not None and waited >= timeout and not handle.future.done():
                raise TimeoutError(f"job {handle.job_id} not done after {timeout} s")
        progress(handle.done, handle.total)
        return handle.future.result()

    def map(self, kernel: str, arg_lists: Iterable[Sequence[Any]], *, progress: bool = False,
            **kw: Any) -> list[Any]:
        """Run one task per argument list; the results in order. `progress` shows a bar."""
        arg_lists = [a if isinstance(a, list | tuple) else [a] for a in arg_lists]
        handle = self.submit_job(kernel, arg_lists, **kw)
        if not progress:
            return self.wait(handle)
        from microswarm.master.cluster import progress_bar

        with progress_bar(f"{kernel} x{len(arg_lists)}", len(arg_lists)) as update:
            return self.wait(handle, update)

    def cancel(self, job: RemoteJob | int) -> dict[str, Any]:
        """Cancel a job (this client's or any other's) by handle or id."""
        job_id = job.job_id if isinstance(job, RemoteJob) else int(job)
        return self._request("cancel", job=job_id)
