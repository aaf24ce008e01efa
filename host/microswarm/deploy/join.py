"""After the reset: wait until the deployed node shows up.

On a serial link the worker's first frame is HELLO; on a TCP link the node appears in the
master's node list (its local control endpoint, the one `microswarm nodes` reads).
"""

from __future__ import annotations

import json
import socket
import time

import serial

from microswarm.protocol.catalog import MsgType, key
from microswarm.wire import FrameError, SerialDeframer

POLL_S = 0.1


def open_port(port: str) -> serial.SerialBase | None:
    """Open the port to listen for the HELLO, or None when it cannot be opened now."""
    try:
        return serial.serial_for_url(port, baudrate=115200, timeout=POLL_S)
    except (serial.SerialException, OSError):
        return None


def wait_for_hello(port: str, node_id: str, timeout: float,
                   opened: serial.SerialBase | None = None) -> dict:
    """Read the serial port until the node's HELLO arrives; return its payload.

    `opened` is the port opened before the reset, so that a HELLO sent right at boot is
    not lost (opening a port flushes what it holds). The port is reopened when it
    vanishes: a real board's USB port goes away during a hard reset and comes back.
    """
    deadline = time.monotonic() + timeout
    node_key = key(MsgType.HELLO, "node_id")
    last_error = "no HELLO"
    link = opened
    while time.monotonic() < deadline:
        if link is None:
            link = open_port(port)
            if link is None:
                time.sleep(POLL_S)
                continue
        try:
            deframer = SerialDeframer()
            while time.monotonic() < deadline:
                for item in deframer.feed(link.read(4096)):
                    if isinstance(item, FrameError) or item.type != MsgType.HELLO:
                        continue
                    if item.payload.get(node_key) == node_id:
                        return item.payload
                    last_error = f"HELLO from {item.payload.get(node_key)!r}, not {node_id!r}"
        except (serial.SerialException, OSError) as exc:
            last_error = str(exc)
        finally:
            link.close()
            link = None
    raise TimeoutError(f"no HELLO from {node_id!r} on {port} in {timeout:g} s ({last_error})")


def master_nodes(control: str, timeout: float = 5.0) -> list[dict]:
    """The node list of a running master, from its control endpoint HOST:PORT."""
    host, _, port = control.rpartition(":")
    with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout) as sock:
        sock.sendall(b'{"cmd": "nodes"}\n')
        reader = sock.makefile("rb")
        answer = json.loads(reader.readline())
    return list(answer.get("nodes", []))


def wait_for_join(control: str, node_id: str, timeout: float, since: float = 0.0) -> dict:
    """Poll the master until `node_id` has joined at or after `since` (time.time());
    return its entry. A session from before a reset may linger until the master sees
    it is gone, hence `since`."""
    deadline = time.monotonic() + timeout
    last_error = "not joined"
    while time.monotonic() < deadline:
        try:
            for node in master_nodes(control):
                if node.get("node_id") == node_id and node.get("joined_at", 0) >= since:
                    return node
        except (OSError, ValueError) as exc:
            last_error = str(exc)
        time.sleep(POLL_S * 2)
    raise TimeoutError(f"{node_id!r} did not join the master at {control} in {timeout:g} s "
                       f"({last_error})")
