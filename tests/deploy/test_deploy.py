"""`microswarm deploy` through real mpremote to a virtual board, joined by a real master."""

from __future__ import annotations

import subprocess
import sys

import pytest

from microswarm.deploy.build import build, shadowed_names
from microswarm.deploy.deploy import DeployOptions, deploy
from microswarm.deploy.mpremote import Mpremote, MpremoteError

pytestmark = pytest.mark.timeout(120)
KEY = bytes.fromhex("5a6b7c8d9e0f11223344556677889900")


def options(vb, **kw) -> DeployOptions:
    kw.setdefault("board", "unix")
    kw.setdefault("node_id", "dep1")
    kw.setdefault("timeout", 20.0)
    kw.setdefault("key", KEY)
    return DeployOptions(port=vb.serial_port, **kw)


def test_build_compiles_every_module_but_the_entry_points():
    config = '{"node_id": "n", "cluster": "c", "key": "00", "master": "", "link": "serial"}'
    files = build("unix", config)
    assert "main.py" in files and "worker.mpy" in files and "worker.py" not in files
    assert all(files[n][:1] == b"M" for n in files if n.endswith(".mpy"))
    assert "worker.py" in shadowed_names(files)
    assert "main.mpy" not in shadowed_names(files)


def test_dry_run_lists_the_bundle_and_copies_nothing(blank_vboard):
    report = deploy(options(blank_vboard, dry_run=True))
    assert set(report.plan.copy) >= {"main.py", "worker.mpy", "config.json", "board.json"}
    assert set(report.plan.copy.values()) == {"new"}
    assert not report.joined
    assert sorted(p.name for p in blank_vboard.flash.iterdir()) == []


@pytest.mark.slow
def test_serial_deploy_joins_runs_tasks_and_a_second_deploy_updates_the_running_node(
    blank_vboard, master, cluster_key
):
    first = deploy(options(blank_vboard, link="serial", key=cluster_key))
    assert first.joined and first.hello is not None
    assert (blank_vboard.flash / "worker.mpy").exists()

    master.call(master.master.open_serial(blank_vboard.serial_port))
    master.call(master.master.wait_for_nodes(1, timeout=20))
    assert master.run_job("echo", [[7], ["x"]]) == [7, "x"]
    master.call(master.master.stop())  # a serial node is released before a deploy

    second = deploy(options(blank_vboard, link="serial", slots=1, key=cluster_key))
    assert second.plan.copy["config.json"] == "changed"
    assert "board.json" in second.plan.unchanged  # only what changed is copied
    assert second.joined
    assert '"slots": 1' in (blank_vboard.flash / "config.json").read_text()


@pytest.mark.slow
def test_tcp_deploy_joins_the_master_and_a_source_deploy_replaces_the_running_firmware(
    blank_vboard, master, cluster_key
):
    first = deploy(options(blank_vboard, link="tcp", master=master.address,
                           control=master.control, key=cluster_key))
    assert first.joined
    assert master.run_job("echo", [[1], [2], [3]]) == [1, 2, 3]

    second = deploy(options(blank_vboard, link="tcp", master=master.address,
                            control=master.control, compiled=False, key=cluster_key))
    assert "worker.py" in second.plan.copy and "worker.mpy" in second.plan.remove
    assert second.joined
    assert not (blank_vboard.flash / "worker.mpy").exists()
    assert master.run_job("echo", [[4]]) == [4]


def test_cli_dry_run_keeps_the_key_out_of_its_output(blank_vboard, tmp_path):
    key_file = tmp_path / "cluster.key"
    key_file.write_text(KEY.hex() + "\n")
    proc = subprocess.run(
        [sys.executable, "-m", "microswarm.cli", "-vv", "deploy", "--board", "unix",
         "--port", blank_vboard.serial_port, "--key-file", str(key_file), "--dry-run"],
        capture_output=True, timeout=60,
    )
    out = proc.stdout.decode() + proc.stderr.decode()
    assert proc.returncode == 0, out
    assert "would copy config.json" in out and "would copy worker.mpy" in out
    assert KEY.hex() not in out and KEY.hex().upper() not in out


def test_mpremote_errors_are_typed_and_bounded(tmp_path):
    with pytest.raises(MpremoteError, match="failed|no answer"):
        Mpremote(str(tmp_path / "no-such-port"), timeout=10).exec("print(1)")
