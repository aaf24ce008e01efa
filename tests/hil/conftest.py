"""The board under test for the conformance suite.

By default a virtual board is started and tested over both links; with --board-port (and
--board, and --board-host for the TCP link) the same tests run against a real board.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from microswarm.hil.probe import Probe
from microswarm.hil.target import BoardUnderTest, from_environment


def _target_options(config: pytest.Config) -> tuple[str | None, str | None, str | None]:
    return from_environment(
        config.getoption("--board-port"),
        config.getoption("--board"),
        config.getoption("--board-host"),
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "hil_board" not in metafunc.fixturenames:
        return
    port, _board, host = _target_options(metafunc.config)
    links = ["serial", "tcp"] if port is None else ["tcp" if host else "serial"]
    metafunc.parametrize("hil_board", links, indirect=True, scope="session")


@pytest.fixture(scope="session")
def hil_board(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[BoardUnderTest]:
    port, board, host = _target_options(request.config)
    if port is not None and board is None:
        raise pytest.UsageError("--board-port needs --board NAME (boards/NAME.json)")
    target = BoardUnderTest.open(
        port=port, board=board, host=host if port else None, link=request.param,
        workdir=tmp_path_factory.mktemp(f"hil-{request.param}") if port is None else None,
    )
    yield target
    target.close()


@pytest.fixture
def probe(hil_board: BoardUnderTest) -> Probe:
    """A joined session, shared by consecutive tests; a test that breaks it calls
    `hil_board.drop_session()` and the next test joins again."""
    return hil_board.joined()
