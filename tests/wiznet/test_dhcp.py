"""The driver's DHCP client on a hardware UDP socket against a small RFC 2131 server."""

from __future__ import annotations

import socket

from .dhcp_server import DhcpServer


def test_dhcp_lease_after_a_nak_and_timeout_without_server(model, vm):
    server = DhcpServer(nak_first=True)
    model.chip.port_map[67] = server.port
    proc = vm(
        """
nic = open_nic()
say("LEASE", nic.dhcp(timeout_ms=10000, hostname="wiz-1"), nic.lease_s)
say("FREE", len(nic._free))
""",
        model,
    )
    assert proc.expect("LEASE") == "('10.0.0.77', '255.255.255.0', '10.0.0.1', '10.0.0.53') 3600"
    assert proc.expect("FREE") == "8"
    proc.finish()
    server.close()
    kinds = [k for k, _, _ in server.seen]
    assert kinds == [1, 3, 1, 3]  # DISCOVER, REQUEST (NAKed), then again
    mac = bytes(model.chip.common[model.chip.map.shar : model.chip.map.shar + 6])
    for kind, opts, data in server.seen:
        assert len(data) >= 300 and data[28:34] == mac and data[10] & 0x80
        assert opts[12] == b"wiz-1" and opts[61] == b"\x01" + mac
        if kind == 3:
            assert opts[50] == bytes([10, 0, 0, 77]) and opts[54] == bytes([10, 0, 0, 1])
    m = model.chip.map
    assert bytes(model.chip.common[m.sipr : m.sipr + 4]) == bytes([10, 0, 0, 77])

    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    model.chip.port_map[67] = silent.getsockname()[1]
    proc = vm(
        """
nic = open_nic()
try:
    nic.dhcp(timeout_ms=400)
except OSError as e:
    say("NOLEASE", e.args[0], nic.ifconfig()[0])
""",
        model,
    )
    assert proc.expect("NOLEASE") == "110 0.0.0.0"
    proc.finish()
    silent.close()


def test_malformed_server_replies_are_ignored(run_vm):
    """parse() in the VM on replies cut short, with option lengths past the end, with short
    address options, and on random bytes: a value or None, never an exception."""
    import random

    mac = bytes([2, 0, 0, 0, 0, 1])
    xid = 0x1234
    good = bytearray(236)
    good[0:3] = b"\x02\x01\x06"
    good[4:8] = xid.to_bytes(4, "big")
    good[16:20] = bytes([10, 0, 0, 9])
    good[28:34] = mac
    good += b"\x63\x82\x53\x63" + bytes([53, 1, 5, 3, 2, 10, 0, 1, 4, 10, 0, 0, 1, 255])
    rng = random.Random(7)
    cases = [bytes(good)] + [bytes(good[:n]) for n in range(0, len(good), 17)]
    cases.append(bytes(good[:-1]) + bytes([51, 40]))  # option length past the end
    cases += [rng.randbytes(rng.randrange(0, 400)) for _ in range(60)]
    out = run_vm(
        "import wiznet_dhcp\n"
        f"cases = {cases!r}\n"
        "for c in cases:\n"
        f"    r = wiznet_dhcp.parse(c, {xid}, {mac!r})\n"
        "    print('None' if r is None else (r[0], r[1], sorted(r[2])))\n"
    )
    lines = out.splitlines()
    assert len(lines) == len(cases)
    assert lines[0] == "(5, b'\\n\\x00\\x00\\t', [1, 53])"  # the 2-byte router is dropped
    assert all(line == "None" for line in lines[1:])
