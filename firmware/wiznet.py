# Hardware TCP/UDP sockets of the WIZnet W5500 and W6100, driven over machine.SPI.
#
# The chips run TCP/IP themselves: each hardware socket has its own TX and RX ring buffer
# inside the chip, and the host only moves payload bytes and issues socket commands. This
# driver offers the subset of MicroPython's `socket` module the worker links use:
#
#     nic = wiznet.WIZnet(spi, cs, rst=rst_pin, intr=int_pin)   # identifies W5500 or W6100
#     nic.ifconfig(("192.168.1.50", "255.255.255.0", "192.168.1.1", "0.0.0.0"))
#     s = nic.socket(nic.AF_INET, nic.SOCK_STREAM)
#     s.connect(nic.getaddrinfo("192.168.1.10", 5880)[0][-1])
#
# Socket objects are io.IOBase streams, so select.poll and asyncio streams can wait on them.
#
# SPI frame (both chips): 16-bit offset address (big-endian), one control byte
# (BSB[4:0] << 3 | RWB << 2 | OM[1:0]; OM = 00 is variable-length mode, CS frames the data),
# then the data bytes. BSB 0 selects the common registers; socket n uses 4n+1 (registers),
# 4n+2 (TX buffer) and 4n+3 (RX buffer). Inside a buffer block the chip takes the 16-bit
# pointer modulo the buffer size, so a transfer that runs past the end of the ring wraps to
# its start: a whole frame moves in one SPI transaction however the ring pointers lie.

import io
import time

try:
    import errno

    EAGAIN = errno.EAGAIN
    EINPROGRESS = errno.EINPROGRESS
    ETIMEDOUT = errno.ETIMEDOUT
    ECONNRESET = errno.ECONNRESET
    ECONNREFUSED = errno.ECONNREFUSED
    ENOTCONN = errno.ENOTCONN
    EBADF = errno.EBADF
    EINVAL = errno.EINVAL
    ENOMEM = errno.ENOMEM
except (ImportError, AttributeError):
    EAGAIN, EINPROGRESS, ETIMEDOUT, ECONNRESET = 11, 115, 110, 104
    ECONNREFUSED, ENOTCONN, EBADF, EINVAL, ENOMEM = 111, 107, 9, 22, 12

AF_INET = 2
SOCK_STREAM = 1
SOCK_DGRAM = 2
IPPROTO_TCP = 6
IPPROTO_UDP = 17
SOL_SOCKET = 1
SO_REUSEADDR = 4
SO_BROADCAST = 32

_POLL = 3  # MP_STREAM_POLL
_POLLIN = 1
_POLLOUT = 4
_POLLERR = 8
_POLLHUP = 16

# Socket commands (Sn_CR), interrupt bits (Sn_IR) and states (Sn_SR): the same on both chips.
CMD_OPEN = 0x01
CMD_LISTEN = 0x02
CMD_CONNECT = 0x04
CMD_DISCON = 0x08
CMD_CLOSE = 0x10
CMD_SEND = 0x20
CMD_RECV = 0x40

IR_CON = 0x01
IR_DISCON = 0x02
IR_RECV = 0x04
IR_TIMEOUT = 0x08
IR_SENDOK = 0x10

SR_CLOSED = 0x00
SR_INIT = 0x13
SR_LISTEN = 0x14
SR_SYNSENT = 0x15
SR_SYNRECV = 0x16
SR_ESTABLISHED = 0x17
SR_FIN_WAIT = 0x18
SR_CLOSING = 0x1A
SR_TIME_WAIT = 0x1B
SR_CLOSE_WAIT = 0x1C
SR_LAST_ACK = 0x1D
SR_UDP = 0x22

_BUFFER_KB = (0, 1, 2, 4, 8, 16)


class Chip:
    """Register map of one chip: the only place where the W5500 and the W6100 differ.

    Common-register addresses are in BSB 0; socket-register offsets are within the
    socket's register block (BSB 4n+1).
    """

    def __init__(self, name, **regs):
        self.name = name
        for key in regs:
            setattr(self, key, regs[key])


W5500 = Chip(
    "W5500",
    sockets=8,
    # common registers
    MR=0x0000, GAR=0x0001, SUBR=0x0005, SHAR=0x0009, SIPR=0x000F, SIR=0x0017, SIMR=0x0018,
    RTR=0x0019, RCR=0x001B, PHY=0x002E, ID=0x0039, ID_VALUE=b"\x04",
    SYCR1=None, CHPLCKR=None, NETLCKR=None,
    # socket registers
    Sn_MR=0x0000, Sn_CR=0x0001, Sn_IR=0x0002, Sn_IRCLR=0x0002, Sn_SR=0x0003, Sn_PORT=0x0004,
    Sn_DIPR=0x000C, Sn_DPORT=0x0010, Sn_RXBUF_SIZE=0x001E, Sn_TXBUF_SIZE=0x001F,
    Sn_TX_FSR=0x0020, Sn_TX_WR=0x0024, Sn_RX_RSR=0x0026, Sn_RX_RD=0x0028, Sn_IMR=0x002C,
    MR_TCP=0x01, MR_UDP=0x02,
    # UDP receive header: ip(4) port(2) length(2)
    UDP_IP=0, UDP_PORT=4, UDP_LEN=6, UDP_LEN_MASK=0xFFFF,
)

W6100 = Chip(
    "W6100",
    sockets=8,
    MR=None, GAR=0x4130, SUBR=0x4134, SHAR=0x4120, SIPR=0x4138, SIR=0x2101, SIMR=0x2114,
    RTR=0x4200, RCR=0x4204, PHY=0x3000, ID=0x0000, ID_VALUE=b"\x61\x00",
    SYCR0=0x2004, SYCR1=0x2005, CHPLCKR=0x41F4, NETLCKR=0x41F5,
    CHPLCK_UNLOCK=0xCE, NETLCK_UNLOCK=0x3A, NETLCK_LOCK=0xC5,
    Sn_MR=0x0000, Sn_CR=0x0010, Sn_IR=0x0020, Sn_IRCLR=0x0028, Sn_SR=0x0030, Sn_PORT=0x0114,
    Sn_DIPR=0x0120, Sn_DPORT=0x0140, Sn_RXBUF_SIZE=0x0220, Sn_TXBUF_SIZE=0x0200,
    Sn_TX_FSR=0x0204, Sn_TX_WR=0x020C, Sn_RX_RSR=0x0224, Sn_RX_RD=0x0228, Sn_IMR=0x0024,
    MR_TCP=0x01, MR_UDP=0x02,
    # UDP receive header: info|length(2, low 11 bits) ip(4) port(2)
    UDP_IP=2, UDP_PORT=6, UDP_LEN=0, UDP_LEN_MASK=0x07FF,
)

CHIPS = {"w5500": W5500, "w6100": W6100}


def _ip_bytes(text):
    parts = text.split(".")
    if len(parts) != 4:
        raise ValueError("not a dotted IPv4 address: %r" % (text,))
    out = bytearray(4)
    for i in range(4):
        v = int(parts[i])
        if not 0 <= v <= 255:
            raise ValueError("not a dotted IPv4 address: %r" % (text,))
        out[i] = v
    return bytes(out)


def _ip_text(b):
    return "%d.%d.%d.%d" % (b[0], b[1], b[2], b[3])


class WIZnet:
    """One W5500 or W6100 on an SPI bus.

    spi: a configured machine.SPI (mode 0 or 3, MSB first; the board file gives the clock);
    cs: the chip-select machine.Pin (output); rst: optional reset Pin (output); intr:
    optional interrupt Pin (input, the chip drives it low while a socket interrupt is
    pending; without it readiness is polled over SPI); chip: "w5500", "w6100" or None to
    identify it; mac: 6 bytes (default: derived from machine.unique_id when available);
    buffers: per-socket buffer sizes in KB for TX and RX (8 values from 0/1/2/4/8/16
    summing to at most 16; default 2 KB each).
    """

    AF_INET = AF_INET
    SOCK_STREAM = SOCK_STREAM
    SOCK_DGRAM = SOCK_DGRAM
    IPPROTO_TCP = IPPROTO_TCP
    IPPROTO_UDP = IPPROTO_UDP
    SOL_SOCKET = SOL_SOCKET
    SO_REUSEADDR = SO_REUSEADDR
    SO_BROADCAST = SO_BROADCAST

    def __init__(self, spi, cs, rst=None, intr=None, chip=None, mac=None, buffers=None):
        sizes = tuple(buffers) if buffers is not None else (2,) * 8
        _check_buffers(sizes)
        self._spi = spi
        self._cs = cs
        self._intr = intr
        self._hdr = bytearray(3)
        # Register access without allocation: (out, in) views of 3 + n bytes, n = 1..8.
        out, inp = memoryview(bytearray(11)), memoryview(bytearray(11))
        self._views = [(out[: 3 + n], inp[: 3 + n]) for n in range(9)]
        cs(1)
        if rst is not None:
            rst(0)
            time.sleep_ms(2)
            rst(1)
        self.chip = self._identify(chip)
        self._soft_reset()
        self._configure_buffers(sizes)
        self._free = [n for n in range(self.chip.sockets) if sizes[n]]
        self._sizes = sizes
        self._next_port = 49152 + (time.ticks_ms() & 0x3FFF)
        self._dns = "0.0.0.0"
        self.lease_s = None
        self._simr = 0
        self.mac = bytes(mac) if mac is not None else _default_mac()
        self._write_net(self.chip.SHAR, self.mac)
        if self.chip.SYCR1 is not None:
            self._chip_unlocked(self.chip.SYCR1, b"\x80")  # IEN: drive the INTn pin

    # ---- SPI access -------------------------------------------------------------------

    def read(self, addr, bsb, buf):
        """Burst-read len(buf) bytes at addr of block bsb into buf: one SPI transaction."""
        h = self._hdr
        h[0] = addr >> 8
        h[1] = addr & 0xFF
        h[2] = bsb << 3
        self._cs(0)
        try:
            self._spi.write(h)
            self._spi.readinto(buf)
        finally:
            self._cs(1)

    def write(self, addr, bsb, data):
        """Burst-write data at addr of block bsb: one SPI transaction."""
        h = self._hdr
        h[0] = addr >> 8
        h[1] = addr & 0xFF
        h[2] = (bsb << 3) | 0x04
        self._cs(0)
        try:
            self._spi.write(h)
            self._spi.write(data)
        finally:
            self._cs(1)

    def _read_reg(self, addr, bsb, n):
        """A register of up to 8 bytes, header and data in one write_readinto call.

        Returns the shared input view: the value is at [3:3 + n] until the next access.
        """
        out, inp = self._views[n]
        out[0] = addr >> 8
        out[1] = addr & 0xFF
        out[2] = bsb << 3
        self._cs(0)
        try:
            self._spi.write_readinto(out, inp)
        finally:
            self._cs(1)
        return inp

    def _read_bytes(self, addr, bsb, n):
        return bytes(self._read_reg(addr, bsb, n)[3:])

    def _read8(self, addr, bsb):
        return self._read_reg(addr, bsb, 1)[3]

    def _read16(self, addr, bsb):
        r = self._read_reg(addr, bsb, 2)
        return (r[3] << 8) | r[4]

    def _read16_stable(self, addr, bsb):
        # The chip updates 16-bit counters byte by byte: read until two reads agree.
        a = self._read16(addr, bsb)
        while True:
            b = self._read16(addr, bsb)
            if a == b:
                return a
            a = b

    def _write_reg(self, addr, bsb, value, n):
        out = self._views[n][0]
        out[0] = addr >> 8
        out[1] = addr & 0xFF
        out[2] = (bsb << 3) | 0x04
        for i in range(n):
            out[2 + n - i] = (value >> (8 * i)) & 0xFF
        self._cs(0)
        try:
            self._spi.write(out)
        finally:
            self._cs(1)

    def _write8(self, addr, bsb, value):
        self._write_reg(addr, bsb, value, 1)

    def _write16(self, addr, bsb, value):
        self._write_reg(addr, bsb, value, 2)

    # ---- bring-up ---------------------------------------------------------------------

    def _identify(self, wanted):
        names = (wanted,) if wanted else ("w6100", "w5500")
        for name in names:
            if name not in CHIPS:
                raise ValueError("unknown WIZnet chip %r (known: w5500, w6100)" % (name,))
        deadline = time.ticks_add(time.ticks_ms(), 100)
        while True:
            for name in names:
                chip = CHIPS[name]
                got = self._read_bytes(chip.ID, 0, len(chip.ID_VALUE))
                if got == chip.ID_VALUE:
                    return chip
            if time.ticks_diff(deadline, time.ticks_ms()) <= 0:
                break
            time.sleep_ms(5)
        label = " or ".join(CHIPS[n].name for n in names)
        raise OSError(
            "no %s answered on SPI (%r, cs=%r): check wiring and power" % (label, self._spi, self._cs)
        )

    def _soft_reset(self):
        c = self.chip
        if c.MR is not None:
            self._write8(c.MR, 0, 0x80)  # RST, clears itself when the reset is done
        else:
            self._chip_unlocked(c.SYCR0, b"\x00")  # RST is active low on the W6100
        for _ in range(100):
            if c.MR is None or not self._read8(c.MR, 0) & 0x80:
                if self._read_bytes(c.ID, 0, len(c.ID_VALUE)) == c.ID_VALUE:
                    return
            time.sleep_ms(1)
        raise OSError(ETIMEDOUT, "wiznet: %s did not come back from reset" % c.name)

    def _chip_unlocked(self, addr, data):
        c = self.chip
        self._write8(c.CHPLCKR, 0, c.CHPLCK_UNLOCK)
        self.write(addr, 0, data)
        self._write8(c.CHPLCKR, 0, 0x00)

    def _write_net(self, addr, data):
        c = self.chip
        if c.NETLCKR is None:
            self.write(addr, 0, data)
            return
        self._write8(c.NETLCKR, 0, c.NETLCK_UNLOCK)
        self.write(addr, 0, data)
        self._write8(c.NETLCKR, 0, c.NETLCK_LOCK)

    def _configure_buffers(self, sizes):
        c = self.chip
        for n in range(c.sockets):
            self._write8(c.Sn_TXBUF_SIZE, 4 * n + 1, sizes[n])
            self._write8(c.Sn_RXBUF_SIZE, 4 * n + 1, sizes[n])

    # ---- network ----------------------------------------------------------------------

    def ifconfig(self, config=None):
        """Get or set (ip, subnet, gateway, dns) as dotted strings. DNS is only recorded."""
        c = self.chip
        if config is None:
            ip = self._read_bytes(c.SIPR, 0, 4)
            sub = self._read_bytes(c.SUBR, 0, 4)
            gw = self._read_bytes(c.GAR, 0, 4)
            return (_ip_text(ip), _ip_text(sub), _ip_text(gw), self._dns)
        ip, sub, gw = _ip_bytes(config[0]), _ip_bytes(config[1]), _ip_bytes(config[2])
        self._write_net(c.SIPR, ip)
        self._write_net(c.SUBR, sub)
        self._write_net(c.GAR, gw)
        if len(config) > 3:
            self._dns = config[3]
        return None

    def link_up(self):
        """True while the PHY reports a link (bit 0 of PHYCFGR / PHYSR)."""
        return bool(self._read8(self.chip.PHY, 0) & 0x01)

    def isconnected(self):
        return self.link_up() and self.ifconfig()[0] != "0.0.0.0"

    def dhcp(self, timeout_ms=10000, hostname=None):
        """Lease an address with DHCP on a hardware UDP socket; returns ifconfig()."""
        import wiznet_dhcp

        return wiznet_dhcp.lease(self, timeout_ms, hostname)

    def getaddrinfo(self, host, port, af=0, type=0, proto=0, flags=0):
        if host == "localhost":
            host = "127.0.0.1"
        try:
            _ip_bytes(host)
        except ValueError:
            raise OSError(EINVAL, "wiznet: no DNS resolver; give a dotted IPv4 address")
        kind = type or SOCK_STREAM
        return [(AF_INET, kind, IPPROTO_UDP if kind == SOCK_DGRAM else IPPROTO_TCP, "",
                 (host, port))]

    def socket(self, af=AF_INET, type=SOCK_STREAM, proto=0):
        if af != AF_INET or type not in (SOCK_STREAM, SOCK_DGRAM):
            raise OSError(EINVAL, "wiznet: IPv4 TCP or UDP sockets only")
        return WSocket(self, type)

    # ---- hardware socket allocation and commands --------------------------------------

    def _take(self):
        if not self._free:
            raise OSError(ENOMEM, "wiznet: all hardware sockets in use")
        return self._free.pop(0)

    def _give(self, n):
        if n not in self._free:
            self._free.append(n)
        self._set_simr(n, False)

    def _set_simr(self, n, on):
        bit = 1 << n
        simr = (self._simr | bit) if on else (self._simr & ~bit)
        if simr != self._simr:
            self._simr = simr
            self._write8(self.chip.SIMR, 0, simr)

    def _port(self):
        p = self._next_port
        self._next_port = 49152 if p >= 65535 else p + 1
        return p

    def _command(self, n, cmd):
        c = self.chip
        bsb = 4 * n + 1
        self._write8(c.Sn_CR, bsb, cmd)
        for _ in range(10000):
            if not self._read8(c.Sn_CR, bsb):
                return
        raise OSError(ETIMEDOUT, "wiznet: %s stopped accepting socket commands" % c.name)

    def _open(self, n, mode, port):
        c = self.chip
        bsb = 4 * n + 1
        self._command(n, CMD_CLOSE)
        self._write8(c.Sn_IRCLR, bsb, 0xFF)
        self._write8(c.Sn_MR, bsb, mode)
        self._write16(c.Sn_PORT, bsb, port)
        self._command(n, CMD_OPEN)
        self._set_simr(n, True)

    def _quiet(self):
        """True when the INTn pin says no socket interrupt is pending."""
        return self._intr is not None and self._intr() == 1


def _check_buffers(sizes):
    # Both chips: 8 sockets sharing 16 KB of TX and 16 KB of RX memory.
    if len(sizes) != 8 or sum(sizes) > 16:
        raise ValueError("buffers: 8 sizes summing to <= 16 KB")
    for kb in sizes:
        if kb not in _BUFFER_KB:
            raise ValueError("buffer sizes are 0, 1, 2, 4, 8 or 16 KB")


def _default_mac():
    try:
        import machine

        uid = machine.unique_id()
    except (ImportError, AttributeError):
        uid = b"\x00\x08\xdc\x00\x00\x01"
    mac = bytearray(6)
    for i in range(len(uid)):
        mac[i % 6] ^= uid[i]
    mac[0] = (mac[0] & 0xFC) | 0x02  # locally administered, unicast
    return bytes(mac)


class WSocket(io.IOBase):
    """A hardware socket with the calls of a MicroPython socket, poll-able as a stream."""

    def __init__(self, nic, kind, n=None):
        self._nic = nic
        self._kind = kind
        self._n = n
        self._timeout = None
        self._err = 0
        self._port = 0
        self._peer = None
        self._connecting = False
        self._listening = False
        self._sending = False
        self._tx_wr = 0
        self._rx_rd = 0
        self._rsr = 0
        self._sr = SR_CLOSED
        self._udp_head = bytearray(8)
        self._rxbufsize = 0
        if n is not None:
            self._attach(n)

    def __repr__(self):
        return "<WSocket %s hw=%s>" % ("tcp" if self._kind == SOCK_STREAM else "udp", self._n)

    # ---- set-up -----------------------------------------------------------------------

    def _attach(self, n):
        nic = self._nic
        c = nic.chip
        bsb = 4 * n + 1
        self._n = n
        self._bsb = bsb
        self._tx_wr = nic._read16(c.Sn_TX_WR, bsb)
        self._rx_rd = nic._read16(c.Sn_RX_RD, bsb)
        self._rsr = nic._read16_stable(c.Sn_RX_RSR, bsb)
        self._sending = False
        self._sr = nic._read8(c.Sn_SR, bsb)
        self._rxbufsize = nic._sizes[n] * 1024

    def _open(self, mode, port):
        nic = self._nic
        if self._n is None:
            self._n = nic._take()
        nic._open(self._n, mode, port or nic._port())
        self._port = port
        self._attach(self._n)

    def setsockopt(self, level, opt, value):
        pass

    def setblocking(self, flag):
        self._timeout = None if flag else 0

    def settimeout(self, t):
        self._timeout = t

    def bind(self, addr):
        self._port = addr[1]
        if self._kind == SOCK_DGRAM:
            self._open(self._nic.chip.MR_UDP, addr[1])

    def listen(self, backlog=1):
        if self._kind != SOCK_STREAM:
            raise OSError(EINVAL)
        if not self._port:
            raise OSError(EINVAL, "wiznet: bind() a port before listen()")
        self._open(self._nic.chip.MR_TCP, self._port)
        self._nic._command(self._n, CMD_LISTEN)
        self._listening = True
        self._sr = SR_LISTEN

    def connect(self, addr):
        nic = self._nic
        c = nic.chip
        if self._kind == SOCK_DGRAM:
            self._peer = addr
            if self._n is None:
                self._open(c.MR_UDP, self._port)
            return
        self._open(c.MR_TCP, self._port)
        nic.write(c.Sn_DIPR, self._bsb, _ip_bytes(addr[0]))
        nic._write16(c.Sn_DPORT, self._bsb, addr[1])
        nic._command(self._n, CMD_CONNECT)
        self._sr = SR_SYNSENT
        self._connecting = True
        self._err = 0
        if self._timeout == 0:
            raise OSError(EINPROGRESS)
        self._wait(self._connected)

    def _connected(self):
        self._refresh()
        if self._sr == SR_ESTABLISHED:
            return True
        self._check_failed()
        return False

    def _check_failed(self):
        if self._err:
            raise OSError(self._err)

    def accept(self):
        if not self._listening:
            raise OSError(EINVAL)
        self._wait(self._accepted)
        nic = self._nic
        c = nic.chip
        ip = nic._read_bytes(c.Sn_DIPR, self._bsb, 4)
        port = nic._read16(c.Sn_DPORT, self._bsb)
        conn = WSocket(nic, SOCK_STREAM, self._n)
        conn._sr = SR_ESTABLISHED
        self._n = None
        try:
            self.listen()
        except OSError:
            self._listening = False
        return conn, (_ip_text(ip), port)

    def _accepted(self):
        self._refresh()
        if self._sr == SR_ESTABLISHED or self._sr == SR_CLOSE_WAIT:
            return True
        if self._sr == SR_CLOSED:
            self.listen()
        return False

    def close(self):
        n = self._n
        if n is None:
            return
        nic = self._nic
        if self._kind == SOCK_STREAM and self._sr in (SR_ESTABLISHED, SR_CLOSE_WAIT):
            nic._command(n, CMD_DISCON)
            for _ in range(100):
                if nic._read8(nic.chip.Sn_SR, self._bsb) not in (SR_ESTABLISHED, SR_CLOSE_WAIT):
                    break
        nic._command(n, CMD_CLOSE)
        nic._write8(nic.chip.Sn_IRCLR, self._bsb, 0xFF)
        nic._give(n)
        self._n = None
        self._sr = SR_CLOSED
        self._listening = False

    # ---- state ------------------------------------------------------------------------

    def _refresh(self):
        """Bring the cached socket state up to date (skipped while INTn says nothing new)."""
        nic = self._nic
        n = self._n
        if n is None:
            if not self._err:
                self._err = EBADF
            return
        if nic._quiet():
            return
        c = nic.chip
        bsb = self._bsb
        # Status before interrupts: the event that changed the status has set its flag by then.
        sr = nic._read8(c.Sn_SR, bsb)
        ir = nic._read8(c.Sn_IR, bsb)
        if ir:
            nic._write8(c.Sn_IRCLR, bsb, ir)
            if ir & IR_SENDOK:
                self._sending = False
            if ir & IR_TIMEOUT:
                self._sending = False
                self._err = ETIMEDOUT
        self._sr = sr
        self._rsr = nic._read16_stable(c.Sn_RX_RSR, bsb)
        if self._kind != SOCK_STREAM or self._listening:
            return
        if sr == SR_ESTABLISHED or sr == SR_CLOSE_WAIT:
            self._connecting = False
        elif sr == SR_CLOSED and not self._err:
            self._err = ECONNREFUSED if self._connecting else ECONNRESET

    def _readiness(self):
        self._refresh()
        flags = 0
        if self._kind == SOCK_DGRAM:
            if self._rsr:
                flags |= _POLLIN
            if not self._sending:
                flags |= _POLLOUT
            if self._err == ETIMEDOUT:
                flags |= _POLLERR
            return flags
        sr = self._sr
        if self._listening:
            return _POLLIN if sr == SR_ESTABLISHED or sr == SR_CLOSE_WAIT else 0
        if self._rsr or sr == SR_CLOSE_WAIT:
            flags |= _POLLIN
        if sr == SR_ESTABLISHED and not self._sending:
            flags |= _POLLOUT
        if sr == SR_CLOSED:
            flags |= _POLLHUP | _POLLIN
            if self._err:
                flags |= _POLLERR
        return flags

    def ioctl(self, req, arg):
        if req == _POLL:
            return self._readiness() & (arg | _POLLERR | _POLLHUP)
        if req == 4:  # MP_STREAM_CLOSE
            self.close()
            return 0
        return -1

    def _wait(self, ready):
        """Run ready() until it returns true, honouring the socket timeout."""
        if ready():
            return
        t = self._timeout
        if t == 0:
            raise OSError(EAGAIN)
        deadline = None if t is None else time.ticks_add(time.ticks_ms(), int(t * 1000))
        while not ready():
            if deadline is not None and time.ticks_diff(deadline, time.ticks_ms()) <= 0:
                raise OSError(ETIMEDOUT)
            if self._nic._intr is None:
                time.sleep_ms(1)

    # ---- TCP data path ----------------------------------------------------------------

    def write(self, data):
        """Queue up to len(data) bytes for sending; returns the count, None if none fit."""
        if self._kind == SOCK_DGRAM:
            return self.sendto(data, self._peer)
        nic = self._nic
        c = nic.chip
        if self._sending:
            self._refresh()
            self._check_failed()
            if self._sending:
                return None
        if self._sr != SR_ESTABLISHED and self._sr != SR_CLOSE_WAIT:
            self._refresh()
            self._check_failed()
            if self._sr != SR_ESTABLISHED and self._sr != SR_CLOSE_WAIT:
                raise OSError(ENOTCONN)
        free = nic._read16_stable(c.Sn_TX_FSR, self._bsb)
        n = len(data)
        if n > free:
            n = free
        if n == 0:
            return None
        mv = memoryview(data)
        nic.write(self._tx_wr, self._bsb + 1, mv[:n] if n < len(data) else mv)
        self._tx_wr = (self._tx_wr + n) & 0xFFFF
        nic._write16(c.Sn_TX_WR, self._bsb, self._tx_wr)
        nic._command(self._n, CMD_SEND)
        self._sending = True
        return n

    def send(self, data):
        if self._timeout != 0:
            self._wait(self._writable)
        n = self.write(data)
        if n is None:
            raise OSError(EAGAIN)
        return n

    def _writable(self):
        if self._sending:
            self._refresh()
            self._check_failed()
        return not self._sending

    def sendall(self, data):
        mv = memoryview(data)
        off = 0
        while off < len(mv):
            self._wait(self._writable)
            n = self.write(mv[off:])
            if n:
                off += n
        self._wait(self._writable)

    def readinto(self, buf, nbytes=-1):
        """Copy received bytes straight from the chip's RX ring into buf.

        Returns the count, 0 at end of stream, None when nothing has arrived (non-blocking).
        """
        if self._kind == SOCK_DGRAM:
            raise OSError(EINVAL)
        mv = memoryview(buf)
        if 0 <= nbytes < len(mv):
            mv = mv[:nbytes]
        if len(mv) == 0:
            return 0
        nic = self._nic
        c = nic.chip
        if self._rsr == 0:
            self._refresh()
            if self._rsr == 0:
                if self._sr == SR_CLOSE_WAIT:
                    return 0
                if self._sr == SR_CLOSED:
                    self._check_failed()
                    return 0
                return None
        n = self._rsr if self._rsr < len(mv) else len(mv)
        nic.read(self._rx_rd, self._bsb + 2, mv[:n])
        self._rx_rd = (self._rx_rd + n) & 0xFFFF
        self._rsr -= n
        nic._write16(c.Sn_RX_RD, self._bsb, self._rx_rd)
        nic._command(self._n, CMD_RECV)
        return n

    def read(self, n=-1):
        if n < 0:
            n = self._rxbufsize or 2048
        buf = bytearray(n)
        got = self.readinto(buf)
        if got is None:
            return None
        return bytes(buf) if got == n else bytes(buf[:got])

    def recv_into(self, buf, nbytes=-1):
        got = None
        while got is None:
            got = self.readinto(buf, nbytes)
            if got is None:
                self._wait(self._readable)
        return got

    def recv(self, n):
        buf = bytearray(n)
        got = self.recv_into(buf)
        return bytes(buf) if got == n else bytes(buf[:got])

    def _readable(self):
        self._refresh()
        if self._kind == SOCK_DGRAM:
            return self._rsr > 0
        return self._rsr > 0 or self._sr != SR_ESTABLISHED

    # ---- UDP data path ----------------------------------------------------------------

    def sendto(self, data, addr):
        nic = self._nic
        c = nic.chip
        if self._n is None:
            self._open(c.MR_UDP, self._port)
        self._send_done()
        n = len(data)
        if n > nic._read16_stable(c.Sn_TX_FSR, self._bsb):
            raise OSError(EINVAL, "wiznet: datagram larger than the socket's TX buffer")
        bsb = self._bsb
        nic.write(c.Sn_DIPR, bsb, _ip_bytes(addr[0]))
        nic._write16(c.Sn_DPORT, bsb, addr[1])
        nic.write(self._tx_wr, bsb + 1, data)
        self._tx_wr = (self._tx_wr + n) & 0xFFFF
        nic._write16(c.Sn_TX_WR, bsb, self._tx_wr)
        self._err = 0
        nic._command(self._n, CMD_SEND)
        self._sending = True
        self._send_done()
        return n

    def _send_done(self):
        # A datagram leaves within microseconds, or the chip gives up on ARP after
        # RTR x (RCR + 1): wait for either, whatever the blocking mode.
        while not self._writable():
            if self._nic._intr is None:
                time.sleep_ms(1)

    def recvfrom(self, n):
        buf = bytearray(n)
        got, addr = self.recvfrom_into(buf)
        return (bytes(buf) if got == n else bytes(buf[:got])), addr

    def recvfrom_into(self, buf, nbytes=-1):
        """One datagram into buf (the excess of a longer one is dropped); (count, addr)."""
        if self._n is None:
            self._open(self._nic.chip.MR_UDP, self._port)
        self._wait(self._readable)
        nic = self._nic
        c = nic.chip
        head = self._udp_head
        nic.read(self._rx_rd, self._bsb + 2, head)
        size = ((head[c.UDP_LEN] << 8) | head[c.UDP_LEN + 1]) & c.UDP_LEN_MASK
        ip = _ip_text(head[c.UDP_IP: c.UDP_IP + 4])
        port = (head[c.UDP_PORT] << 8) | head[c.UDP_PORT + 1]
        mv = memoryview(buf)
        if 0 <= nbytes < len(mv):
            mv = mv[:nbytes]
        take = size if size < len(mv) else len(mv)
        if take:
            nic.read((self._rx_rd + 8) & 0xFFFF, self._bsb + 2, mv[:take])
        self._rx_rd = (self._rx_rd + 8 + size) & 0xFFFF
        self._rsr = 0
        nic._write16(c.Sn_RX_RD, self._bsb, self._rx_rd)
        nic._command(self._n, CMD_RECV)
        return take, (ip, port)
