"""Bring-up of a WIZnet chip, apart from the driver's steady state (wiznet.py): the
hardware reset, which chip answers, its soft reset, the socket buffer sizes, the MAC, and
the two chips' register maps; and, before those, the SPI bus and pins board.json names
(open_board, board.open_net's WIZnet case). WIZnet.__init__ calls start() once and drops
this module from sys.modules again: only the register map of the chip found stays, as the
driver's `chip`, so a running node does not hold this code. `self` below is the driver.
"""

import time

from wiznet import ETIMEDOUT, _expired

_BUFFER_KB = (0, 1, 2, 4, 8, 16)


class Chip:
    """Register map of one chip: the only place where the W5500 and the W6100 differ.

    Common-register addresses are in BSB 0; socket-register offsets are within the
    socket's register block (BSB 4n+1). No method of its own: the driver keeps the map of
    its chip, and a method would keep this module's globals (its code) alive with it.
    """


def _chip(name, **regs):
    chip = Chip()
    chip.name = name
    for key in regs:
        setattr(chip, key, regs[key])
    return chip


W5500 = _chip(
    "W5500",
    sockets=8,
    # common registers
    MR=0x0000, GAR=0x0001, SUBR=0x0005, SHAR=0x0009, SIPR=0x000F, SIR=0x0017, SIMR=0x0018,
    RTR=0x0019, RCR=0x001B, PHY=0x002E, ID=0x0039, ID_VALUE=b"\x04",
    SYCR1=None, CHPLCKR=None, NETLCKR=None, LLAR=None,
    # socket registers
    Sn_MR=0x0000, Sn_CR=0x0001, Sn_IR=0x0002, Sn_IRCLR=0x0002, Sn_SR=0x0003, Sn_PORT=0x0004,
    Sn_DIPR=0x000C, Sn_DIP6R=None, Sn_DPORT=0x0010, Sn_RXBUF_SIZE=0x001E,
    Sn_TXBUF_SIZE=0x001F, Sn_TX_FSR=0x0020, Sn_TX_WR=0x0024, Sn_RX_RSR=0x0026,
    Sn_RX_RD=0x0028, Sn_IMR=0x002C,
    # UDP receive header: ip(4) port(2) length(2)
    UDP_IP=0, UDP_PORT=4, UDP_LEN=6, UDP_LEN_MASK=0xFFFF,
)

W6100 = _chip(
    "W6100",
    sockets=8,
    MR=None, GAR=0x4130, SUBR=0x4134, SHAR=0x4120, SIPR=0x4138, SIR=0x2101, SIMR=0x2114,
    RTR=0x4200, RCR=0x4204, PHY=0x3000, ID=0x0000, ID_VALUE=b"\x61\x00",
    SYCR0=0x2004, SYCR1=0x2005, CHPLCKR=0x41F4, NETLCKR=0x41F5, LLAR=0x4140, GUAR=0x4150,
    CHPLCK_UNLOCK=0xCE, CHPLCK_LOCK=0xFF, NETLCK_UNLOCK=0x3A, NETLCK_LOCK=0xC5,
    Sn_MR=0x0000, Sn_CR=0x0010, Sn_IR=0x0020, Sn_IRCLR=0x0028, Sn_SR=0x0030, Sn_PORT=0x0114,
    Sn_DIPR=0x0120, Sn_DIP6R=0x0130, Sn_DPORT=0x0140, Sn_RXBUF_SIZE=0x0220,
    Sn_TXBUF_SIZE=0x0200, Sn_TX_FSR=0x0204, Sn_TX_WR=0x020C, Sn_RX_RSR=0x0224,
    Sn_RX_RD=0x0228, Sn_IMR=0x0024,
    # UDP receive header: info|length(2, low 11 bits) ip(4, or 16 for IPv6) port(2)
    UDP_IP=2, UDP_PORT=6, UDP_LEN=0, UDP_LEN_MASK=0x07FF,
)

CHIPS = {"w5500": W5500, "w6100": W6100}


def start(self, rst, reset_ms, chip, buffers, mac):
    sizes = tuple(buffers) if buffers is not None else (2,) * 8
    _check_buffers(sizes)
    self._cs(1)
    if rst is not None:
        rst(0)
        time.sleep_ms(reset_ms[0])
        rst(1)
        time.sleep_ms(reset_ms[1])
    self.chip = _identify(self, chip)
    _soft_reset(self)
    _configure_buffers(self, sizes)
    self._free = [n for n in range(self.chip.sockets) if sizes[n]]
    self._sizes = sizes
    self.mac = bytes(mac) if mac is not None else _default_mac()
    self._write_net(self.chip.SHAR, self.mac)
    if self.chip.SYCR1 is not None:
        self._chip_unlocked(self.chip.SYCR1, b"\x80")  # IEN: drive the INTn pin


def _identify(self, wanted):
    names = (wanted,) if wanted else ("w6100", "w5500")
    for name in names:
        if name not in CHIPS:
            raise ValueError("unknown WIZnet chip %r (known: w5500, w6100)" % (name,))
    deadline = time.ticks_add(time.ticks_ms(), 100)
    while True:
        for name in names:
            chip = CHIPS[name]
            if self._read_bytes(chip.ID, 0, len(chip.ID_VALUE)) == chip.ID_VALUE:
                return chip
        if _expired(deadline):
            break
        time.sleep_ms(5)
    label = " or ".join(CHIPS[n].name for n in names)
    raise OSError(
        "no %s answered on SPI (%r, cs=%r): check wiring and power" % (label, self._spi, self._cs)
    )

def _soft_reset(self):
    c = self.chip
    if c.MR is not None:
        self._write8(c.MR, 0, 0x80)  # W5500 MR.RST: reads 1 until the reset is done
        deadline = time.ticks_add(time.ticks_ms(), 100)
        while self._read8(c.MR, 0) & 0x80:
            if _expired(deadline):
                raise OSError(ETIMEDOUT, "wiznet: W5500 did not come back from reset")
            time.sleep_ms(1)
    else:
        # W6100 SYCR0.RST (active low) has no completion flag and CIDR is a constant:
        # wait as WIZnet's own W6100 code does (100 ms), then check the chip answers.
        self._chip_unlocked(c.SYCR0, b"\x00")
        time.sleep_ms(100)
    if self._read_bytes(c.ID, 0, len(c.ID_VALUE)) != c.ID_VALUE:
        raise OSError(ETIMEDOUT, "wiznet: %s did not come back from reset" % c.name)


def _configure_buffers(self, sizes):
    c = self.chip
    for n in range(c.sockets):
        self._write8(c.Sn_TXBUF_SIZE, 4 * n + 1, sizes[n])
        self._write8(c.Sn_RXBUF_SIZE, 4 * n + 1, sizes[n])


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


def open_board(board, ifconfig):
    """The driver of the chip board.json describes (its SPI bus, pins and chip), its
    link up and its address set (`ifconfig`, else DHCP): board.open_net's WIZnet case."""
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
