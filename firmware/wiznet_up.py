"""Bring-up of a WIZnet chip, apart from the driver's steady state (wiznet.py): the
hardware reset, which chip answers, its soft reset, the socket buffer sizes, the MAC, and
the two chips' register maps; and, before those, the SPI bus and pins board.json names
(open_board, worker_up.open_net's WIZnet case). WIZnet.__init__ calls start() once and drops
this module from sys.modules again: only the register map of the chip found stays, as the
driver's `chip`, so a running node does not hold this code. `self` below is the driver.
Every name a module brings is interned for good, this one's too: steps are inline, not
functions of their own.
"""

import time

from wiznet import ETIMEDOUT, _expired

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

# The two chips' register maps: the only place where the W5500 and the W6100 differ. A map
# is a tuple, read as map[_NAME]; the indexes are _const()s, so no register name is
# interned (an attribute name would be, in every module that names it). wiznet.py and
# wiznet_dhcp.py get the indexes each reads from here, in a block `make vectors` generates
# (tools/gen_protocol.py; tests/protocol/test_vectors.py fails when one is stale).
# Common-register addresses are in BSB 0; socket-register offsets are within the socket's
# register block (BSB 4n+1). None: the chip has no such register. The driver keeps the map
# of the chip found as `chip`.
# BEGIN: WIZnet register map indexes (tools/gen_protocol.py copies the ones another module
# names into its generated block)
_NAME = const(0)
_GAR = const(1)
_SUBR = const(2)
_SIPR = const(3)
_SIMR = const(4)
_PHY = const(5)
_NETLCKR = const(6)
_CHPLCKR = const(7)
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
_UDP_IP = const(21)  # the UDP receive header: where the address, port and length are
_UDP_PORT = const(22)
_UDP_LEN = const(23)
_UDP_LEN_MASK = const(24)
# read by the bring-up alone
_MR = const(25)
_SHAR = const(26)
_ID = const(27)
_ID_VALUE = const(28)
_SYCR0 = const(29)
_SYCR1 = const(30)
_Sn_TXBUF_SIZE = const(31)
_Sn_RXBUF_SIZE = const(32)
# END

_W5500 = const((
    "W5500",
    # GAR, SUBR, SIPR, SIMR, PHY (PHYCFGR), NETLCKR, CHPLCKR
    0x0001, 0x0005, 0x000F, 0x0018, 0x002E, None, None,
    # Sn_MR, Sn_CR, Sn_IR, Sn_IRCLR (Sn_IR itself), Sn_SR, Sn_PORT, Sn_DIPR, Sn_DIP6R,
    # Sn_DPORT, Sn_TX_FSR, Sn_TX_WR, Sn_RX_RSR, Sn_RX_RD
    0x0000, 0x0001, 0x0002, 0x0002, 0x0003, 0x0004, 0x000C, None,
    0x0010, 0x0020, 0x0024, 0x0026, 0x0028,
    # UDP receive header: ip(4) port(2) length(2)
    0, 4, 6, 0xFFFF,
    # MR, SHAR, ID (VERSIONR), its value, SYCR0, SYCR1, Sn_TXBUF_SIZE, Sn_RXBUF_SIZE
    0x0000, 0x0009, 0x0039, b"\x04", None, None, 0x001F, 0x001E,
))

_W6100 = const((
    "W6100",
    # GAR, SUBR, SIPR, SIMR, PHY (PHYSR), NETLCKR, CHPLCKR
    0x4130, 0x4134, 0x4138, 0x2114, 0x3000, 0x41F5, 0x41F4,
    # Sn_MR, Sn_CR, Sn_IR, Sn_IRCLR, Sn_SR, Sn_PORT, Sn_DIPR, Sn_DIP6R,
    # Sn_DPORT, Sn_TX_FSR, Sn_TX_WR, Sn_RX_RSR, Sn_RX_RD
    0x0000, 0x0010, 0x0020, 0x0028, 0x0030, 0x0114, 0x0120, 0x0130,
    0x0140, 0x0204, 0x020C, 0x0224, 0x0228,
    # UDP receive header: info|length(2, low 11 bits) ip(4, or 16 for IPv6) port(2)
    2, 6, 0, 0x07FF,
    # MR (none: SYCR0 resets), SHAR, ID (CIDR), its value, SYCR0, SYCR1, Sn_TXBUF_SIZE,
    # Sn_RXBUF_SIZE
    None, 0x4120, 0x0000, b"\x61\x00", 0x2004, 0x2005, 0x0200, 0x0220,
))

_CHPLCK_UNLOCK = const(0xCE)  # W6100 CHPLCKR (w6100.h): chip configuration writes between
_CHPLCK_LOCK = const(0xFF)  # unlock and lock (SYCR0, SYCR1)

_SOCKETS = const(8)  # both chips: 8 sockets sharing 16 KB of TX and 16 KB of RX memory


def start(self, rst, reset_ms, chip, buffers, mac):
    sizes = tuple(buffers) if buffers is not None else (2,) * _SOCKETS
    if len(sizes) != _SOCKETS or sum(sizes) > 16:
        raise ValueError("buffers: 8 sizes summing to <= 16 KB")
    for kb in sizes:
        if kb not in (0, 1, 2, 4, 8, 16):
            raise ValueError("buffer sizes are 0, 1, 2, 4, 8 or 16 KB")
    self._cs(1)
    if rst is not None:
        rst(0)
        time.sleep_ms(reset_ms[0])
        rst(1)
        time.sleep_ms(reset_ms[1])

    # which chip answers: the one asked for, else either (the W6100 first)
    chips = [each for each in (_W6100, _W5500) if not chip or each[_NAME].lower() == chip]
    if not chips:
        raise ValueError("unknown WIZnet chip %r (known: w5500, w6100)" % (chip,))
    deadline = time.ticks_add(time.ticks_ms(), 100)
    c = None
    while c is None:
        for each in chips:
            if self._read_bytes(each[_ID], 0, len(each[_ID_VALUE])) == each[_ID_VALUE]:
                c = each
                break
        else:
            if _expired(deadline):
                label = chips[0][_NAME] if len(chips) == 1 else "W6100 or W5500"
                raise OSError("no %s answered on SPI (%r, cs=%r): check wiring and power"
                              % (label, self._spi, self._cs))
            time.sleep_ms(5)
    self.chip = c

    # soft reset
    if c[_MR] is not None:
        self._write_reg(c[_MR], 0, 0x80, 1)  # W5500 MR.RST: reads 1 until the reset is done
        deadline = time.ticks_add(time.ticks_ms(), 100)
        while self._read_reg(c[_MR], 0, 1)[3] & 0x80:
            if _expired(deadline):
                raise OSError(ETIMEDOUT, "wiznet: W5500 did not come back from reset")
            time.sleep_ms(1)
    else:
        # W6100 SYCR0.RST (active low) has no completion flag and CIDR is a constant:
        # wait as WIZnet's own W6100 code does (100 ms), then check the chip answers.
        self._write_reg(c[_CHPLCKR], 0, _CHPLCK_UNLOCK, 1)
        self.write(c[_SYCR0], 0, b"\x00")
        self._write_reg(c[_CHPLCKR], 0, _CHPLCK_LOCK, 1)
        time.sleep_ms(100)
    if self._read_bytes(c[_ID], 0, len(c[_ID_VALUE])) != c[_ID_VALUE]:
        raise OSError(ETIMEDOUT, "wiznet: %s did not come back from reset" % c[_NAME])

    # socket buffer sizes, the MAC, the INTn pin
    for n in range(_SOCKETS):
        self._write_reg(c[_Sn_TXBUF_SIZE], 4 * n + 1, sizes[n], 1)
        self._write_reg(c[_Sn_RXBUF_SIZE], 4 * n + 1, sizes[n], 1)
    self._free = [n for n in range(_SOCKETS) if sizes[n]]
    self._sizes = sizes
    if mac is None:  # derived from the board's unique id: locally administered, unicast
        try:
            import machine

            uid = machine.unique_id()
        except (ImportError, AttributeError):
            uid = b"\x00\x08\xdc\x00\x00\x01"
        mac = bytearray(6)
        for i in range(len(uid)):
            mac[i % 6] ^= uid[i]
        mac[0] = (mac[0] & 0xFC) | 0x02
    self.mac = bytes(mac)
    self._write_net(c[_SHAR], self.mac)
    if c[_SYCR1] is not None:
        self._write_reg(c[_CHPLCKR], 0, _CHPLCK_UNLOCK, 1)
        self.write(c[_SYCR1], 0, b"\x80")  # IEN: drive the INTn pin
        self._write_reg(c[_CHPLCKR], 0, _CHPLCK_LOCK, 1)


def open_board(board, ifconfig):
    """The driver of the chip board.json describes (its SPI bus, pins and chip), its
    link up and its address set (`ifconfig`, else DHCP): worker_up.open_net's WIZnet case."""
    from machine import SPI, Pin

    from wiznet import WIZnet

    pins = board["spi"]
    spi = SPI(pins["id"], baudrate=pins["baudrate"], polarity=0, phase=0,
              sck=Pin(pins["sck"]), mosi=Pin(pins["mosi"]), miso=Pin(pins["miso"]))
    nic = WIZnet(spi, Pin(pins["cs"], Pin.OUT, value=1),
                 rst=Pin(pins["rst"], Pin.OUT, value=1),
                 intr=Pin(pins["int"], Pin.IN), chip=board["nic"],
                 reset_ms=pins.get("reset_ms", (100, 100)))
    nic.wait_link()  # auto-negotiation: a connect before the link is up would time out
    if ifconfig:
        nic.ifconfig(tuple(ifconfig))
    else:
        nic.dhcp()
    return nic
