# IPv6 helpers of the WIZnet driver (W6100 only), imported on first use so IPv4-only boards
# never load them: address text <-> 16 bytes, the link-local address (fe80::/64 with the
# modified EUI-64 of the MAC, RFC 4291 2.5.1 / appendix A) and the W6100's IPv6 address
# registers LLAR, GUAR, SUB6R, GA6R (w6100.h, 16 bytes each from 0x4140, guarded by NETLCKR).
# The driver loads it on a W6100 only (WIZnet.socket, ifconfig6).

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

_LLAR = const(0x4140)


def pton(text):
    """16 bytes of an IPv6 address in text form ("::1", "fe80::2:3", no zone, no IPv4 tail)."""
    text = text.split("%")[0]
    if text.count("::") > 1:
        raise ValueError("not an IPv6 address: %r" % (text,))
    if "::" in text:
        head, tail = text.split("::")
        head = head.split(":") if head else []
        tail = tail.split(":") if tail else []
        if len(head) + len(tail) > 7:
            raise ValueError("not an IPv6 address: %r" % (text,))
        groups = head + [None] * (8 - len(head) - len(tail)) + tail  # None: a zero group
    else:
        groups = text.split(":")
    if len(groups) != 8:
        raise ValueError("not an IPv6 address: %r" % (text,))
    out = bytearray(16)
    for i in range(8):
        g = groups[i]
        if g is None:
            continue  # (out is zero there)
        if not 1 <= len(g) <= 4:
            raise ValueError("not an IPv6 address: %r" % (text,))
        v = int(g, 16)
        out[2 * i] = v >> 8
        out[2 * i + 1] = v & 0xFF
    return bytes(out)


def ntop(b):
    """Text form of 16 address bytes, the longest run of zero groups as "::" (RFC 5952)."""
    groups = [(b[2 * i] << 8) | b[2 * i + 1] for i in range(8)]
    best, best_len, i = -1, 1, 0
    while i < 8:
        if groups[i] == 0:
            j = i
            while j < 8 and groups[j] == 0:
                j += 1
            if j - i > best_len:
                best, best_len = i, j - i
            i = j
        else:
            i += 1
    # hex(g)[2:]: the group in lower-case hex without leading zeros
    if best < 0:
        return ":".join(hex(g)[2:] for g in groups)
    left = ":".join(hex(g)[2:] for g in groups[:best])
    right = ":".join(hex(g)[2:] for g in groups[best + best_len:])
    return left + "::" + right


def ensure_lla(nic):
    """Give the chip its link-local source address if it has none yet: fe80::/64 with the
    modified EUI-64 interface identifier of its MAC."""
    if nic._read_bytes(_LLAR, 0, 8) == bytes(8):
        mac = nic.mac
        nic._write_net(_LLAR, bytes((0xFE, 0x80, 0, 0, 0, 0, 0, 0, mac[0] ^ 0x02, mac[1],
                                     mac[2], 0xFF, 0xFE, mac[3], mac[4], mac[5])))


def ifconfig6(nic, config=None):
    """Get or set (link-local, global, prefix mask, gateway) as text; "::" leaves a
    register at zero."""
    if config is None:
        out = []
        for i in range(4):
            at = _LLAR + 16 * i
            raw = nic._read_bytes(at, 0, 8) + nic._read_bytes(at + 8, 0, 8)
            out.append(ntop(raw))
        return tuple(out)
    for i in range(4):
        nic._write_net(_LLAR + 16 * i, pton(config[i]))
    return None
