"""What the hardware gives the worker: its network stack, its heap figures, its clock.

`open_net(board)` returns the object the links call socket()/getaddrinfo() on: the port's
own socket module when board.json says "net_driver": "builtin" (the unix port, or rp2's
WIZNET5K build), or the project's WIZnet driver for "wiznet" (hardware sockets over SPI;
imported lazily so boards without it never load it; its SPI bus and pins are set up by
the chip's bring-up module, wiznet_up.py, which a running node does not hold).
"""

import gc
import time

_last_tick = time.ticks_ms()
_uptime = 0


def open_net(board, ifconfig=None):
    """The board's socket provider. `ifconfig` (ip, netmask, gateway, dns) configures a
    WIZnet chip statically; without it the chip asks DHCP."""
    driver = board.get("net_driver")
    if driver == "builtin":
        import socket

        return socket
    if driver == "wiznet":
        # the chip's SPI bus and pins: bring-up code (wiznet_up.py), not held once it runs
        import wiznet_up

        return wiznet_up.open_board(board, ifconfig)
    raise OSError("board " + board["name"] + " has no network driver")


def heap_total():
    return gc.mem_free() + gc.mem_alloc()


def uptime_ms():
    """Milliseconds since boot. Accumulated from tick differences so it outlives the
    tick counter's wrap, as long as it is read more often than once per wrap period
    (the heartbeat reads it every few seconds)."""
    global _last_tick, _uptime
    now = time.ticks_ms()
    _uptime += time.ticks_diff(now, _last_tick)
    _last_tick = now
    return _uptime
