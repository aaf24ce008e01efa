"""The master's web dashboard and ``/metrics``, served by aiohttp on the master's own event
loop (docs/master.md, "Dashboard").

  GET /             the page (static/index.html, dashboard.js, Chart.js vendored)
  GET /api/state    one snapshot as JSON (recorder.py's ``snapshot``)
  GET /api/stream   server-sent events: a snapshot every UPDATE_S seconds
  GET /api/logs     every node's kept log lines (?node=ID for one)
  GET /metrics      the Prometheus text format (metrics.py)

The page only reads: it cannot submit or cancel, so it needs no key. It listens on
loopback by default; bound to another address it shows the cluster to that network.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from microswarm.master.metrics import CONTENT_TYPE, Metrics

if TYPE_CHECKING:
    from microswarm.master.master import Master
    from microswarm.master.recorder import Recorder

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
UPDATE_S = 0.5


class Dashboard:
    def __init__(self, master: Master, recorder: Recorder, *, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        self.master = master
        self.recorder = recorder
        self.metrics = Metrics(master, recorder)
        self.host = host
        self._want_port = port
        self.port: int | None = None
        self._runner: web.AppRunner | None = None
        self._stopping = asyncio.Event()

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}/"

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/", self._index)
        app.router.add_get("/api/state", self._state)
        app.router.add_get("/api/stream", self._stream)
        app.router.add_get("/api/logs", self._logs)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_static("/static/", STATIC)
        return app

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self._want_port)
        try:
            await site.start()
        except OSError:
            await self._runner.cleanup()
            raise
        self.port = self._runner.addresses[0][1]
        if self.host not in ("127.0.0.1", "::1", "localhost"):
            log.warning("the dashboard listens on %s: anyone who reaches it sees the cluster",
                        self.host)

    async def stop(self) -> None:
        self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()

    # ------------------------------------------------------------------ handlers
    async def _index(self, _request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html")

    async def _state(self, _request: web.Request) -> web.Response:
        return web.json_response(self.recorder.snapshot(), dumps=_dumps)

    async def _logs(self, request: web.Request) -> web.Response:
        node = request.query.get("node")
        return web.json_response(self.recorder.node_logs(node), dumps=_dumps)

    async def _metrics(self, _request: web.Request) -> web.Response:
        return web.Response(body=self.metrics.exposition(),
                            headers={"Content-Type": CONTENT_TYPE})

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={
            "Content-Type": "text/event-stream", "Cache-Control": "no-cache",
        })
        await response.prepare(request)
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            while not self._stopping.is_set():
                data = _dumps(self.recorder.snapshot())
                await response.write(f"data: {data}\n\n".encode())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), UPDATE_S)
        return response


def _dumps(value: object) -> str:
    return json.dumps(value, default=_plain, separators=(",", ":"))


def _plain(value: object) -> object:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    return str(value)
