"""The views of a running master, started beside it: the recorder (recorder.py), the
client port (client_port.py) and the web dashboard with ``/metrics`` (dashboard/).
Each is optional; all of them only read the master through its event feed and its
public state, so the master runs the same with or without them.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from microswarm.master.client_port import ClientPort
from microswarm.master.client_proto import parse_address
from microswarm.master.config import DASHBOARD_PORT
from microswarm.master.recorder import Recorder

if TYPE_CHECKING:
    from microswarm.master.master import Master

log = logging.getLogger(__name__)

CONSOLE_POLL_S = 0.5


class Services:
    def __init__(self, master: Master, *, client: str | None = None,
                 http: str | None = None) -> None:
        self.master = master
        self.recorder = Recorder(master)
        self.client_port: ClientPort | None = None
        self.dashboard: Any = None
        self._client, self._http = client, http
        self.boards: dict[str, Any] = {}  # node id -> VirtualBoard, for their console logs
        self._console_seen: dict[str, list[str]] = {}
        self._watch: asyncio.Task | None = None

    @property
    def client_address(self) -> str | None:
        if self.client_port is None or self.client_port.port is None:
            return None
        return f"{self.client_port.host}:{self.client_port.port}"

    @property
    def http_url(self) -> str | None:
        if self.dashboard is None:
            return None
        return self.dashboard.url

    async def start(self) -> None:
        self._watch = asyncio.ensure_future(self._watch_consoles())
        if self._client:
            host, port = parse_address(self._client)
            self.client_port = ClientPort(self.master, host=host, port=port,
                                          recorder=self.recorder)
            await self.client_port.start()
        if self._http:
            from microswarm.master.dashboard import Dashboard

            host, port = parse_address(self._http, DASHBOARD_PORT)
            self.dashboard = Dashboard(self.master, self.recorder, host=host, port=port)
            await self.dashboard.start()

    async def stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            await asyncio.gather(self._watch, return_exceptions=True)
        if self.dashboard is not None:
            await self.dashboard.stop()
        if self.client_port is not None:
            await self.client_port.stop()
        self.recorder.unsubscribe()

    async def _watch_consoles(self) -> None:
        """Keep the errors the virtual boards' consoles show (the vboard picks them out of
        the console stream: a worker's log line, the exception that ended a program) in
        their nodes' logs, joined or not."""
        while True:
            await asyncio.sleep(CONSOLE_POLL_S)
            for node_id, board in list(self.boards.items()):
                errors = list(getattr(board, "console_errors", []))
                before = self._console_seen.get(node_id, [])
                new = errors[len(before):] if errors[:len(before)] == before else errors
                for text in new:
                    self.recorder.add_log(node_id, "error", f"console: {text}")
                self._console_seen[node_id] = errors
