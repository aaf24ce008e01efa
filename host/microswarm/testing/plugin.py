"""The microswarm pytest plugin, registered under the ``pytest11`` entry point: with
microswarm installed, any repository's tests get these options and fixtures (docs/hil.md).

Options: ``--board-port PORT --board NAME [--board-host IP]`` name a real board (or the
environment's MICROSWARM_BOARD_PORT / _BOARD / _BOARD_HOST); without them the fixtures start
a virtual board (the firmware in the MicroPython VM).

Fixtures:
  hil_board          the board under test, firmware deployed with a fresh key (session
                     scope; a test asking for it runs once per link: serial and TCP on a
                     virtual board, the given link on a real one)
  probe              a joined protocol-level session with that board (microswarm.hil.probe)
  microswarm_master  a running master (``Cluster``) with two in-process nodes and a client
                     port on loopback: ``.map``, ``.submit``, ``.services.client_address``
  joined_board       a running master whose one node is the board under test, joined over
                     serial: ``joined_board.map("dot", ...)`` runs on the board

The conformance suite ships as ``microswarm.testing.conformance``:
``pytest --pyargs microswarm.testing.conformance --board-port /dev/ttyACM0 --board NAME``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from microswarm.hil.probe import Probe
    from microswarm.hil.target import BoardUnderTest
    from microswarm.master import Cluster

pytest.register_assert_rewrite("microswarm.testing.conformance")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("microswarm", "microswarm boards (conformance suite, board tests)")
    group.addoption("--board-port", default=None,
                    help="serial port of a real board (env MICROSWARM_BOARD_PORT)")
    group.addoption("--board", default=None,
                    help="board definition of that board (env MICROSWARM_BOARD)")
    group.addoption("--board-host", default=None,
                    help="the board's IP address: test its TCP link (env MICROSWARM_BOARD_HOST)")


def target_options(config: pytest.Config) -> tuple[str | None, str | None, str | None]:
    """(port, board, host) from the options, then the environment."""
    from microswarm.hil.target import from_environment

    port, board, host = from_environment(config.getoption("--board-port"),
                                         config.getoption("--board"),
                                         config.getoption("--board-host"))
    if port is not None and board is None:
        raise pytest.UsageError("--board-port needs --board NAME (boards/NAME.json)")
    return port, board, host


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "hil_board" not in metafunc.fixturenames:
        return
    port, _board, host = target_options(metafunc.config)
    links = ["serial", "tcp"] if port is None else ["tcp" if host else "serial"]
    metafunc.parametrize("hil_board", links, indirect=True, scope="session")


@pytest.fixture(scope="session")
def hil_board(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[BoardUnderTest]:
    from microswarm.hil.target import BoardUnderTest

    port, board, host = target_options(request.config)
    link = getattr(request, "param", "tcp" if host else "serial")
    target = BoardUnderTest.open(
        port=port, board=board, host=host if port else None, link=link,
        workdir=tmp_path_factory.mktemp(f"hil-{link}") if port is None else None,
    )
    yield target
    target.close()


@pytest.fixture
def probe(hil_board: BoardUnderTest) -> Probe:
    """A joined session, shared by consecutive tests; a test that breaks it calls
    `hil_board.drop_session()` and the next test joins again."""
    return hil_board.joined()


@pytest.fixture
def microswarm_master() -> Iterator[Cluster]:
    from microswarm.master import Cluster
    from microswarm.master.config import ClusterSpec

    spec = ClusterSpec(name="pytest", key=_fresh_key(), tcp_port=0, udp_port=None,
                       control_port=None, client="127.0.0.1:0", http=None, inproc=2)
    with Cluster(spec) as cluster:
        yield cluster


@pytest.fixture
def joined_board(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[Cluster]:
    from microswarm.hil.target import BoardUnderTest
    from microswarm.keys import DEFAULT_CLUSTER
    from microswarm.master import Cluster
    from microswarm.master.config import ClusterSpec

    port, board, _host = target_options(request.config)
    target = BoardUnderTest.open(port=port, board=board, link="serial",
                                 workdir=tmp_path_factory.mktemp("joined") if port is None
                                 else None)
    try:
        target.heartbeat_ms = 1000
        spec = ClusterSpec(name=DEFAULT_CLUSTER, key=target.key, tcp_port=None, udp_port=None,
                           control_port=None, client="127.0.0.1:0", http=None,
                           serial_ports=[target.port])
        with Cluster(spec) as cluster:
            yield cluster
    finally:
        target.close()


def _fresh_key() -> bytes:
    import os

    return os.urandom(16)
