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
#
# What the vendor's documents say and how this driver follows them is tabled in
# docs/wiznet.md; the rules that matter most here:
# - Sn_TX_WR / Sn_RX_RD are re-initialised when a TCP connection is established: they are
#   read fresh for every transfer, never kept across one.
# - Sn_CR reading 0 only means "accepted": state commands are complete when Sn_SR says so.
# - No Sn_IR bit is promised for a refused connect or a peer's RST, nor a repeated RECV bit
#   while data remains: with INTn wired, a socket still reads its status every _POLL_MS.
# - Every wait has a time limit.

import io
import sys
import time

try:
    from micropython import const
except ImportError:  # CPython (tests that load the driver on the host)
    def const(x):
        return x

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
AF_INET6 = 10
SOCK_STREAM = 1
SOCK_DGRAM = 2
IPPROTO_TCP = 6
IPPROTO_UDP = 17
SOL_SOCKET = 1
SO_REUSEADDR = 4
SO_BROADCAST = 32
TCP_NODELAY = 1

_POLL = const(3)  # MP_STREAM_POLL
_POLLIN = const(1)
_POLLOUT = const(4)
_POLLERR = const(8)
_POLLHUP = const(16)

# Time limits (ms). A socket with INTn wired still reads its status every _POLL_MS.
_CMD_MS = const(100)  # Sn_CR back to 0
_STATE_MS = const(500)  # Sn_SR reaching the state a command leads to
_CLOSE_MS = const(2000)  # DISCON: the peer's FIN/ACK
_POLL_MS = const(20)
_ARP_MS = const(4000)  # a UDP SEND: SENDOK or TIMEOUT (RTR 200 ms x (RCR 8 + 1) by default)

# Socket commands (Sn_CR), interrupt bits (Sn_IR) and states (Sn_SR): the same on both chips.
_CMD_OPEN = const(0x01)
_CMD_LISTEN = const(0x02)
_CMD_CONNECT = const(0x04)
_CMD_DISCON = const(0x08)
_CMD_CLOSE = const(0x10)
_CMD_SEND = const(0x20)
_CMD_RECV = const(0x40)
_CMD_V6 = const(0x80)  # W6100: CONNECT6 = 0x84, SEND6 = 0xA0

_IR_CON = const(0x01)
_IR_DISCON = const(0x02)
_IR_RECV = const(0x04)
_IR_TIMEOUT = const(0x08)
_IR_SENDOK = const(0x10)

_SR_CLOSED = const(0x00)
_SR_INIT = const(0x13)
_SR_LISTEN = const(0x14)
_SR_SYNSENT = const(0x15)
_SR_ESTABLISHED = const(0x17)
_SR_CLOSE_WAIT = const(0x1C)
_SR_UDP = const(0x22)

_MR_TCP = const(0x01)
_MR_UDP = const(0x02)
_MR_V6 = const(0x08)  # W6100: Sn_MR TCP6 = 0x09, UDP6 = 0x0A
_MR_ND = const(0x20)  # no delayed ACK (TCP)

# What WSocket._wait waits for (WSocket._ready)
_CONNECTED = const(0)
_ACCEPTED = const(1)
_READABLE = const(2)
_WRITABLE = const(3)

# The chip's register map (self.chip: wiznet_up.py's _W5500 or _W6100 tuple) is read as
# self.chip[_SIPR]; these indexes are wiznet_up.py's (the block below is generated from its
# declaration), as _const()s no name is interned for. None: the chip has no such register
# (the W5500 no locks and no IPv6).
# BEGIN GENERATED: WIZnet register map indexes (tools/gen_protocol.py, from wiznet_up.py)
_NAME = const(0)
_GAR = const(1)
_SUBR = const(2)
_SIPR = const(3)
_SIMR = const(4)
_PHY = const(5)
_NETLCKR = const(6)
_Sn_MR = const(8)
_Sn_CR = const(9)
_Sn_IR = const(10)
_Sn_IRCLR = const(11)
_Sn_SR = const(12)
_Sn_PORT = const(13)
_Sn_DIPR = const(14)
_Sn_DIP6R = const(15)
_Sn_DPORT = const(16)
_Sn_TX_FSR = const(17)
_Sn_TX_WR = const(18)
_Sn_RX_RSR = const(19)
_Sn_RX_RD = const(20)
_UDP_IP = const(21)
_UDP_PORT = const(22)
_UDP_LEN = const(23)
_UDP_LEN_MASK = const(24)
# END GENERATED
# W6100 NETLCKR values (w6100.h): network configuration writes between unlock and lock
_NETLCK_UNLOCK = const(0x3A)
_NETLCK_LOCK = const(0xC5)



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


def _expired(end):
    """Whether the ticks_ms `end` (a deadline) has passed."""
    return time.ticks_diff(end, time.ticks_ms()) <= 0


class WIZnet:
    """One W5500 or W6100 on an SPI bus.

    spi: a configured machine.SPI (mode 0 or 3, MSB first; the board file gives the clock);
    cs: the chip-select machine.Pin (output); rst: optional reset Pin (output); intr:
    optional interrupt Pin (input, the chip drives it low while a socket interrupt is
    pending; without it readiness is polled over SPI); chip: "w5500", "w6100" or None to
    identify it; mac: 6 bytes (default: derived from machine.unique_id when available);
    buffers: per-socket buffer sizes in KB for TX and RX (8 values from 0/1/2/4/8/16
    summing to at most 16; default 2 KB each); reset_ms: (RSTn held low, wait after it),
    WIZnet's board code uses (100, 100).
    """

    AF_INET = AF_INET
    AF_INET6 = AF_INET6
    SOCK_STREAM = SOCK_STREAM
    SOCK_DGRAM = SOCK_DGRAM
    IPPROTO_TCP = IPPROTO_TCP
    IPPROTO_UDP = IPPROTO_UDP
    SOL_SOCKET = SOL_SOCKET
    SO_REUSEADDR = SO_REUSEADDR
    SO_BROADCAST = SO_BROADCAST
    TCP_NODELAY = TCP_NODELAY

    def __init__(self, spi, cs, rst=None, intr=None, chip=None, mac=None, buffers=None,
                 reset_ms=(100, 100)):
        self._spi = spi
        self._cs = cs
        self._intr = intr
        # Register access without allocation: (out, in) views of 3 + n bytes, n = 1..8;
        # n = 0: the 3-byte header of a burst (read, write).
        out, inp = memoryview(bytearray(11)), memoryview(bytearray(11))
        self._views = [(out[: 3 + n], inp[: 3 + n]) for n in range(9)]
        self._next_port = 49152 + (time.ticks_ms() & 0x3FFF)
        self._dns = "0.0.0.0"
        self.lease_s = None
        # the lease's renewal (wiznet_dhcp): [ticks_ms when due, server, start, lease_ms,
        # T2, hostname], None while no renewal is due
        self._dhcp = None
        self._simr = 0
        # reset, identify, buffers, MAC: code run once, then dropped (wiznet_up.py); the
        # chip's register map stays as self.chip
        import wiznet_up

        try:
            wiznet_up.start(self, rst, reset_ms, chip, buffers, mac)
        finally:
            sys.modules.pop("wiznet_up", None)

    # ---- SPI access -------------------------------------------------------------------

    def read(self, addr, bsb, buf):
        """Burst-read len(buf) bytes at addr of block bsb into buf: one SPI transaction."""
        h = self._views[0][0]  # the 3-byte header
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
        h = self._views[0][0]  # the 3-byte header
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

    def _read16(self, addr, bsb):
        r = self._read_reg(addr, bsb, 2)
        return (r[3] << 8) | r[4]

    def _read16_stable(self, addr, bsb):
        # The chip updates 16-bit counters byte by byte: read until two reads agree
        # (datasheet p.54-55 notes; ioLibrary getSn_TX_FSR / getSn_RX_RSR loop the same way).
        a = self._read16(addr, bsb)
        for _ in range(16):
            b = self._read16(addr, bsb)
            if a == b:
                return a
            a = b
        raise OSError(ETIMEDOUT, "wiznet: a 16-bit counter never read the same twice")

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

    def _write_net(self, addr, data):
        c = self.chip
        if c[_NETLCKR] is None:
            self.write(addr, 0, data)
            return
        self._write_reg(c[_NETLCKR], 0, _NETLCK_UNLOCK, 1)
        self.write(addr, 0, data)
        self._write_reg(c[_NETLCKR], 0, _NETLCK_LOCK, 1)

    # ---- network ----------------------------------------------------------------------

    def ifconfig(self, config=None):
        """Get or set (ip, subnet, gateway, dns) as dotted strings. DNS is only recorded."""
        c = self.chip
        if config is None:
            ip = self._read_bytes(c[_SIPR], 0, 4)
            sub = self._read_bytes(c[_SUBR], 0, 4)
            gw = self._read_bytes(c[_GAR], 0, 4)
            return (_ip_text(ip), _ip_text(sub), _ip_text(gw), self._dns)
        ip, sub, gw = _ip_bytes(config[0]), _ip_bytes(config[1]), _ip_bytes(config[2])
        self._write_net(c[_SIPR], ip)
        self._write_net(c[_SUBR], sub)
        self._write_net(c[_GAR], gw)
        if len(config) > 3:
            self._dns = config[3]
        return None

    def ifconfig6(self, config=None):
        """W6100: get or set (link-local, global, prefix mask, gateway) IPv6 addresses."""
        if self.chip[_Sn_DIP6R] is None:
            raise OSError(EINVAL, "wiznet: the %s has no IPv6" % self.chip[_NAME])
        import wiznet6

        return wiznet6.ifconfig6(self, config)

    def link_up(self):
        """True while the PHY reports a link (bit 0 of PHYCFGR / PHYSR)."""
        return bool(self._read_reg(self.chip[_PHY], 0, 1)[3] & 0x01)

    def wait_link(self, timeout_ms=5000):
        """Wait up to timeout_ms for the PHY link (auto-negotiation takes a while after a
        reset); returns link_up()."""
        deadline = time.ticks_add(time.ticks_ms(), timeout_ms)
        while not self.link_up():
            if _expired(deadline):
                return False
            time.sleep_ms(10)
        return True

    def isconnected(self):
        return self.link_up() and self.ifconfig()[0] != "0.0.0.0"

    def dhcp(self, timeout_ms=10000, hostname=None):
        """Lease an address with DHCP on a hardware UDP socket; returns ifconfig(). Call
        maintain() now and then to renew the lease (RFC 2131 T1 / T2)."""
        import wiznet_dhcp

        try:
            return wiznet_dhcp.lease(self, timeout_ms, hostname)
        finally:  # out of the heap until the next renewal
            sys.modules.pop("wiznet_dhcp", None)

    def maintain(self):
        """Renew a DHCP lease when it is due; cheap otherwise. Blocks about a second while it
        talks to the server (once per half lease)."""
        due = self._dhcp
        if due is not None and time.ticks_diff(time.ticks_ms(), due[0]) >= 0:
            import wiznet_dhcp

            try:
                wiznet_dhcp.maintain(self)
            finally:
                sys.modules.pop("wiznet_dhcp", None)

    def getaddrinfo(self, host, port, af=0, type=0, proto=0, flags=0):
        if host == "localhost":
            host = "127.0.0.1"
        kind = type or SOCK_STREAM
        family = AF_INET
        if ":" in host:
            import wiznet6

            wiznet6.pton(host)
            family = AF_INET6
        else:
            try:
                _ip_bytes(host)
            except ValueError:
                raise OSError(EINVAL, "wiznet: no DNS resolver; give a numeric address")
        return [(family, kind, IPPROTO_UDP if kind == SOCK_DGRAM else IPPROTO_TCP, "",
                 (host, port))]

    def socket(self, af=AF_INET, type=SOCK_STREAM, proto=0):
        if af == AF_INET6 and self.chip[_Sn_DIP6R] is not None:
            import wiznet6

            wiznet6.ensure_lla(self)
        elif af != AF_INET:
            raise OSError(EINVAL, "wiznet: IPv4 sockets only on the %s" % self.chip[_NAME])
        if type not in (SOCK_STREAM, SOCK_DGRAM):
            raise OSError(EINVAL, "wiznet: TCP or UDP sockets only")
        return WSocket(self, type, af)

    # ---- hardware socket allocation and commands --------------------------------------

    def _set_simr(self, n, on):
        bit = 1 << n
        simr = (self._simr | bit) if on else (self._simr & ~bit)
        if simr != self._simr:
            self._simr = simr
            self._write_reg(self.chip[_SIMR], 0, simr, 1)

    def _port(self):
        p = self._next_port
        self._next_port = 49152 if p >= 65535 else p + 1
        return p

    def _command(self, n, code):
        """Write Sn_CR and wait until the chip has accepted it (Sn_CR back to 0). For OPEN,
        LISTEN and CLOSE the command is complete only when Sn_SR shows it (p.46)."""
        c = self.chip
        bsb = 4 * n + 1
        self._write_reg(c[_Sn_CR], bsb, code, 1)
        deadline = time.ticks_add(time.ticks_ms(), _CMD_MS)
        late = False
        while self._read_reg(c[_Sn_CR], bsb, 1)[3]:
            if late:
                raise OSError(ETIMEDOUT,
                              "wiznet: %s stopped accepting socket commands" % c[_NAME])
            late = _expired(deadline)  # one more look after the deadline

    def _await_sr(self, n, want):
        """Sn_SR once it is one of `want`; OSError(ETIMEDOUT) after _STATE_MS."""
        c = self.chip
        deadline = time.ticks_add(time.ticks_ms(), _STATE_MS)
        late = False
        while True:
            sr = self._read_reg(c[_Sn_SR], 4 * n + 1, 1)[3]
            if sr in want:
                return sr
            if late:
                raise OSError(ETIMEDOUT, "wiznet: socket %d stuck in state 0x%02x" % (n, sr))
            late = _expired(deadline)

    def _open(self, n, mode, port):
        c = self.chip
        bsb = 4 * n + 1
        self._command(n, _CMD_CLOSE)
        self._await_sr(n, (_SR_CLOSED,))
        self._write_reg(c[_Sn_IRCLR], bsb, 0xFF, 1)
        self._write_reg(c[_Sn_MR], bsb, mode, 1)
        self._write_reg(c[_Sn_PORT], bsb, port, 2)
        self._command(n, _CMD_OPEN)
        self._await_sr(n, (_SR_INIT, _SR_UDP))
        self._set_simr(n, True)


class WSocket(io.IOBase):
    """A hardware socket with the calls of a MicroPython socket, poll-able as a stream."""

    def __init__(self, nic, type, af=AF_INET, n=None):
        self._nic = nic
        self.type = type  # SOCK_STREAM or SOCK_DGRAM, as a CPython socket's
        self._v6 = af == AF_INET6
        self._n = n
        self._timeout = None
        self._err = 0
        self._port = 0
        self._peer = None
        self._connecting = False
        self._listening = False
        self._sending = False
        self._nd = 0
        self._rsr = 0
        self._sr = _SR_CLOSED
        self._polled = 0
        if n is not None:
            self._attach(n)

    def __repr__(self):
        kind = "<WSocket tcp hw=%s>" if self.type == SOCK_STREAM else "<WSocket udp hw=%s>"
        return kind % (self._n,)

    # ---- set-up -----------------------------------------------------------------------

    def _attach(self, n):
        nic = self._nic
        c = nic.chip
        bsb = 4 * n + 1
        self._n = n
        self._rsr = nic._read16_stable(c[_Sn_RX_RSR], bsb)
        self._sending = False
        self._sr = nic._read_reg(c[_Sn_SR], bsb, 1)[3]
        self._polled = time.ticks_ms()

    def _open(self, port):
        nic = self._nic
        if self._n is None:
            if not nic._free:
                raise OSError(ENOMEM, "wiznet: all hardware sockets in use")
            self._n = nic._free.pop(0)
        mode = _MR_TCP | self._nd if self.type == SOCK_STREAM else _MR_UDP
        nic._open(self._n, mode | _MR_V6 if self._v6 else mode, port or nic._port())
        self._port = port
        self._attach(self._n)

    def setsockopt(self, level, name, value):
        if level == IPPROTO_TCP and name == TCP_NODELAY and self.type == SOCK_STREAM:
            # Sn_MR.ND: ACK at once instead of delaying it; written now if the socket is open
            self._nd = _MR_ND if value else 0
            if self._n is not None:
                mode = _MR_TCP | self._nd | (_MR_V6 if self._v6 else 0)  # as _open's
                self._nic._write_reg(self._nic.chip[_Sn_MR], 4 * self._n + 1, mode, 1)

    def setblocking(self, value):
        self._timeout = None if value else 0

    def settimeout(self, value):  # seconds, None: blocking
        self._timeout = value

    def bind(self, addr):
        self._port = addr[1]
        if self.type == SOCK_DGRAM:
            self._open(addr[1])

    def listen(self, backlog=1):
        if self.type != SOCK_STREAM:
            raise OSError(EINVAL)
        if not self._port:
            raise OSError(EINVAL, "wiznet: bind() a port before listen()")
        self._open(self._port)
        self._nic._command(self._n, _CMD_LISTEN)
        self._sr = self._nic._await_sr(self._n, (_SR_LISTEN, _SR_ESTABLISHED, _SR_CLOSE_WAIT))
        self._listening = True

    def _set_peer(self, addr):
        nic = self._nic
        c = nic.chip
        bsb = 4 * self._n + 1  # the socket's register block
        if self._v6:
            import wiznet6

            nic.write(c[_Sn_DIP6R], bsb, wiznet6.pton(addr[0]))
        else:
            nic.write(c[_Sn_DIPR], bsb, _ip_bytes(addr[0]))
        nic._write_reg(c[_Sn_DPORT], bsb, addr[1], 2)

    def connect(self, addr):
        nic = self._nic
        if self.type == SOCK_DGRAM:
            self._peer = addr
            if self._n is None:
                self._open(self._port)
            return
        self._open(self._port)
        self._set_peer(addr)
        nic._command(self._n, _CMD_CONNECT | (_CMD_V6 if self._v6 else 0))
        self._connecting = True
        self._err = 0
        if self._timeout == 0:
            raise OSError(EINPROGRESS)
        self._wait(_CONNECTED)

    def accept(self):
        if not self._listening:
            raise OSError(EINVAL)
        self._wait(_ACCEPTED)
        nic = self._nic
        c = nic.chip
        bsb = 4 * self._n + 1
        port = nic._read16(c[_Sn_DPORT], bsb)
        if self._v6:
            import wiznet6

            ip = wiznet6.ntop(nic._read_bytes(c[_Sn_DIP6R], bsb, 8)
                              + nic._read_bytes(c[_Sn_DIP6R] + 8, bsb, 8))
        else:
            ip = _ip_text(nic._read_bytes(c[_Sn_DIPR], bsb, 4))
        conn = WSocket(nic, SOCK_STREAM, AF_INET6 if self._v6 else AF_INET, self._n)
        self._n = None
        try:
            self.listen()
        except OSError:
            self._listening = False
        return conn, (ip, port)

    def close(self):
        n = self._n
        if n is None:
            return
        nic = self._nic
        c = nic.chip
        bsb = 4 * n + 1
        if self.type == SOCK_STREAM and not self._listening:
            sr = nic._read_reg(c[_Sn_SR], bsb, 1)[3]
            if sr == _SR_ESTABLISHED or sr == _SR_CLOSE_WAIT:
                # ioLibrary disconnect(): DISCON, then wait for SOCK_CLOSED or TIMEOUT; CLOSE
                # right away would cut the FIN handshake and drop bytes still unsent.
                nic._command(n, _CMD_DISCON)
                deadline = time.ticks_add(time.ticks_ms(), _CLOSE_MS)
                while nic._read_reg(c[_Sn_SR], bsb, 1)[3] != _SR_CLOSED:
                    ir = nic._read_reg(c[_Sn_IR], bsb, 1)[3]
                    if ir & _IR_TIMEOUT or _expired(deadline):
                        break
                    time.sleep_ms(1)
        nic._command(n, _CMD_CLOSE)
        nic._await_sr(n, (_SR_CLOSED,))
        nic._write_reg(c[_Sn_IRCLR], bsb, 0xFF, 1)
        if n not in nic._free:  # the hardware socket back to the free ones
            nic._free.append(n)
        nic._set_simr(n, False)
        self._n = None
        self._sr = _SR_CLOSED
        self._listening = False

    # ---- state ------------------------------------------------------------------------

    def _refresh(self):
        """Bring the cached socket state up to date. With INTn wired and high it is skipped,
        but never for longer than _POLL_MS: Sn_SR may change without any interrupt."""
        nic = self._nic
        n = self._n
        if n is None:
            if not self._err:
                self._err = EBADF
            return
        now = time.ticks_ms()
        intr = nic._intr  # high: no socket interrupt pending
        if intr is not None and intr() == 1 and time.ticks_diff(now, self._polled) < _POLL_MS:
            return
        self._polled = now
        c = nic.chip
        bsb = 4 * n + 1
        # Status before interrupts: the event that changed the status has set its flag by
        # then. Interrupts are cleared before Sn_RX_RSR is read, so data arriving later
        # raises RECV again.
        sr = nic._read_reg(c[_Sn_SR], bsb, 1)[3]
        ir = nic._read_reg(c[_Sn_IR], bsb, 1)[3]
        if ir:
            nic._write_reg(c[_Sn_IRCLR], bsb, ir, 1)
            if ir & _IR_SENDOK:
                self._sending = False
            if ir & _IR_TIMEOUT:
                self._sending = False
                self._err = ETIMEDOUT
        self._sr = sr
        self._rsr = nic._read16_stable(c[_Sn_RX_RSR], bsb)
        if self.type != SOCK_STREAM or self._listening:
            return
        if sr == _SR_ESTABLISHED or sr == _SR_CLOSE_WAIT:
            self._connecting = False
        elif sr == _SR_CLOSED and not self._err:
            self._err = ECONNREFUSED if self._connecting else ECONNRESET

    def ioctl(self, req, flags):
        if req != _POLL:
            if req == 4:  # MP_STREAM_CLOSE
                self.close()
                return 0
            return -1
        # readiness: what the socket can do now, of the poll `flags` asked (errors and
        # hang-up are always reported)
        mask = flags | _POLLERR | _POLLHUP
        if not self._rsr:
            self._refresh()
        elif self._sending or self._sr != _SR_ESTABLISHED:
            self._refresh()
        flags = 0
        if self.type == SOCK_DGRAM:
            if self._rsr:
                flags |= _POLLIN
            if not self._sending:
                flags |= _POLLOUT
            if self._err == ETIMEDOUT:
                flags |= _POLLERR
            return flags & mask
        sr = self._sr
        if self._listening:
            return _POLLIN & mask if sr == _SR_ESTABLISHED or sr == _SR_CLOSE_WAIT else 0
        if self._rsr or sr == _SR_CLOSE_WAIT:
            flags |= _POLLIN
        if sr == _SR_ESTABLISHED and not self._sending:
            flags |= _POLLOUT
        if sr == _SR_CLOSED:
            flags |= _POLLHUP | _POLLIN
            if self._err:
                flags |= _POLLERR
        return flags & mask

    def _ready(self, what):
        """Whether the socket is connected (_CONNECTED), has a connection to take
        (_ACCEPTED), something to read (_READABLE) or room for a write (_WRITABLE), its
        state brought up to date first."""
        if what == _WRITABLE:
            if self._sending:
                self._refresh()
                if self._err:
                    raise OSError(self._err)
            return not self._sending
        self._refresh()
        sr = self._sr
        if what == _READABLE:
            if self.type == SOCK_DGRAM:
                return self._rsr > 0
            return self._rsr > 0 or sr != _SR_ESTABLISHED
        if what == _CONNECTED:
            if sr == _SR_ESTABLISHED:
                return True
            if self._err:
                raise OSError(self._err)
            return False
        if sr == _SR_ESTABLISHED or sr == _SR_CLOSE_WAIT:  # _ACCEPTED
            return True
        if sr == _SR_CLOSED:
            self.listen()
        return False

    def _wait(self, what):
        """Wait until _ready(what), honouring the socket timeout."""
        if self._ready(what):
            return
        t = self._timeout
        if t == 0:
            raise OSError(EAGAIN)
        deadline = None if t is None else time.ticks_add(time.ticks_ms(), int(t * 1000))
        while not self._ready(what):
            if deadline is not None and _expired(deadline):
                raise OSError(ETIMEDOUT)
            if self._nic._intr is None:
                time.sleep_ms(1)

    # ---- TCP data path ----------------------------------------------------------------

    def write(self, data):
        """Queue up to len(data) bytes for sending; returns the count, None if none fit."""
        if self.type == SOCK_DGRAM:
            return self.sendto(data, self._peer)
        nic = self._nic
        c = nic.chip
        if self._sending:
            self._refresh()
            if self._err:
                raise OSError(self._err)
            if self._sending:
                return None
        if self._sr != _SR_ESTABLISHED and self._sr != _SR_CLOSE_WAIT:
            self._refresh()
            if self._err:
                raise OSError(self._err)
            if self._sr != _SR_ESTABLISHED and self._sr != _SR_CLOSE_WAIT:
                raise OSError(ENOTCONN)
        bsb = 4 * self._n + 1
        free = nic._read16_stable(c[_Sn_TX_FSR], bsb)
        n = len(data)
        if n > free:
            n = free
        if n == 0:
            return None
        mv = memoryview(data)
        wr = nic._read16(c[_Sn_TX_WR], bsb)  # fresh: re-initialised when the connection opened
        nic.write(wr, bsb + 1, mv[:n] if n < len(data) else mv)
        nic._write_reg(c[_Sn_TX_WR], bsb, (wr + n) & 0xFFFF, 2)
        nic._command(self._n, _CMD_SEND)
        self._sending = True
        return n

    def send(self, data):
        if self._timeout != 0:
            self._wait(_WRITABLE)
        n = self.write(data)
        if n is None:
            raise OSError(EAGAIN)
        return n

    def sendall(self, data):
        mv = memoryview(data)
        off = 0
        while off < len(mv):
            self._wait(_WRITABLE)
            n = self.write(mv[off:])
            if n:
                off += n
        self._wait(_WRITABLE)

    def readinto(self, buf, nbytes=-1):
        """Copy received bytes straight from the chip's RX ring into buf.

        Returns the count, 0 at end of stream, None when nothing has arrived (non-blocking).
        """
        if self.type == SOCK_DGRAM:
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
                if self._sr == _SR_CLOSE_WAIT:
                    return 0
                if self._sr == _SR_CLOSED:
                    if self._err:
                        raise OSError(self._err)
                    return 0
                return None
        bsb = 4 * self._n + 1
        n = self._rsr if self._rsr < len(mv) else len(mv)
        rd = nic._read16(c[_Sn_RX_RD], bsb)  # fresh: re-initialised when the connection opened
        nic.read(rd, bsb + 2, mv[:n])
        self._rsr -= n
        nic._write_reg(c[_Sn_RX_RD], bsb, (rd + n) & 0xFFFF, 2)
        nic._command(self._n, _CMD_RECV)
        return n

    def read(self, n=-1):
        if n < 0:
            n = 2048 if self._n is None else self._nic._sizes[self._n] * 1024  # its RX buffer
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
                self._wait(_READABLE)
        return got

    def recv(self, n):
        buf = bytearray(n)
        got = self.recv_into(buf)
        return bytes(buf) if got == n else bytes(buf[:got])

    # ---- UDP data path ----------------------------------------------------------------

    def sendto(self, data, addr):
        nic = self._nic
        c = nic.chip
        if self._n is None:
            self._open(self._port)
        self._send_done()
        n = len(data)
        bsb = 4 * self._n + 1
        if n > nic._read16_stable(c[_Sn_TX_FSR], bsb):
            raise OSError(EINVAL, "wiznet: datagram larger than the socket's TX buffer")
        self._set_peer(addr)
        wr = nic._read16(c[_Sn_TX_WR], bsb)
        nic.write(wr, bsb + 1, data)
        nic._write_reg(c[_Sn_TX_WR], bsb, (wr + n) & 0xFFFF, 2)
        self._err = 0
        nic._command(self._n, _CMD_SEND | (_CMD_V6 if self._v6 else 0))
        self._sending = True
        self._send_done()
        return n

    def _send_done(self):
        # A datagram leaves within microseconds, or the chip gives up on ARP after
        # RTR x (RCR + 1): wait for either, whatever the blocking mode, but not forever.
        deadline = time.ticks_add(time.ticks_ms(), _ARP_MS)
        while not self._ready(_WRITABLE):
            if _expired(deadline):
                self._sending = False
                raise OSError(ETIMEDOUT, "wiznet: SEND neither completed nor timed out")
            if self._nic._intr is None:
                time.sleep_ms(1)

    def recvfrom(self, n):
        buf = bytearray(n)
        got, addr = self.recvfrom_into(buf)
        return (bytes(buf) if got == n else bytes(buf[:got])), addr

    def recvfrom_into(self, buf, nbytes=-1):
        """One datagram into buf (the excess of a longer one is dropped); (count, addr)."""
        if self._n is None:
            self._open(self._port)
        self._wait(_READABLE)
        nic = self._nic
        c = nic.chip
        bsb = 4 * self._n + 1
        head = bytearray(20 if self._v6 else 8)  # (datagrams: discovery and DHCP only)
        rd = nic._read16(c[_Sn_RX_RD], bsb)
        nic.read(rd, bsb + 2, head)
        size = ((head[c[_UDP_LEN]] << 8) | head[c[_UDP_LEN] + 1]) & c[_UDP_LEN_MASK]
        if self._v6:
            import wiznet6

            ip = wiznet6.ntop(head[2:18])
            port = (head[18] << 8) | head[19]
        else:
            ip = _ip_text(head[c[_UDP_IP]: c[_UDP_IP] + 4])
            port = (head[c[_UDP_PORT]] << 8) | head[c[_UDP_PORT] + 1]
        mv = memoryview(buf)
        if 0 <= nbytes < len(mv):
            mv = mv[:nbytes]
        take = size if size < len(mv) else len(mv)
        if take:
            nic.read((rd + len(head)) & 0xFFFF, bsb + 2, mv[:take])
        nic._write_reg(c[_Sn_RX_RD], bsb, (rd + len(head) + size) & 0xFFFF, 2)
        nic._command(self._n, _CMD_RECV)
        # More datagrams may be queued; no RECV interrupt is promised for them: read
        # Sn_RX_RSR again, as ioLibrary's recvfrom() does before every datagram.
        self._rsr = nic._read16_stable(c[_Sn_RX_RSR], bsb)
        return take, (ip, port)
