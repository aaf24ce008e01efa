"""After the reset: wait until the deployed node shows up, or say why it does not.

On a serial link the worker's first frame is HELLO; on a TCP link the node appears in the
master's node list (its local control endpoint, the one `microswarm nodes` reads). Either
way the board's console is read meanwhile: when the node does not show up, the error it
printed there (a traceback's last line, the worker's log line) and the master's reasons
for refusing nodes since the reset go into the error, not only "timeout". What no retry
of the board changes ends the wait at once: a refusal that names the node (its key or its
cluster name is not the master's), an ImportError the board printed.
"""

from __future__ import annotations

import json
import socket
import time

import serial

from microswarm.console import ConsoleErrors
from microswarm.deploy.sync import DeployError
from microswarm.protocol.catalog import MsgType, key
from microswarm.wire import FrameError, SerialDeframer

POLL_S = 0.1
BOARD_SAYS_S = 5.0  # how long a refused board's console is read for its own words
CANNOT_IMPORT = "ImportError: "  # in a line the board printed: the wait ends there


def open_port(port: str) -> serial.SerialBase | None:
    """Open the port to listen for the HELLO, or None when it cannot be opened now."""
    try:
        return serial.serial_for_url(port, baudrate=115200, timeout=POLL_S)
    except (serial.SerialException, OSError):
        return None


def _board_says(console: ConsoleErrors) -> str:
    return f"; the board says: {console.last}" if console.last else ""


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
    console = ConsoleErrors()
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
                data = link.read(4096)
                console.feed(data)
                for item in deframer.feed(data):
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
    raise TimeoutError(f"no HELLO from {node_id!r} on {port} in {timeout:g} s ({last_error})"
                       + _board_says(console))


def master_status(control: str, timeout: float = 5.0) -> dict:
    """A running master's answer to "nodes" from its control endpoint HOST:PORT: the
    node list, and why it refused nodes lately ("refusals")."""
    host, _, port = control.rpartition(":")
    with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout) as sock:
        sock.sendall(b'{"cmd": "nodes"}\n')
        reader = sock.makefile("rb")
        return dict(json.loads(reader.readline()))


def master_nodes(control: str, timeout: float = 5.0) -> list[dict]:
    """The node list of a running master, from its control endpoint HOST:PORT."""
    return list(master_status(control, timeout).get("nodes", []))


def master_refusals(control: str) -> list[str]:
    """The master's recent reasons for refusing a node; empty when it cannot be asked."""
    try:
        return [str(r) for r in master_status(control).get("refusals", [])]
    except (OSError, ValueError):
        return []


def wait_for_join(control: str, node_id: str, timeout: float, since: float = 0.0,
                  console: serial.SerialBase | None = None,
                  refused_before: list[str] | None = None) -> dict:
    """Poll the master until `node_id` has joined at or after `since` (time.time());
    return its entry. A session from before a reset may linger until the master sees
    it is gone, hence `since`. `console` (the board's serial port, opened before the
    reset) is read meanwhile for the board's errors; `refused_before` are the master's
    refusals from before the reset, left out of the error."""
    deadline = time.monotonic() + timeout
    last_error = "not joined"
    errors = ConsoleErrors()
    old = set(refused_before or ())
    while time.monotonic() < deadline:
        try:
            status = master_status(control)
        except (OSError, ValueError) as exc:
            last_error = str(exc)
        else:
            for node in status.get("nodes", []):
                if node.get("node_id") == node_id and node.get("joined_at", 0) >= since:
                    return node
            # the master's refusals of a key or a cluster name say "node 'ID'"
            # (handshake.check_hello, check_response); the board retries in vain
            final = [str(r) for r in status.get("refusals", [])
                     if str(r) not in old and f"node {node_id!r}" in str(r)]
            if final:
                if errors.last is None:  # the board says it after the master's refusal
                    _read_console(console, errors, BOARD_SAYS_S, until_error=True)
                raise DeployError(f"{node_id!r} cannot join the master at {control}: the "
                                  f"master refused: {final[-1]}{_board_says(errors)}")
        _read_console(console, errors, POLL_S * 2)
        if any(CANNOT_IMPORT in line for line in errors.recent):
            # the files on its flash lack what it imports: nothing changes that but a deploy
            raise DeployError(f"{node_id!r} cannot join the master at {control}: it cannot "
                              f"import what it needs{_board_says(errors)}")
    refused = [r for r in master_refusals(control) if r not in old]
    why = f"; the master refused: {refused[-1]}" if refused else ""
    raise TimeoutError(f"{node_id!r} did not join the master at {control} in {timeout:g} s "
                       f"({last_error}){why}{_board_says(errors)}")


def _read_console(console: serial.SerialBase | None, errors: ConsoleErrors,
                  seconds: float, until_error: bool = False) -> None:
    """Read the board's console for `seconds` (or sleep, without one); `until_error`:
    no longer than until it prints an error line (none printed yet)."""
    if console is None:
        if not until_error:
            time.sleep(max(0.0, seconds))
        return
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            if errors.feed(console.read(4096)) and until_error:
                return
    except (serial.SerialException, OSError):
        time.sleep(max(0.0, end - time.monotonic()))
