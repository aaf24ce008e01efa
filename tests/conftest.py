"""Fixtures shared by every test area. Areas keep their own fixtures next to their tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from microswarm import paths
from microswarm.vm import run_script

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def micropython() -> str:
    return paths.micropython_command()


@pytest.fixture(scope="session")
def run_vm(micropython):
    """Run a MicroPython script in the real VM with firmware/ on its path; return stdout.

    Usage: run_vm(source, heap=None, stdin=b"", timeout=60). A non-zero exit fails the test
    with the VM's stderr.
    """

    def run(source: str, heap: int | None = None, stdin: bytes = b"", timeout: float = 60) -> str:
        return run_script(source, cwd=paths.firmware_dir(), heap=heap, stdin=stdin,
                          timeout=timeout, micropython=micropython)

    return run


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start building the QEMU firmwares the collected tests boot (support/prebuild.py)."""
    from support import prebuild

    worker = getattr(session.config, "workerinput", {}).get("workerid", "gw0")
    if worker != "gw0" or session.config.option.collectonly:
        return  # one builder per run; under xdist the first worker's
    firmwares = prebuild.wanted([item.nodeid for item in session.items])
    session.config.stash[_PREBUILD] = prebuild.Prebuild(firmwares, REPO).start()


def pytest_sessionfinish(session: pytest.Session) -> None:
    builder = session.config.stash.get(_PREBUILD, None)
    if builder is not None:
        builder.stop()


_PREBUILD = pytest.StashKey()
