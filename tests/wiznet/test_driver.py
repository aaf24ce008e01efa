"""The WIZnet driver in the real MicroPython VM against the register-level chip model."""

from __future__ import annotations

import contextlib
import socket
import struct
import subprocess
import threading
import time

import pytest

from .conftest import CHIPS


def _serve_one(server: socket.socket) -> None:
    """Echo one connection until the peer closes or resets it."""
    conn, _ = server.accept()
    with conn, contextlib.suppress(ConnectionResetError):
        while data := conn.recv(65536):
            conn.sendall(data)


def _echo_server() -> tuple[socket.socket, threading.Thread]:
    """A host TCP echo server on loopback serving one connection."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    thread = threading.Thread(target=_serve_one, args=(server,), daemon=True)
    thread.start()
    return server, thread


def test_the_bring_up_code_leaves_the_heap_once_the_driver_runs(model, vm):
    # wiznet_up.py (reset, identify, buffers, MAC, both chips' register maps) is dropped
    # after WIZnet() starts: what the driver keeps is its chip's map and its buffers, less
    # than the module itself costs (a stray reference to its code would keep it all)
    proc = vm(
        """
import gc, sys
gc.collect()
a = gc.mem_alloc()
nic = open_nic(link=False)
gc.collect()
b = gc.mem_alloc()
import wiznet_up
gc.collect()
say("HELD", "wiznet_up" in sys.modules, b - a, gc.mem_alloc() - b)
""",
        model,
    )
    found = proc.expect("HELD").split()
    proc.finish()
    assert found[0] == "True"  # (imported again just now, to measure it)
    held, module = int(found[1]), int(found[2])
    assert held < module, (held, module)


def test_identify_configure_and_reset(model, vm):
    proc = vm(
        """
nic = open_nic(link=False)
say("LINK", nic.link_up())
say("CHIP", nic.chip[0], nic.wait_link(3000))  # the register map: its name first
nic.ifconfig(("10.0.0.2", "255.255.255.0", "10.0.0.1", "10.0.0.53"))
say("IFCONFIG", nic.ifconfig())
say("MAC", nic.mac.hex())
big = open_nic(chip=$chip, buffers=(8, 2, 2, 2, 2, 0, 0, 0))
socks = []
try:
    for i in range(9):
        s = big.socket(big.AF_INET, big.SOCK_DGRAM)
        s.bind(("0.0.0.0", 7000 + i))
        socks.append(s)
except OSError as e:
    say("FULL", len(socks), e.errno)
try:
    open_nic(buffers=(16, 2, 0, 0, 0, 0, 0, 0))
except ValueError as e:
    say("BADSPLIT", e)
""",
        model,
        chip=repr(model.chip.kind),
    )
    name = model.chip.map.name
    assert proc.expect("LINK") == "False"  # the model's PHY link comes up late
    assert proc.expect("CHIP") == f"{name} True"
    assert proc.expect("IFCONFIG") == "('10.0.0.2', '255.255.255.0', '10.0.0.1', '10.0.0.53')"
    mac = bytes.fromhex(proc.expect("MAC"))
    assert mac[0] & 0x03 == 0x02  # locally administered unicast
    assert proc.expect("FULL") == "5 12"  # the three 0 KB sockets are not handed out
    assert "summing to <= 16" in proc.expect("BADSPLIT")
    proc.finish()
    chip = model.chip
    m = chip.map
    assert bytes(chip.common[m.shar : m.shar + 6]) == mac
    assert [s.regs[m.sn_txbuf_size] for s in chip.sockets] == [8, 2, 2, 2, 2, 0, 0, 0]
    assert [s.regs[m.sn_rxbuf_size] for s in chip.sockets] == [8, 2, 2, 2, 2, 0, 0, 0]
    assert chip.resets >= 4  # power-on, then a RSTn pulse and a soft reset per open_nic()
    if chip.kind == "w6100":
        assert not chip.net_unlocked and not chip.chip_unlocked  # locks closed again


def test_wrong_chip_and_silent_bus(model, vm):
    other = "w6100" if model.chip.kind == "w5500" else "w5500"
    proc = vm(
        """
try:
    open_nic(chip=$chip)
except OSError as e:
    say("WRONG", e.args[0])
""",
        model,
        chip=repr(other),
    )
    assert proc.expect("WRONG").startswith(f"no {other.upper()} answered on SPI")
    proc.finish()
    silent = vm(
        """
for chip in (None, "w5500", "w6100"):
    try:
        open_nic(chip=chip)
    except OSError as e:
        say("SILENT", e.args[0])
"""
    )
    assert silent.expect("SILENT") == (
        "no W6100 or W5500 answered on SPI (SPI(0, baudrate=20000000, sck=18, mosi=19, "
        "miso=16), cs=Pin(17)): check wiring and power"
    )
    assert silent.expect("SILENT").startswith("no W5500 answered on SPI (SPI(0,")
    assert silent.expect("SILENT").startswith("no W6100 answered on SPI (SPI(0,")
    silent.finish()


@pytest.mark.parametrize("intr", ["pin", "polled"])
def test_tcp_client_frames_wrap_the_rings(model, vm, intr):
    """Frames of every size around the 2 KB ring, 107 KB in all: the rings wrap many times and
    the 16-bit pointers wrap past 0xFFFF; each frame must come back intact."""
    server, thread = _echo_server()
    port = server.getsockname()[1]
    proc = vm(
        """
nic = open_nic($options)
nic.ifconfig(("10.0.0.2", "255.255.255.0", "10.0.0.1", "0.0.0.0"))
s = nic.socket(nic.AF_INET, nic.SOCK_STREAM)
s.connect(nic.getaddrinfo("10.0.0.1", $port)[0][-1])
sizes = (1, 7, 2047, 2048, 2049, 3000, 16384, 511, 4096, 16385, 5, 65536 - 2048)
ok = 0
total = 0
for i, size in enumerate(sizes):
    frame = bytes((i * 31 + k) & 0xFF for k in range(size))
    s.sendall(frame)
    got = bytearray(size)
    mv = memoryview(got)
    n = 0
    while n < size:
        n += s.recv_into(mv[n:])
    ok += got == frame
    total += size
say("FRAMES", ok, len(sizes), total)
s.close()
""",
        model,
        options="" if intr == "pin" else "intr=None",
        port=port,
        heap=2_000_000,
    )
    assert proc.expect("FRAMES") == "12 12 110021"
    proc.finish()
    thread.join(timeout=10)
    server.close()
    sock = model.chip.sockets[0]
    assert sock.jumped is not None  # the pointers jumped when the connection was established
    # ... and the driver wrote from there on, the 16-bit pointer wrapping past 0xFFFF
    assert sock.tx_wr == (sock.jumped[0] + 110021) & 0xFFFF


def test_nonblocking_connect_poll_and_asyncio_streams(model, vm):
    server, thread = _echo_server()
    port = server.getsockname()[1]
    proc = vm(
        """
import errno, select, asyncio
nic = open_nic()
nic.ifconfig(("10.0.0.2", "255.255.255.0", "10.0.0.1", "0.0.0.0"))
s = nic.socket(nic.AF_INET, nic.SOCK_STREAM)
s.setblocking(False)
try:
    s.connect(("10.0.0.1", $port))
except OSError as e:
    say("INPROGRESS", e.errno == errno.EINPROGRESS)
p = select.poll()
p.register(s, select.POLLOUT)
say("WRITABLE", p.poll(5000)[0][1] & select.POLLOUT)
p.modify(s, select.POLLIN)
say("IDLE", p.poll(50))
say("NODATA", s.read(10))

async def exchange():
    stream = asyncio.StreamReader(s)
    payload = bytes(range(256)) * 64
    for _ in range(3):
        stream.write(b"HDR" + payload)
        await stream.drain()
        got = bytearray(3 + len(payload))
        mv = memoryview(got)
        n = 0
        while n < len(got):
            n += await stream.readinto(mv[n:])
        if bytes(got) != b"HDR" + payload:
            return False
    return True

say("ASYNC", asyncio.run(exchange()))
s.close()
""",
        model,
        port=port,
    )
    assert proc.expect("INPROGRESS") == "True"
    assert proc.expect("WRITABLE") == "4"
    assert proc.expect("IDLE") == "[]"
    assert proc.expect("NODATA") == "None"
    assert proc.expect("ASYNC") == "True"
    proc.finish()
    thread.join(timeout=10)
    server.close()


def test_listener_accepts_twice_and_udp_datagrams(model, vm):
    proc = vm(
        """
nic = open_nic()
nic.ifconfig(("10.0.0.2", "255.255.255.0", "10.0.0.1", "0.0.0.0"))
srv = nic.socket(nic.AF_INET, nic.SOCK_STREAM)
srv.bind(("0.0.0.0", 5880))
srv.listen(1)
u = nic.socket(nic.AF_INET, nic.SOCK_DGRAM)
u.bind(("0.0.0.0", 5881))
say("LISTENING")
for i in range(2):
    conn, peer = srv.accept()
    data = conn.recv(100)
    conn.sendall(b"echo:" + data)
    say("PEER", peer[0], peer[1] > 0)
    conn.close()
for i in range(2):
    data, addr = u.recvfrom(1500)
    u.sendto(b"pong:" + data, addr)
    say("DGRAM", len(data), addr[0])
srv.close()
u.close()
""",
        model,
    )
    proc.expect("LISTENING")
    with model.lock:
        tcp_port = model.chip.tcp_port(5880)
        udp_port = model.chip.udp_port(5881)
    for i in range(2):
        with socket.create_connection(("127.0.0.1", tcp_port), timeout=10) as c:
            c.sendall(b"hello %d" % i)
            assert c.recv(100) == b"echo:hello %d" % i
        assert proc.expect("PEER") == "127.0.0.1 True"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.settimeout(10)
        u.bind(("127.0.0.1", 0))
        for payload in (b"x" * 1400, b"ping"):
            u.sendto(payload, ("127.0.0.1", udp_port))
            data, addr = u.recvfrom(2000)
            assert data == b"pong:" + payload
            assert addr == ("127.0.0.1", udp_port)
            assert proc.expect("DGRAM") == f"{len(payload)} 127.0.0.1"
    proc.finish()


def test_peer_reset_mid_frame_and_orderly_close(model, vm):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(2)
    port = server.getsockname()[1]
    proc = vm(
        """
nic = open_nic()
nic.ifconfig(("10.0.0.2", "255.255.255.0", "10.0.0.1", "0.0.0.0"))
for case in ("reset", "fin"):
    s = nic.socket(nic.AF_INET, nic.SOCK_STREAM)
    s.connect(("10.0.0.1", $port))
    say("CONNECTED")
    wait()
    got = bytearray()
    try:
        while True:
            chunk = s.recv(1000)
            if not chunk:
                say("EOF", len(got))
                break
            got += chunk
    except OSError as e:
        say("ERROR", len(got), e.errno)
    s.close()
say("FREE", len(nic._free))
""",
        model,
        port=port,
    )
    proc.expect("CONNECTED")
    conn, _ = server.accept()
    header = struct.pack("<BBBHH", 1, 5, 0, 1, 4000)
    conn.sendall(header + bytes(1500))  # half a frame, then RST
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()
    proc.reply()
    assert proc.expect("ERROR") == "1507 104"  # every byte before the reset, then ECONNRESET
    proc.expect("CONNECTED")
    conn, _ = server.accept()
    conn.sendall(b"z" * 3000)
    conn.shutdown(socket.SHUT_WR)
    proc.reply()
    assert proc.expect("EOF") == "3000"
    assert conn.recv(10) == b""  # the driver's close sent FIN
    conn.close()
    assert proc.expect("FREE") == "8"  # every hardware socket back in the pool
    proc.finish()
    server.close()


def test_refused_and_timed_out_connects(model, vm):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    model.chip.unreachable.add("10.9.9.9")
    proc = vm(
        """
nic = open_nic()
nic.ifconfig(("10.0.0.2", "255.255.255.0", "10.0.0.1", "0.0.0.0"))
for ip in ("10.0.0.1", "10.9.9.9"):
    s = nic.socket(nic.AF_INET, nic.SOCK_STREAM)
    try:
        s.connect((ip, $port))
        say("CONNECTED?")
    except OSError as e:
        say("FAILED", e.errno)
    s.close()
u = nic.socket(nic.AF_INET, nic.SOCK_DGRAM)
try:
    u.sendto(b"x", ("10.9.9.9", 9))
except OSError as e:
    say("ARP", e.errno)
say("FREE", len(nic._free))
""",
        model,
        port=port,
    )
    assert proc.expect("FAILED") == "111"  # ECONNREFUSED
    assert proc.expect("FAILED") == "110"  # ETIMEDOUT
    assert proc.expect("ARP") == "110"
    assert proc.expect("FREE") == "7"  # the UDP socket is still open
    proc.finish()


def test_link_down_then_up(model, vm):
    server, thread = _echo_server()
    port = server.getsockname()[1]
    proc = vm(
        """
nic = open_nic()
nic.ifconfig(("10.0.0.2", "255.255.255.0", "10.0.0.1", "0.0.0.0"))
s = nic.socket(nic.AF_INET, nic.SOCK_STREAM)
s.connect(("10.0.0.1", $port))
say("UP", nic.link_up())
wait()
say("DOWN", nic.link_up())
try:
    s.sendall(b"lost" * 100)
    say("SENT?")
except OSError as e:
    say("SENDFAIL", e.errno)
s.close()
say("WAITING")
wait()
say("UP", nic.link_up())
s = nic.socket(nic.AF_INET, nic.SOCK_STREAM)
s.connect(("10.0.0.1", $port))
s.sendall(b"again")
say("ECHO", s.recv(10))
s.close()
""",
        model,
        port=port,
    )
    assert proc.expect("UP") == "True"
    with model.lock:
        model.chip.set_link(False)
    proc.reply()
    assert proc.expect("DOWN") == "False"
    assert proc.expect("SENDFAIL") == "110"
    proc.expect("WAITING")
    thread.join(timeout=10)
    server2_thread = threading.Thread(target=_serve_one, args=(server,), daemon=True)
    server2_thread.start()
    with model.lock:
        model.chip.set_link(True)
    proc.reply()
    assert proc.expect("UP") == "True"
    assert proc.expect("ECHO") == "b'again'"
    proc.finish()
    server.close()




def test_rx_buffer_full_holds_back_the_sender(model, vm):
    """10 KB sent to a 2 KB RX ring that is not being read: the ring fills to exactly its
    size, the rest waits in the network, and nothing is lost once the node reads."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    proc = vm(
        """
import time
nic = open_nic()
nic.ifconfig(("10.0.0.2", "255.255.255.0", "10.0.0.1", "0.0.0.0"))
s = nic.socket(nic.AF_INET, nic.SOCK_STREAM)
s.connect(("10.0.0.1", $port))
say("CONNECTED")
wait()
start = time.ticks_ms()
s._refresh()
while s._rsr < 2048 and time.ticks_diff(time.ticks_ms(), start) < 10000:
    time.sleep_ms(10)
    s._refresh()
time.sleep_ms(100)
s._refresh()
say("PENDING", s._rsr)
got = bytearray()
while len(got) < 10240:
    got += s.recv(4096)
say("ALL", got == bytes(i & 0xFF for i in range(10240)))
s.close()
""",
        model,
        port=port,
    )
    proc.expect("CONNECTED")
    conn, _ = server.accept()
    conn.sendall(bytes(i & 0xFF for i in range(10240)))
    proc.reply()
    assert proc.expect("PENDING") == "2048"
    assert proc.expect("ALL") == "True"
    proc.finish()
    conn.close()
    server.close()


@pytest.mark.parametrize("kind", CHIPS)
def test_model_decodes_spi_frames(kind):
    """The model on its own: an identification read and a register write, frame by frame."""
    from wiznet_model import Chip

    chip = Chip(kind)
    ident_addr, ident = (0x0039, b"\x04") if kind == "w5500" else (0x0000, b"\x61\x00")
    chip.select()
    miso = chip.clock(bytes([ident_addr >> 8, ident_addr & 0xFF, 0x00]) + bytes(len(ident)))
    chip.deselect()
    assert miso[3:] == ident
    sipr = chip.map.sipr
    if kind == "w6100":
        chip.select()
        chip.clock(bytes([0x41, 0xF5, 0x04, 0x3A]))  # NETLCKR unlock
        chip.deselect()
    chip.select()
    chip.clock(bytes([sipr >> 8, sipr & 0xFF, 0x04]) + bytes([192, 168, 1, 9]))
    chip.deselect()
    assert bytes(chip.common[sipr : sipr + 4]) == bytes([192, 168, 1, 9])
    assert chip.counters() == {"transactions": 3 if kind == "w6100" else 2,
                               "spi_bytes": (4 + 3 + len(ident) + 7)
                               if kind == "w6100" else (3 + len(ident) + 7)}


def test_two_connections_share_the_interrupt_line_under_asyncio(model, vm):
    """Two accepted connections echoed by two asyncio tasks at once: each socket must see its
    own events through the one shared INTn line, and no byte may be lost or reordered."""
    proc = vm(
        """
import asyncio
nic = open_nic()
nic.ifconfig(("10.0.0.2", "255.255.255.0", "10.0.0.1", "0.0.0.0"))
srv = nic.socket(nic.AF_INET, nic.SOCK_STREAM)
srv.bind(("0.0.0.0", 6000))
srv.listen(2)
say("LISTENING")
conns = [srv.accept()[0] for _ in range(2)]
for c in conns:
    c.setblocking(False)

async def echo(sock):
    stream = asyncio.StreamReader(sock)
    total = 0
    while True:
        data = await stream.read(1500)
        if not data:
            return total
        total += len(data)
        stream.write(data)
        await stream.drain()

async def main():
    return await asyncio.gather(echo(conns[0]), echo(conns[1]))

say("ECHOED", asyncio.run(main()))
for c in conns:
    c.close()
srv.close()
""",
        model,
    )
    proc.expect("LISTENING")
    with model.lock:
        port = model.chip.tcp_port(6000)
    clients = [socket.create_connection(("127.0.0.1", port), timeout=20) for _ in range(2)]
    results: dict[int, bytes] = {}

    def talk(i: int, sock: socket.socket) -> None:
        sent = bytearray()
        got = bytearray()
        for k in range(40):
            chunk = bytes(((i * 7 + k + j) & 0xFF) for j in range(100 + 97 * k))
            sock.sendall(chunk)
            sent += chunk
            while len(got) < len(sent):
                got += sock.recv(65536)
        sock.shutdown(socket.SHUT_WR)
        results[i] = bytes(got) if got == sent else b""

    threads = [threading.Thread(target=talk, args=(i, c)) for i, c in enumerate(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    expected = sum(100 + 97 * k for k in range(40))
    assert [len(results.get(i, b"")) for i in range(2)] == [expected, expected]
    assert proc.expect("ECHOED") == f"[{expected}, {expected}]"
    proc.finish()
    for c in clients:
        c.close()


@pytest.mark.parametrize("kind", CHIPS)
def test_model_lock_and_interrupt_clear_rules(kind):
    """W6100 network registers ignore writes while NETLCKR is locked; Sn_IR clears by writing
    ones to Sn_IR (W5500) or to Sn_IRCLR (W6100)."""
    from wiznet_model import Chip

    chip = Chip(kind)
    m = chip.map

    def write(bsb: int, addr: int, data: bytes) -> None:
        chip.select()
        chip.clock(bytes([addr >> 8, addr & 0xFF, (bsb << 3) | 0x04]) + data)
        chip.deselect()

    write(0, m.sipr, bytes([10, 1, 2, 3]))
    locked_result = bytes(chip.common[m.sipr : m.sipr + 4])
    assert locked_result == (bytes(4) if kind == "w6100" else bytes([10, 1, 2, 3]))
    sock = chip.sockets[2]
    sock.ir = 0x1F
    write(9, m.sn_ir, b"\x05")
    assert sock.ir == (0x1A if kind == "w5500" else 0x1F)  # W6100: Sn_IR is read-only
    if kind == "w6100":
        write(9, m.sn_irclr, b"\x05")
        assert sock.ir == 0x1A
    chip.close()


def test_model_stalled_through_the_reset(model, vm):
    """A loaded machine can leave the model's thread unscheduled for a while: the bridge's
    RSTn edges and first probe then reach it together, late. The chip's reset and settle
    times are the driver's (stamped by the VM when it drives the pins), not the model's
    thread's, so the probe finds the chip ready as silicon would be."""
    with model.lock:  # the model's thread cannot handle the bridge meanwhile
        proc = vm("nic = open_nic(link=False)\nsay('CHIP', nic.chip[0])\n", model)
        time.sleep(0.6)  # past the driver's 100 + 100 ms reset and its 100 ms probe
    assert proc.expect("CHIP") == model.chip.map.name
    proc.finish()
    assert model.chip.rst_low_s is not None and model.chip.rst_low_s >= 0.099
    assert model.chip.settle_s is not None and model.chip.settle_s >= 0.099


def test_bridge_stamps_are_on_the_host_monotonic_clock(micropython):
    """The model trusts the VM's ticks_us() to count the host's monotonic microseconds (the
    unix port reads CLOCK_MONOTONIC, as time.monotonic() does): check it on this VM."""
    from wiznet_model.server import stamp_time

    before = time.monotonic()
    out = subprocess.run([micropython, "-c", "import time; print(time.ticks_us() & 0xFFFFFFFF)"],
                         capture_output=True, text=True, timeout=30, check=True)
    after = time.monotonic()
    assert before - 1e-6 <= stamp_time(int(out.stdout)) <= after  # ticks_us() rounds down
    # across the 2**30 us wrap: stamped at 5, now 2**30 + 7 us -> 2 us ago
    assert stamp_time(5, now_ns=((1 << 30) + 7) * 1000) == pytest.approx(((1 << 30) + 5) * 1e-6)
