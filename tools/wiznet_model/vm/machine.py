# Stand-in for MicroPython's `machine` module on the unix port (tests and the wiznet bench
# only): SPI and Pin objects whose SPI transactions travel to a WIZnet chip model over a
# loopback socket.
# A `machine.py` earlier on sys.path replaces the unix port's built-in module.
#
# WIZNET_MODEL=host:port  where the model listens (unset: nothing answers on the bus, MISO
#                         reads 0xFF, as with an unpowered chip)
# WIZNET_PINS=cs=17,rst=20,int=21   which Pin ids are wired to the chip's CSn, RSTn and INTn

import os
import socket
import struct
import time

_CTRL = {}
for _item in (os.getenv("WIZNET_PINS") or "cs=17,rst=20,int=21").split(","):
    _k, _v = _item.split("=")
    _CTRL[int(_v)] = _k


class _Bridge:
    def __init__(self, where):
        host, port = where.rsplit(":", 1)
        self.sock = socket.socket()
        self.sock.connect(socket.getaddrinfo(host, int(port))[0][-1])
        self.sock.setsockopt(6, 1, 1)  # TCP_NODELAY
        self.out = bytearray()
        self.len4 = bytearray(4)

    def post(self, op, data=None):
        self.out += op
        if data is not None:
            struct.pack_into(">I", self.len4, 0, len(data))
            self.out += self.len4
            self.out += data

    def post_now(self, op):
        """An op the model times (CS falling, RSTn edges, INTn reads), stamped with the
        low 32 bits of time.ticks_us(): the model times the chip by when the VM drove the
        pin, not by when its own thread got round to the op."""
        self.out += op
        struct.pack_into(">I", self.len4, 0, time.ticks_us() & 0xFFFFFFFF)
        self.out += self.len4

    def flush(self):
        """Send the batched ops now: at the end of each SPI transaction and at RSTn edges, so
        the model acts on them (commands, the network side) without waiting for the next."""
        if self.out:
            self.sock.write(self.out)
            self.out = bytearray()

    def ask(self, op, n, data=None):
        """Send the batched ops plus this one (None: the last batched op is the one) and
        wait for its n-byte answer."""
        if data is None and op == b"R":
            self.out += op
            struct.pack_into(">I", self.len4, 0, n)
            self.out += self.len4
        elif op is not None:
            self.post(op, data)
        self.sock.write(self.out)
        self.out = bytearray()
        return self._recv(n)

    def _recv(self, n):
        buf = bytearray(n)
        mv = memoryview(buf)
        got = 0
        while got < n:
            k = self.sock.readinto(mv[got:])
            if not k:
                raise OSError("wiznet model closed the bridge")
            got += k
        return buf


_where = os.getenv("WIZNET_MODEL")
_bridge = _Bridge(_where) if _where else None


def bridge():
    return _bridge


class Pin:
    IN = 0
    OUT = 1
    OPEN_DRAIN = 2
    PULL_UP = 1
    PULL_DOWN = 2
    IRQ_FALLING = 4
    IRQ_RISING = 8

    def __init__(self, id, mode=-1, pull=-1, value=None):
        self.id = id
        self.role = _CTRL.get(id)
        self.level = 1
        if value is not None:
            self.value(value)

    def __repr__(self):
        return f"Pin({self.id})"

    def value(self, v=None):
        role = self.role
        if v is None:
            if role == "int" and _bridge is not None:
                _bridge.post_now(b"I")
                return _bridge.ask(None, 1)[0]
            return self.level
        v = 1 if v else 0
        if _bridge is not None:
            if role == "cs" and v != self.level:
                if v:
                    _bridge.post(b"D")
                    _bridge.flush()  # each transaction reaches the model when it ends
                else:
                    _bridge.post_now(b"S")
            elif role == "rst" and v != self.level:
                _bridge.post_now(b"H" if v else b"L")
                _bridge.flush()
        self.level = v
        return None

    __call__ = value

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)


class SPI:
    MSB = 0

    def __init__(self, id, baudrate=1000000, polarity=0, phase=0, bits=8, firstbit=0,
                 sck=None, mosi=None, miso=None):
        self.id = id
        self.baudrate = baudrate
        self.sck, self.mosi, self.miso = sck, mosi, miso

    def __repr__(self):
        pins = f"sck={self.sck}, mosi={self.mosi}, miso={self.miso}"
        return f"SPI({self.id}, baudrate={self.baudrate}, {pins})"

    def init(self, baudrate=None, **kw):
        if baudrate:
            self.baudrate = baudrate

    def write(self, buf):
        if _bridge is not None:
            _bridge.post(b"W", buf)

    def readinto(self, buf, write=0):
        if _bridge is None:
            for i in range(len(buf)):
                buf[i] = 0xFF
            return
        buf[:] = _bridge.ask(b"R", len(buf))

    def read(self, n, write=0):
        buf = bytearray(n)
        self.readinto(buf, write)
        return bytes(buf)

    def write_readinto(self, out, inp):
        if _bridge is None:
            for i in range(len(inp)):
                inp[i] = 0xFF
            return
        inp[:] = _bridge.ask(b"X", len(out), out)


def unique_id():
    return b"\x4d\x53\x57\x00\x00\x01"


def idle():
    pass
