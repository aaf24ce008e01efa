"""The pytest plugin as a user meets it: its fixtures here, and from a repository of
their own (a separate pytest run in a fresh folder, the plugin found by its entry point)."""

from __future__ import annotations

import subprocess
import sys
from array import array

import pytest

from microswarm.firmware import kernels

pytestmark = pytest.mark.timeout(300)


@pytest.mark.slow
def test_joined_board_runs_tasks_through_the_master(joined_board):
    (node,) = joined_board.nodes()
    assert node.node_id == "hil1" and node.link == "serial"
    args = [[array("h", range(i, i + 50)), array("h", range(50))] for i in range(8)]
    assert joined_board.map("dot", args) == [kernels.run("dot", a) for a in args]


def test_microswarm_master_fixture(microswarm_master):
    assert sorted(n.node_id for n in microswarm_master.nodes()) == ["py1", "py2"]
    assert microswarm_master.map("echo", [[i] for i in range(10)]) == list(range(10))
    assert microswarm_master.services.client_address.startswith("127.0.0.1:")


def test_a_users_own_repository_gets_the_options_fixtures_and_suite(tmp_path):
    (tmp_path / "test_mine.py").write_text(
        "from microswarm.master import Cluster\n\n"
        "def test_mine(microswarm_master, pytestconfig):\n"
        "    assert pytestconfig.getoption('--board-port') is None\n"
        "    assert microswarm_master.submit('echo', 5).result(30) == 5\n"
        "    address = microswarm_master.services.client_address\n"
        "    key = microswarm_master.spec.key\n"
        "    with Cluster.connect(address, key=key) as client:\n"
        "        assert client.map('echo', [[1], [2]]) == [1, 2]\n")
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "test_mine.py"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 passed" in run.stdout
    listed = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             "--collect-only", "--pyargs", "microswarm.testing.conformance"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert "test_every_kernel_matches_its_reference[serial-dot]" in listed.stdout
    assert "test_every_kernel_matches_its_reference[tcp-dot]" in listed.stdout
    bad = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "--collect-only", "--pyargs", "microswarm.testing.conformance",
                          "--board-port", "/dev/null"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode != 0 and "--board-port needs --board NAME" in bad.stdout + bad.stderr
