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
