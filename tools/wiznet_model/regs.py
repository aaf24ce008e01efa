"""Register maps, command, status and interrupt values of the W5500 and W6100.

Sources: W5500 datasheet v1.0.9 (register chapter, pp. 32-57); WIZnet ioLibrary_Driver
Ethernet/W5500/w5500.h and Ethernet/W6100/w6100.h (register addresses, Sn_MR / Sn_CR /
Sn_IR / Sn_SR / PHYSR / Sn_ESR values).
"""

from __future__ import annotations

from dataclasses import dataclass, field

CMD_OPEN, CMD_LISTEN, CMD_CONNECT, CMD_DISCON = 0x01, 0x02, 0x04, 0x08
CMD_CLOSE, CMD_SEND, CMD_SEND_KEEP, CMD_RECV = 0x10, 0x20, 0x22, 0x40
CMD_CONNECT6, CMD_SEND6 = 0x84, 0xA0  # W6100 only (w6100.h Sn_CR_CONNECT6, Sn_CR_SEND6)
IR_CON, IR_DISCON, IR_RECV, IR_TIMEOUT, IR_SENDOK = 0x01, 0x02, 0x04, 0x08, 0x10
SR_CLOSED, SR_INIT, SR_LISTEN, SR_SYNSENT = 0x00, 0x13, 0x14, 0x15
SR_ESTABLISHED, SR_FIN_WAIT, SR_CLOSE_WAIT, SR_LAST_ACK, SR_UDP = 0x17, 0x18, 0x1C, 0x1D, 0x22
MR_TCP, MR_UDP = 0x01, 0x02
MR_V6 = 0x08  # W6100 Sn_MR P[3]: Sn_MR_TCP6 0x09, Sn_MR_UDP6 0x0A (w6100.h)
MR_ND = 0x20  # Sn_MR bit 5, no delayed ACK (TCP), w5500.h Sn_MR_ND / w6100.h Sn_MR_ND

W6100_SYCR0, W6100_SYCR1 = 0x2004, 0x2005
W6100_CHPLCKR, W6100_NETLCKR, W6100_PHYLCKR = 0x41F4, 0x41F5, 0x41F6
W6100_LLAR, W6100_GUAR, W6100_SUB6R, W6100_GA6R = 0x4140, 0x4150, 0x4160, 0x4170
W6100_SN_DIP6R, W6100_SN_ESR = 0x0130, 0x0031


@dataclass(frozen=True)
class ChipMap:
    """Addresses of one chip (common registers in BSB 0, socket registers in BSB 4n+1)."""

    name: str
    ident: dict[int, int]  # common address -> value of the identification (ROM) bytes
    common_size: int
    socket_size: int
    mr: int | None  # W5500 MR (software reset bit 7); the W6100 resets through SYCR0
    phy: int
    sir: int
    simr: int
    shar: int
    gar: int
    subr: int
    sipr: int
    net_end: int  # end of the network-information block that NETLCKR guards (W6100)
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
    name="W5500", ident={0x39: 0x04}, common_size=0x40, socket_size=0x30, mr=0x00,
    phy=0x2E, sir=0x17, simr=0x18, shar=0x09, gar=0x01, subr=0x05, sipr=0x0F, net_end=0x13,
    rtr=0x19, rcr=0x1B,
    sn_mr=0x00, sn_cr=0x01, sn_ir=0x02, sn_irclr=None, sn_sr=0x03, sn_port=0x04, sn_dipr=0x0C,
    sn_dport=0x10, sn_imr=0x2C, sn_txbuf_size=0x1F, sn_rxbuf_size=0x1E, sn_tx_fsr=0x20,
    sn_tx_rd=0x22, sn_tx_wr=0x24, sn_rx_rsr=0x26, sn_rx_rd=0x28, sn_rx_wr=0x2A,
)

W6100_MAP = ChipMap(
    name="W6100", ident={0x0000: 0x61, 0x0001: 0x00, 0x0002: 0x46, 0x0003: 0x61},
    common_size=0x4220, socket_size=0x0230, mr=None,
    phy=0x3000, sir=0x2101, simr=0x2114, shar=0x4120, gar=0x4130, subr=0x4134, sipr=0x4138,
    net_end=W6100_GA6R + 16, rtr=0x4200, rcr=0x4204,
    sn_mr=0x0000, sn_cr=0x0010, sn_ir=0x0020, sn_irclr=0x0028, sn_sr=0x0030, sn_port=0x0114,
    sn_dipr=0x0120, sn_dport=0x0140, sn_imr=0x0024, sn_txbuf_size=0x0200, sn_rxbuf_size=0x0220,
    sn_tx_fsr=0x0204, sn_tx_rd=0x0208, sn_tx_wr=0x020C, sn_rx_rsr=0x0224, sn_rx_rd=0x0228,
    sn_rx_wr=0x022C,
    extra_reset={W6100_SYCR0: 0x80, W6100_SYCR1: 0x80},  # SYCR0 (not in reset), SYCR1 (IEN)
)


def u16(buf: bytearray, at: int) -> int:
    return (buf[at] << 8) | buf[at + 1]


def put16(buf: bytearray, at: int, value: int) -> None:
    buf[at] = (value >> 8) & 0xFF
    buf[at + 1] = value & 0xFF
