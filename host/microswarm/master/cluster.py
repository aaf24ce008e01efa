"""Bring a cluster up (master, virtual boards, serial boards, local and in-process nodes)
and the synchronous ``Cluster`` facade that runs it on a background event loop."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from microswarm import kernelpkg
from microswarm.master.config import ClusterSpec, load
from microswarm.master.master import JobHandle, Master
from microswarm.master.services import Services

if TYPE_CHECKING:
    from microswarm.master.client import ClusterClient

log = logging.getLogger(__name__)

USB_POLL_S = 2.0


class ClusterStartError(RuntimeError):
    """The master could not start (a port in use, most often); the text says which."""


class RunningCluster:
    """A started master plus the virtual boards it owns and its views (services.py)."""

    def __init__(self, spec: ClusterSpec, master: Master) -> None:
        self.spec = spec
        self.master = master
        self.services = Services(master, client=spec.client, http=spec.http)
        self.boards: list[Any] = []  # VirtualBoard
        self.local: Any = None  # local.LocalNodes
        self._watch: asyncio.Task | None = None

    @classmethod
    async def launch(cls, spec: ClusterSpec, *, wait: bool = True,
                     timeout: float = 60) -> RunningCluster:
        master = Master(**spec.master_kwargs())
        running = cls(spec, master)
        try:
            await master.start()
            await running.services.start()
        except BaseException as exc:
            await running.stop()
            if not isinstance(exc, OSError) or exc.errno != errno.EADDRINUSE:
                raise
            raise ClusterStartError(
                f"cannot start the master of cluster {spec.name!r}: {exc}. "
                "Is a master already running with these ports? "
                "Send work to it with `microswarm run JOB --cluster FILE` (or --master "
                "HOST:PORT), or give this one other ports.") from None
        try:
            await running._start_nodes()
            if wait:
                await master.wait_for_nodes(spec.expected_nodes - spec.expected_tcp, timeout)
        except BaseException:
            await running.stop()
            raise
        return running

    async def _start_nodes(self) -> None:
        spec, master = self.spec, self.master
        if spec.kernels:  # this process's nodes and the submitter's versions
            kernelpkg.load(spec.kernels)
        if spec.inproc:
            await master.add_inproc_nodes(spec.inproc)
        if spec.local:
            from microswarm.master.local import LocalNodes

            self.local = LocalNodes()
            host = "127.0.0.1" if spec.host in ("0.0.0.0", "") else spec.host
            await self.local.start(spec.local, host, master.tcp_port, spec.key,
                                   kernels=spec.kernels)
        if spec.virtual:
            from microswarm.vboard import VirtualBoard

            host = "127.0.0.1" if spec.host in ("0.0.0.0", "") else spec.host
            boards = []
            for group in spec.virtual:
                for i in range(group.count):
                    boards.append(VirtualBoard(
                        board=group.board, link=group.link, node_id=f"{group.prefix}{i + 1}",
                        cluster=spec.name, key=spec.key,
                        master=f"{host}:{master.tcp_port}" if group.link == "tcp" else "",
                        native=group.native, kernels=spec.kernels,
                    ))
            self.boards = boards
            self.services.boards = {b.node_id: b for b in boards}
            await asyncio.gather(*(asyncio.to_thread(b.start) for b in boards))
            for board in boards:
                if board.link == "serial":
                    await master.open_serial(board.serial_port)
        for port in spec.serial_ports:
            await master.open_serial(port)
        if spec.watch_usb:
            self._watch = asyncio.ensure_future(self._watch_usb())

    async def _watch_usb(self) -> None:
        """Open USB serial devices that appear after start (boards plugged in later)."""
        from serial.tools import list_ports

        seen = {p.device for p in list_ports.comports()} | set(self.spec.serial_ports)
        while True:
            await asyncio.sleep(USB_POLL_S)
            for port in list_ports.comports():
                if port.vid is not None and port.device not in seen:
                    seen.add(port.device)
                    log.info("new USB serial device %s (%s): opening it", port.device,
                             port.description)
                    with contextlib.suppress(Exception):
                        await self.master.open_serial(port.device)

    async def stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
        await self.services.stop()
        if self.local is not None:
            await self.local.stop()
        await self.master.stop()
        await asyncio.gather(*(asyncio.to_thread(b.stop) for b in self.boards),
                             return_exceptions=True)


class Cluster:
    """Synchronous use of a cluster from ordinary code:

        with Cluster(local=2) as cluster:
            cluster.submit("echo", 1).result()
            cluster.map("monte_carlo_pi", [(seed, 10000) for seed in range(64)])

    local=N starts N CPython nodes in processes of their own (they compute in parallel);
    inproc=N starts them inside this process (they share its interpreter lock).
    `kernels` are kernel package folders: loaded into this process (its in-process nodes
    run them, and `map` takes their versions from them) and installed on virtual boards.
    """

    def __init__(self, spec: ClusterSpec | None = None, *, inproc: int = 0, local: int = 0,
                 key: bytes = b"", timeout: float = 60,
                 kernels: Sequence[str | Path] = (), **master: Any) -> None:
        if spec is None:
            spec = ClusterSpec(key=key or _throwaway_key(), tcp_port=0, udp_port=None,
                               control_port=None, client=None, http=None, inproc=inproc,
                               local=local, kernels=[str(k) for k in kernels])
            for name, value in master.items():
                setattr(spec, name, value)
        self.spec = spec
        self.timeout = timeout
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="microswarm-master",
                                        daemon=True)
        self._running: RunningCluster | None = None

    @classmethod
    def from_file(cls, path: str | Path, **kw: Any) -> Cluster:
        return cls(load(path), **kw)

    @staticmethod
    def connect(address: str, *, key_file: str | Path | None = None,
                key: bytes | str | None = None, timeout: float = 10) -> ClusterClient:
        """A client of a master that is already running (``microswarm master`` or ``up``),
        over its client port: the same submit / map / submit_job / wait / nodes."""
        from microswarm.master.client import ClusterClient

        return ClusterClient(address, key=key, key_file=key_file, timeout=timeout).connect()

    @property
    def services(self) -> Services:
        assert self._running is not None, "the cluster is not started"
        return self._running.services

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> Cluster:
        self._thread.start()
        self._running = self._call(RunningCluster.launch(self.spec, timeout=self.timeout))
        return self

    def close(self) -> None:
        if self._running is not None:
            self._call(self._running.stop())
            self._running = None
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def master(self) -> Master:
        assert self._running is not None, "the cluster is not started"
        return self._running.master

    @property
    def boards(self) -> list[Any]:
        return self._running.boards if self._running else []

    def _call(self, coro, timeout: float | None = None) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    # ------------------------------------------------------------------ work
    def nodes(self) -> list[Any]:
        return self._call(_value(lambda: self.master.nodes))

    def wait_for_nodes(self, count: int, timeout: float = 30) -> list[Any]:
        return self._call(self.master.wait_for_nodes(count, timeout))

    def submit(self, kernel: str, *args: Any, priority: int = 0,
               version: str | None = None) -> concurrent.futures.Future:
        """One kernel call; the future gives its result. `version`: see ``map``."""

        async def one() -> Any:
            (value,) = await self.master.submit(kernel, [args], priority=priority,
                                                version=version)
            return value

        return asyncio.run_coroutine_threadsafe(one(), self._loop)

    def submit_job(self, kernel: str, arg_lists: Iterable[Sequence[Any]], **kw: Any) -> JobHandle:
        """Start a job of many tasks; ``wait(handle)`` or ``map`` give the results."""
        return self._call(_value(lambda: self.master.submit(kernel, list(arg_lists), **kw)))

    def wait(self, handle: JobHandle, progress: Callable[[int, int], None] | None = None,
             timeout: float | None = None) -> list[Any]:
        """The job's results; `progress(done, total)` is called while it runs."""

        async def watch() -> list[Any]:
            while not handle.future.done():
                if progress is not None:
                    progress(handle.done, handle.total)
                await asyncio.wait([handle.future], timeout=0.1)
            if progress is not None:
                progress(handle.done, handle.total)
            return handle.future.result()

        return self._call(watch(), timeout)

    def map(self, kernel: str, arg_lists: Iterable[Sequence[Any]], *, progress: bool = False,
            **kw: Any) -> list[Any]:
        """Run one task per argument list; the results in order. `progress` shows a bar.

        Only nodes with the same version of the kernel run it: `version=None` (default)
        takes the content hash of the kernel as this process has it (built-in, or from a
        kernel package it loaded); pass a hash to pin another, or "" to accept any."""
        arg_lists = [a if isinstance(a, list | tuple) else [a] for a in arg_lists]
        handle = self.submit_job(kernel, arg_lists, **kw)
        if not progress:
            return self.wait(handle)
        with progress_bar(f"{kernel} x{len(arg_lists)}", len(arg_lists)) as update:
            return self.wait(handle, update)


async def _value(fn: Callable[[], Any]) -> Any:
    return fn()


@contextlib.contextmanager
def progress_bar(label: str, total: int):
    """A rich progress bar; yields update(done, total)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    with Progress("[progress.description]{task.description}", BarColumn(),
                  MofNCompleteColumn(), TimeElapsedColumn(), transient=False) as bar:
        task = bar.add_task(label, total=total)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def _throwaway_key() -> bytes:
    import os

    return os.urandom(16).hex().encode()
