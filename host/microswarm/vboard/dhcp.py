"""The DHCP server of a virtual board's Ethernet: the board's WIZnet driver asks for an
address as it would on a real LAN, and gets one here.

Written from RFC 2131 (message layout: a 236-byte BOOTP header, then the magic cookie
99.130.83.99 and options; section 4.3: DISCOVER is answered by OFFER, REQUEST by ACK) and
RFC 2132 (options 1 subnet mask, 3 router, 6 DNS servers, 51 lease time, 53 message type,
54 server identifier, 255 end). The chip model carries the board's broadcasts to port 67
here (its `port_map`); replies go back to the chip's host socket they came from.

The server is sans-thread: the supervisor registers `fileno()` in its selector and calls
`handle()` when it is readable.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Callable

MAGIC = b"\x63\x82\x53\x63"
DISCOVER, OFFER, REQUEST, DECLINE, ACK, NAK, RELEASE = 1, 2, 3, 4, 5, 6, 7
OPT_PAD, OPT_MASK, OPT_ROUTER, OPT_DNS, OPT_REQUESTED = 0, 1, 3, 6, 50
OPT_LEASE, OPT_TYPE, OPT_SERVER, OPT_END = 51, 53, 54, 255
BOOTP_HEADER = 236
LEASE_S = 3600


def options(message: bytes) -> dict[int, bytes]:
    """The options of a DHCP message (after the cookie), by code."""
    found: dict[int, bytes] = {}
    at = BOOTP_HEADER + len(MAGIC)
    while at < len(message):
        code = message[at]
        if code == OPT_END:
            break
        if code == OPT_PAD:
            at += 1
            continue
        if at + 1 >= len(message):
            break
        size = message[at + 1]
        found[code] = bytes(message[at + 2 : at + 2 + size])
        at += 2 + size
    return found


class DhcpServer:
    """Leases addresses of `network` (one per client hardware address) on 127.0.0.1.

    The first host address is the server, also the router and, unless `dns` names
    another, the DNS server; leases start at host number `first` (default: the next one)
    and last `lease_s` seconds."""

    def __init__(self, network: str = "10.77.0.0/24",
                 on_lease: Callable[[str], None] | None = None, *,
                 lease_s: int = LEASE_S, dns: str | None = None, first: int = 2) -> None:
        self.on_lease = on_lease or (lambda address: None)
        self.network = ipaddress.IPv4Network(network)
        self.lease_s = lease_s
        hosts = self.network.hosts()
        self.server_ip = next(hosts)
        self.dns_ip = ipaddress.IPv4Address(dns) if dns else self.server_ip
        self._free = (address for n, address in enumerate(hosts, 2) if n >= first)
        self.leases: dict[bytes, ipaddress.IPv4Address] = {}
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.port: int = self.sock.getsockname()[1]

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()

    def handle(self) -> None:
        """Answer every request waiting on the socket."""
        while True:
            try:
                message, peer = self.sock.recvfrom(2048)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            reply = self.answer(message)
            if reply is not None:
                self.sock.sendto(reply, peer)

    def answer(self, message: bytes) -> bytes | None:
        """The reply to one client message, or None for what needs none."""
        if len(message) < BOOTP_HEADER + len(MAGIC) or message[0] != 1:
            return None
        if message[BOOTP_HEADER : BOOTP_HEADER + 4] != MAGIC:
            return None
        opts = options(message)
        kind = opts.get(OPT_TYPE, b"\x00")[0]
        hlen = min(message[2], 16)
        client = bytes(message[28 : 28 + hlen])
        if kind == DISCOVER:
            return self._reply(message, OFFER, self._address_for(client))
        if kind == REQUEST:
            server = opts.get(OPT_SERVER)
            if server is not None and server != self.server_ip.packed:
                return None  # the client took another server's offer
            address = self._address_for(client)
            wanted = opts.get(OPT_REQUESTED) or bytes(message[12:16])  # or ciaddr (renewal)
            if wanted != address.packed:
                return self._reply(message, NAK, None)
            self.on_lease(str(address))
            return self._reply(message, ACK, address)
        if kind == RELEASE:
            self.leases.pop(client, None)
        return None

    def _address_for(self, client: bytes) -> ipaddress.IPv4Address:
        if client not in self.leases:
            self.leases[client] = next(self._free)
        return self.leases[client]

    def _reply(self, request: bytes, kind: int, address: ipaddress.IPv4Address | None) -> bytes:
        reply = bytearray(BOOTP_HEADER)
        reply[0:4] = bytes([2, request[1], request[2], 0])  # BOOTREPLY, htype, hlen, hops
        reply[4:8] = request[4:8]  # xid
        reply[10:12] = request[10:12]  # flags (broadcast bit)
        if address is not None:
            reply[16:20] = address.packed  # yiaddr
            reply[20:24] = self.server_ip.packed  # siaddr
        reply[28:44] = request[28:44]  # chaddr
        reply += MAGIC
        reply += bytes([OPT_TYPE, 1, kind, OPT_SERVER, 4]) + self.server_ip.packed
        if address is not None:
            server = self.server_ip.packed
            reply += bytes([OPT_MASK, 4]) + self.network.netmask.packed
            reply += bytes([OPT_ROUTER, 4]) + server
            reply += bytes([OPT_DNS, 4]) + self.dns_ip.packed
            reply += bytes([OPT_LEASE, 4]) + struct.pack(">I", self.lease_s)
        reply.append(OPT_END)
        return bytes(reply)
