"""Link models: how long a frame takes between a node and the master, and what can
happen to it on the way.

A link has two independent directions (full duplex), each with its own bandwidth (USB CDC
into a MicroPython board is far slower than out of it). Each direction is a queue: a frame
starts when the previous one has left the wire, occupies it for `size / bytes_per_s`,
then arrives after the one-way latency plus a random jitter. Frames on one direction
never overtake each other (UART, USB CDC and TCP all deliver in order), so jitter only
stretches gaps.

Faults on the way: a frame is lost with probability `loss`; on serial links a frame has
one byte replaced with probability `corrupt` (the receiver's CRC or COBS check must catch
it); a link that is down (disconnect, partition) drops everything.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LinkPreset:
    name: str
    bytes_per_s: float  # frame bytes per second the link carries, after line overhead
    latency_s: float  # one-way latency floor
    serial: bool  # a byte stream with COBS framing (corruption possible) vs. packets
    source: str  # where the figures come from
    to_node_bytes_per_s: float | None = None  # master -> node when slower than bytes_per_s
    published: bool = False  # the bandwidth is a published measurement, not an estimate


# Figures: see docs/sim.md, "Link presets", for the derivations.
PRESETS: dict[str, LinkPreset] = {
    p.name: p
    for p in (
        LinkPreset(
            "uart115200", 115200 / 10, 0.001, True,
            "115200 baud, 8N1 = 10 bits per byte; 1 ms USB-UART bridge poll",
            published=True,
        ),
        LinkPreset(
            "usb_fs_cdc", 600e3, 0.001, True,
            "USB CDC on RP2040/RP2350 under MicroPython: ~0.6 MB/s board to PC through "
            "sys.stdout.buffer, ~0.1-0.2 MB/s PC to board through sys.stdin.buffer (the "
            "port's byte-by-byte path; 0.15 MB/s used); 1 ms USB frame",
            to_node_bytes_per_s=150e3, published=True,
        ),
        LinkPreset(
            "w5500_spi20", 10.5e6 / 8, 0.0003, False,
            "W5500 under MicroPython on an RP2040-class board at 20 MHz SPI, the chip's own "
            "TCP stack: ~10.5 Mbit/s measured (lwIP over the W5100S: 5.5)",
            published=True,
        ),
        LinkPreset(
            "eth100", 100e6 / 8 * 1460 / 1538, 0.0001, False,
            "100 Mbit/s Ethernet, TCP payload share of a 1538-byte wire frame",
        ),
        LinkPreset(
            "loopback", 500e6, 0.00005, False,
            "a local CPython node on the master's host: TCP on loopback (estimate: "
            "~0.5 GB/s, 50 us one way through asyncio)",
        ),
    )
}


def known_rate(link: object) -> float:
    """The byte rate a master knows a link has before measuring it: a UART it opened at a
    baud rate; 0.0 (unknown) for USB CDC, TCP and anything else."""
    preset = getattr(link, "preset", None)
    if preset is not None and preset.name.startswith("uart"):
        return float(preset.bytes_per_s)
    return 0.0


class Direction:
    """One direction of a link: a FIFO wire with a bandwidth and a latency."""

    __slots__ = ("bytes_per_s", "busy_until", "last_arrival", "frames", "bytes", "lost",
                 "corrupted")

    def __init__(self, bytes_per_s: float) -> None:
        self.bytes_per_s = bytes_per_s
        self.busy_until = 0.0
        self.last_arrival = 0.0
        self.frames = 0
        self.bytes = 0
        self.lost = 0
        self.corrupted = 0


class Link:
    """The link between one node and the master. Directions are named from the node's
    side: `tx` carries node -> master, `rx` master -> node."""

    __slots__ = (
        "preset", "bytes_per_s", "latency_s", "jitter_s", "loss", "corrupt",
        "connected", "tx", "rx", "rng", "serial",
    )

    def __init__(
        self,
        preset: LinkPreset,
        rng: random.Random,
        *,
        latency_s: float | None = None,
        jitter_s: float = 0.0,
        loss: float = 0.0,
        corrupt: float = 0.0,
        bytes_per_s: float | None = None,
    ) -> None:
        if not 0.0 <= loss < 1.0 or not 0.0 <= corrupt < 1.0:
            raise ValueError("loss and corrupt are probabilities in [0, 1)")
        if corrupt and not preset.serial:
            raise ValueError(
                f"corrupt applies to serial links only ({preset.name} is a packet link "
                "whose TCP checksum already drops damaged segments)"
            )
        self.preset = preset
        self.bytes_per_s = bytes_per_s or preset.bytes_per_s
        self.latency_s = preset.latency_s if latency_s is None else latency_s
        self.jitter_s = jitter_s
        self.loss = loss
        self.corrupt = corrupt
        self.connected = True
        self.tx = Direction(self.bytes_per_s)
        self.rx = Direction(bytes_per_s or preset.to_node_bytes_per_s or self.bytes_per_s)
        self.rng = rng
        self.serial = preset.serial  # a byte stream with COBS framing (read per frame)

    def transfer_time(self, size: int) -> float:
        return size / self.bytes_per_s

    def send(self, d: Direction, data: bytes, now: float) -> tuple[float, bytes] | None:
        """Put `data` on direction `d` at `now`. Returns (arrival time, bytes as they
        arrive), or None if the frame is lost or the link is down."""
        size = len(data)
        start = now if now > d.busy_until else d.busy_until
        done = start + size / d.bytes_per_s
        d.busy_until = done
        d.frames += 1
        d.bytes += size
        if not self.connected:
            d.lost += 1
            return None
        rng = self.rng
        if self.loss and rng.random() < self.loss:
            d.lost += 1
            return None
        if self.corrupt and rng.random() < self.corrupt:
            d.corrupted += 1
            data = corrupt_one_byte(data, rng)
        arrival = done + self.latency_s
        if self.jitter_s:
            arrival += self.jitter_s * rng.random()
        if arrival < d.last_arrival:
            arrival = d.last_arrival
        d.last_arrival = arrival
        return arrival, data


def corrupt_one_byte(data: bytes, rng: random.Random) -> bytes:
    """Replace one byte with a different value (a burst of line noise hitting one byte)."""
    i = rng.randrange(len(data))
    damaged = bytearray(data)
    damaged[i] ^= rng.randrange(1, 256)
    return bytes(damaged)
