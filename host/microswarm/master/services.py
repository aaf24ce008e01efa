"""The views of a running master, started beside it: the recorder (recorder.py), the
client port (client_port.py) and the web dashboard with ``/metrics`` (dashboard/).
Each is optional; all of them only read the master through its event feed and its
public state, so the master runs the same with or without them.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from microswarm.master.client_port import ClientPort
from microswarm.master.client_proto import parse_address
from microswarm.master.config import DASHBOARD_PORT
from microswarm.master.recorder import Recorder

if TYPE_CHECKING:
    from microswarm.master.master import Master

log = logging.getLogger(__name__)


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
        self.recorder.master.events.subscribe(self._on_event)

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
        if self.dashboard is not None:
            await self.dashboard.stop()
        if self.client_port is not None:
            await self.client_port.stop()
        self.recorder.unsubscribe()

    def _on_event(self, kind: str, data: dict[str, Any]) -> None:
        """A virtual board whose node left may have died: keep the errors its console
        showed (the vboard picks them out of the console stream) in the node's log."""
        if kind != "node_left" or data["info"].node_id not in self.boards:
            return
        board = self.boards[data["info"].node_id]
        before = self._console_seen.get(board.node_id, [])
        errors = list(getattr(board, "console_errors", []))
        new = errors[len(before):] if errors[:len(before)] == before else errors
        for text in new:
            self.recorder.add_log(board.node_id, "error", f"console: {text}")
        self._console_seen[board.node_id] = errors
