"""A small RFC 2131 DHCP server on loopback for the driver's DHCP client."""

from __future__ import annotations

import socket
import struct
import threading

MAGIC = b"\x63\x82\x53\x63"


def _options(data: bytes) -> dict[int, bytes]:
    opts, i = {}, 240
    while i < len(data) and data[i] != 255:
        if data[i] == 0:
            i += 1
            continue
        opts[data[i]] = data[i + 2 : i + 2 + data[i + 1]]
        i += 2 + data[i + 1]
    return opts


class DhcpServer:
    """Offers 10.0.0.77/24 via 10.0.0.1 to whoever asks; NAKs the first REQUEST when told;
    leases for lease_s seconds; calls on_message(kind, data) for each client message and
    answers only those for which it returns true (None: all)."""

    def __init__(self, nak_first: bool = False, lease_s: int = 3600, on_message=None) -> None:
        self.lease_s = lease_s
        self.on_message = on_message
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.nak_first = nak_first
        self.seen: list[tuple[int, dict[int, bytes], bytes]] = []
        self.stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _reply(self, request: bytes, kind: int, addr: tuple[str, int]) -> None:
        reply = bytearray(236)
        reply[0:3] = b"\x02\x01\x06"
        reply[4:8] = request[4:8]  # xid
        reply[10] = request[10]
        if kind != 6:
            reply[16:20] = bytes([10, 0, 0, 77])
        reply[28:44] = request[28:44]  # chaddr
        reply += MAGIC + bytes([53, 1, kind, 54, 4, 10, 0, 0, 1])
        if kind != 6:
            reply += bytes([1, 4, 255, 255, 255, 0, 3, 4, 10, 0, 0, 1, 6, 4, 10, 0, 0, 53])
            reply += bytes([51, 4]) + struct.pack(">I", self.lease_s)
        reply += b"\xff"
        self.sock.sendto(bytes(reply), addr)

    def _serve(self) -> None:
        while not self.stop:
            try:
                data, addr = self.sock.recvfrom(2048)
            except TimeoutError:
                continue
            except OSError:
                return
            if data[236:240] != MAGIC or data[0] != 1:
                continue
            opts = _options(data)
            kind = opts[53][0]
            self.seen.append((kind, opts, data))
            if self.on_message is not None and not self.on_message(kind, data):
                continue
            if kind == 1:
                self._reply(data, 2, addr)
            elif kind == 3:
                nak = self.nak_first and sum(1 for k, _, _ in self.seen if k == 3) == 1
                self._reply(data, 6 if nak else 5, addr)

    def close(self) -> None:
        self.stop = True
        self.thread.join(timeout=5)
        self.sock.close()
