"""IPv6 on the W6100: TCP and UDP sockets over the chip's IPv6 socket modes (Sn_MR TCP6 /
UDP6, CONNECT6 / SEND6, Sn_DIP6R, the 2+16+2-byte UDP receive header), in the VM against
the strict model, which reaches every IPv6 destination on ::1."""

from __future__ import annotations

import contextlib
import socket
import threading

import pytest

pytestmark = pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6 on this host")


def _v6_echo() -> tuple[socket.socket, threading.Thread]:
    server = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    server.bind(("::1", 0))
    server.listen(1)
    server.settimeout(20)

    def serve() -> None:
        conn, _ = server.accept()
        with conn, contextlib.suppress(OSError):
            while data := conn.recv(65536):
                conn.sendall(data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return server, thread


@pytest.mark.parametrize("model", ["w6100"], indirect=True)
def test_tcp_udp_and_listener_over_ipv6(model, vm):
    server, thread = _v6_echo()
    peer = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    peer.bind(("::1", 0))
    peer.settimeout(20)
    proc = vm(
        """
import wiznet6
nic = open_nic()
info = nic.getaddrinfo("2001:db8::10", $port)[0]
say("FAMILY", info[0] == nic.AF_INET6)
s = nic.socket(nic.AF_INET6, nic.SOCK_STREAM)
s.connect(info[-1])
frame = bytes(i & 0xFF for i in range(5000))
s.sendall(frame)
got = bytearray()
while len(got) < len(frame):
    got += s.recv(4096)
say("TCP6", got == frame)
s.close()
say("LLA", nic.ifconfig6()[0])
u = nic.socket(nic.AF_INET6, nic.SOCK_DGRAM)
u.bind(("::", 5895))
u.sendto(b"ping6", ("2001:db8::20", $udp))
say("SENT")
data, addr = u.recvfrom(100)
say("UDP6", data, addr[0], addr[1] == $udp)
u.close()
srv = nic.socket(nic.AF_INET6, nic.SOCK_STREAM)
srv.bind(("::", 5896))
srv.listen(1)
say("LISTENING")
conn, who = srv.accept()
conn.sendall(b"v6:" + conn.recv(10))
say("PEER", who[0])
wait()
conn.close()
srv.close()
try:
    nic.getaddrinfo("2001:db8:::1", 1)
except ValueError as e:
    say("BAD", "IPv6" in str(e))
""",
        model,
        port=server.getsockname()[1],
        udp=peer.getsockname()[1],
    )
    assert proc.expect("FAMILY") == "True"
    assert proc.expect("TCP6") == "True"
    mac = bytes(model.chip.common[model.chip.map.shar : model.chip.map.shar + 6])
    lla = proc.expect("LLA")
    expected = socket.inet_pton(socket.AF_INET6, "fe80::") [:8] + bytes(
        [mac[0] ^ 2, mac[1], mac[2], 0xFF, 0xFE, mac[3], mac[4], mac[5]])
    assert socket.inet_pton(socket.AF_INET6, lla) == expected  # RFC 4291 modified EUI-64
    proc.expect("SENT")
    data, addr = peer.recvfrom(100)
    assert data == b"ping6"
    peer.sendto(b"pong6", addr)
    assert proc.expect("UDP6") == "b'pong6' ::1 True"
    proc.expect("LISTENING")
    with model.lock:
        port = model.chip.tcp_port(5896, v6=True)
    with socket.create_connection(("::1", port), timeout=10) as c:
        c.sendall(b"hello")
        assert c.recv(100) == b"v6:hello"
        assert proc.expect("PEER") == "::1"
        proc.reply()
    assert proc.expect("BAD") == "True"
    proc.finish()
    thread.join(timeout=10)
    server.close()
    peer.close()
    chip = model.chip
    assert chip.sockets[0].jumped is not None  # pointer jumps apply to IPv6 connections too
    assert [s for s in chip.sent if s[1] == "2001:db8::20"]  # SEND6 to Sn_DIP6R


@pytest.mark.parametrize("model", ["w5500"], indirect=True)
def test_w5500_refuses_ipv6(model, vm):
    proc = vm(
        """
nic = open_nic()
try:
    nic.socket(nic.AF_INET6, nic.SOCK_STREAM)
except OSError as e:
    say("NOV6", e.args[0], "W5500" in e.args[1])
""",
        model,
    )
    assert proc.expect("NOV6") == "22 True"
    proc.finish()
