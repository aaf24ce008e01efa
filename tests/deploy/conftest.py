"""A real master on a background event loop, and blank virtual boards to deploy to."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from microswarm.master import Master
from microswarm.vboard import VirtualBoard

KEY = bytes.fromhex("8c1f0e5a3b7d29c4e6f1a0b2d3c4e5f6")


class BackgroundMaster:
    """Master on its own thread, so blocking deploy calls can run in the test's thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.master = Master(key=KEY, tcp_port=0, udp_port=None, control_port=0,
                             heartbeat_ms=500)
        self.call(self.master.start())

    def call(self, coro, timeout: float = 60.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def run_job(self, kernel: str, arg_lists: list, timeout: float = 30.0) -> list:
        async def job():
            return await asyncio.wait_for(self.master.submit(kernel, arg_lists), timeout)

        return self.call(job(), timeout + 5)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.master.tcp_port}"

    @property
    def control(self) -> str:
        return f"127.0.0.1:{self.master.control_port}"

    def close(self) -> None:
        try:
            self.call(self.master.stop(), 20)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


@pytest.fixture
def cluster_key() -> bytes:
    return KEY


@pytest.fixture
def master() -> Iterator[BackgroundMaster]:
    background = BackgroundMaster()
    yield background
    background.close()


@pytest.fixture
def blank_vboard(tmp_path: Path) -> Iterator[VirtualBoard]:
    vb = VirtualBoard(workdir=tmp_path / "board", firmware=False, node_id="blank")
    vb.start()
    yield vb
    vb.stop()
