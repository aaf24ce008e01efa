"""Register-level model of the WIZnet W5500 and W6100, written from their datasheets.

The model decodes SPI frames (16-bit address, control byte BSB[4:0]|RWB|OM, data), keeps the
register file and the per-socket TX/RX ring buffers, and executes socket commands by
bridging each hardware socket to a real host socket on loopback: a TCP CONNECT opens a host
connection, LISTEN binds a host listener, SEND writes the ring bytes to the host socket and
received host bytes land in the RX ring. Status (Sn_SR), interrupt (Sn_IR, SIR) and pointer
registers change the way the chips document. It counts SPI transactions and bytes.

Model choices where the datasheets leave freedom: every destination address is reached on
127.0.0.1 (the same port, or the one `port_map` gives), except addresses listed in
`unreachable`, where ARP/SYN times out after `retransmit_s`; a TCP RST from the peer sets
DISCON and state CLOSED; while the link is down nothing moves and a pending SEND ends in
TIMEOUT.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import time
from dataclasses import dataclass, field

CMD_OPEN, CMD_LISTEN, CMD_CONNECT, CMD_DISCON = 0x01, 0x02, 0x04, 0x08
CMD_CLOSE, CMD_SEND, CMD_SEND_KEEP, CMD_RECV = 0x10, 0x20, 0x22, 0x40
IR_CON, IR_DISCON, IR_RECV, IR_TIMEOUT, IR_SENDOK = 0x01, 0x02, 0x04, 0x08, 0x10
SR_CLOSED, SR_INIT, SR_LISTEN, SR_SYNSENT = 0x00, 0x13, 0x14, 0x15
SR_ESTABLISHED, SR_FIN_WAIT, SR_CLOSE_WAIT, SR_UDP = 0x17, 0x18, 0x1C, 0x22
MR_TCP, MR_UDP = 0x01, 0x02


@dataclass(frozen=True)
class ChipMap:
    """Addresses of one chip (common registers in BSB 0, socket registers in BSB 4n+1)."""

    name: str
    ident: dict[int, int]  # common address -> reset value of the identification bytes
    common_size: int
    socket_size: int
    phy: int
    sir: int
    simr: int
    shar: int
    gar: int
    subr: int
    sipr: int
    rtr: int
    rcr: int
    sn_mr: int
    sn_cr: int
    sn_ir: int
    sn_irclr: int | None  # None: write 1s to Sn_IR itself to clear (W5500)
    sn_sr: int
    sn_port: int
    sn_dipr: int
    sn_dport: int
    sn_imr: int
    sn_txbuf_size: int
    sn_rxbuf_size: int
    sn_tx_fsr: int
    sn_tx_rd: int
    sn_tx_wr: int
    sn_rx_rsr: int
    sn_rx_rd: int
    sn_rx_wr: int
    extra_reset: dict[int, int] = field(default_factory=dict)


W5500_MAP = ChipMap(
    name="W5500", ident={0x39: 0x04}, common_size=0x40, socket_size=0x30,
    phy=0x2E, sir=0x17, simr=0x18, shar=0x09, gar=0x01, subr=0x05, sipr=0x0F, rtr=0x19, rcr=0x1B,
    sn_mr=0x00, sn_cr=0x01, sn_ir=0x02, sn_irclr=None, sn_sr=0x03, sn_port=0x04, sn_dipr=0x0C,
    sn_dport=0x10, sn_imr=0x2C, sn_txbuf_size=0x1F, sn_rxbuf_size=0x1E, sn_tx_fsr=0x20,
    sn_tx_rd=0x22, sn_tx_wr=0x24, sn_rx_rsr=0x26, sn_rx_rd=0x28, sn_rx_wr=0x2A,
)

W6100_MAP = ChipMap(
    name="W6100", ident={0x0000: 0x61, 0x0001: 0x00, 0x0002: 0x46, 0x0003: 0x61},
    common_size=0x4220, socket_size=0x0230,
    phy=0x3000, sir=0x2101, simr=0x2114, shar=0x4120, gar=0x4130, subr=0x4134, sipr=0x4138,
    rtr=0x4200, rcr=0x4204,
    sn_mr=0x0000, sn_cr=0x0010, sn_ir=0x0020, sn_irclr=0x0028, sn_sr=0x0030, sn_port=0x0114,
    sn_dipr=0x0120, sn_dport=0x0140, sn_imr=0x0024, sn_txbuf_size=0x0200, sn_rxbuf_size=0x0220,
    sn_tx_fsr=0x0204, sn_tx_rd=0x0208, sn_tx_wr=0x020C, sn_rx_rsr=0x0224, sn_rx_rd=0x0228,
    sn_rx_wr=0x022C,
    extra_reset={0x2004: 0x80, 0x2005: 0x80},  # SYCR0 (not in reset), SYCR1 (IEN)
)

W6100_SYCR0, W6100_SYCR1 = 0x2004, 0x2005
W6100_CHPLCKR, W6100_NETLCKR, W6100_PHYLCKR = 0x41F4, 0x41F5, 0x41F6


def _u16(buf: bytearray, at: int) -> int:
    return (buf[at] << 8) | buf[at + 1]


def _put16(buf: bytearray, at: int, value: int) -> None:
    buf[at] = (value >> 8) & 0xFF
    buf[at + 1] = value & 0xFF


class HwSocket:
    """One hardware socket: its register block, rings and the host socket behind it."""

    def __init__(self, chip: Chip, n: int) -> None:
        self.chip = chip
        self.n = n
        self.regs = bytearray(chip.map.socket_size)
        self.tx = bytearray(16 * 1024)
        self.rx = bytearray(16 * 1024)
        self.host: socket.socket | None = None
        self.listen_port: int | None = None
        self.pending = bytearray()  # TCP bytes SENT by the driver, not yet taken by the host
        self.send_end = 0  # TX_RD value once the current SEND completes
        self.sending = False
        self.deadline: float | None = None  # SYN / SEND retransmission timeout
        self.connecting = False
        self.reset()

    def reset(self) -> None:
        self.drop_host()
        m = self.chip.map
        self.regs[:] = bytes(len(self.regs))
        self.regs[m.sn_txbuf_size] = 2
        self.regs[m.sn_rxbuf_size] = 2
        self.regs[m.sn_imr] = 0xFF
        self.sr = SR_CLOSED
        self.ir = 0
        self.tx_rd = self.tx_wr = self.rx_rd = self.rx_wr = 0
        self.pending.clear()
        self.sending = False
        self.deadline = None
        self.connecting = False
        self.listen_port = None

    def drop_host(self, abort: bool = False) -> None:
        if self.host is not None:
            if abort:
                self.host.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
            self.chip.unwatch(self.host)
            self.host.close()
            self.host = None

    @property
    def txsize(self) -> int:
        return self.regs[self.chip.map.sn_txbuf_size] * 1024

    @property
    def rxsize(self) -> int:
        return self.regs[self.chip.map.sn_rxbuf_size] * 1024

    @property
    def mode(self) -> int:
        return self.regs[self.chip.map.sn_mr] & 0x0F

    @property
    def rsr(self) -> int:
        return (self.rx_wr - self.rx_rd) & 0xFFFF

    def publish(self) -> None:
        """Write the chip-maintained values into the register block."""
        m, r = self.chip.map, self.regs
        r[m.sn_sr] = self.sr
        r[m.sn_ir] = self.ir
        used = (self.tx_wr - self.tx_rd) & 0xFFFF
        _put16(r, m.sn_tx_fsr, max(0, self.txsize - used))
        _put16(r, m.sn_tx_rd, self.tx_rd)
        _put16(r, m.sn_rx_rsr, self.rsr)
        _put16(r, m.sn_rx_wr, self.rx_wr)

    def ring_read(self, ring: bytearray, size: int, ptr: int, n: int) -> bytes:
        if size == 0:
            return bytes(n)
        start = ptr % size
        if start + n <= size:
            return bytes(ring[start : start + n])
        out = bytearray()
        while len(out) < n:
            start = (ptr + len(out)) % size
            out += ring[start : start + min(size - start, n - len(out))]
        return bytes(out)

    def ring_write(self, ring: bytearray, size: int, ptr: int, data: bytes) -> None:
        if size == 0:
            return
        done = 0
        while done < len(data):
            start = (ptr + done) % size
            take = min(size - start, len(data) - done)
            ring[start : start + take] = data[done : done + take]
            done += take


class Chip:
    """The register file, SPI decoder and socket engine of one W5500 or W6100."""

    def __init__(self, kind: str, *, retransmit_s: float = 0.2) -> None:
        if kind not in ("w5500", "w6100"):
            raise ValueError(f"unknown chip {kind!r}")
        self.kind = kind
        self.map = W5500_MAP if kind == "w5500" else W6100_MAP
        self.retransmit_s = retransmit_s
        self.unreachable: set[str] = set()
        self.port_map: dict[int, int] = {}  # destination port -> host port (e.g. DHCP's 67)
        self.link = True
        self.common = bytearray(self.map.common_size)
        self.sockets = [HwSocket(self, n) for n in range(8)]
        self.listeners: dict[int, socket.socket] = {}
        self.udp_ports: dict[int, int] = {}  # chip port -> host port
        self.watch_hook = None  # set by the server: called as hook(sock, add: bool)
        self.transactions = 0
        self.spi_bytes = 0
        self.resets = 0
        self._frame = bytearray()
        self._addr = 0
        self._ctrl = 0
        self.reset()

    # ---- bookkeeping --------------------------------------------------------------------

    def counters(self) -> dict[str, int]:
        return {"transactions": self.transactions, "spi_bytes": self.spi_bytes}

    def unwatch(self, sock: socket.socket) -> None:
        if self.watch_hook:
            self.watch_hook(sock, False)

    def watch(self, sock: socket.socket) -> None:
        if self.watch_hook:
            self.watch_hook(sock, True)

    def reset(self) -> None:
        self.resets += 1
        m = self.map
        for s in self.sockets:
            s.reset()
        for lst in self.listeners.values():
            self.unwatch(lst)
            lst.close()
        self.listeners.clear()
        self.udp_ports.clear()
        self.common[:] = bytes(len(self.common))
        for addr, value in m.ident.items():
            self.common[addr] = value
        for addr, value in m.extra_reset.items():
            self.common[addr] = value
        _put16(self.common, m.rtr, 2000)
        self.common[m.rcr] = 8
        self.net_unlocked = self.kind == "w5500"
        self.chip_unlocked = False
        self._publish_common()

    def _publish_common(self) -> None:
        m = self.map
        if self.kind == "w5500":
            self.common[m.phy] = 0xB8 | (0x07 if self.link else 0x00)
        else:
            self.common[m.phy] = 0x06 | (0x01 if self.link else 0x00)
        sir = 0
        for s in self.sockets:
            s.publish()
            if s.ir & s.regs[m.sn_imr]:
                sir |= 1 << s.n
        self.common[m.sir] = sir

    def interrupt_pin(self) -> int:
        """Level of INTn: 0 while an enabled socket interrupt is pending."""
        m = self.map
        if self.kind == "w6100" and not self.common[W6100_SYCR1] & 0x80:
            return 1
        return 0 if self.common[m.sir] & self.common[m.simr] else 1

    def set_link(self, up: bool) -> None:
        self.link = up
        self._publish_common()

    # ---- SPI ----------------------------------------------------------------------------

    def select(self) -> None:
        self._frame.clear()
        self.transactions += 1

    def deselect(self) -> None:
        self._frame.clear()

    def clock(self, mosi: bytes) -> bytes:
        """Clock len(mosi) bytes through the chip within the current CS window; return MISO."""
        self.spi_bytes += len(mosi)
        miso = bytearray()
        pos = 0
        while len(self._frame) < 3 and pos < len(mosi):
            self._frame.append(mosi[pos])
            miso.append(0)
            pos += 1
            if len(self._frame) == 3:
                self._addr = (self._frame[0] << 8) | self._frame[1]
                self._ctrl = self._frame[2]
        if pos < len(mosi):
            data = mosi[pos:]
            bsb, write = self._ctrl >> 3, bool(self._ctrl & 0x04)
            if write:
                self._write(bsb, self._addr, bytes(data))
                miso += bytes(len(data))
            else:
                miso += self._read(bsb, self._addr, len(data))
            self._addr = (self._addr + len(data)) & 0xFFFF
        return bytes(miso)

    def _read(self, bsb: int, addr: int, n: int) -> bytes:
        if bsb == 0:
            self._publish_common()
            return bytes(self._span(self.common, addr, n))
        sock = self._socket_of(bsb)
        if sock is None:
            return bytes(n)
        kind = (bsb - 1) % 4
        if kind == 0:
            sock.publish()
            return bytes(self._span(sock.regs, addr, n))
        if kind == 1:
            return sock.ring_read(sock.tx, sock.txsize, addr, n)
        return sock.ring_read(sock.rx, sock.rxsize, addr, n)

    @staticmethod
    def _span(block: bytearray, addr: int, n: int) -> bytes:
        out = bytes(block[addr : addr + n])
        return out + bytes(n - len(out))

    def _socket_of(self, bsb: int) -> HwSocket | None:
        n = (bsb - 1) // 4
        if bsb == 0 or n >= 8:
            return None
        return self.sockets[n]

    def _write(self, bsb: int, addr: int, data: bytes) -> None:
        if bsb == 0:
            for i, value in enumerate(data):
                self._write_common(addr + i, value)
            self._publish_common()
            return
        sock = self._socket_of(bsb)
        if sock is None:
            return
        kind = (bsb - 1) % 4
        if kind == 1:
            sock.ring_write(sock.tx, sock.txsize, addr, data)
            return
        if kind == 2:
            sock.ring_write(sock.rx, sock.rxsize, addr, data)
            return
        for i, value in enumerate(data):
            self._write_socket(sock, addr + i, value)
        self._publish_common()

    def _write_common(self, addr: int, value: int) -> None:
        m = self.map
        if addr >= len(self.common) or addr in m.ident or addr in (m.sir, m.phy):
            return
        if self.kind == "w5500":
            if addr == 0x00 and value & 0x80:
                self.reset()
                return
        else:
            if addr == W6100_CHPLCKR:
                self.chip_unlocked = value == 0xCE
                return
            if addr == W6100_NETLCKR:
                self.net_unlocked = value == 0x3A if value in (0x3A, 0xC5) else self.net_unlocked
                return
            if addr in (W6100_SYCR0, W6100_SYCR1):
                if not self.chip_unlocked:
                    return
                if addr == W6100_SYCR0 and not value & 0x80:
                    self.reset()
                    return
            if m.shar <= addr < m.sipr + 4 and not self.net_unlocked:
                return
        self.common[addr] = value

    def _write_socket(self, sock: HwSocket, addr: int, value: int) -> None:
        m = self.map
        if addr == m.sn_cr:
            self._command(sock, value)
        elif addr == (m.sn_irclr if m.sn_irclr is not None else m.sn_ir):
            sock.ir &= ~value
        elif addr in (m.sn_sr, m.sn_ir, m.sn_tx_fsr, m.sn_tx_fsr + 1, m.sn_tx_rd, m.sn_tx_rd + 1,
                      m.sn_rx_rsr, m.sn_rx_rsr + 1, m.sn_rx_wr, m.sn_rx_wr + 1):
            return
        elif addr in (m.sn_tx_wr, m.sn_tx_wr + 1):
            sock.regs[addr] = value
            sock.tx_wr = _u16(sock.regs, m.sn_tx_wr)
        elif addr in (m.sn_rx_rd, m.sn_rx_rd + 1):
            sock.regs[addr] = value
            sock.rx_rd = _u16(sock.regs, m.sn_rx_rd)
        elif addr < len(sock.regs):
            sock.regs[addr] = value

    # ---- socket commands ----------------------------------------------------------------

    def _command(self, s: HwSocket, cmd: int) -> None:
        m = self.map
        port = _u16(s.regs, m.sn_port)
        if cmd == CMD_OPEN:
            s.drop_host()
            s.tx_rd = s.tx_wr = s.rx_rd = s.rx_wr = 0
            _put16(s.regs, m.sn_tx_wr, 0)
            _put16(s.regs, m.sn_rx_rd, 0)
            s.pending.clear()
            s.sending = False
            s.listen_port = None
            if s.mode == MR_TCP:
                s.sr = SR_INIT
            elif s.mode == MR_UDP:
                host = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                host.bind(("127.0.0.1", 0))
                host.setblocking(False)
                s.host = host
                self.udp_ports[port] = host.getsockname()[1]
                self.watch(host)
                s.sr = SR_UDP
        elif cmd == CMD_LISTEN and s.sr == SR_INIT:
            s.sr = SR_LISTEN
            s.listen_port = port
            if port not in self.listeners:
                lst = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                lst.bind(("127.0.0.1", 0))
                lst.listen(8)
                lst.setblocking(False)
                self.listeners[port] = lst
                self.watch(lst)
        elif cmd == CMD_CONNECT and s.sr == SR_INIT:
            ip = ".".join(str(b) for b in s.regs[m.sn_dipr : m.sn_dipr + 4])
            dport = self.port_map.get(_u16(s.regs, m.sn_dport), _u16(s.regs, m.sn_dport))
            s.sr = SR_SYNSENT
            s.connecting = True
            s.deadline = time.monotonic() + self.retransmit_s
            if ip in self.unreachable or not self.link:
                return
            host = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            host.setblocking(False)
            host.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            host.connect_ex(("127.0.0.1", dport))
            s.host = host
            self.watch(host)
        elif cmd == CMD_DISCON and s.sr in (SR_ESTABLISHED, SR_CLOSE_WAIT):
            self._flush(s)
            if s.host is not None:
                with contextlib.suppress(OSError):
                    s.host.shutdown(socket.SHUT_WR)
            s.sr = SR_CLOSED if s.sr == SR_CLOSE_WAIT else SR_FIN_WAIT
            if s.sr == SR_CLOSED:
                s.drop_host()
                s.ir |= IR_DISCON
        elif cmd == CMD_CLOSE:
            if s.host is not None and s.mode == MR_TCP:
                self._flush(s)
            s.drop_host()
            s.sr = SR_CLOSED
            s.sending = False
            s.listen_port = None
        elif cmd in (CMD_SEND, CMD_SEND_KEEP):
            self._send(s)
        elif cmd == CMD_RECV:
            if s.rsr:
                s.ir |= IR_RECV
            self.pump(s)

    def _send(self, s: HwSocket) -> None:
        m = self.map
        n = (s.tx_wr - s.tx_rd) & 0xFFFF
        data = s.ring_read(s.tx, s.txsize, s.tx_rd, n)
        if s.mode == MR_UDP and s.sr == SR_UDP:
            ip = ".".join(str(b) for b in s.regs[m.sn_dipr : m.sn_dipr + 4])
            dport = self.port_map.get(_u16(s.regs, m.sn_dport), _u16(s.regs, m.sn_dport))
            if ip in self.unreachable or not self.link or s.host is None:
                s.sending = True
                s.send_end = s.tx_wr
                s.deadline = time.monotonic() + self.retransmit_s
                return
            with contextlib.suppress(OSError):
                s.host.sendto(data, ("127.0.0.1", dport))
            s.tx_rd = s.tx_wr
            s.ir |= IR_SENDOK
            return
        if s.sr not in (SR_ESTABLISHED, SR_CLOSE_WAIT):
            return
        s.pending += data
        s.send_end = s.tx_wr
        s.sending = True
        s.deadline = time.monotonic() + self.retransmit_s
        self.pump(s)

    def _flush(self, s: HwSocket) -> None:
        """Hand queued bytes to the host before a close (the chip sends them before FIN)."""
        if s.host is not None and s.pending and self.link:
            s.host.setblocking(True)
            s.host.settimeout(1.0)
            with contextlib.suppress(OSError):
                s.host.sendall(s.pending)
            s.host.setblocking(False)
            s.pending.clear()

    # ---- the network side ---------------------------------------------------------------

    def pump(self, s: HwSocket) -> None:
        """Move bytes between the socket's rings and its host socket; run its timers."""
        now = time.monotonic()
        if s.sr == SR_SYNSENT:
            if s.host is not None and self.link:
                err = s.host.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err == 0:
                    try:
                        s.host.getpeername()
                    except OSError:
                        err = errno.EINPROGRESS
                if err == 0:
                    s.sr = SR_ESTABLISHED
                    s.connecting = False
                    s.deadline = None
                    s.ir |= IR_CON
                elif err != errno.EINPROGRESS:
                    s.drop_host()
                    s.sr = SR_CLOSED
                    s.ir |= IR_DISCON
                    return
            if s.sr == SR_SYNSENT and s.deadline is not None and now >= s.deadline:
                s.drop_host()
                s.sr = SR_CLOSED
                s.ir |= IR_TIMEOUT
            return
        if s.host is None:
            if s.sending and s.deadline is not None and now >= s.deadline:
                self._timeout(s)
            return
        if not self.link:
            if s.sending and s.deadline is not None and now >= s.deadline:
                self._timeout(s)
            return
        if s.mode == MR_UDP:
            if s.sending and s.deadline is not None and now >= s.deadline:
                self._timeout(s)
            self._pump_udp(s)
            return
        if s.pending:
            try:
                sent = s.host.send(s.pending)
                del s.pending[:sent]
            except BlockingIOError:
                pass
            except OSError:
                self._peer_reset(s)
                return
        if s.sending and not s.pending:
            s.sending = False
            s.tx_rd = s.send_end
            s.deadline = None
            s.ir |= IR_SENDOK
        if s.sr in (SR_ESTABLISHED, SR_FIN_WAIT):
            room = s.rxsize - s.rsr
            while room > 0:
                try:
                    chunk = s.host.recv(room)
                except BlockingIOError:
                    break
                except OSError:
                    self._peer_reset(s)
                    return
                if not chunk:
                    if s.sr == SR_FIN_WAIT:
                        s.sr = SR_CLOSED
                        s.drop_host()
                    else:
                        s.sr = SR_CLOSE_WAIT
                    s.ir |= IR_DISCON
                    break
                s.ring_write(s.rx, s.rxsize, s.rx_wr, chunk)
                s.rx_wr = (s.rx_wr + len(chunk)) & 0xFFFF
                s.ir |= IR_RECV
                room -= len(chunk)

    def _pump_udp(self, s: HwSocket) -> None:
        assert s.host is not None
        while True:
            try:
                data, (ip, port) = s.host.recvfrom(65535)
            except (BlockingIOError, OSError):
                return
            head = bytearray(8)
            if self.kind == "w5500":
                head[0:4] = socket.inet_aton(ip)
                _put16(head, 4, port)
                _put16(head, 6, len(data))
            else:
                _put16(head, 0, len(data) & 0x07FF)
                head[2:6] = socket.inet_aton(ip)
                _put16(head, 6, port)
            if s.rxsize - s.rsr < 8 + len(data) or len(data) > 0x07FF:
                continue
            s.ring_write(s.rx, s.rxsize, s.rx_wr, bytes(head) + data)
            s.rx_wr = (s.rx_wr + 8 + len(data)) & 0xFFFF
            s.ir |= IR_RECV

    def _peer_reset(self, s: HwSocket) -> None:
        s.drop_host()
        s.sr = SR_CLOSED
        s.sending = False
        s.pending.clear()
        s.ir |= IR_DISCON

    def _timeout(self, s: HwSocket) -> None:
        if s.mode == MR_TCP:
            s.drop_host(abort=True)
            s.sr = SR_CLOSED
        s.sending = False
        s.pending.clear()
        s.tx_rd = s.tx_wr
        s.deadline = None
        s.ir |= IR_TIMEOUT

    def accept_pending(self, port: int) -> None:
        """Give a waiting host connection on `port` to a hardware socket in LISTEN."""
        lst = self.listeners.get(port)
        if lst is None or not self.link:
            return
        for s in self.sockets:
            if s.sr == SR_LISTEN and s.listen_port == port:
                try:
                    conn, peer = lst.accept()
                except BlockingIOError:
                    return
                conn.setblocking(False)
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                s.host = conn
                self.watch(conn)
                m = self.map
                s.regs[m.sn_dipr : m.sn_dipr + 4] = socket.inet_aton(peer[0])
                _put16(s.regs, m.sn_dport, peer[1])
                s.sr = SR_ESTABLISHED
                s.ir |= IR_CON
                self.pump(s)

    def pump_all(self) -> None:
        for port in list(self.listeners):
            self.accept_pending(port)
        for s in self.sockets:
            self.pump(s)
        self._publish_common()

    def tcp_port(self, chip_port: int) -> int:
        """The host port where a listener of the chip on chip_port accepts connections."""
        return self.listeners[chip_port].getsockname()[1]

    def udp_port(self, chip_port: int) -> int:
        """The host port that reaches the chip's UDP socket bound to chip_port."""
        return self.udp_ports[chip_port]

    def close(self) -> None:
        for s in self.sockets:
            s.drop_host()
        for lst in self.listeners.values():
            lst.close()
        self.listeners.clear()
