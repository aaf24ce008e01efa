"""The board under test: a real board on a serial port (and its IP for the TCP link), or a
virtual board started for the purpose. Either way the firmware is deployed with mpremote
first, with a fresh random cluster key, so the suite and the bench always test what the
checkout builds.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from microswarm.deploy.deploy import DeployOptions, deploy
from microswarm.deploy.mpremote import Mpremote
from microswarm.hil.probe import Probe, SerialTransport, TcpTransport
from microswarm.vboard import VirtualBoard

NODE_ID = "hil1"
# A serial node waits 5 s (its join timeout) for the AUTH_CHALLENGE that answers its HELLO.
# The HELLO deploy saw at boot is answered by the first connect() when it is at most this
# old, instead of waiting for the node's next one (5 s and a backoff later).
BOOT_HELLO_S = 1.0


def local_address_towards(host: str) -> str:
    """This machine's address on the route to `host` (what the board must dial)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect((host, 9))  # no packet is sent for a UDP connect
        return probe.getsockname()[0]


@dataclass
class BoardUnderTest:
    board: str
    port: str
    link: str
    key: bytes = field(repr=False)
    host: str | None = None
    heartbeat_ms: int = 300
    vboard: VirtualBoard | None = None
    listener: socket.socket | None = None
    node_id: str = NODE_ID
    session: Probe | None = None
    boot_hello: dict | None = field(default=None, repr=False)
    boot_hello_at: float = 0.0

    @classmethod
    def open(
        cls,
        port: str | None = None,
        board: str | None = None,
        host: str | None = None,
        link: str | None = None,
        *,
        native: bool = True,
        workdir: Path | None = None,
        heartbeat_ms: int = 300,
        out=lambda line: None,
    ) -> BoardUnderTest:
        vboard = None
        if port is None:
            vboard = VirtualBoard(board=board or "unix", firmware=False, workdir=workdir,
                                  node_id=NODE_ID)
            vboard.start()
            port = vboard.serial_port
            assert port is not None
        link = link or ("tcp" if host else "serial")
        target = cls(board=board or "unix", port=port, link=link, key=os.urandom(16),
                     host=host, heartbeat_ms=heartbeat_ms, vboard=vboard)
        try:
            master = ""
            if link == "tcp":
                # A virtual board dials loopback; a real one dials this machine's address on
                # the route to it.
                bind = "0.0.0.0" if host else "127.0.0.1"
                target.listener = socket.create_server((bind, 0))
                here = local_address_towards(host) if host else "127.0.0.1"
                master = f"{here}:{target.listener.getsockname()[1]}"
            report = deploy(DeployOptions(board=target.board, port=port, key=target.key,
                                          master=master, link=link, node_id=NODE_ID,
                                          native=native, wait=(link == "serial"),
                                          timeout=30.0), out=out)
            target.boot_hello, target.boot_hello_at = report.hello, time.monotonic()
        except BaseException:
            target.close()
            raise
        return target

    def connect(self, timeout: float = 30.0) -> Probe:
        """A joined session with the board."""
        if self.link == "tcp":
            assert self.listener is not None
            transport = TcpTransport.accept(self.listener, timeout, peer=self.host)
        else:
            transport = SerialTransport(self.port)
        boot_hello, self.boot_hello = self.boot_hello, None
        if time.monotonic() - self.boot_hello_at > BOOT_HELLO_S:
            boot_hello = None
        probe = Probe(transport, self.key, heartbeat_ms=self.heartbeat_ms)
        try:
            probe.join(timeout, answer=boot_hello)
        except BaseException:
            transport.close()
            raise
        return probe

    def redeploy(self, *, native: bool, out=lambda line: None) -> None:
        """Deploy to this serial board again (only what changed is copied: with
        `native=False` the native module is removed) and wait for its HELLO, which the
        next connect() answers."""
        assert self.link == "serial", "redeploy() waits for a serial board's HELLO"
        self.drop_session()
        report = deploy(DeployOptions(board=self.board, port=self.port, key=self.key,
                                      link=self.link, node_id=self.node_id, native=native,
                                      wait=True, timeout=30.0), out=out)
        self.boot_hello, self.boot_hello_at = report.hello, time.monotonic()

    def joined(self) -> Probe:
        """The current session, joining a new one when there is none."""
        if self.session is None:
            self.session = self.connect()
        return self.session

    def drop_session(self) -> None:
        """Forget the current session (a test broke it on purpose)."""
        session, self.session = self.session, None
        if session is not None:
            session.transport.close()

    def hard_reset(self) -> None:
        """Reset the board (a wedged worker too): the VM's reset button, or mpremote."""
        self.drop_session()
        if self.vboard is not None:
            self.vboard.hard_reset()
        else:
            Mpremote(self.port, timeout=20).reset()

    @property
    def heap_budget(self) -> int | None:
        from microswarm import paths

        return paths.load_board(self.board).get("heap_bytes")

    def close(self) -> None:
        if self.session is not None:
            self.session.close()
            self.session = None
        if self.listener is not None:
            self.listener.close()
            self.listener = None
        if self.vboard is not None:
            self.vboard.stop()
            self.vboard = None


def from_environment(option_port: str | None, option_board: str | None,
                     option_host: str | None) -> tuple[str | None, str | None, str | None]:
    """Command-line options first, then MICROSWARM_BOARD_PORT / _BOARD / _BOARD_HOST."""
    return (
        option_port or os.environ.get("MICROSWARM_BOARD_PORT") or None,
        option_board or os.environ.get("MICROSWARM_BOARD") or None,
        option_host or os.environ.get("MICROSWARM_BOARD_HOST") or None,
    )
