# Minimal DHCP client (RFC 2131) on one of the WIZnet chip's hardware UDP sockets:
# DISCOVER -> OFFER -> REQUEST -> ACK, then the lease's address, netmask, router and DNS go
# into the chip. Retries with doubling waits until timeout_ms; a NAK starts over. As in
# WIZnet's ioLibrary (Internet/DHCP/dhcp.c), the chip's address and gateway are zeroed before
# DISCOVER and the lease is renewed at T1 (half the lease) with a REQUEST unicast to the
# server carrying ciaddr; past T2 (7/8) the REQUEST is broadcast (rebinding, RFC 2131
# 4.4.5); at expiry the address is dropped and leased anew. nic.maintain() drives renewal.

import time

from wiznet import _ip_text

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

try:
    import errno

    ETIMEDOUT = errno.ETIMEDOUT
except (ImportError, AttributeError):
    ETIMEDOUT = 110

_SERVER_PORT = const(67)
_CLIENT_PORT = const(68)
_MAGIC = const(b"\x63\x82\x53\x63")

_DISCOVER = const(1)
_OFFER = const(2)
_REQUEST = const(3)
_ACK = const(5)
_NAK = const(6)

_OPT_SUBNET = const(1)
_OPT_ROUTER = const(3)
_OPT_DNS = const(6)
_OPT_HOSTNAME = const(12)
_OPT_REQUESTED_IP = const(50)
_OPT_LEASE = const(51)
_OPT_MSG_TYPE = const(53)
_OPT_SERVER_ID = const(54)
_OPT_PARAMS = const(55)
_OPT_RENEWAL = const(58)
_OPT_REBINDING = const(59)
_OPT_CLIENT_ID = const(61)
_OPT_END = const(255)

# the driver's register map (wiznet_up.py): nic.chip[_SIPR]
# BEGIN GENERATED: WIZnet register map indexes (tools/gen_protocol.py, from wiznet_up.py)
_GAR = const(1)
_SIPR = const(3)
# END GENERATED

_CAP_S = const(200000)
_FIXED = const(236)  # op .. file: the BOOTP part before the magic cookie


def _build(kind, xid, mac, hostname=None, yiaddr=None, server=None, ciaddr=None):
    """One client message (BOOTP header, cookie, options), padded to the 300-byte minimum.
    With ciaddr (renewing, rebinding) the client can take unicast replies: no broadcast
    flag."""
    msg = bytearray(_FIXED)
    msg[0] = 1  # BOOTREQUEST
    msg[1] = 1  # Ethernet
    msg[2] = 6
    msg[4:8] = xid.to_bytes(4, "big")
    if ciaddr is None:
        msg[10] = 0x80  # broadcast flag: the client has no address to receive unicast on yet
    else:
        msg[12:16] = ciaddr
    msg[28:34] = mac
    msg += _MAGIC
    msg += bytes((_OPT_MSG_TYPE, 1, kind))
    msg += bytes((_OPT_CLIENT_ID, 7, 1)) + mac
    if yiaddr is not None:  # the offered address, asked for
        msg += bytes((_OPT_REQUESTED_IP, 4)) + yiaddr
    if server is not None:
        msg += bytes((_OPT_SERVER_ID, 4)) + server
    if hostname:
        name = hostname.encode()[:63]
        msg += bytes((_OPT_HOSTNAME, len(name))) + name
    msg += bytes((_OPT_PARAMS, 4, _OPT_SUBNET, _OPT_ROUTER, _OPT_DNS, _OPT_LEASE, _OPT_END))
    if len(msg) < 300:
        msg += bytes(300 - len(msg))
    return msg


def parse(data, xid, mac):
    """(message type, your address, options dict) of a server reply for us, else None."""
    if len(data) < _FIXED + 4 or data[0] != 2 or data[_FIXED:_FIXED + 4] != _MAGIC:
        return None
    if int.from_bytes(data[4:8], "big") != xid or data[28:34] != mac:
        return None
    opts = {}
    i = _FIXED + 4
    n = len(data)
    while i < n:
        code = data[i]
        if code == _OPT_END:
            break
        if code == 0:
            i += 1
            continue
        if i + 1 >= n or i + 2 + data[i + 1] > n:
            return None
        opts[code] = bytes(data[i + 2:i + 2 + data[i + 1]])
        i += 2 + data[i + 1]
    kind = opts.get(_OPT_MSG_TYPE)
    if not kind:
        return None
    for code in (_OPT_SUBNET, _OPT_ROUTER, _OPT_DNS, _OPT_SERVER_ID, _OPT_LEASE):
        if code in opts and len(opts[code]) < 4:
            del opts[code]  # malformed: as if the server had not sent it
    return kind[0], bytes(data[16:20]), opts


def _open(nic):
    """A UDP socket on the client port, and a transaction id for what it exchanges."""
    sock = nic.socket(nic.AF_INET, nic.SOCK_DGRAM)
    sock.bind(("0.0.0.0", _CLIENT_PORT))
    sock.setblocking(False)
    mac = nic.mac
    return sock, (time.ticks_ms() ^ (mac[4] << 24) ^ (mac[5] << 16)) & 0x7FFFFFFF


def lease(nic, timeout_ms=10000, hostname=None):
    """Lease an IPv4 address for nic; returns nic.ifconfig(). OSError(ETIMEDOUT) if no
    server answers within timeout_ms."""
    mac = nic.mac
    deadline = time.ticks_add(time.ticks_ms(), timeout_ms)
    nic._dhcp = None
    zero = bytes(4)
    nic._write_net(nic.chip[_SIPR], zero)  # the client has no address while it asks for one
    nic._write_net(nic.chip[_GAR], zero)
    sock, xid = _open(nic)
    try:
        buf = bytearray(576)
        wait_ms = 500
        while time.ticks_diff(deadline, time.ticks_ms()) > 0:
            offer = _exchange(sock, _build(_DISCOVER, xid, mac, hostname), buf, xid, mac,
                              _OFFER, wait_ms, deadline)
            if offer is None or offer == _NAK:
                wait_ms = min(wait_ms * 2, 4000)
                continue
            yiaddr, opts = offer
            server = opts.get(_OPT_SERVER_ID)
            request = _build(_REQUEST, xid, mac, hostname, yiaddr, server)
            ack = _exchange(sock, request, buf, xid, mac, _ACK, wait_ms, deadline)
            if ack is None or ack == _NAK:
                continue
            _bound(nic, ack, server, hostname)
            return nic.ifconfig()
    finally:
        sock.close()
    raise OSError(ETIMEDOUT, "wiznet: no DHCP server answered")


def _bound(nic, data, server, hostname):
    """Put the lease (`data`: the ACK's (yiaddr, opts)) into the chip and schedule its
    renewal."""
    yiaddr, opts = data
    subnet = opts.get(_OPT_SUBNET, b"\xff\xff\xff\x00")[:4]
    router = opts.get(_OPT_ROUTER, b"\x00\x00\x00\x00")
    dns = opts.get(_OPT_DNS, b"\x00\x00\x00\x00")
    lease_s = opts.get(_OPT_LEASE)
    lease_s = int.from_bytes(lease_s[:4], "big") if lease_s else None
    nic.lease_s = lease_s
    nic.ifconfig((_ip_text(yiaddr), _ip_text(subnet), _ip_text(router[:4]),
                  _ip_text(dns[:4])))
    nic._dhcp = None
    if lease_s is None or lease_s == 0xFFFFFFFF:
        return  # infinite lease
    # ticks_ms differences are only valid below about 6 days: a longer lease is renewed as
    # if it were _CAP_S long (early renewal is always allowed)
    lease_ms = min(lease_s, _CAP_S) * 1000
    # T1 and T2: the server's options (seconds), at most the lease; else half and 7/8 of it
    t1, t2 = lease_ms // 2, lease_ms * 7 // 8
    raw = opts.get(_OPT_RENEWAL)
    if raw and len(raw) >= 4:
        t1 = min(int.from_bytes(raw[:4], "big") * 1000, lease_ms)
    raw = opts.get(_OPT_REBINDING)
    if raw and len(raw) >= 4:
        t2 = min(int.from_bytes(raw[:4], "big") * 1000, lease_ms)
    now = time.ticks_ms()
    nic._dhcp = [time.ticks_add(now, t1), opts.get(_OPT_SERVER_ID, server), now, lease_ms, t2,
                 hostname]


def maintain(nic, timeout_ms=1000):
    """The lease is past T1: ask to extend it (unicast to the server before T2, broadcast
    after); past expiry, drop the address and lease anew."""
    _due, server, start, lease_ms, t2_ms, hostname = nic._dhcp
    now = time.ticks_ms()
    elapsed = time.ticks_diff(now, start)
    if elapsed >= lease_ms:
        lease(nic, hostname=hostname)
        return
    mac = nic.mac
    ciaddr = nic._read_bytes(nic.chip[_SIPR], 0, 4)
    rebinding = elapsed >= t2_ms or server is None
    dest = "255.255.255.255" if rebinding else _ip_text(server)
    sock, xid = _open(nic)
    try:
        buf = bytearray(576)
        msg = _build(_REQUEST, xid, mac, hostname, ciaddr=ciaddr)
        until = time.ticks_add(now, timeout_ms)
        got = _exchange(sock, msg, buf, xid, mac, _ACK, timeout_ms, until, dest)
    finally:
        sock.close()
    if got is None:
        # no answer: try again after half the time left to T2 (or to expiry), >= 1 s
        end = lease_ms if rebinding else t2_ms
        nic._dhcp[0] = time.ticks_add(now, max((end - elapsed) // 2, 1000))
    elif got == _NAK:
        lease(nic, hostname=hostname)
    else:
        _bound(nic, got, server, hostname)


def _exchange(socket, data, buf, xid, mac, want, timeout_ms, end, host="255.255.255.255"):
    """Send `data` to the server's port at `host`, then wait up to timeout_ms (and not past
    the ticks_ms `end`) for the reply of type want: (yiaddr, opts). Silence gives None, a
    NAK _NAK."""
    socket.sendto(data, (host, _SERVER_PORT))
    until = time.ticks_add(time.ticks_ms(), timeout_ms)
    if time.ticks_diff(end, until) < 0:
        until = end
    while time.ticks_diff(until, time.ticks_ms()) > 0:
        try:
            n, _addr = socket.recvfrom_into(buf)
        except OSError:
            time.sleep_ms(5)
            continue
        got = parse(bytes(buf[:n]), xid, mac)
        if got is None:
            continue
        kind, yiaddr, opts = got
        if kind == _NAK:
            return _NAK
        if kind == want:
            return yiaddr, opts
    return None
