"""Register-level model of the WIZnet W5500 and W6100, written from their datasheets and
WIZnet's ioLibrary_Driver.

The model decodes SPI frames (16-bit address, control byte BSB[4:0]|RWB|OM, data), keeps the
register file and the per-socket TX/RX ring buffers, and executes socket commands by
bridging each hardware socket to a real host socket on loopback (`hwsocket.py`). It counts
SPI transactions and bytes.

It is strict by default: wherever the documents leave the chip latitude, the model takes
the choice least convenient for a driver. Each choice and the text it rests on (W5500
datasheet v1.0.9 pages, w5500.h / w6100.h, ioLibrary functions) is tabled in docs/wiznet.md
("The vendor's rules, the driver, and the model"); in short:

- Sn_TX_WR / Sn_TX_RD and Sn_RX_RD / Sn_RX_WR jump to arbitrary (seeded random) values when
  a TCP connection is established, as client or server, on both chips ("re-initialized while
  connecting with TCP", p.54-55, w6100.h Sn_TX_RD / Sn_TX_WR).
- Sn_CR reads back the command for one more transaction, then 0; OPEN, LISTEN, CONNECT,
  DISCON and CLOSE take effect (Sn_SR, and OPEN's pointer reset) only `cmd_latency_s`
  (5 ms) after they were written, well after Sn_CR has cleared ("Even though Sn_CR is
  cleared to 0x00, the command is still being processed", p.46). A command that finds the
  socket in the wrong state when it takes effect is ignored.
- A refused CONNECT and a peer's RST set Sn_SR to CLOSED and no Sn_IR bit (p.46-47 name
  only Sn_SR for both).
- Sn_IR.RECV is raised when data arrives, never again by a RECV command while data remains
  (p.48; ioLibrary recvfrom() polls Sn_RX_RSR instead).
- After RSTn rises the chip answers garbage and ignores writes for `reset_s` (10 ms, ten
  times the W5500's PLL lock time, well within the 100 ms WIZnet-PICO-C's wizchip_reset()
  waits); during a W6100 software reset (SYCR0, no completion flag) everything but the
  identification bytes reads garbage for `sw_reset_s` (10 ms; WIZnet's W6100 code waits
  100 ms). The model times them, the PHY link and the command latencies by when the VM
  drove the pins (the bridge stamps its ops, `server.py`), not by when its own thread
  handled the ops, which a loaded machine delays. The W5500 MR.RST bit reads 1 for two
  transactions ("cleared automatically after reset").
- The PHY link comes up `link_delay_s` (0.3 s) after every reset (auto-negotiation).
- A 16-bit counter (Sn_TX_FSR, Sn_RX_RSR) read in one burst may change between its two
  bytes: the model moves network data between reading the high and the low byte ("Before
  16 bit-read operation is not completed, the value may be changed", p.55).
- DISCON sends FIN after the queued bytes; CLOSE of an unfinished connection aborts it with
  RST, dropping what the peer has not taken ("only Sn_SR is changed to SOCK_CLOSED without
  disconnect-process", p.47).

`Chip(kind, strict=False)` drops the latencies and delays (not the semantics): it exists for
timing-insensitive speed measurements only; every test uses the strict model.
"""

from __future__ import annotations

import random
import socket
import time

from .hwsocket import HwSocket
from .regs import (
    CMD_CLOSE,
    CMD_CONNECT,
    CMD_CONNECT6,
    CMD_DISCON,
    CMD_LISTEN,
    CMD_OPEN,
    CMD_RECV,
    CMD_SEND,
    CMD_SEND6,
    CMD_SEND_KEEP,
    SR_LISTEN,
    W5500_MAP,
    W6100_CHPLCKR,
    W6100_MAP,
    W6100_NETLCKR,
    W6100_SYCR0,
    W6100_SYCR1,
    put16,
    u16,
)

_STATE_COMMANDS = (CMD_OPEN, CMD_LISTEN, CMD_CONNECT, CMD_CONNECT6, CMD_DISCON, CMD_CLOSE)


class Chip:
    """The register file, SPI decoder and socket engine of one W5500 or W6100."""

    def __init__(self, kind: str, *, retransmit_s: float = 0.2, strict: bool = True,
                 seed: int = 5500, reset_s: float = 0.01, sw_reset_s: float = 0.01,
                 link_delay_s: float = 0.3, cmd_latency_s: float = 0.005) -> None:
        if kind not in ("w5500", "w6100"):
            raise ValueError(f"unknown chip {kind!r}")
        self.kind = kind
        self.map = W5500_MAP if kind == "w5500" else W6100_MAP
        self.strict = strict
        self.retransmit_s = retransmit_s
        self.reset_s = reset_s if strict else 0.0
        self.sw_reset_s = sw_reset_s if strict else 0.0
        self.link_delay_s = link_delay_s if strict else 0.0
        self.cmd_latency_s = cmd_latency_s if strict else 0.0
        self.rng = random.Random(seed)
        self.unreachable: set[str] = set()
        self.port_map: dict[int, int] = {}  # destination port -> host port (e.g. DHCP's 67)
        self.link = True  # the cable: set_link(False) unplugs it
        self.common = bytearray(self.map.common_size)
        self.sockets = [HwSocket(self, n) for n in range(8)]
        self.listeners: dict[tuple[int, bool], socket.socket] = {}
        self.udp_ports: dict[int, int] = {}  # chip port -> host port
        self.sent: list[tuple[int, str, int, int]] = []  # UDP: (socket, dest ip, port, len)
        self.lock_writes: list[tuple[int, int]] = []  # (address, value) to CHPLCKR / NETLCKR
        self.watch_hook = None  # set by the server: called as hook(sock, add: bool)
        # Faults for testing a driver's time limits (no datasheet behaviour): a stalled chip
        # accepts commands (Sn_CR clears) but carries none out; a flapping chip returns a
        # different value for every read of a 16-bit counter.
        self.stalled = False
        self.flapping = False
        self.transactions = 0
        self.spi_bytes = 0
        self.resets = 0
        self.busy_until = 0.0  # garbage on the bus until then (reset in progress)
        self.busy_tx = -1  # ... or up to this transaction (W5500 MR.RST)
        self.rom_readable = False  # identification bytes readable while busy (soft reset)
        self.link_up_at = 0.0
        self.rst_low_at: float | None = None
        self.rst_low_s: float | None = None  # how long RSTn was last held low
        self.rst_high_at: float | None = None
        self.settle_s: float | None = None  # RSTn rising edge -> first SPI transaction
        # time.monotonic() at which the VM drove the pin of the op being handled (the
        # server sets it from the op's stamp); None: the host's clock (network side)
        self.at: float | None = None
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

    def now(self) -> float:
        """The chip's time: when the VM drove the current op's pin, else the host's clock."""
        return time.monotonic() if self.at is None else self.at

    @property
    def link_ok(self) -> bool:
        return self.link and self.now() >= self.link_up_at

    def reset(self) -> None:
        """Every register to its reset value, every connection dropped."""
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
        put16(self.common, m.rtr, 2000)
        self.common[m.rcr] = 8
        self.net_unlocked = self.kind == "w5500"
        self.chip_unlocked = False
        self.link_up_at = self.now() + self.link_delay_s
        self._publish_common()

    def rst_pin(self, level: int) -> None:
        """RSTn driven low (0) or high (1); the rising edge resets the chip."""
        now = self.now()
        if not level:
            if self.rst_low_at is None:
                self.rst_low_at = now
            return
        if self.rst_low_at is None:
            return
        self.rst_low_s = now - self.rst_low_at
        self.rst_low_at = None
        self.rst_high_at = now
        self.settle_s = None
        self.reset()
        self.busy_until = now + self.reset_s
        self.rom_readable = False
        self.link_up_at = self.busy_until + self.link_delay_s

    def _soft_reset(self) -> None:
        self.reset()
        self.rom_readable = True
        if self.kind == "w5500":
            self.busy_tx = self.transactions + (2 if self.strict else 0)
        else:
            self.busy_until = self.now() + self.sw_reset_s
        self.link_up_at = max(self.busy_until, self.now()) + self.link_delay_s

    def _busy(self) -> bool:
        return self.transactions <= self.busy_tx or self.now() < self.busy_until

    def jump_pointers(self, s: HwSocket) -> None:
        """TCP established: w5500.h / w6100.h say the TX and RX pointers are re-initialised
        then; the model moves them to arbitrary values (both directions, both chips)."""
        s.jumped = (self.rng.randrange(0x10000), self.rng.randrange(0x10000))
        s.set_pointers(*s.jumped)

    def _publish_common(self) -> None:
        m = self.map
        up = self.link_ok
        if self.kind == "w5500":
            # PHYCFGR: RST=1 (normal), OPMD=0 + OPMDC=111 (all capable, auto-negotiation),
            # DPX=1 SPD=1 LNK=1 once the link is up (datasheet p.43)
            self.common[m.phy] = 0xB8 | (0x07 if up else 0x00)
        else:
            # PHYSR: CABOFF (bit 7) while unplugged; 100BASE-TX full duplex is DPX=0 SPD=0;
            # LNK bit 0 (w6100.h PHYSR_CABOFF, PHYSR_HDX, PHYSR_10M, PHYSR_LNK)
            self.common[m.phy] = 0x01 if up else (0x00 if self.link else 0x80)
        sir = 0
        for s in self.sockets:
            s.publish()
            if s.ir & s.regs[m.sn_imr]:
                sir |= 1 << s.n
        self.common[m.sir] = sir

    def interrupt_pin(self) -> int:
        """Level of INTn: 0 while an enabled socket interrupt is pending."""
        m = self.map
        if self._busy():
            return 1
        if self.kind == "w6100" and not self.common[W6100_SYCR1] & 0x80:
            return 1
        self._publish_common()
        return 0 if self.common[m.sir] & self.common[m.simr] else 1

    def set_link(self, up: bool) -> None:
        self.link = up
        self._publish_common()

    # ---- SPI ----------------------------------------------------------------------------

    def select(self) -> None:
        self._frame.clear()
        self.transactions += 1
        if self.rst_high_at is not None and self.settle_s is None:
            self.settle_s = self.now() - self.rst_high_at
        self.tick()

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
                if not self._busy():
                    self._write(bsb, self._addr, bytes(data))
                miso += bytes(len(data))
            else:
                miso += self._read(bsb, self._addr, len(data))
            self._addr = (self._addr + len(data)) & 0xFFFF
        return bytes(miso)

    def _garbage(self, bsb: int, addr: int, n: int) -> bytes:
        out = bytearray(self.rng.randbytes(n))
        if bsb == 0 and self.rom_readable:
            for i in range(n):
                if addr + i in self.map.ident:
                    out[i] = self.map.ident[addr + i]
                if addr + i == self.map.mr:
                    out[i] = 0x80  # W5500: MR.RST reads 1 until the reset has finished
        return bytes(out)

    def _read(self, bsb: int, addr: int, n: int) -> bytes:
        if self._busy():
            return self._garbage(bsb, addr, n)
        if bsb == 0:
            self._publish_common()
            return self._span(self.common, addr, n)
        sock = self._socket_of(bsb)
        if sock is None:
            return bytes(n)
        kind = (bsb - 1) % 4
        if kind == 1:
            return sock.ring_read(sock.tx, sock.txsize, addr, n)
        if kind == 2:
            return sock.ring_read(sock.rx, sock.rxsize, addr, n)
        sock.publish()
        m = self.map
        if sock.cr_shown and addr <= m.sn_cr < addr + n:
            sock.regs[m.sn_cr] = sock.cr_shown if self.transactions <= sock.cr_clear_tx else 0
        for high in (m.sn_tx_fsr, m.sn_rx_rsr):
            if self.flapping and addr <= high < addr + n:
                return self._garbage(bsb, addr, n)
            if self.strict and addr <= high and high + 1 < addr + n:
                # the counter changes between its two bytes (datasheet p.54-55 note)
                first = self._span(sock.regs, addr, high + 1 - addr)
                sock.pump()
                sock.publish()
                return first + self._span(sock.regs, high + 1, addr + n - high - 1)
        return self._span(sock.regs, addr, n)

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
            if addr == m.mr and value & 0x80:
                self._soft_reset()
                return
        else:
            if addr == W6100_CHPLCKR:
                self.lock_writes.append((addr, value))
                self.chip_unlocked = value == 0xCE
                return
            if addr == W6100_NETLCKR:
                self.lock_writes.append((addr, value))
                if value in (0x3A, 0xC5):
                    self.net_unlocked = value == 0x3A
                return
            if addr in (W6100_SYCR0, W6100_SYCR1):
                if not self.chip_unlocked:
                    return
                if addr == W6100_SYCR0 and not value & 0x80:
                    self._soft_reset()
                    return
            if m.shar <= addr < m.net_end and not self.net_unlocked:
                return
        self.common[addr] = value

    def _write_socket(self, sock: HwSocket, addr: int, value: int) -> None:
        m = self.map
        if addr == m.sn_cr:
            self._command_written(sock, value)
        elif addr == (m.sn_irclr if m.sn_irclr is not None else m.sn_ir):
            sock.ir &= ~value
        elif addr in (m.sn_sr, m.sn_ir, m.sn_tx_fsr, m.sn_tx_fsr + 1, m.sn_tx_rd, m.sn_tx_rd + 1,
                      m.sn_rx_rsr, m.sn_rx_rsr + 1, m.sn_rx_wr, m.sn_rx_wr + 1):
            return
        elif addr in (m.sn_tx_wr, m.sn_tx_wr + 1):
            sock.regs[addr] = value
            sock.tx_wr = u16(sock.regs, m.sn_tx_wr)
        elif addr in (m.sn_rx_rd, m.sn_rx_rd + 1):
            sock.regs[addr] = value
            sock.rx_rd = u16(sock.regs, m.sn_rx_rd)
        elif addr < len(sock.regs):
            sock.regs[addr] = value

    # ---- socket commands ----------------------------------------------------------------

    def _command_written(self, s: HwSocket, cmd: int) -> None:
        """Sn_CR written. It reads back the command for one more transaction, then 0 (p.46:
        'automatically cleared to 0x00'); a state command takes effect cmd_latency_s after
        it was written ('even though Sn_CR is cleared to 0x00, the command is still being
        processed'). SEND and RECV act at once."""
        if self.stalled:
            return
        if not self.strict:
            self._execute(s, cmd)
            return
        s.cr_shown = cmd
        s.cr_clear_tx = self.transactions + 1
        if cmd in _STATE_COMMANDS:
            s.cmds.append((self.now() + self.cmd_latency_s, cmd))
        else:
            self._execute(s, cmd)

    def tick(self) -> None:
        """Carry out state commands whose latency has passed."""
        now = self.now()
        for s in self.sockets:
            while s.cmds and now >= s.cmds[0][0]:
                self._execute(s, s.cmds.pop(0)[1])

    def _execute(self, s: HwSocket, cmd: int) -> None:
        if cmd == CMD_OPEN:
            s.open()
        elif cmd == CMD_LISTEN:
            s.listen()
        elif cmd in (CMD_CONNECT, CMD_CONNECT6):
            if cmd == CMD_CONNECT6 and self.kind != "w6100":
                return
            s.connect(cmd == CMD_CONNECT6)
        elif cmd == CMD_DISCON:
            s.discon()
        elif cmd == CMD_CLOSE:
            s.close()
        elif cmd in (CMD_SEND, CMD_SEND_KEEP, CMD_SEND6):
            if cmd == CMD_SEND_KEEP:
                return
            s.send(cmd == CMD_SEND6)
        elif cmd == CMD_RECV:
            s.pump()

    # ---- the network side ---------------------------------------------------------------

    def listener(self, port: int, v6: bool) -> None:
        if (port, v6) in self.listeners:
            return
        lst = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_STREAM)
        lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lst.bind(("::1" if v6 else "127.0.0.1", 0))
        lst.listen(8)
        lst.setblocking(False)
        self.listeners[(port, v6)] = lst
        self.watch(lst)

    def accept_pending(self) -> None:
        """Give waiting host connections to hardware sockets in LISTEN on their port."""
        if not self.link_ok:
            return
        for s in self.sockets:
            lst = self.listeners.get((s.listen_port or -1, s.v6))
            if s.sr != SR_LISTEN or lst is None:
                continue
            try:
                conn, peer = lst.accept()
            except BlockingIOError:
                continue
            s.accept(conn, peer)

    def pump_all(self) -> None:
        self.tick()
        if self._busy():
            return
        self.accept_pending()
        for s in self.sockets:
            s.pump()
        self._publish_common()

    def tcp_port(self, chip_port: int, v6: bool = False) -> int:
        """The host port where a listener of the chip on chip_port accepts connections."""
        return self.listeners[(chip_port, v6)].getsockname()[1]

    def udp_port(self, chip_port: int) -> int:
        """The host port that reaches the chip's UDP socket bound to chip_port."""
        return self.udp_ports[chip_port]

    def close(self) -> None:
        for s in self.sockets:
            s.drop_host()
        for lst in self.listeners.values():
            lst.close()
        self.listeners.clear()
