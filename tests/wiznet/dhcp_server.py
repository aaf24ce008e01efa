"""The virtual board's DHCP server (microswarm.vboard.dhcp) on a thread of its own, with
what the driver's tests need around it: every client message recorded, a first REQUEST
refused on demand, and a filter that leaves chosen messages unanswered."""

from __future__ import annotations

import select
import threading
from collections.abc import Callable

from microswarm.vboard import dhcp


class DhcpServer(dhcp.DhcpServer):
    """Leases 10.0.0.77/24 via 10.0.0.1 (DNS 10.0.0.53) for `lease_s` seconds. `seen`
    holds (kind, options, message) for each client message; `on_message(kind, message)`
    returning false leaves that message unanswered; `nak_first` refuses the first REQUEST."""

    def __init__(self, nak_first: bool = False, lease_s: int = 3600,
                 on_message: Callable[[int, bytes], bool] | None = None) -> None:
        super().__init__("10.0.0.0/24", lease_s=lease_s, dns="10.0.0.53", first=77)
        self.nak_first = nak_first
        self.on_message = on_message
        self.seen: list[tuple[int, dict[int, bytes], bytes]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def answer(self, message: bytes) -> bytes | None:
        opts = dhcp.options(message)
        kind = opts.get(dhcp.OPT_TYPE, b"\x00")[0]
        self.seen.append((kind, opts, message))
        if self.on_message is not None and not self.on_message(kind, message):
            return None
        requests = [k for k, _, _ in self.seen].count(dhcp.REQUEST)
        if kind == dhcp.REQUEST and self.nak_first and requests == 1:
            return self._reply(message, dhcp.NAK, None)
        return super().answer(message)

    def _serve(self) -> None:
        while not self._stop.is_set():
            readable, _, _ = select.select([self.sock], [], [], 0.2)
            if readable:
                self.handle()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        super().close()
