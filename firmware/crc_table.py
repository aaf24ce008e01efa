"""A table-driven CRC-32 (IEEE 802.3, as binascii.crc32) for a port built without
binascii.crc32: frame.py imports it only there. One table lookup per byte; on 32-bit ports
the values above 2**30 are long ints, so it is slow: a fallback only."""


def _table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0xEDB88320 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _table()


def crc32(data, crc=0):
    c = crc ^ 0xFFFFFFFF
    table = _TABLE
    for b in data:
        c = table[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF
