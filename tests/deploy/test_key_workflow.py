"""The key workflow of docs/deploy.md, run as written: keygen, master --key-file, vboard
--key-file, deploy --key-file, nodes. The commands use the documented fixed ports, so they
run in a network namespace of their own (unshare) when the machine allows it."""

from __future__ import annotations

import pytest

from microswarm.keys import read_key

from support.commands import PORTS, REPO, shell_commands, user_shell

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def test_documented_key_workflow_runs_as_written(tmp_path):
    lines = shell_commands(REPO / "docs" / "deploy.md", after="The whole workflow on one PC")
    assert [line.split()[1] for line in lines] == [
        "keygen", "master", "vboard", "vboard", "deploy", "nodes"]
    with user_shell(tmp_path, PORTS) as shell:
        shell.run_in_order(lines[:-1], timeout=180)
        shell.poll(lines[-1], "vb-1", "vb-2")  # the board started first may still be dialling
    said = [out for _, out in shell.transcript] + [p.output for p in shell.background]
    key = read_key(tmp_path / "cluster.key")
    assert len(key) == 32
    assert (tmp_path / "cluster.key").stat().st_mode & 0o777 == 0o600
    assert all(key.hex() not in out for out in said), "the key was printed"
