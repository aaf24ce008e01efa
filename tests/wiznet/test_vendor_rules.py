"""One test per rule of the vendor's documents that the driver once broke (issue list 1-9 in
docs/wiznet.md). Each runs the driver in the MicroPython VM against the strict chip model;
each failed against the driver as it was before these rules were followed."""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading
import time

import pytest

from microswarm import paths

from .dhcp_server import DhcpServer

pytestmark = pytest.mark.slow


def _listener(rcvbuf: int | None = None) -> socket.socket:
    server = socket.socket()
    if rcvbuf is not None:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    server.bind(("127.0.0.1", 0))
    server.listen(2)
    server.settimeout(20)
    return server


def _echo_once(server: socket.socket) -> threading.Thread:
    def serve() -> None:
        conn, _ = server.accept()
        with conn, contextlib.suppress(OSError):
            while data := conn.recv(65536):
                conn.sendall(data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


# ---- 1: the TCP ring pointers are re-initialised when the connection is established ------

def test_1_pointers_are_read_after_the_connection_is_established(model, vm):
    """w5500.h / w6100.h: Sn_TX_WR and Sn_RX_RD are re-initialised while connecting; the
    model moves them to arbitrary values at establishment, for a client and a server."""
    server = _listener()
    thread = _echo_once(server)
    proc = vm(
        """
nic = open_nic()
nic.ifconfig(("10.0.0.2", "255.255.255.0", "10.0.0.1", "0.0.0.0"))
s = nic.socket(nic.AF_INET, nic.SOCK_STREAM)
s.connect(("10.0.0.1", $port))
s.sendall(b"client says hello")
say("CLIENT", s.recv(100))
s.close()
srv = nic.socket(nic.AF_INET, nic.SOCK_STREAM)
srv.bind(("0.0.0.0", 5890))
srv.listen(1)
say("LISTENING")
conn, peer = srv.accept()
conn.sendall(b"server says " + conn.recv(100))
wait()
conn.close()
srv.close()
""",
        model,
        port=server.getsockname()[1],
    )
    assert proc.expect("CLIENT") == "b'client says hello'"
    proc.expect("LISTENING")
    with model.lock:
        port = model.chip.tcp_port(5890)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
        c.sendall(b"hi")
        assert c.recv(100) == b"server says hi"
    proc.reply()
    proc.finish()
    thread.join(timeout=10)
    server.close()
    assert all(s.jumped is not None for s in model.chip.sockets[:2])


# ---- 2: a refused connect or a peer's RST raises no interrupt -----------------------------

def test_2_refusal_and_peer_reset_are_seen_with_intn_wired(model, vm):
    """Sn_SR goes CLOSED with no Sn_IR bit (the model raises none): the driver must still
    notice while INTn stays high."""
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    refused_port = closed.getsockname()[1]
    closed.close()
    server = _listener()
    proc = vm(
        """
nic = open_nic()
nic.ifconfig(("10.0.0.2", "255.255.255.0", "10.0.0.1", "0.0.0.0"))
s = nic.socket(nic.AF_INET, nic.SOCK_STREAM)
try:
    s.connect(("10.0.0.1", $refused))
except OSError as e:
    say("REFUSED", e.errno)
s.close()
s = nic.socket(nic.AF_INET, nic.SOCK_STREAM)
s.connect(("10.0.0.1", $port))
say("CONNECTED")
try:
    say("GOT", s.recv(10))
except OSError as e:
    say("RESET", e.errno)
s.close()
""",
        model,
        refused=refused_port,
        port=server.getsockname()[1],
    )
    assert proc.expect("REFUSED", timeout=10) == "111"
    proc.expect("CONNECTED")
    conn, _ = server.accept()
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()
    assert proc.expect("RESET", timeout=10) == "104"
    proc.finish()
    server.close()


# ---- 3: RECV is not raised again while datagrams remain ----------------------------------

def test_3_queued_datagrams_are_all_read_with_intn_wired(model, vm):
    proc = vm(
        """
nic = open_nic()
nic.ifconfig(("10.0.0.2", "255.255.255.0", "10.0.0.1", "0.0.0.0"))
u = nic.socket(nic.AF_INET, nic.SOCK_DGRAM)
u.bind(("0.0.0.0", 5891))
say("BOUND")
wait()
for i in range(3):
    data, addr = u.recvfrom(100)
    say("DGRAM", data)
u.close()
""",
        model,
    )
    proc.expect("BOUND")
    with model.lock:
        port = model.chip.udp_port(5891)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        for i in range(3):
            u.sendto(b"datagram %d" % i, ("127.0.0.1", port))
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # all three in the chip's RX ring before it reads
        with model.lock:
            model.chip.pump_all()
            if model.chip.sockets[0].rsr >= 3 * (8 + 10):
                break
        time.sleep(0.01)
    proc.reply()
    assert [proc.expect("DGRAM", timeout=10) for _ in range(3)] == [
        "b'datagram 0'", "b'datagram 1'", "b'datagram 2'"]
    proc.finish()


# ---- 4: Sn_CR at 0 means accepted, not done ----------------------------------------------

def test_4_a_reopened_socket_waits_for_open_to_complete(model, vm):
    """OPEN resets the ring pointers only when it has been carried out, a little after Sn_CR
    reads 0 again; a driver that reads the pointers at once gets the previous use's."""
    proc = vm(
        """
nic = open_nic(buffers=(2, 0, 0, 0, 0, 0, 0, 0))
nic.ifconfig(("10.0.0.2", "255.255.255.0", "10.0.0.1", "0.0.0.0"))
for round in range(3):
    u = nic.socket(nic.AF_INET, nic.SOCK_DGRAM)
    u.bind(("0.0.0.0", 5892))
    say("BOUND", round)
    data, addr = u.recvfrom(400)
    u.sendto(b"echo " + data, addr)
    u.close()
""",
        model,
    )
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.settimeout(10)
        for rnd in range(3):
            assert proc.expect("BOUND") == str(rnd)
            with model.lock:
                port = model.chip.udp_port(5892)
            u.sendto(b"round %d" % rnd + bytes(300), ("127.0.0.1", port))
            data, _ = u.recvfrom(1000)
            assert data == b"echo round %d" % rnd + bytes(300)
    proc.finish()


# ---- 5: close() lets the FIN handshake finish --------------------------------------------

def test_5_close_waits_for_the_peer_and_loses_nothing(model, vm):
    """ioLibrary disconnect() waits for SOCK_CLOSED: CLOSE right after DISCON aborts the
    connection (the model sends RST and drops what the peer has not taken yet)."""
    server = _listener(rcvbuf=4096)
    payload = bytes(i & 0xFF for i in range(12000))
    proc = vm(
        """
nic = open_nic()
nic.ifconfig(("10.0.0.2", "255.255.255.0", "10.0.0.1", "0.0.0.0"))
s = nic.socket(nic.AF_INET, nic.SOCK_STREAM)
s.connect(("10.0.0.1", $port))
s.sendall(bytes(i & 0xFF for i in range(12000)))
say("CLOSING")
s.close()
say("CLOSED")
""",
        model,
        port=server.getsockname()[1],
    )
    conn, _ = server.accept()
    proc.expect("CLOSING")
    time.sleep(0.5)  # the peer is slow to read: part of the stream is still on its way
    got = bytearray()
    with conn:
        conn.settimeout(10)
        while chunk := conn.recv(65536):
            got += chunk
    assert bytes(got) == payload  # everything, then FIN (no reset)
    proc.expect("CLOSED")
    proc.finish()
    server.close()


# ---- 6: the W6100 software reset is waited for -------------------------------------------

@pytest.mark.parametrize("model", ["w6100"], indirect=True)
def test_6_w6100_settings_survive_the_software_reset(model, vm):
    """SYCR0.RST has no completion flag and CIDR reads right during the reset (it is
    constant); writes in that time are lost. WIZnet's W6100 code waits 100 ms."""
    proc = vm(
        """
nic = open_nic(buffers=(4, 4, 2, 2, 1, 1, 1, 1))
say("MAC", nic.mac.hex())
""",
        model,
    )
    mac = bytes.fromhex(proc.expect("MAC"))
    proc.finish()
    chip = model.chip
    m = chip.map
    assert bytes(chip.common[m.shar : m.shar + 6]) == mac
    assert [s.regs[m.sn_txbuf_size] for s in chip.sockets] == [4, 4, 2, 2, 1, 1, 1, 1]
    assert chip.common[0x2005] & 0x80  # SYCR1.IEN


# ---- 7: WIZnet's reset timing and SPI clock ----------------------------------------------

def test_7_reset_pulse_and_settle_time_follow_wiznet(model, vm):
    """WIZnet-PICO-C's wizchip_reset(): RSTn low 100 ms, then 100 ms before the first
    access (the driver before took 2 ms and 0 ms). The model times both by the VM's stamps
    on the pin edges, so a loaded machine does not blur them."""
    proc = vm("nic = open_nic()\nsay('UP')\n", model)
    proc.expect("UP")
    proc.finish()
    assert model.chip.rst_low_s is not None and model.chip.rst_low_s >= 0.099
    assert model.chip.settle_s is not None and model.chip.settle_s >= 0.099


def test_7_board_files_clock_the_chips_as_wiznet_does():
    """WIZnet's board definitions run the W5500/W6100 at 20 MHz (MicroPython) or 10 MHz
    (WIZnet-PICO-C); nothing higher without a source."""
    for path in sorted(paths.boards_dir().glob("*.json")):
        board = json.loads(path.read_text())
        if board.get("net_driver") == "wiznet":
            assert board["spi"]["baudrate"] <= 20_000_000, path.name


# ---- 8: DHCP renewal (ioLibrary dhcp.c) ---------------------------------------------------

def test_8_dhcp_zeroes_the_address_then_renews_and_rebinds(model, vm):
    chip = model.chip
    m = chip.map
    at_discover: list[bytes] = []

    def on_message(kind: int, data: bytes) -> bool:
        """Record SIPR/GAR at DISCOVER; leave unicast renewals unanswered (a server that
        cannot be reached directly), so the client has to rebind by broadcast after T2."""
        with model.lock:
            if kind == 1:
                at_discover.append(bytes(chip.common[m.sipr : m.sipr + 4])
                                   + bytes(chip.common[m.gar : m.gar + 4]))
            last = [ip for _, ip, port, _ in chip.sent if port == 67][-1]
        return not (kind == 3 and data[12:16] != bytes(4) and last != "255.255.255.255")

    server = DhcpServer(lease_s=8, on_message=on_message)
    chip.port_map[67] = server.port
    proc = vm(
        """
import time
nic = open_nic()
nic.ifconfig(("10.9.9.9", "255.255.255.0", "10.9.9.1", "0.0.0.0"))
say("LEASE", nic.dhcp(timeout_ms=10000)[0], nic.lease_s)
start = time.ticks_ms()
while time.ticks_diff(time.ticks_ms(), start) < 9000:
    nic.maintain()
    time.sleep_ms(50)
say("STILL", nic.ifconfig()[0], len(nic._free))
""",
        model,
    )
    assert proc.expect("LEASE") == "10.0.0.77 8"
    assert proc.expect("STILL", timeout=30) == "10.0.0.77 8"
    proc.finish()
    server.close()
    assert at_discover and all(v == bytes(8) for v in at_discover)  # SIPR and GAR zeroed
    dests = [ip for _, ip, port, _ in chip.sent if port == 67]
    renewals = [data for k, _, data in server.seen if k == 3 and data[12:16] != bytes(4)]
    assert len(renewals) >= 2  # renewal(s) left unanswered, then the rebinding
    for data in renewals:
        assert data[12:16] == bytes([10, 0, 0, 77]) and not data[10] & 0x80  # ciaddr, no flag
        opts = data[240:]
        assert 50 not in _option_codes(opts) and 54 not in _option_codes(opts)  # RFC 2131 4.3.2
    # DISCOVER and REQUEST broadcast; from T1 unicast REQUESTs to the server (it does not
    # answer them); from T2 (rebinding) broadcast, answered
    assert dests[:3] == ["255.255.255.255", "255.255.255.255", "10.0.0.1"]
    rebind = dests.index("255.255.255.255", 2)
    assert set(dests[2:rebind]) == {"10.0.0.1"}
    assert [k for k, _, _ in server.seen].count(1) == 1  # the lease never lapsed


def _option_codes(opts: bytes) -> list[int]:
    codes, i = [], 0
    while i < len(opts) and opts[i] != 255:
        if opts[i] == 0:
            i += 1
            continue
        codes.append(opts[i])
        i += 2 + opts[i + 1]
    return codes


# ---- 9: the small ones ---------------------------------------------------------------------

def test_9_chip_lock_value_nodelay_and_time_limits(model, vm):
    server = _listener()
    thread = _echo_once(server)
    proc = vm(
        """
nic = open_nic()
nic.ifconfig(("10.0.0.2", "255.255.255.0", "10.0.0.1", "0.0.0.0"))
s = nic.socket(nic.AF_INET, nic.SOCK_STREAM)
s.connect(("10.0.0.1", $port))
s.setsockopt(6, 1, 1)   # IPPROTO_TCP, TCP_NODELAY: what firmware/link_tcp.py does
nic.link_up()           # a read: the write before it has reached the chip
say("NODELAY")
wait()
s.close()
u = nic.socket(nic.AF_INET, nic.SOCK_DGRAM)
u.bind(("0.0.0.0", 5893))
say("STALL")
wait()
try:
    u.sendto(b"x", ("10.0.0.1", 9))
    say("SENT?")
except OSError as e:
    say("STALLED", e.errno)
""",
        model,
        port=server.getsockname()[1],
    )
    proc.expect("NODELAY")
    chip = model.chip
    assert chip.sockets[0].regs[chip.map.sn_mr] & 0x20  # Sn_MR.ND
    proc.reply()
    proc.expect("STALL")
    with model.lock:
        chip.stalled = True  # commands are accepted and never carried out
    proc.reply()
    assert proc.expect("STALLED", timeout=15) == "110"
    proc.finish()
    thread.join(timeout=10)
    server.close()
    if chip.kind == "w6100":
        assert chip.lock_writes and all(v in (0xCE, 0xFF, 0x3A, 0xC5) for _, v in chip.lock_writes)
        assert (0x41F4, 0xFF) in chip.lock_writes  # CHPLCKR re-locked as ioLibrary does


def test_9_a_counter_that_never_settles_is_an_error(model, vm):
    proc = vm(
        """
nic = open_nic()
u = nic.socket(nic.AF_INET, nic.SOCK_DGRAM)
u.bind(("0.0.0.0", 5894))
say("FLAP")
wait()
try:
    u.sendto(b"x", ("10.0.0.1", 9))
    say("SENT?")
except OSError as e:
    say("UNSTABLE", e.errno)
""",
        model,
    )
    proc.expect("FLAP")
    with model.lock:
        model.chip.flapping = True
    proc.reply()
    assert proc.expect("UNSTABLE", timeout=15) == "110"
    proc.finish()


@pytest.mark.parametrize("kind", ["w5500", "w6100"])
def test_9_phy_status_bits(kind):
    """W6100 PHYSR: CABOFF (bit 7) unplugged, LNK (bit 0); 100BASE-TX full duplex has the
    DPX and SPD bits at 0 (w6100.h). W5500 PHYCFGR: LNK, SPD, DPX bits 0-2 (p.43)."""
    from wiznet_model import Chip

    chip = Chip(kind, link_delay_s=0.0)  # strict, but the link is up at once
    phy = chip.map.phy
    chip.set_link(False)
    down = chip.common[phy]
    chip.set_link(True)
    up = chip.common[phy]
    if kind == "w6100":
        assert (down, up) == (0x80, 0x01)
    else:
        assert (down & 0x07, up & 0x07) == (0x00, 0x07)
    chip.close()
