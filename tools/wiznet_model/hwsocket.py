"""One hardware socket of the model: its register block, TX/RX rings, and the loopback host
socket that stands in for the network behind it.

Every IPv4 destination is reached on 127.0.0.1 and every IPv6 destination on ::1 (the same
port, or the one the chip's `port_map` gives), except the addresses in `chip.unreachable`,
where ARP / SYN time out after `chip.retransmit_s`.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import struct
import time
from typing import TYPE_CHECKING

from .regs import (
    IR_CON,
    IR_DISCON,
    IR_RECV,
    IR_SENDOK,
    IR_TIMEOUT,
    MR_TCP,
    MR_UDP,
    MR_V6,
    SR_CLOSE_WAIT,
    SR_CLOSED,
    SR_ESTABLISHED,
    SR_FIN_WAIT,
    SR_INIT,
    SR_LAST_ACK,
    SR_LISTEN,
    SR_SYNSENT,
    SR_UDP,
    W6100_SN_DIP6R,
    W6100_SN_ESR,
    put16,
    u16,
)

if TYPE_CHECKING:
    from .chip import Chip

_ABORT = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST


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
        self.cmds: list[tuple[float, int]] = []  # (due time, state command)
        self.cr_shown = 0
        self.cr_clear_tx = -1
        self.jumped: tuple[int, int] | None = None  # (TX, RX) pointers set at establishment
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
        self.cmds.clear()
        self.cr_shown = 0
        self.cr_clear_tx = -1
        self.sending = False
        self.send_end = 0
        self.deadline: float | None = None
        self.fin_pending = False
        self.listen_port = None
        self.v6 = False

    def drop_host(self, abort: bool = False) -> None:
        if self.host is not None:
            if abort:
                with contextlib.suppress(OSError):
                    self.host.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _ABORT)
            self.chip.unwatch(self.host)
            self.host.close()
            self.host = None

    # ---- registers ----------------------------------------------------------------------

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
    def tcp(self) -> bool:
        return self.mode & 0x07 == MR_TCP or self.mode == 0x0D

    @property
    def udp(self) -> bool:
        return self.mode & 0x07 == MR_UDP or self.mode == 0x0E

    @property
    def rsr(self) -> int:
        return (self.rx_wr - self.rx_rd) & 0xFFFF

    def publish(self) -> None:
        """Write the chip-maintained values into the register block."""
        m, r = self.chip.map, self.regs
        r[m.sn_sr] = self.sr
        r[m.sn_ir] = self.ir
        used = (self.tx_wr - self.tx_rd) & 0xFFFF
        put16(r, m.sn_tx_fsr, max(0, self.txsize - used))
        put16(r, m.sn_tx_rd, self.tx_rd)
        put16(r, m.sn_rx_rsr, self.rsr)
        put16(r, m.sn_rx_wr, self.rx_wr)
        if self.chip.kind == "w6100":
            r[W6100_SN_ESR] = 0x04 if self.v6 and self.sr == SR_ESTABLISHED else 0

    def ring_read(self, ring: bytearray, size: int, ptr: int, n: int) -> bytes:
        if size == 0:
            return bytes(n)
        out = bytearray()
        while len(out) < n:
            start = (ptr + len(out)) % size
            out += ring[start : start + min(size - start, n - len(out))]
        return bytes(out)

    def ring_write(self, ring: bytearray, size: int, ptr: int, data: bytes) -> None:
        done = 0
        while size and done < len(data):
            start = (ptr + done) % size
            take = min(size - start, len(data) - done)
            ring[start : start + take] = data[done : done + take]
            done += take

    def set_pointers(self, tx: int, rx: int) -> None:
        m = self.chip.map
        self.tx_rd = self.tx_wr = tx
        self.rx_rd = self.rx_wr = rx
        put16(self.regs, m.sn_tx_wr, tx)
        put16(self.regs, m.sn_rx_rd, rx)

    # ---- addresses ----------------------------------------------------------------------

    def destination(self) -> tuple[str, int, int]:
        """(text of Sn_DIPR / Sn_DIP6R, host address family, host port) for CONNECT/SEND."""
        m = self.chip.map
        dport = u16(self.regs, m.sn_dport)
        dport = self.chip.port_map.get(dport, dport)
        if self.v6:
            raw = bytes(self.regs[W6100_SN_DIP6R : W6100_SN_DIP6R + 16])
            return socket.inet_ntop(socket.AF_INET6, raw), socket.AF_INET6, dport
        raw = bytes(self.regs[m.sn_dipr : m.sn_dipr + 4])
        return socket.inet_ntoa(raw), socket.AF_INET, dport

    def loopback(self) -> str:
        return "::1" if self.v6 else "127.0.0.1"

    # ---- commands (run when the chip has finished accepting them) ------------------------

    def open(self) -> None:
        chip = self.chip
        self.drop_host()
        self.v6 = chip.kind == "w6100" and bool(self.mode & MR_V6)
        self.set_pointers(0, 0)
        self.pending.clear()
        self.sending = False
        self.fin_pending = False
        self.listen_port = None
        self.ir = 0
        if self.tcp:
            self.sr = SR_INIT
        elif self.udp:
            family = socket.AF_INET6 if self.v6 else socket.AF_INET
            host = socket.socket(family, socket.SOCK_DGRAM)
            host.bind((self.loopback(), 0))
            host.setblocking(False)
            self.host = host
            chip.udp_ports[u16(self.regs, chip.map.sn_port)] = host.getsockname()[1]
            chip.watch(host)
            self.sr = SR_UDP

    def listen(self) -> None:
        if self.sr != SR_INIT:
            return
        port = u16(self.regs, self.chip.map.sn_port)
        self.sr = SR_LISTEN
        self.listen_port = port
        self.chip.listener(port, self.v6)

    def connect(self, six: bool) -> None:
        if self.sr != SR_INIT or six != self.v6:
            return
        ip, family, dport = self.destination()
        self.sr = SR_SYNSENT
        self.deadline = time.monotonic() + self.chip.retransmit_s
        if ip in self.chip.unreachable or not self.chip.link_ok:
            return
        host = socket.socket(family, socket.SOCK_STREAM)
        host.setblocking(False)
        host.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        host.connect_ex((self.loopback(), dport))
        self.host = host
        self.chip.watch(host)

    def discon(self) -> None:
        if self.sr == SR_ESTABLISHED:
            self.sr = SR_FIN_WAIT
            self.fin_pending = True
        elif self.sr == SR_CLOSE_WAIT:
            self.sr = SR_LAST_ACK
            self.fin_pending = True
        self.pump()

    def close(self) -> None:
        # CLOSE forgets the connection at once: bytes not yet sent are dropped, and a peer that
        # has not seen our FIN gets a RST (the least convenient reading of p.46's "closed").
        abort = self.tcp and (bool(self.pending) or self.fin_pending or self.sr in (
            SR_ESTABLISHED, SR_CLOSE_WAIT, SR_SYNSENT))
        self.drop_host(abort=abort)
        self.sr = SR_CLOSED
        self.sending = False
        self.fin_pending = False
        self.pending.clear()
        self.listen_port = None

    def send(self, six: bool) -> None:
        n = (self.tx_wr - self.tx_rd) & 0xFFFF
        data = self.ring_read(self.tx, self.txsize, self.tx_rd, n)
        if self.udp and self.sr == SR_UDP:
            if six != self.v6:
                return
            ip, _family, dport = self.destination()
            self.chip.sent.append((self.n, ip, u16(self.regs, self.chip.map.sn_dport), len(data)))
            if ip in self.chip.unreachable or not self.chip.link_ok or self.host is None:
                self.sending = True
                self.send_end = self.tx_wr
                self.deadline = time.monotonic() + self.chip.retransmit_s
                return
            with contextlib.suppress(OSError):
                self.host.sendto(data, (self.loopback(), dport))
            self.tx_rd = self.tx_wr
            self.ir |= IR_SENDOK
            return
        if self.sr not in (SR_ESTABLISHED, SR_CLOSE_WAIT) or self.fin_pending:
            return
        self.pending += data
        self.send_end = self.tx_wr
        self.sending = True
        self.deadline = time.monotonic() + self.chip.retransmit_s
        self.pump()

    # ---- the network side ---------------------------------------------------------------

    def established(self) -> None:
        """SYN/ACK exchanged: Sn_SR ESTABLISHED, Sn_IR CON, and the ring pointers jump."""
        self.sr = SR_ESTABLISHED
        self.deadline = None
        self.ir |= IR_CON
        self.chip.jump_pointers(self)

    def accept(self, conn: socket.socket, peer: tuple) -> None:
        m = self.chip.map
        conn.setblocking(False)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.host = conn
        self.chip.watch(conn)
        if self.v6:
            self.regs[W6100_SN_DIP6R : W6100_SN_DIP6R + 16] = socket.inet_pton(
                socket.AF_INET6, peer[0])
        else:
            self.regs[m.sn_dipr : m.sn_dipr + 4] = socket.inet_aton(peer[0])
        put16(self.regs, m.sn_dport, peer[1])
        self.established()
        self.pump()

    def pump(self) -> None:
        """Move bytes between the rings and the host socket; run the timers."""
        chip = self.chip
        now = time.monotonic()
        if self.sr == SR_SYNSENT:
            self._pump_connecting(now)
            return
        if self.host is None or not chip.link_ok or self.udp:
            if self.sending and self.deadline is not None and now >= self.deadline:
                self.timeout()
            if self.host is not None and self.udp and chip.link_ok:
                self._pump_udp()
            return
        if self.pending:
            try:
                sent = self.host.send(self.pending)
                del self.pending[:sent]
            except BlockingIOError:
                pass
            except OSError:
                self.peer_reset()
                return
        if self.sending and not self.pending:
            self.sending = False
            self.tx_rd = self.send_end
            self.deadline = None
            self.ir |= IR_SENDOK
        if self.fin_pending and not self.pending:
            self.fin_pending = False
            with contextlib.suppress(OSError):
                self.host.shutdown(socket.SHUT_WR)
            if self.sr == SR_LAST_ACK:
                self.sr = SR_CLOSED
                self.drop_host()
                return
        if self.sr in (SR_ESTABLISHED, SR_FIN_WAIT):
            self._pump_rx()

    def _pump_connecting(self, now: float) -> None:
        if self.host is not None and self.chip.link_ok:
            err = self.host.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err == 0:
                try:
                    self.host.getpeername()
                except OSError:
                    err = errno.EINPROGRESS
            if err == 0:
                self.established()
                return
            if err != errno.EINPROGRESS:
                # RST instead of SYN/ACK: Sn_SR goes CLOSED; no Sn_IR bit is promised for it
                # (datasheet p.46-47 CONNECT), so the model raises none.
                self.drop_host()
                self.sr = SR_CLOSED
                return
        if self.deadline is not None and now >= self.deadline:
            self.drop_host()
            self.sr = SR_CLOSED
            self.ir |= IR_TIMEOUT

    def _pump_rx(self) -> None:
        assert self.host is not None
        room = self.rxsize - self.rsr
        while room > 0:
            try:
                chunk = self.host.recv(room)
            except BlockingIOError:
                return
            except OSError:
                self.peer_reset()
                return
            if not chunk:
                if self.sr == SR_FIN_WAIT:
                    self.sr = SR_CLOSED
                    self.drop_host()
                else:
                    self.sr = SR_CLOSE_WAIT
                self.ir |= IR_DISCON
                return
            self.ring_write(self.rx, self.rxsize, self.rx_wr, chunk)
            self.rx_wr = (self.rx_wr + len(chunk)) & 0xFFFF
            self.ir |= IR_RECV  # raised by arriving data only, never by a RECV command
            room -= len(chunk)

    def _pump_udp(self) -> None:
        assert self.host is not None
        while True:
            try:
                data, addr = self.host.recvfrom(65535)
            except OSError:
                return
            if self.chip.kind == "w5500":
                head = socket.inet_aton(addr[0]) + struct.pack(">HH", addr[1], len(data))
            elif self.v6:
                info = 0x8000 | (len(data) & 0x07FF)  # PACK_IPv6 (socket.h) | length
                head = struct.pack(">H", info) + socket.inet_pton(socket.AF_INET6, addr[0])
                head += struct.pack(">H", addr[1])
            else:
                head = struct.pack(">H", len(data) & 0x07FF) + socket.inet_aton(addr[0])
                head += struct.pack(">H", addr[1])
            if self.rxsize - self.rsr < len(head) + len(data) or len(data) > 0x07FF:
                continue  # no room: the datagram is dropped, as the chip does
            self.ring_write(self.rx, self.rxsize, self.rx_wr, head + data)
            self.rx_wr = (self.rx_wr + len(head) + len(data)) & 0xFFFF
            self.ir |= IR_RECV

    def peer_reset(self) -> None:
        # A RST from the peer: Sn_SR goes CLOSED. The datasheet names no Sn_IR bit for it
        # (DISCON is "FIN or FIN/ACK received", p.48), so the model sets none.
        self.drop_host()
        self.sr = SR_CLOSED
        self.sending = False
        self.fin_pending = False
        self.pending.clear()

    def timeout(self) -> None:
        if self.tcp:
            self.drop_host(abort=True)
            self.sr = SR_CLOSED
        self.sending = False
        self.fin_pending = False
        self.pending.clear()
        self.tx_rd = self.tx_wr
        self.deadline = None
        self.ir |= IR_TIMEOUT
